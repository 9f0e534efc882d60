"""The in-memory exact dense search (kb.exact_search) against Chroma's HNSW graph, on real knowledge bases."""

from __future__ import annotations

import logging
import shutil

import pytest

from chat import Assistant
from eval.data.gold import load_gold
from ingest.pipeline import run_ingest
from kb.index import EXACT_VECTORS, KnowledgeBase
from tests.conftest import SEED_DOC, make_settings


@pytest.fixture(scope="module")
def exact_and_graph(primer_settings):
    """Two assistants on the same store: one searching exactly in memory, one through Chroma's graph."""
    graph = Assistant(primer_settings.model_copy(update={"exact_search_max_vectors": 0}))
    return Assistant(primer_settings), graph


def test_exact_and_graph_search_find_the_same_passages(exact_and_graph):
    exact, graph = exact_and_graph
    view = exact.kb.view()
    vectors = exact.kb.exact_vectors(view)
    assert vectors is not None
    stored = exact.kb.chunks_collection().count() + exact.kb.sentences_collection().count()
    assert len(vectors) == stored and len(vectors.chunk_ids) == len(view.chunks)
    for row in load_gold().rows[:40]:
        mine = exact.retrieve(row.question, k=10, using=("dense",))
        theirs = graph.retrieve(row.question, k=10, using=("dense",))
        assert [p.id for p in mine[:5]] == [p.id for p in theirs[:5]], row.question
        for a, b in zip(mine, theirs, strict=True):
            assert a.scores["dense"] == pytest.approx(b.scores["dense"], abs=1e-4)
            assert a.sentence_scores == pytest.approx(b.sentence_scores, abs=1e-4), row.question
        assert [p.id for p in exact.retrieve(row.question, k=5)] == [p.id for p in graph.retrieve(row.question, k=5)]


def test_exact_search_returns_only_live_chunks_and_their_sentences(exact_and_graph):
    exact, _ = exact_and_graph
    kb, view = exact.kb, exact.kb.view()
    vector = exact.embedding_model().get_query_embedding("KV Cache 的显存占用公式是什么？")
    everything = frozenset(view.chunks)
    best = kb.dense_search(vector, 5, live=everything, view=view)
    assert best[0].sentences, "the best chunk's sentences came up with it"
    without = kb.dense_search(vector, 5, live=everything - {best[0].chunk_id}, view=view)
    assert best[0].chunk_id not in {hit.chunk_id for hit in without}
    assert [hit.chunk_id for hit in without[:3]] == [hit.chunk_id for hit in best[1:4]]
    assert kb.dense_search(vector, 5, live=frozenset(), view=view) == []


def test_a_new_generation_is_searched_with_its_own_vectors(tmp_path):
    settings = make_settings(tmp_path)
    shutil.copy(SEED_DOC, settings.docs_dir / SEED_DOC.name)
    run_ingest(settings)
    bot = Assistant(settings)
    question = "How much memory do four-bit weights take compared with sixteen-bit weights?"
    assert all(p.doc == SEED_DOC.name for p in bot.retrieve(question, k=3, using=("dense",)))
    first = bot.kb.view().generation
    assert bot.kb.view_cache_path(first, EXACT_VECTORS).exists()
    (settings.docs_dir / "serving.md").write_text(
        "# Serving\n\n## Quantization\n\nWeights stored in four bits take a quarter of the memory of sixteen-bit "
        "weights, at a small loss of accuracy.\n", encoding="utf-8")
    run_ingest(settings)
    second = KnowledgeBase(settings).read_manifest().generation
    assert bot.kb.view_cache_path(second, EXACT_VECTORS).exists(), "the ingest cached them with its view"
    passages = bot.retrieve(question, k=3, using=("dense",))
    assert passages[0].doc == "serving.md"
    assert bot.kb.view().generation > first
    assert not bot.kb.view_cache_path(first, EXACT_VECTORS).exists(), "the old generation's vectors went with it"


def test_a_damaged_vector_cache_is_read_again_from_the_store(primer_settings, caplog):
    question = "KV Cache 的显存占用公式是什么？"
    expected = [p.id for p in Assistant(primer_settings).retrieve(question, k=5)]
    kb = KnowledgeBase(primer_settings)
    path = kb.view_cache_path(kb.view().generation, EXACT_VECTORS)
    path.write_bytes(path.read_bytes()[:1000])  # cut short, as a full disk or a kill leaves it
    with caplog.at_level(logging.WARNING, logger="kb.exact_search"):
        assert [p.id for p in Assistant(primer_settings).retrieve(question, k=5)] == expected
    assert "unreadable vector cache" in caplog.text
    assert len(path.read_bytes()) > 1000, "written whole again"


def test_past_the_limit_chroma_searches(primer_settings, caplog):
    bot = Assistant(primer_settings.model_copy(update={"exact_search_max_vectors": 10}))
    with caplog.at_level(logging.INFO, logger="kb.index"):
        assert bot.retrieve("KV Cache 的显存占用公式是什么？", k=3)
    assert bot.kb.exact_vectors(bot.kb.view()) is None
    assert "more than exact_search_max_vectors (10)" in caplog.text


def test_a_cached_file_of_another_commit_is_not_used(primer_settings, tmp_path):
    """A store started again (its folder deleted, a server's collection reset) reuses generation numbers and
    chunk ids: the cache says which commit and model its vectors are of."""
    from kb.exact_search import ExactVectors

    kb = KnowledgeBase(primer_settings)
    vectors = kb.exact_vectors(kb.view())
    assert vectors is not None
    path = tmp_path / "vectors.npz"
    vectors.save(path)
    assert ExactVectors.load_cached(path, vectors.stamp, vectors.chunk_ids) is not None
    assert ExactVectors.load_cached(path, vectors.stamp.replace("e5", "e6"), vectors.chunk_ids) is None
    assert ExactVectors.load_cached(path, vectors.stamp, vectors.chunk_ids[1:]) is None

