"""python -m ingest [PATHS...] [--rebuild] [--status]"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from ingest.pipeline import run_ingest
from kb.errors import KbqaError
from kb.index import KnowledgeBase
from kb.logging_setup import configure_logging
from kb.settings import get_settings

log = logging.getLogger("ingest")


def status_text(kb: KnowledgeBase) -> str:
    manifest = kb.read_manifest()
    if manifest is None or not manifest.docs:
        return f"The knowledge base in the {kb.location} is empty. Run: python -m ingest"
    emb = manifest.embedding
    lines = [
        f"Knowledge base: {kb.location}, collection {kb.settings.collection!r}",
        f"Generation {manifest.generation}, updated {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(manifest.updated_at))}",
        f"Embedding: {emb.get('model')} ({emb.get('runtime')}, {emb.get('dim')} dimensions)",
        f"Chunking: {manifest.chunking}",
        f"{len(manifest.docs)} documents, {len(manifest.live_ids())} chunks:",
    ]
    for name, entry in manifest.docs.items():
        lines.append(f"  {name}: {entry.chunks} chunks, {entry.size} bytes, sha256 {entry.sha256[:12]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingest", description="Ingest documents into the knowledge base.")
    parser.add_argument("paths", nargs="*", type=Path, help="files or folders (default: the docs folder, kb/docs)")
    parser.add_argument("--rebuild", action="store_true", help="re-chunk and re-embed every document")
    parser.add_argument("--status", action="store_true", help="show what is indexed and exit")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    configure_logging(logging.DEBUG if args.verbose else logging.INFO)
    settings = get_settings()
    try:
        if args.status:
            sys.stdout.write(status_text(KnowledgeBase(settings)) + "\n")
            return 0
        report = run_ingest(settings, args.paths or None, rebuild=args.rebuild)
    except KbqaError as exc:
        log.error("%s", exc)
        return 2
    sys.stdout.write(report.summary() + "\n")
    return 0 if report.documents else 1


if __name__ == "__main__":
    sys.exit(main())
