"""Retrieval metrics over ranked passages judged against gold evidence spans.

A passage is relevant to a piece of evidence when its span of the source document covers
at least ``MIN_EVIDENCE_COVERAGE`` of the evidence's span: the whole evidence when it lies
inside the passage, most of it when a chunk boundary cuts through it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

MIN_EVIDENCE_COVERAGE = 0.6
CUTOFFS = (1, 3, 5)
DEPTH = 10


@dataclass(frozen=True)
class SpanRef:
    doc: str
    start: int
    end: int


def evidence_spans(evidence: Sequence[str], documents: dict[str, str]) -> list[SpanRef]:
    spans = []
    for text in evidence:
        for doc, content in documents.items():
            at = content.find(text)
            if at >= 0:
                spans.append(SpanRef(doc, at, at + len(text)))
                break
    return spans


def covers(passage: SpanRef, evidence: SpanRef) -> bool:
    if passage.doc != evidence.doc:
        return False
    overlap = min(passage.end, evidence.end) - max(passage.start, evidence.start)
    return overlap >= MIN_EVIDENCE_COVERAGE * (evidence.end - evidence.start)


def relevance(ranked: Sequence[SpanRef], evidence: Sequence[SpanRef]) -> list[bool]:
    return [any(covers(p, e) for e in evidence) for p in ranked]


def question_metrics(ranked: Sequence[SpanRef], evidence: Sequence[SpanRef]) -> dict[str, float]:
    rel = relevance(ranked[:DEPTH], evidence)
    out = {f"hit@{k}": float(any(rel[:k])) for k in CUTOFFS}
    first = next((i for i, r in enumerate(rel) if r), None)
    out["mrr@10"] = 0.0 if first is None else 1.0 / (first + 1)
    dcg = sum(1.0 / math.log2(i + 2) for i, r in enumerate(rel) if r)
    ideal_hits = min(len(evidence), DEPTH)
    idcg = sum(1.0 / math.log2(i + 2) for i in range(ideal_hits))
    out["ndcg@10"] = dcg / idcg if idcg else 0.0
    return out


METRIC_NAMES = tuple([f"hit@{k}" for k in CUTOFFS] + ["mrr@10", "ndcg@10"])


def average(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    if not rows:
        return {name: float("nan") for name in METRIC_NAMES} | {"n": 0}
    return {name: sum(r[name] for r in rows) / len(rows) for name in METRIC_NAMES} | {"n": len(rows)}
