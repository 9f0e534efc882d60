"""Retrieval latency per retriever and fused (p50/p95 over the gold set, after warm-up), and memory.

Run: python -m benchmarks.retrieval_bench   (target: fused p95 < 50 ms)
"""

from __future__ import annotations

import logging
import sys
import time

from benchmarks.common import current_rss_mb, load_average, percentile, temp_settings
from chat import Assistant
from eval.datasets import load_gold
from ingest.pipeline import run_ingest

CONFIGS = {"dense": ("dense",), "bm25": ("bm25",), "fused": ("dense", "bm25")}


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    settings = temp_settings()
    run_ingest(settings)
    rss_before = current_rss_mb()
    bot = Assistant(settings)
    questions = [q.question for q in load_gold().rows]
    for question in questions[:10]:  # warm-up: model, jieba dictionary, index view, caches
        bot.retrieve(question)
    rss_after = current_rss_mb()
    lines = [f"{'retriever':10} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}   ({len(questions)} gold questions)"]
    for name, using in CONFIGS.items():
        times = []
        for question in questions:
            started = time.perf_counter()
            bot.retrieve(question, using=using)
            times.append((time.perf_counter() - started) * 1000)
        lines.append(f"{name:10} {percentile(times, 50):8.1f} {percentile(times, 95):8.1f} {max(times):8.1f}")
    lines.append(f"memory: {rss_after:.0f} MB RSS with a warm retriever ({rss_after - rss_before:+.0f} MB for it)")
    lines.append(load_average())
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
