"""Baselines that do not depend on this project's chunking or retrieval, on the same documents.

- ``NaiveBaseline``: what a RAG tutorial builds with llama-index: ``VectorStoreIndex`` with its default
  ``SentenceSplitter`` (1024-token chunks) and the same embedding model; for answers the default query
  engine (``index.as_query_engine(llm=Ollama(...))``: top-2 chunks, compact response mode, llama-index's
  own prompt, no citations). Its node vectors go through the vector cache when settings are given, so a
  second run does not embed the corpus again.
- ``PlainBM25``: Okapi BM25 (jieba search-mode tokens) over fixed 500-character windows.

They show what this project's chunking, hybrid retrieval, refusals and citations add.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.embeddings import BaseEmbedding
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import MetadataMode

from eval.metrics.ranking import DEPTH, SpanRef
from kb.bm25 import BM25Index
from kb.settings import Settings
from kb.text import tokenize

log = logging.getLogger(__name__)

PLAIN_WINDOW = 500
PLAIN_STRIDE = 400  # windows overlap by 100 characters so a sentence cut at one edge is whole in the next


class NaiveBaseline:
    def __init__(self, embed_model: BaseEmbedding, documents: dict[str, str],
                 settings: Settings | None = None, runtime: str | None = None) -> None:
        docs = [Document(text=text, metadata={"doc": name}) for name, text in documents.items()]
        nodes = SentenceSplitter().get_nodes_from_documents(docs)
        if settings is not None and runtime is not None:
            from kb.vector_cache import cached_passage_embeddings

            # The texts llama-index itself would embed (metadata included), so the vectors are the same.
            texts = [n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
            vectors, computed = cached_passage_embeddings(
                settings, settings.embed_model, runtime, texts,
                lambda todo: embed_model.get_text_embedding_batch(todo, show_progress=len(todo) > 16))
            log.info("naive baseline: %d nodes, %d embedded (the rest from the vector cache)", len(nodes), computed)
            for node, vector in zip(nodes, vectors, strict=True):
                node.embedding = vector
        self.index = VectorStoreIndex(nodes, embed_model=embed_model)
        self._retriever = self.index.as_retriever(similarity_top_k=DEPTH)
        self._engine: Any = None

    def rank(self, question: str) -> list[SpanRef]:
        hits = self._retriever.retrieve(question)
        return [SpanRef(h.node.metadata["doc"], h.node.start_char_idx or 0, h.node.end_char_idx or 0,
                        h.node.get_content()) for h in hits]

    def use_ollama(self, settings: Settings, model: str | None = None) -> None:
        """Answer with the default query engine on the configured Ollama model (streamed, to time the first token)."""
        from llama_index.llms.ollama import Ollama

        llm = Ollama(model=model or settings.ollama_model, base_url=settings.ollama_host,
                     request_timeout=settings.request_timeout, context_window=settings.num_ctx,
                     temperature=settings.temperature,
                     additional_kwargs={"seed": settings.seed, "num_predict": settings.max_answer_tokens})
        self._engine = self.index.as_query_engine(llm=llm, streaming=True)

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


class PlainBM25:
    def __init__(self, documents: dict[str, str]) -> None:
        self.spans: list[SpanRef] = []
        for name, text in documents.items():
            for start in range(0, max(len(text) - PLAIN_WINDOW + PLAIN_STRIDE, 1), PLAIN_STRIDE):
                end = min(start + PLAIN_WINDOW, len(text))
                self.spans.append(SpanRef(name, start, end, text[start:end]))
        ids = [str(i) for i in range(len(self.spans))]
        self.index = BM25Index.build(ids, [tokenize(s.text or "") for s in self.spans])

    def rank(self, question: str) -> list[SpanRef]:
        return [self.spans[int(i)] for i, _ in self.index.search(tokenize(question), DEPTH)]
