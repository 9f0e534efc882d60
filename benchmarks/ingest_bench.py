"""Ingest benchmark: model load, cold ingest of the seed document, no-op re-ingest, peak memory.

Run: python -m benchmarks.ingest_bench
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

from benchmarks.common import ROOT, load_average, peak_rss_mb, temp_settings
from ingest.pipeline import run_ingest
from kb.embeddings import load_embedding

log = logging.getLogger("bench")


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    settings = temp_settings()
    started = time.perf_counter()
    embedding = load_embedding(settings)
    load_s = time.perf_counter() - started

    cold = run_ingest(settings, embedding=embedding)
    noop = run_ingest(settings, embedding=embedding)
    env = {"KBQA_DOCS_DIR": str(settings.docs_dir), "KBQA_DATA_DIR": str(settings.data_dir)}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ingest"], cwd=ROOT, env={**os.environ, **env}, check=True,
                   capture_output=True)
    noop_cli_s = time.perf_counter() - started

    rows = [
        ("embedding model load", f"{load_s:.2f} s ({embedding[1].runtime})"),
        ("cold ingest: chunks", f"{cold.chunks} chunks, {cold.embedded_chunks} embedded"),
        ("cold ingest: embedding", f"{cold.embed_seconds:.2f} s (target < 10 s)"),
        ("cold ingest: total", f"{cold.seconds:.2f} s"),
        ("no-op re-ingest (in process)", f"{noop.seconds:.3f} s (target < 1 s), {noop.embedded_chunks} embedded"),
        ("no-op re-ingest (python -m ingest, incl. start-up)", f"{noop_cli_s:.2f} s"),
        ("peak memory (RSS)", f"{peak_rss_mb():.0f} MB"),
        ("machine", load_average()),
    ]
    width = max(len(name) for name, _ in rows)
    sys.stdout.write("\n".join(f"{name:<{width}}  {value}" for name, value in rows) + "\n")


if __name__ == "__main__":
    main()
