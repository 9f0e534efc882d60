"""The one list of metric definitions: what each figure is called, how it is printed, which way is better,
and which tables show it (with the column label each uses).

The summary dicts come from ``eval.metrics.aggregate`` (answers, per configuration and group) and
``eval.systems.rankers`` (retrieval, per system and group); every table of the report, the command line
and ``python -m eval compare`` takes its rows or columns from here, in this order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Format = Literal["int", "pct", "num", "ms"]
# The tables: summary (one row a metric, per configuration), groups (by question type / language, one
# column a metric), plots (the bar charts), retrieval (a split's systems by group), side_by_side (every
# gold set, split and system in one table), compare (configurations of two runs), compare_retrieval
# (retrieval systems of two runs).
TABLES = ("summary", "groups", "plots", "retrieval", "side_by_side", "compare", "compare_retrieval")


@dataclass(frozen=True)
class Metric:
    key: str  # the key in the summary dicts
    label: str  # the row label of the summary table
    format: Format = "pct"
    higher_is_better: bool | None = True  # None: a count to read, neither better nor worse
    tables: tuple[str, ...] = ()  # the tables that show it
    columns: dict[str, str] = field(default_factory=dict)  # table -> its column label, where not the key

    def __post_init__(self) -> None:
        unknown = sorted(set(self.tables) - set(TABLES)) or sorted(set(self.columns) - set(self.tables))
        if unknown:
            raise ValueError(f"metric {self.key}: table(s) {', '.join(unknown)} unknown or not shown")

    def column(self, table: str) -> str:
        return self.columns.get(table, self.key)


def _metric(key: str, label: str, fmt: Format = "pct", better: bool | None = True, tables: str = "",
            **columns: str) -> Metric:
    return Metric(key, label, fmt, better, tuple(tables.split()), columns)


METRICS: tuple[Metric, ...] = (
    _metric("n", "questions", "int", None, "summary"),
    _metric("answered", "answered (not refused)", "int", None, "summary"),
    _metric("errors", "errors", "int", False, "summary"),
    _metric("faithfulness", "faithfulness (offline judge)", tables="summary compare groups plots",
            groups="faithful", plots="faithfulness"),
    _metric("faithfulness_llm", "faithfulness (LLM judge)", tables="summary compare"),
    _metric("llm_unparseable", "LLM judgements unparseable", "int", False, "summary"),
    _metric("claims", "claims judged", "int", None, "summary"),
    _metric("unsupported_claims", "unsupported claims", "int", False, "summary"),
    _metric("citation_precision", "citation precision", tables="summary compare groups plots",
            groups="cite prec", plots="citation precision"),
    _metric("citation_recall", "citation recall", tables="summary compare groups", groups="cite rec"),
    _metric("evidence_cited", "evidence cited (answerable)", tables="summary"),
    _metric("quotes_not_in_documents", "quotes not in documents", "int", False, "summary"),
    _metric("correct_refusal_rate", "correct refusals (unanswerable)", tables="summary compare"),
    _metric("wrong_refusal_rate", "wrong refusals (answerable)", "pct", False, "summary compare"),
    _metric("refusal_accuracy", "refusal accuracy", tables="summary compare groups", groups="refusal acc"),
    _metric("correct_rate", "correct (offline, key terms)", tables="summary compare groups plots",
            groups="correct", plots="correct (offline)"),
    _metric("correct_rate_llm", "correct (LLM judge)", tables="summary compare"),
    _metric("hit@1", "hit@1 (answer's passages)", tables="summary compare retrieval side_by_side compare_retrieval"),
    _metric("hit@3", "hit@3", tables="retrieval"),
    _metric("hit@5", "hit@5", tables="summary compare groups plots retrieval side_by_side compare_retrieval"),
    _metric("mrr@10", "MRR", "num", tables="summary compare retrieval side_by_side compare_retrieval"),
    _metric("ndcg@10", "nDCG@10", "num", tables="retrieval"),
    _metric("ev@500", "evidence within the first 500 characters", tables="retrieval side_by_side"),
    _metric("ev@1000", "evidence within the first 1,000 characters", tables="retrieval side_by_side"),
    _metric("ev@2000", "evidence within the first 2,000 characters", tables="retrieval side_by_side"),
    _metric("retrieval_ms_p50", "retrieval ms p50", "ms", False, "summary"),
    _metric("first_token_ms_p50", "first token ms p50", "ms", False, "summary"),
    _metric("total_ms_p50", "total ms p50", "ms", False, "summary compare"),
    _metric("total_ms_p95", "total ms p95", "ms", False, "summary compare"),
    _metric("ms_p95", "retrieval ms p95", "ms", False, "side_by_side", side_by_side="ms p95"),
)
BY_KEY = {m.key: m for m in METRICS}


def shown_in(table: str) -> tuple[Metric, ...]:
    """The metrics a table shows, in the registry's order."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; the tables are {', '.join(TABLES)}")
    return tuple(m for m in METRICS if table in m.tables)


def keys(table: str) -> tuple[str, ...]:
    return tuple(m.key for m in shown_in(table))


def fmt(value: Any, kind: Format = "num") -> str:
    """A figure as the tables print it: "–" for none (or NaN), ints whole, ms with thousands, rates 3 decimals."""
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    if kind == "int":
        return str(int(value))
    if kind == "ms":
        return f"{value:,.0f}"
    if kind == "pct":
        return f"{value:.3f}"
    return f"{value:.3f}" if isinstance(value, float) else str(value)
