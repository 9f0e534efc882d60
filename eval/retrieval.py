"""Retrieval evaluation: the hybrid retriever against BM25 alone, dense alone and a naive llama-index baseline."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from chat import Assistant
from eval.datasets import GoldQuestion
from eval.metrics import DEPTH, METRIC_NAMES, SpanRef, average, evidence_spans, question_metrics
from eval.naive import NaiveBaseline

log = logging.getLogger(__name__)

Ranker = Callable[[str], list[SpanRef]]
SYSTEMS = ("hybrid", "bm25", "dense", "naive")


@dataclass
class RankedResult:
    question: GoldQuestion
    system: str
    ranked: list[SpanRef]
    metrics: dict[str, float]
    seconds: float


def assistant_ranker(bot: Assistant, using: tuple[str, ...]) -> Ranker:
    def rank(question: str) -> list[SpanRef]:
        return [SpanRef(p.doc, p.start, p.end) for p in bot.retrieve(question, k=DEPTH, using=using)]

    return rank


def naive_ranker(bot: Assistant, documents: dict[str, str], baseline: NaiveBaseline | None = None) -> Ranker:
    """llama-index out of the box: VectorStoreIndex, default SentenceSplitter, the same embedding model."""
    return (baseline or NaiveBaseline(bot.embedding_model(), documents)).rank


def rankers(bot: Assistant, documents: dict[str, str], systems: Sequence[str] = SYSTEMS,
            baseline: NaiveBaseline | None = None) -> dict[str, Ranker]:
    available: dict[str, Callable[[], Ranker]] = {
        "hybrid": lambda: assistant_ranker(bot, ("dense", "bm25")),
        "bm25": lambda: assistant_ranker(bot, ("bm25",)),
        "dense": lambda: assistant_ranker(bot, ("dense",)),
        "naive": lambda: naive_ranker(bot, documents, baseline),
    }
    return {name: available[name]() for name in systems}


def run(
    questions: Sequence[GoldQuestion], documents: dict[str, str], systems: dict[str, Ranker], progress: bool = True
) -> list[RankedResult]:
    answerable = [q for q in questions if q.answerable]
    results = []
    total = len(answerable) * len(systems)
    with tqdm(total=total, desc="retrieval", disable=not progress, unit="q") as bar:
        for name, ranker in systems.items():
            for q in answerable:
                started = time.perf_counter()
                ranked = ranker(q.question)
                seconds = time.perf_counter() - started
                metrics = question_metrics(ranked, evidence_spans(q.evidence, documents))
                results.append(RankedResult(q, name, ranked, metrics, seconds))
                bar.update()
    return results


def summarize(results: Sequence[RankedResult]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """summary[split][system][group] = averaged metrics, group = all | type:X | lang:X."""
    summary: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for split in ("tune", "test", "all"):
        in_split = [r for r in results if split == "all" or r.question.split == split]
        for system in sorted({r.system for r in in_split}):
            rows = [r for r in in_split if r.system == system]
            groups: dict[str, list[dict[str, float]]] = {"all": [r.metrics for r in rows]}
            for r in rows:
                groups.setdefault(f"type:{r.question.type}", []).append(r.metrics)
                groups.setdefault(f"lang:{r.question.lang}", []).append(r.metrics)
            summary.setdefault(split, {})[system] = {g: average(m) for g, m in sorted(groups.items())}
    return summary


def format_table(summary: dict[str, dict[str, dict[str, dict[str, float]]]], groups: Sequence[str] = ("all",)) -> str:
    header = f"{'split':6} {'system':8} {'group':18} {'n':>4} " + " ".join(f"{m:>8}" for m in METRIC_NAMES)
    lines = [header, "-" * len(header)]
    for split, systems in summary.items():
        for system, by_group in systems.items():
            for group, metrics in by_group.items():
                if group not in groups and not any(group.startswith(g) for g in groups if g.endswith(":")):
                    continue
                values = " ".join(f"{metrics[m]:8.3f}" for m in METRIC_NAMES)
                lines.append(f"{split:6} {system:8} {group:18} {int(metrics['n']):4d} {values}")
    return "\n".join(lines)


def failures(results: Sequence[RankedResult], system: str = "hybrid") -> list[RankedResult]:
    return [r for r in results if r.system == system and r.metrics["hit@1"] < 1]


def load_documents(docs_dir: Path) -> dict[str, str]:
    return {p.relative_to(docs_dir).as_posix(): p.read_text(encoding="utf-8")
            for p in sorted(docs_dir.rglob("*.md"))}
