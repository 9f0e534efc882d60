"""Retrieval latency per retriever and fused (p50/p95 over gold questions, after warm-up), and memory.

Run: python -m benchmarks.retrieval_bench               the seed document alone (target: fused p95 < 50 ms)
     python -m benchmarks.retrieval_bench --corpus dev  the dev corpus (nine documents + the seed), the
                                                        seed and dev gold questions (target: p95 <= 60 ms)
The dev knowledge base is the eval's own (``<data_dir>/eval-kb/``, reused while nothing that shapes it
changed); set ``KBQA_VECTOR_CACHE`` to share embeddings with other builds.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time

from benchmarks.common import current_rss_mb, load_average, percentile, temp_settings
from chat import Assistant
from eval.data.gold import DEV_QA_PATH, load_gold
from ingest.pipeline import run_ingest
from kb.settings import Settings

CONFIGS = {"dense": ("dense",), "bm25": ("bm25",), "fused": ("dense", "bm25")}


def _settings(corpus: str) -> tuple[Settings, list[str]]:
    seed_questions = [q.question for q in load_gold().rows]
    if corpus == "seed":
        settings = temp_settings()
        run_ingest(settings)
        return settings, seed_questions
    from eval.data.kbs import ensure_dev_kb

    settings = ensure_dev_kb(Settings(llm="none"))
    return settings, seed_questions + [q.question for q in load_gold(DEV_QA_PATH).rows]


def serving_rss_mb(settings: Settings, questions: list[str]) -> float:
    """RSS of a fresh process that opens the knowledge base and answers every question, as ``python -m chat``
    serves it (this process also built the index, whose bulk embedding session a server never holds)."""
    probe = (
        "import json, sys; from benchmarks.common import current_rss_mb; from chat import Assistant; "
        "from kb.settings import Settings; args = json.loads(sys.stdin.read()); "
        "bot = Assistant(Settings.model_validate_json(args['settings'])); "
        "[bot.retrieve(q) for q in args['questions']]; print(current_rss_mb())"
    )
    payload = json.dumps({"settings": settings.model_dump_json(), "questions": questions})
    out = subprocess.run([sys.executable, "-c", probe], input=payload, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=("seed", "dev"), default="seed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    settings, questions = _settings(args.corpus)
    rss_before = current_rss_mb()
    bot = Assistant(settings)
    for question in questions[:10]:  # warm-up: model, jieba dictionary, index view, caches
        bot.retrieve(question)
    rss_after = current_rss_mb()
    view = bot.kb.view()
    lines = [
        f"corpus {args.corpus}: {len(view.manifest.docs)} documents, {len(view.chunks)} chunks; "
        f"{len(questions)} gold questions",
        f"{'retriever':10} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}",
    ]
    for name, using in CONFIGS.items():
        times = []
        for question in questions:
            started = time.perf_counter()
            bot.retrieve(question, using=using)
            times.append((time.perf_counter() - started) * 1000)
        lines.append(f"{name:10} {percentile(times, 50):8.1f} {percentile(times, 95):8.1f} {max(times):8.1f}")
    lines.append(f"memory: {rss_after:.0f} MB RSS with a warm retriever ({rss_after - rss_before:+.0f} MB for it)")
    lines.append(f"serving RSS (a fresh process, every question retrieved): {serving_rss_mb(settings, questions):.0f} MB")
    lines.append(load_average())
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
