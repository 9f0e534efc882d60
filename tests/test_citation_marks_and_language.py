"""The small shared text rules, checked by hand: citation marks (kb.sentences) and the language
detector (kb.text). Pure functions; no index or model."""

from __future__ import annotations

import pytest

from kb.sentences import (
    ANSWER_MARK,
    CITATION_MARK,
    cited_numbers,
    normalize_marks,
    split_sentences,
    strip_citations,
)
from kb.text import detect_language, is_chinese


# --- citation marks --------------------------------------------------------------------------
def test_cited_numbers_reads_every_way_a_model_writes_marks() -> None:
    assert cited_numbers("A [1]. B [2,3]. C 【4】. D [5][6]. E [7-8]. F ［9］") == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert cited_numbers("G [1、 2] H 【3–4】 I [ 2 ]") == [1, 2, 3, 4]  # lists, en dash ranges, spaces; no repeats
    assert cited_numbers("mixed 【1] and [2】") == [1, 2]


@pytest.mark.parametrize("text", ["shape [5, 4096]", "year [2024]", "[123]", "[a]", "[]", "no marks at all"])
def test_what_is_not_a_citation(text: str) -> None:
    assert cited_numbers(text) == []
    assert normalize_marks(text, valid=10) == text


def test_normalize_marks_rewrites_and_drops_what_points_at_nothing() -> None:
    assert normalize_marks("A [1,7]. B 【2】. C [9]", valid=3) == "A [1]. B [2]. C "
    assert normalize_marks("D ［1-3］", valid=2) == "D [1][2]"


def test_strip_citations_takes_the_mark_and_the_space_before_it() -> None:
    assert strip_citations("KV Cache 占用显存。 [1][2]") == "KV Cache 占用显存。"
    assert strip_citations("It saves memory [1, 2] and time 【3】.") == "It saves memory and time."
    assert strip_citations("A matrix [5, 4096] stays.") == "A matrix [5, 4096] stays."


def test_the_two_readings_differ_only_where_documents_need_care() -> None:
    # Documents are split and stripped with CITATION_MARK: only well-formed marks, never one
    # glued to a digit; answers are read with ANSWER_MARK, which takes any bracket.
    for loose_only in ("［1］", "【1-2】", "【1]"):
        assert ANSWER_MARK.search(loose_only) and not CITATION_MARK.search(loose_only), loose_only
    assert CITATION_MARK.match("[1]2") is None and ANSWER_MARK.match("[1]2")
    for both in ("[1]", "[1,2]", "[1-3]", "【1】", "【1、2】"):
        assert ANSWER_MARK.search(both) and CITATION_MARK.search(both), both


def test_a_mark_after_a_sentence_end_stays_with_its_sentence() -> None:
    spans = split_sentences("显存占用大。[1] 速度更快。【2】 It is fast. [3] Next one")
    assert [s.text for s in spans] == ["显存占用大。[1]", "速度更快。【2】", "It is fast. [3]", "Next one"]


# --- language ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("KV Cache 的代价是什么？", "zh"),  # 6 CJK characters, 2 Latin words
        ("What does RoPE solve?", "en"),
        ("什么", "zh"),
        ("是 GPT", "zh"),  # one character, one word: a tie goes to Chinese
        ("e5-small 是", "en"),  # "e" and "small" are two Latin words against one character
        ("", "en"),
        ("12345 !?", "en"),  # neither: English
        ("豈", "zh"),  # U+F900, a CJK compatibility ideograph, counts as CJK
    ],
)
def test_question_language(text: str, language: str) -> None:
    assert detect_language(text) == language


def test_the_eval_rule_is_the_same_rule_made_stricter() -> None:
    # is_chinese (the eval's judges) wants two CJK characters and counts technical terms whole.
    assert detect_language("是 GPT") == "zh" and not is_chinese("是 GPT")  # one character is not enough
    assert is_chinese("e5-small 是一个模型") and detect_language("e5-small 是一个模型") == "zh"
    assert detect_language("e5-small 是") == "en" and not is_chinese("e5-small 是")
    assert is_chinese("用 e5-small 编码") and detect_language("用 e5-small 编码") == "zh"
    # "gpt-4o-mini" is one term for the eval, three Latin words for the question rule.
    assert is_chinese("模型 gpt-4o-mini") and detect_language("模型 gpt-4o-mini") == "en"
    assert not is_chinese("The answer is 42.")


def test_each_rule_has_one_definition() -> None:
    import chat.citations
    import chat.grounding
    import chat.questions
    import eval.judges.checks
    import kb.sentences
    import kb.text

    assert chat.questions.detect_language is kb.text.detect_language
    assert eval.judges.checks.is_chinese is kb.text.is_chinese
    assert chat.citations.cited_numbers is kb.sentences.cited_numbers
    assert chat.grounding.strip_citations is kb.sentences.strip_citations
