"""Unit tests of the small pure pieces of retrieval: weighted RRF fusion and BM25 scoring, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from llama_index.core.schema import NodeWithScore, TextNode

from chat.retrieval import BM25, DENSE, GLOSS, FusionWeights, fuse
from kb.bm25 import BM25Index
from kb.settings import Settings


def _hits(*ids: str) -> list[NodeWithScore]:
    return [NodeWithScore(node=TextNode(id_=cid, text=cid), score=1.0 / (i + 1)) for i, cid in enumerate(ids)]


def test_fuse_is_weighted_reciprocal_rank_fusion():
    weights = FusionWeights(rrf_k=10.0, by_retriever=((DENSE, 1.0), (BM25, 0.5)))
    fused = fuse([(DENSE, _hits("x", "y")), (BM25, _hits("y", "z"))], weights)
    # x: 1/(10+1); y: 1/(10+2) + 0.5/(10+1); z: 0.5/(10+2)
    assert [h.node.node_id for h in fused] == ["y", "x", "z"]
    assert [h.score for h in fused] == pytest.approx([1 / 12 + 0.5 / 11, 1 / 11, 0.5 / 12])
    y = fused[0].node.metadata
    assert y["found_by"] == {DENSE: 2, BM25: 1} and y["scores"] == {DENSE: 0.5, BM25: 1.0}


def test_a_query_variant_counts_with_its_retrievers_weight():
    weights = FusionWeights(rrf_k=1.0, by_retriever=((DENSE, 2.0), (BM25, 1.0)))
    fused = fuse([(BM25, _hits("a")), (f"{DENSE}:variant1", _hits("b"))], weights)
    assert [(h.node.node_id, h.score) for h in fused] == [("b", pytest.approx(1.0)), ("a", pytest.approx(0.5))]
    assert fused[0].node.metadata["found_by"] == {f"{DENSE}:variant1": 1}


def test_fuse_of_nothing_and_ties_keep_first_seen_order():
    assert fuse([], FusionWeights()) == []
    fused = fuse([(DENSE, _hits("p")), (BM25, _hits("q"))], FusionWeights(by_retriever=((DENSE, 1.0), (BM25, 1.0))))
    assert [h.node.node_id for h in fused] == ["p", "q"]


def test_fusion_weights_defaults_are_the_settings_defaults():
    settings = Settings()
    assert FusionWeights() == FusionWeights.from_settings(settings, "zh")
    assert FusionWeights().rrf_k == settings.rrf_k
    assert FusionWeights.from_settings(settings, "en").weight(BM25) == settings.bm25_weight_en
    assert FusionWeights().weight("cross") == settings.cross_language_weight
    assert FusionWeights().weight("unknown-retriever") == 1.0


def test_bm25_scores_match_a_hand_computed_example():
    #   d1 = a b      (length 2)
    #   d2 = a c c    (length 3)      N = 3, average length 2, k1 = 1.5, b = 0.75
    #   d3 = d        (length 1)
    # idf(a) = ln(1 + (3 - 2 + 0.5) / (2 + 0.5)) = ln 1.6;  idf(c) = ln(1 + 2.5 / 1.5) = ln(8/3)
    # d1, term a: tf 1, norm 1.5 * (0.25 + 0.75 * 2/2) = 1.5     -> ln1.6 * 1 * 2.5 / (1 + 1.5)
    # d2, norm 1.5 * (0.25 + 0.75 * 3/2) = 2.0625: a tf 1 -> ln1.6 * 2.5 / 3.0625; c tf 2 -> ln(8/3) * 5 / 4.0625
    index = BM25Index.build(["d1", "d2", "d3"], [["a", "b"], ["a", "c", "c"], ["d"]])
    d1 = math.log(1.6) * 1.0
    d2 = math.log(1.6) * 2.5 / 3.0625 + math.log(8 / 3) * 5 / 4.0625
    assert d1 == pytest.approx(0.470004, abs=1e-6) and d2 == pytest.approx(1.590851, abs=1e-6)
    assert index.search(["a", "c"], k=10) == [("d2", pytest.approx(d2)), ("d1", pytest.approx(d1))]
    assert index.scores(["a", "c"]) == pytest.approx([d1, d2, 0.0])
    assert index.idf("a") == pytest.approx(math.log(1.6)) and index.idf("zzz") == 0.0
    assert index.search(["zzz"], k=3) == [] and index.search(["a", "c"], k=1) == [("d2", pytest.approx(d2))]


def test_bm25_candidate_mask_limits_the_results():
    index = BM25Index.build(["d1", "d2", "d3"], [["a", "b"], ["a", "c", "c"], ["d"]])
    only_d1 = np.array([True, False, True])
    assert [cid for cid, _ in index.search(["a", "c"], k=10, allowed=only_d1)] == ["d1"]
    assert index.search(["a", "c"], k=10, allowed=np.zeros(3, dtype=bool)) == []


def test_bm25_round_trips_through_its_file(tmp_path):
    index = BM25Index.build(["d1", "d2"], [["模型", "量化"], ["模型"]])
    index.save(tmp_path / "bm25.npz")
    loaded = BM25Index.load(tmp_path / "bm25.npz")
    assert loaded.search(["量化", "模型"], k=2) == index.search(["量化", "模型"], k=2)


def test_the_dictionary_list_weighs_more_when_it_matches_far_better_than_the_question():
    weights = FusionWeights(by_retriever=((DENSE, 1.0), (BM25, 1.3), (GLOSS, 0.5)), gloss_max=2.5)
    written, glossed = _scored(10.0), _scored(15.0)
    assert weights.with_gloss_evidence(written, glossed).weight(GLOSS) == pytest.approx(0.5 * 1.5 ** 2)
    assert weights.with_gloss_evidence(written, _scored(40.0)).weight(GLOSS) == 2.5  # capped
    assert weights.with_gloss_evidence([], glossed).weight(GLOSS) == 2.5  # the question as written matched nothing
    # no better than the question as written, or nothing found through the dictionary: its own weight
    assert weights.with_gloss_evidence(written, _scored(8.0)) is weights
    assert weights.with_gloss_evidence(written, []) is weights
    boosted = weights.with_gloss_evidence(written, glossed)
    assert boosted.weight(DENSE) == 1.0 and boosted.weight(BM25) == 1.3 and boosted.rrf_k == weights.rrf_k
    off = FusionWeights(by_retriever=((GLOSS, 0.0),))
    assert off.with_gloss_evidence(written, glossed) is off  # a list turned off stays off


def test_a_stronger_dictionary_match_moves_its_passage_up_the_fusion():
    weights = FusionWeights(rrf_k=1.0, by_retriever=((BM25, 1.3), (GLOSS, 0.5)), gloss_max=2.5)
    lists = [(BM25, _hits("zh-topic")), (GLOSS, _hits("en-answer"))]
    assert [h.node.node_id for h in fuse(lists, weights)] == ["zh-topic", "en-answer"]
    strong = weights.with_gloss_evidence(_scored(10.0), _scored(30.0))
    assert [h.node.node_id for h in fuse(lists, strong)] == ["en-answer", "zh-topic"]


def _scored(best: float) -> list[NodeWithScore]:
    return [NodeWithScore(node=TextNode(id_="top", text="top"), score=best)]
