"""The reranking stage: a sentence-transformers CrossEncoder from disk, and the Ollama model listwise.

No reranker model can be installed on this machine (nothing from Hugging Face), so the
cross-encoder test builds a tiny one itself: a randomly initialised one-layer BERT with a
sequence-classification head (transformers config) and a WordPiece tokenizer whose vocabulary
is written here, saved to a temporary folder and loaded by ``CrossEncoder`` like any downloaded
reranker. Its scores mean nothing; the test checks the code path: the model is loaded from the
path in ``KBQA_RERANKER``, every candidate is scored with it, and the passages come back in the
order of its scores. What a real reranker (e.g. BAAI/bge-reranker-v2-m3) does to quality is not
measured here (see the README's retrieval notes).
"""

from __future__ import annotations

import string
from pathlib import Path

import pytest

from chat import Assistant
from chat.rerank import CrossEncoderReranker, RerankerUnavailable, parse_ranking
from ingest.pipeline import run_ingest
from tests.conftest import make_settings

# Sections long enough that the chunker keeps them apart (it merges small siblings into one chunk).
_FILLER = {
    "Batching": "Continuous batching keeps the GPU busy by adding new requests to a running batch. ",
    "Caching": "The prefix cache stores attention keys and values of shared prompt prefixes once. ",
    "Quantization": "Weights stored in four bits take a quarter of the memory of sixteen-bit weights. ",
    "Scheduling": "A scheduler decides which waiting requests join the batch at each step. ",
}
DOC = "# Serving notes\n\n" + "".join(
    f"## {name}\n\n" + " ".join(f"{sentence.strip()} (note {i})." for i in range(6)) + "\n\n"
    for name, sentence in _FILLER.items()
)
QUESTION = "How much memory do four-bit weights take?"


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-cross-encoder")
    chars = string.ascii_lowercase + string.digits + string.punctuation
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars)]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512, num_labels=1)
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def serving_settings(tmp_path_factory: pytest.TempPathFactory):
    settings = make_settings(tmp_path_factory.mktemp("rerank"), top_k=4)
    (settings.docs_dir / "serving.md").write_text(DOC, encoding="utf-8")
    run_ingest(settings)
    return settings


def test_cross_encoder_from_disk_reorders_the_fused_candidates(serving_settings, tiny_cross_encoder):
    from sentence_transformers import CrossEncoder

    fused = Assistant(serving_settings).retrieve(QUESTION, k=4)
    bot = Assistant(serving_settings.model_copy(update={"reranker": str(tiny_cross_encoder)}))
    reranked = bot.retrieve(QUESTION, k=4)

    assert {p.id for p in reranked} == {p.id for p in fused}  # 4 chunks, all within the rerank depth
    rerank_scores = [p.scores["rerank"] for p in reranked]
    assert rerank_scores == sorted(rerank_scores, reverse=True)
    assert [p.found_by["rerank"] for p in reranked] == [1, 2, 3, 4]
    assert [p.score for p in reranked] == sorted((p.score for p in reranked), reverse=True)

    # The order is the model's own: scored independently, the same pairs give the same scores.
    view = bot.kb.view()
    model = CrossEncoder(str(tiny_cross_encoder), device="cpu")
    expected = model.predict([(QUESTION, view.chunks[p.id].index_text()) for p in reranked])
    assert rerank_scores == pytest.approx([float(x) for x in expected], abs=1e-4)

    answer = bot.ask(QUESTION)  # the whole answering path runs through the reranker
    assert answer.passages and all("rerank" in p.scores for p in answer.passages)


def test_single_retriever_comparisons_do_not_rerank(serving_settings, tiny_cross_encoder):
    bot = Assistant(serving_settings.model_copy(update={"reranker": str(tiny_cross_encoder)}))
    assert all("rerank" not in p.scores for p in bot.retrieve(QUESTION, using=("dense",)))


def test_a_missing_reranker_model_says_how_to_fix_it(tmp_path):
    with pytest.raises(RerankerUnavailable, match="KBQA_RERANKER"):
        CrossEncoderReranker(str(tmp_path / "no-such-model"))


def test_parse_ranking_of_what_models_write():
    assert parse_ranking("3, 1, 2", 3) == [2, 0, 1]
    assert parse_ranking("[2] > [2] > [9] > [1]", 3) == [1, 0]
    assert parse_ranking("Passage 1 is best", 4) == [0]
    assert parse_ranking("none of them", 4) == []


def test_ollama_listwise_reranker_is_asked_and_never_loses_a_candidate(serving_settings, ollama):
    fused = Assistant(serving_settings).retrieve(QUESTION, k=4)
    settings = serving_settings.model_copy(update={
        "llm": "ollama", "ollama_host": ollama.url, "ollama_model": "smollm2:135m", "rerank_llm": True,
        "request_timeout": 180.0, "max_answer_tokens": 24, "translate_queries": False,
    })
    reranked = Assistant(settings).retrieve(QUESTION, k=4)
    assert {p.id for p in reranked} == {p.id for p in fused}
    prompts = [r["body"]["messages"][-1]["content"] for r in ollama.requests("/api/chat")]
    assert any(p.startswith("Rank the passages") and QUESTION in p for p in prompts)


def test_ollama_reranker_off_by_default_and_when_ollama_is_down(serving_settings):
    settings = serving_settings.model_copy(update={"llm": "ollama", "ollama_host": "http://127.0.0.1:9",
                                                   "rerank_llm": True})
    passages = Assistant(settings).retrieve(QUESTION, k=4)  # nothing answers on port 9
    assert passages and all("rerank" not in p.scores for p in passages)
    assert serving_settings.rerank_llm is False and serving_settings.reranker is None
