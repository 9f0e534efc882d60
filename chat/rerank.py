"""A reranking stage after fusion, behind one interface.

Two rerankers, both optional and off unless configured:
- ``CrossEncoderReranker``: a sentence-transformers ``CrossEncoder`` read from disk
  (``KBQA_RERANKER``: a local folder or the id of a model already in the Hugging Face cache,
  e.g. ``BAAI/bge-reranker-v2-m3``). It scores each (question, passage) pair jointly, which
  separates sibling sections that share the question's words better than any fusion of
  independent scores.
- ``OllamaReranker``: the configured Ollama model, asked once to order the candidates
  (listwise). Slow (one LLM call per question), so it is opt-in (``KBQA_RERANK_LLM=true``)
  and used only while Ollama answers; any failure keeps the fused order.

A reranker reorders the first ``KBQA_RERANK_DEPTH`` fused candidates and leaves the rest
after them; its score is recorded in each passage's ``scores["rerank"]``.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from chat.generation import GenerationError, OllamaBackend
from kb.errors import KbqaError
from kb.settings import Settings

log = logging.getLogger(__name__)

RERANK = "rerank"
PASSAGE_CHARS = 1200  # of each candidate shown to a reranker: its heading path and opening
LLM_PASSAGE_CHARS = 300  # a listwise prompt holds every candidate at once


class RerankerUnavailable(KbqaError):
    """The configured reranker model cannot be loaded; the message says how to fix it."""


class Reranker(Protocol):
    name: str

    def scores(self, question: str, texts: Sequence[str]) -> list[float] | None:
        """One relevance score per text (higher is better), or None to keep the given order."""
        ...


class CrossEncoderReranker:
    """A sentence-transformers cross-encoder scoring (question, passage) pairs."""

    name = "cross-encoder"

    def __init__(self, model: str, *, max_length: int = 512, batch_size: int = 16) -> None:
        from sentence_transformers import CrossEncoder

        self.model_name = model
        self.batch_size = batch_size
        try:
            # Never the network: a path, or a model already in the local Hugging Face cache.
            self._model: Any = CrossEncoder(model, device="cpu", max_length=max_length, local_files_only=True)
        except Exception as exc:
            raise RerankerUnavailable(
                f"Reranker model {model!r} could not be loaded ({type(exc).__name__}: {exc}). Set KBQA_RERANKER "
                "to a local folder holding a sentence-transformers cross-encoder (e.g. a download of "
                "BAAI/bge-reranker-v2-m3), or unset it to rank by fusion alone."
            ) from exc
        self._lock = threading.Lock()  # torch modules are not documented as safe to call from many threads

    def scores(self, question: str, texts: Sequence[str]) -> list[float] | None:
        if not texts:
            return []
        pairs = [(question, text[:PASSAGE_CHARS]) for text in texts]
        with self._lock:
            raw = self._model.predict(pairs, batch_size=self.batch_size, show_progress_bar=False)
        return [float(x) for x in raw]


_LLM_PROMPT = """Rank the passages by how well they answer the question.
Reply with the passage numbers only, most relevant first, separated by commas (e.g. 3, 1, 2).

Question: {question}

{passages}

Ranking:"""


class OllamaReranker:
    """The Ollama model as a listwise reranker: one call orders every candidate."""

    name = "ollama"

    def __init__(self, backend: OllamaBackend) -> None:
        self.backend = backend

    def scores(self, question: str, texts: Sequence[str]) -> list[float] | None:
        if len(texts) < 2 or not self.backend.health().ok:
            return None
        listing = "\n\n".join(
            f"[{i}] {' '.join(text[:LLM_PASSAGE_CHARS].split())}" for i, text in enumerate(texts, 1)
        )
        try:
            reply = self.backend.complete(_LLM_PROMPT.format(question=question, passages=listing))
        except GenerationError as exc:
            log.info("LLM reranking failed (%s); keeping the fused order", exc)
            return None
        order = parse_ranking(reply, len(texts))
        if not order:
            log.info("LLM reranking gave no usable order (%r); keeping the fused order", reply[:80])
            return None
        # Ranked passages first in the model's order; the ones it left out keep their fused order after them.
        rest = [i for i in range(len(texts)) if i not in order]
        n = len(texts)
        scores = [0.0] * n
        for position, index in enumerate([*order, *rest]):
            scores[index] = float(n - position)
        return scores


def parse_ranking(reply: str, n: int) -> list[int]:
    """0-based indexes in the order a reply names them ("[3] > [1], 2"): unknown and repeated numbers dropped."""
    order: list[int] = []
    for match in re.finditer(r"\d+", reply):
        index = int(match.group()) - 1
        if 0 <= index < n and index not in order:
            order.append(index)
    return order


def rerank_order(reranker: Reranker, question: str, texts: Sequence[str]) -> tuple[list[int], list[float]] | None:
    """The new order of ``texts`` (indexes) and each text's reranker score, or None to keep the order."""
    try:
        scores = reranker.scores(question, texts)
    except Exception as exc:  # a reranker must never cost an answer: fall back to the fused order
        log.warning("Reranker %s failed (%s: %s); keeping the fused order", reranker.name, type(exc).__name__, exc)
        return None
    if scores is None or len(scores) != len(texts):
        return None
    order = sorted(range(len(texts)), key=lambda i: -scores[i])  # stable: ties keep the fused order
    return order, list(scores)


_loaded: dict[str, CrossEncoderReranker] = {}
_loaded_lock = threading.Lock()


def load_reranker(settings: Settings, backend: OllamaBackend | None = None) -> Reranker | None:
    """The reranker the settings ask for (one cross-encoder per model in a process), or None."""
    if settings.reranker:
        model = os.path.expanduser(str(settings.reranker))
        with _loaded_lock:
            if model not in _loaded:
                _loaded[model] = CrossEncoderReranker(model)
            return _loaded[model]
    if settings.rerank_llm and backend is not None:
        return OllamaReranker(backend)
    return None
