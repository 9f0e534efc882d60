"""Retrieval evaluation: the hybrid retriever against BM25 alone, dense alone and two baselines that do not
depend on this project's chunking: llama-index's defaults (``naive``) and BM25 over 500-character windows
(``plain-bm25``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from chat import Assistant
from eval.data.gold import GoldQuestion
from eval.metrics.aggregate import percentile
from eval.metrics.ranking import DEPTH, SpanRef, average, locate_evidence, question_metrics
from eval.systems.baselines import NaiveBaseline, PlainBM25

log = logging.getLogger(__name__)

Ranker = Callable[[str], list[SpanRef]]
SYSTEMS = ("hybrid", "bm25", "dense", "naive", "plain-bm25")


@dataclass
class RankedResult:
    question: GoldQuestion
    system: str
    ranked: list[SpanRef]
    metrics: dict[str, float]
    seconds: float


def assistant_ranker(bot: Assistant, using: tuple[str, ...]) -> Ranker:
    def rank(question: str) -> list[SpanRef]:
        return [SpanRef(p.doc, p.start, p.end, p.text) for p in bot.retrieve(question, k=DEPTH, using=using)]

    return rank


def naive_baseline(bot: Assistant, documents: dict[str, str]) -> NaiveBaseline:
    """llama-index out of the box: VectorStoreIndex, default SentenceSplitter, the same embedding model."""
    from kb.embeddings import resolve_runtime

    return NaiveBaseline(bot.embedding_model(), documents, bot.settings, resolve_runtime(bot.settings))


def rankers(bot: Assistant, documents: dict[str, str], systems: Sequence[str] = SYSTEMS,
            baseline: NaiveBaseline | None = None) -> dict[str, Ranker]:
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        raise ValueError(f"unknown retrieval system(s) {', '.join(unknown)}; choose from {', '.join(SYSTEMS)}")
    available: dict[str, Callable[[], Ranker]] = {
        "hybrid": lambda: assistant_ranker(bot, ("dense", "bm25")),
        "bm25": lambda: assistant_ranker(bot, ("bm25",)),
        "dense": lambda: assistant_ranker(bot, ("dense",)),
        "naive": lambda: (baseline or naive_baseline(bot, documents)).rank,
        "plain-bm25": lambda: PlainBM25(documents).rank,
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
                metrics = question_metrics(ranked, locate_evidence(q.evidence, documents, q.doc))
                results.append(RankedResult(q, name, ranked, metrics, seconds))
                bar.update()
    return results


def summarize(results: Sequence[RankedResult]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """summary[split][system][group] = averaged metrics, group = all | type:X | lang:X | doc:X."""
    summary: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    splits = [s for s in ("tune", "test") if any(r.question.split == s for r in results)] + ["all"]
    for split in splits:
        in_split = [r for r in results if split == "all" or r.question.split == split]
        for system in sorted({r.system for r in in_split}):
            rows = [r for r in in_split if r.system == system]
            groups: dict[str, list[dict[str, float]]] = {"all": [r.metrics for r in rows]}
            for r in rows:
                groups.setdefault(f"type:{r.question.type}", []).append(r.metrics)
                groups.setdefault(f"lang:{r.question.lang}", []).append(r.metrics)
                if r.question.doc:
                    groups.setdefault(f"doc:{r.question.doc}", []).append(r.metrics)
            summary.setdefault(split, {})[system] = {g: average(m) for g, m in sorted(groups.items())}
            ms = [r.seconds * 1000 for r in rows]
            summary[split][system]["all"] |= {"ms_p50": percentile(ms, 0.5), "ms_p95": percentile(ms, 0.95)}
    return summary


def load_documents(docs_dir: Path) -> dict[str, str]:
    from eval.data.kbs import documents

    return documents([docs_dir])

