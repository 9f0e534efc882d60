"""Retrieval metrics over ranked passages judged against gold evidence spans.

A passage is relevant to a piece of evidence when its span of the source document covers
at least ``MIN_EVIDENCE_COVERAGE`` of the evidence's span: the whole evidence when it lies
inside the passage, most of it when a chunk boundary cuts through it.

hit@k and MRR count passages, so a system that returns bigger chunks looks better on them. The
"evidence within the first N characters" metrics (``ev@N``) charge for size instead: the returned
passages are read in rank order as one text, and the question counts when an evidence span is
covered within its first N characters, the budget a reader or a prompt actually has.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

MIN_EVIDENCE_COVERAGE = 0.6
CUTOFFS = (1, 3, 5)
CHAR_BUDGETS = (500, 1000, 2000)
DEPTH = 10


@dataclass(frozen=True)
class SpanRef:
    doc: str
    start: int
    end: int
    text: str | None = None  # what the system returned for the span (None: the source slice)

    @property
    def length(self) -> int:
        return len(self.text) if self.text is not None else self.end - self.start


@dataclass(frozen=True)
class Evidence:
    span: SpanRef
    text: str


def locate_evidence(evidence: Sequence[str], documents: dict[str, str], doc: str | None = None) -> list[Evidence]:
    """Each evidence string's span, looked up in ``doc`` first (the gold row's document) when it is given."""
    names = [doc, *(n for n in documents if n != doc)] if doc in documents else list(documents)
    found = []
    for text in evidence:
        for name in names:
            at = documents[name].find(text)
            if at >= 0:
                found.append(Evidence(SpanRef(name, at, at + len(text)), text))
                break
    return found


def covers(passage: SpanRef, evidence: SpanRef) -> bool:
    if passage.doc != evidence.doc:
        return False
    overlap = min(passage.end, evidence.end) - max(passage.start, evidence.start)
    return overlap >= MIN_EVIDENCE_COVERAGE * (evidence.end - evidence.start)


def relevance(ranked: Sequence[SpanRef], evidence: Sequence[SpanRef]) -> list[bool]:
    return [any(covers(p, e) for e in evidence) for p in ranked]


def _covered_within(passage: SpanRef, offset: int, evidence: Evidence, budget: int) -> bool:
    """Whether ``evidence`` is covered by the part of ``passage`` that falls inside the first ``budget``
    characters, the passage starting at ``offset`` of the concatenated text."""
    room = budget - offset
    if room <= 0 or not covers(passage, evidence.span):
        return False
    if room >= passage.length:
        return True
    needed = math.ceil(MIN_EVIDENCE_COVERAGE * len(evidence.text))
    if passage.text is not None:
        at = passage.text.find(evidence.text)
        if at >= 0:  # the evidence is in the returned text as written: measure where it ends there
            return at + needed <= room
    # Cut by a chunk boundary or rewritten by cleaning: map the budget onto the source span in proportion.
    cut = passage.start + int((passage.end - passage.start) * room / max(passage.length, 1))
    return covers(SpanRef(passage.doc, passage.start, min(passage.end, cut)), evidence.span)


def within_budget(ranked: Sequence[SpanRef], evidence: Sequence[Evidence], budget: int) -> bool:
    offset = 0
    for passage in ranked:
        if offset >= budget:
            return False
        if any(_covered_within(passage, offset, e, budget) for e in evidence):
            return True
        offset += passage.length
    return False


def question_metrics(ranked: Sequence[SpanRef], evidence: Sequence[SpanRef | Evidence]) -> dict[str, float]:
    located = [e if isinstance(e, Evidence) else Evidence(e, "x" * (e.end - e.start)) for e in evidence]
    spans = [e.span for e in located]
    rel = relevance(ranked[:DEPTH], spans)
    out = {f"hit@{k}": float(any(rel[:k])) for k in CUTOFFS}
    first = next((i for i, r in enumerate(rel) if r), None)
    out["mrr@10"] = 0.0 if first is None else 1.0 / (first + 1)
    dcg = sum(1.0 / math.log2(i + 2) for i, r in enumerate(rel) if r)
    ideal_hits = min(len(spans), DEPTH)
    idcg = sum(1.0 / math.log2(i + 2) for i in range(ideal_hits))
    out["ndcg@10"] = dcg / idcg if idcg else 0.0
    for budget in CHAR_BUDGETS:
        out[f"ev@{budget}"] = float(within_budget(ranked[:DEPTH], located, budget))
    return out


METRIC_NAMES = tuple([f"hit@{k}" for k in CUTOFFS] + ["mrr@10", "ndcg@10"] + [f"ev@{n}" for n in CHAR_BUDGETS])


def average(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    if not rows:
        return {name: float("nan") for name in METRIC_NAMES} | {"n": 0}
    return {name: sum(r[name] for r in rows) / len(rows) for name in METRIC_NAMES} | {"n": len(rows)}
