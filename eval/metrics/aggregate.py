"""Per-question scores into per-configuration figures, overall and by split, type and language."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from eval.metrics.ranking import METRIC_NAMES


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def percentile(values: Sequence[float], q: float) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    rank = (len(ordered) - 1) * q
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize_rows(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``rows``: scored records with ``gold`` (answerable, type, lang, split) attached."""
    answerable = [r for r in rows if r["gold"]["answerable"]]
    unanswerable = [r for r in rows if not r["gold"]["answerable"]]
    claims = [c for r in rows for c in r["claims"]]
    supported = sum(1 for c in claims if c["offline"]["supported"])
    totals = [r["timings"]["total_ms"] for r in rows if r["timings"].get("total_ms") is not None and not r["error"]]
    firsts = [r["timings"]["first_token_ms"] for r in rows if r["timings"].get("first_token_ms") is not None]
    retrievals = [r["timings"]["retrieval_ms"] for r in rows if r["timings"].get("retrieval_ms") is not None]
    retrieval = [r["retrieval"] for r in answerable if r["retrieval"]]
    llm_rows = [r for r in rows if r.get("llm") is not None]
    out: dict[str, Any] = {
        "n": len(rows), "answerable": len(answerable), "unanswerable": len(unanswerable),
        "errors": sum(1 for r in rows if r["error"]),
        "answered": sum(1 for r in rows if not r["refused"] and not r["error"]),
        "faithfulness": _mean([r["faithfulness"]["offline"] for r in rows]),
        "faithfulness_micro": supported / len(claims) if claims else None,
        "claims": len(claims), "unsupported_claims": len(claims) - supported,
        "faithfulness_llm": _mean([r["faithfulness"]["llm"] for r in rows]),
        "llm_unparseable": sum(r["llm"]["unparseable"] for r in llm_rows) if llm_rows else None,
        "citation_precision": _mean([r["citation_precision"] for r in rows]),
        "citation_recall": _mean([r["citation_recall"] for r in rows]),
        "evidence_cited": _mean([None if r.get("evidence_cited") is None else float(r["evidence_cited"])
                                 for r in answerable]),
        "quotes_not_in_documents": sum(r.get("quotes_not_in_documents", 0) for r in rows),
        "correct_refusals": sum(1 for r in unanswerable if r["refused"]),
        "wrong_refusals": sum(1 for r in answerable if r["refused"]),
        "correct_refusal_rate": _mean([float(r["refused"]) for r in unanswerable]),
        "wrong_refusal_rate": _mean([float(r["refused"]) for r in answerable]),
        "refusal_accuracy": _mean([float(r["refusal_correct"]) for r in rows]),
        "correct_rate": _mean([float(r["correctness"]["offline"]) for r in answerable]),
        "coverage": _mean([r["correctness"]["coverage"] for r in answerable]),
        "correct_rate_llm": _mean([None if r["correctness"]["llm"] is None else float(r["correctness"]["llm"])
                                   for r in answerable]),
        "total_ms_p50": percentile(totals, 0.5), "total_ms_p95": percentile(totals, 0.95),
        "first_token_ms_p50": percentile(firsts, 0.5), "first_token_ms_p95": percentile(firsts, 0.95),
        "retrieval_ms_p50": percentile(retrievals, 0.5),
    }
    for metric in METRIC_NAMES:
        out[metric] = _mean([m[metric] for m in retrieval])
    return out


def summarize_config(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """groups: all, split:X, type:X, lang:X -> figures."""
    groups: dict[str, list[dict[str, Any]]] = {"all": list(rows)}
    for r in rows:
        g = r["gold"]
        for key in (f"split:{g['split']}", f"type:{g['type']}", f"lang:{g['lang']}"):
            groups.setdefault(key, []).append(r)
    return {name: summarize_rows(members) for name, members in sorted(groups.items())}


def is_failure(row: dict[str, Any]) -> bool:
    """What a reader should look at: wrong refusals, answers to unanswerable questions, unsupported claims,
    wrong answers, citations without evidence, errors."""
    if row["error"]:
        return True
    if not row["refusal_correct"]:
        return True
    if not row["gold"]["answerable"]:
        return False
    unsupported = any(not c["offline"]["supported"] for c in row["claims"])
    bad_citation = row["citation_precision"] is not None and row["citation_precision"] < 1.0
    return unsupported or not row["correctness"]["offline"] or bad_citation
