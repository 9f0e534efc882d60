"""The naive llama-index baseline: what a RAG tutorial builds, on the same document and embedding model.

``VectorStoreIndex`` with its default ``SentenceSplitter`` (1024-token chunks), and for answers the
default query engine (``index.as_query_engine(llm=Ollama(...))``: top-2 chunks, compact response mode,
llama-index's own prompt, no citations). It shows what this project's chunking, hybrid retrieval,
refusals and citations add.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.embeddings import BaseEmbedding

from eval.metrics import DEPTH, SpanRef
from kb.settings import Settings

log = logging.getLogger(__name__)


class NaiveBaseline:
    def __init__(self, embed_model: BaseEmbedding, documents: dict[str, str]) -> None:
        docs = [Document(text=text, metadata={"doc": name}) for name, text in documents.items()]
        self.index = VectorStoreIndex.from_documents(docs, embed_model=embed_model)
        self._retriever = self.index.as_retriever(similarity_top_k=DEPTH)
        self._engine: Any = None

    def rank(self, question: str) -> list[SpanRef]:
        hits = self._retriever.retrieve(question)
        return [SpanRef(h.node.metadata["doc"], h.node.start_char_idx or 0, h.node.end_char_idx or 0) for h in hits]

    def use_ollama(self, settings: Settings, model: str | None = None) -> None:
        """Answer with the default query engine on the configured Ollama model (streamed, to time the first token)."""
        from llama_index.llms.ollama import Ollama

        llm = Ollama(model=model or settings.ollama_model, base_url=settings.ollama_host,
                     request_timeout=settings.request_timeout, context_window=settings.num_ctx,
                     temperature=settings.temperature,
                     additional_kwargs={"seed": settings.seed, "num_predict": settings.max_answer_tokens})
        self._engine = self.index.as_query_engine(llm=llm, streaming=True)

    @property
    def answers(self) -> bool:
        return self._engine is not None

    def ask(self, question: str) -> tuple[str, list[Any], dict[str, float | None]]:
        """Answer text, source nodes and timings (ms) from the default query engine."""
        if self._engine is None:
            raise RuntimeError("the naive baseline has no LLM; call use_ollama first")
        started = time.perf_counter()
        response = self._engine.query(question)
        retrieval_ms = (time.perf_counter() - started) * 1000  # the stream starts after retrieval
        parts: list[str] = []
        first_token_ms = None
        for delta in response.response_gen:
            if first_token_ms is None and delta:
                first_token_ms = (time.perf_counter() - started) * 1000
            parts.append(delta)
        total_ms = (time.perf_counter() - started) * 1000
        timings = {"retrieval_ms": retrieval_ms, "first_token_ms": first_token_ms, "total_ms": total_ms}
        return "".join(parts).strip(), list(response.source_nodes), timings
