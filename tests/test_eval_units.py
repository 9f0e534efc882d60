"""Small pure pieces of the eval: the metric registry, typed gold rows and claims, claim sentences, protect()."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from eval.data.gold import GoldQuestion, LabelledClaim, load_gold
from eval.judges.claims import cited_sentences, protect
from eval.metrics import registry
from eval.metrics.aggregate import summarize_rows
from eval.metrics.ranking import METRIC_NAMES, SpanRef
from eval.report.compare import compare
from eval.report.tables import group_table, retrieval_table, sets_retrieval_table, summary_table
from eval.systems.configs import AnswerRecord, guarded
from eval.systems.rankers import RankedResult, summarize

GOOD = {"id": "q1", "question": "GPT-3 有多少层？", "answerable": True, "evidence": ["GPT-3 有 96 层"]}


# --- the metric registry ----------------------------------------------------------------------
def test_every_table_shows_its_metrics_in_registry_order():
    order = [m.key for m in registry.METRICS]
    assert len(order) == len(set(order)), "a metric is defined twice"
    for table in registry.TABLES:
        keys = registry.keys(table)
        assert keys, f"{table} shows nothing"
        assert [order.index(k) for k in keys] == sorted(order.index(k) for k in keys)


def test_the_retrieval_tables_show_what_the_ranking_metrics_compute():
    assert registry.keys("retrieval") == METRIC_NAMES
    assert set(registry.keys("side_by_side")) - set(METRIC_NAMES) == {"ms_p95"}


def test_unknown_tables_and_columns_are_refused():
    with pytest.raises(ValueError, match="unknown table 'sumary'"):
        registry.shown_in("sumary")
    with pytest.raises(ValueError, match="metric x: table"):
        registry.Metric("x", "x", tables=("summary", "nowhere"))
    with pytest.raises(ValueError, match="metric x: table"):
        registry.Metric("x", "x", tables=("summary",), columns={"groups": "x!"})


def test_directions_and_formats():
    by = registry.BY_KEY
    assert by["faithfulness"].higher_is_better and not by["wrong_refusal_rate"].higher_is_better
    assert by["total_ms_p95"].higher_is_better is False and by["n"].higher_is_better is None
    assert [registry.fmt(v, k) for v, k in ((None, "pct"), (float("nan"), "num"), (3.0, "int"), (1234.5, "ms"),
                                            (0.25, "pct"), (2, "num"))] == ["–", "–", "3", "1,234", "0.250", "2"]


def scored_row(refused: bool, answerable: bool = True) -> dict:
    """One scored answer as eval.metrics.scoring writes it."""
    return {"gold": {"answerable": answerable, "type": "single", "lang": "zh", "split": "test"},
            "claims": [{"offline": {"supported": True}}], "timings": {"total_ms": 10.0, "retrieval_ms": 2.0},
            "error": None, "refused": refused, "refusal_correct": refused != answerable,
            "faithfulness": {"offline": 1.0, "llm": None}, "citation_precision": 1.0, "citation_recall": 0.5,
            "evidence_cited": True, "quotes_not_in_documents": 0, "llm": None,
            "correctness": {"offline": True, "coverage": 0.8, "llm": None},
            "retrieval": dict.fromkeys(METRIC_NAMES, 1.0)}


def test_the_summary_dicts_hold_every_metric_the_answer_tables_show():
    summary = summarize_rows([scored_row(False), scored_row(True, answerable=False)])
    for table in ("summary", "groups", "plots", "compare"):
        missing = [k for k in registry.keys(table) if k not in summary]
        assert not missing, f"{table}: {missing} not in aggregate.summarize_rows"
    header, rows = summary_table({"extractive": {"all": summary}}, "all")
    assert header == ["metric", "extractive"]
    assert [r[0] for r in rows] == [m.label for m in registry.shown_in("summary")]
    assert dict((r[0], r[1]) for r in rows)["questions"] == "2"
    header, rows = group_table({"extractive": {"lang:zh": summary}}, "lang:")
    assert header == ["group", "n", "extractive faithful", "extractive cite prec", "extractive cite rec",
                      "extractive refusal acc", "extractive correct", "extractive hit@5"]
    assert rows == [["zh", "2", "1.000", "1.000", "0.500", "1.000", "1.000", "1.000"]]


def test_the_retrieval_summary_holds_every_metric_the_retrieval_tables_show():
    q = GoldQuestion(**GOOD, split="test")
    results = [RankedResult(q, "hybrid", [SpanRef("d", 0, 9)], dict.fromkeys(METRIC_NAMES, 1.0), 0.01)]
    summary = summarize(results)
    header, rows = retrieval_table(summary, "test")
    assert header == ["group", "system", "n", *METRIC_NAMES] and rows[0][:4] == ["all", "hybrid", "1", "1.000"]
    header, rows = sets_retrieval_table({"meta": {"gold": {"name": "seed"}}, "retrieval": {"summary": summary}})
    assert header == ["set", "split", "system", "n", "hit@1", "hit@5", "mrr@10", "ev@500", "ev@1000", "ev@2000",
                      "ms p95"]
    assert rows == [["seed", "test", "hybrid", "1", "1.000", "1.000", "1.000", "1.000", "1.000", "1.000", "10"]]


def test_compare_reads_its_metrics_from_the_registry():
    a = {"configs": {"extractive": {"all": {"faithfulness": 0.5}}}, "questions": []}
    b = {"configs": {"extractive": {"all": {"faithfulness": 0.75}}}, "questions": []}
    metrics = compare(a, b)["configs"]["extractive"]["metrics"]
    assert list(metrics) == list(registry.keys("compare"))
    assert metrics["faithfulness"] == {"a": 0.5, "b": 0.75, "delta": 0.25}
    assert metrics["hit@1"] == {"a": None, "b": None, "delta": None}


# --- typed gold rows and claims ---------------------------------------------------------------
@pytest.mark.parametrize(("change", "message"), [
    ({"evidence": []}, "an answerable question needs at least one evidence string"),
    ({"answerable": False}, "an unanswerable question has no evidence"),
    ({"evidence": ["  "]}, "evidence strings must not be empty"),
    ({"split": "dev"}, "split must be one of tune, test, all"),
    ({"question": ""}, "at least 1 character"),
    ({"answerable": "perhaps"}, "valid boolean"),
    ({"evidence": "GPT-3 有 96 层"}, "valid tuple"),
])
def test_a_bad_gold_row_is_refused_with_a_clear_message(change, message):
    with pytest.raises(ValidationError, match=message):
        GoldQuestion(**{**GOOD, **change})


def test_a_gold_row_gets_its_defaults_from_its_other_fields():
    row = GoldQuestion(**{**GOOD, "id": 7, "sections": ["ignored"]})
    assert (row.id, row.lang, row.type, row.split, row.doc, row.evidence) == ("7", "zh", "single", "all", None,
                                                                             ("GPT-3 有 96 层",))
    assert GoldQuestion(id="u", question="What is the Wi-Fi password?", answerable=False,
                        evidence=[]).model_dump()["type"] == "unanswerable"
    assert GoldQuestion(id="e", question="What is the Wi-Fi password?", answerable=False, evidence=[]).lang == "en"


def test_the_loader_names_the_line_and_the_field(tmp_path: Path):
    lines = [json.dumps(GOOD, ensure_ascii=False), "[1, 2]", json.dumps({**GOOD, "id": "q2", "evidence": []}),
             json.dumps({"id": "q3", "question": "?", "evidence": []}), json.dumps(GOOD, ensure_ascii=False)]
    path = tmp_path / "gold.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    loaded = load_gold(path)
    assert [q.id for q in loaded.rows] == ["q1"]
    assert loaded.problems == [
        "gold.jsonl line 2: not a JSON object",
        "gold.jsonl line 3: an answerable question needs at least one evidence string",
        "gold.jsonl line 4: missing field answerable",
        "gold.jsonl line 5: duplicate id 'q1'",
    ]
    with pytest.raises(FileNotFoundError, match="No such gold file"):
        load_gold(tmp_path / "missing.jsonl")


def test_a_labelled_claim_is_typed():
    claim = LabelledClaim(id="c1", claim="GPT-3 有 96 层。", passage="GPT-3 有 96 层。", supported=True)
    assert (claim.lang, claim.kind) == ("zh", "")
    with pytest.raises(ValidationError, match="supported"):
        LabelledClaim(id="c2", claim="x", passage="y", supported="maybe")


# --- claims -----------------------------------------------------------------------------------
def test_protect_keeps_brackets_from_reading_as_citation_marks():
    assert protect("形状是 [5, 4096]") == "形状是 (5, 4096)"


def test_claim_sentences_follow_the_one_sentence_splitter_but_keep_semicolons():
    text = ("Use a small model, e.g. Qwen 2.5 with 1.5 billion parameters [1]. It answers every question quickly "
            "[2].\nKV Cache 省算力；代价是显存 [1]\n| 模型 | 层数 | 参数量 |\n|---|---|---|\n| GPT-3 | 96 层 | 1750 亿 |")
    sentences = cited_sentences(text, passages=2)
    assert [(s.text, s.cites) for s in sentences] == [
        ("Use a small model, e.g. Qwen 2.5 with 1.5 billion parameters.", [1]),  # not cut at "e.g." or "1.5"
        ("It answers every question quickly.", [2]),
        ("KV Cache 省算力；代价是显存", [1]),  # one sentence citing [1] ...
        ("| 模型 | 层数 | 参数量 |", []),  # a table row is one sentence; the separator row says nothing
        ("| GPT-3 | 96 层 | 1750 亿 |", []),
    ]
    assert sentences[2].claims == ["KV Cache 省算力", "代价是显存"]  # ... with two claims
    # An answer's lines are prose: a flag line is a claim (the document splitter skips it as table-separator-like).
    assert [s.text for s in cited_sentences("--tp 8: 张量并行度 [1]\n# 部署的参数说明", passages=1)] == [
        "--tp 8: 张量并行度", "# 部署的参数说明"]


def test_a_question_a_configuration_cannot_answer_is_an_error_record():
    def ask(question: str) -> str:
        raise RuntimeError("Ollama went away")

    record = guarded("naive", "问题？", ask, cites_all=True)
    assert isinstance(record, AnswerRecord)
    assert (record.config, record.text, record.refused, record.complete, record.cites_all) == (
        "naive", "", False, False, True)
    assert record.error == "RuntimeError: Ollama went away" and record.timings["total_ms"] >= 0
    assert guarded("naive", "问题？", lambda q: f"answer to {q}") == "answer to 问题？"  # what ask returns, when it does
