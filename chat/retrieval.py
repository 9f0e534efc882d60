"""Hybrid retrieval: dense (Chroma, e5) and BM25 (jieba), fused by weighted reciprocal rank fusion.

Each retriever is a llama-index ``BaseRetriever`` so they compose with the rest of the
llama-index toolbox; the nodes they return carry the chunk id, and ``Passage`` objects
are made from the knowledge base's chunk table.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.embeddings import BaseEmbedding
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from chat.passages import Passage
from chat.questions import QuestionError
from chat.rerank import RERANK, Reranker, rerank_order
from kb.bm25 import BM25Index
from kb.index import IndexView, KnowledgeBase
from kb.settings import Settings
from kb.text import query_tokens

DENSE = "dense"
BM25 = "bm25"
CROSS = "cross"  # dense search over the documents in another language than the question
# BM25 across languages through a dictionary (chat/glossary.py): a Chinese question's glosses over the English
# documents, or an English question over the Chinese documents read in English.
GLOSS = "gloss"
SENTENCES = "sentences"  # node metadata: sentence unit -> cosine with the question, from the dense search

log = logging.getLogger(__name__)

Scope = frozenset[str] | None  # document names a question may search; None = all


def resolve_scope(view: IndexView, docs: Collection[str] | str | None) -> Scope:
    """The documents a question searches: names as the knowledge base lists them (or their file name).

    None or an empty list means every document. An unknown name is a ``QuestionError`` that
    lists the documents there are, so the user can correct it.
    """
    if docs is None:
        return None
    names = [docs] if isinstance(docs, str) else list(docs)
    if not names:
        return None
    known = sorted(view.manifest.docs)
    by_file: dict[str, list[str]] = {}
    for name in known:
        by_file.setdefault(name.rsplit("/", 1)[-1], []).append(name)
    chosen: set[str] = set()
    unknown: list[str] = []
    for raw in names:
        name = str(raw).strip().replace("\\", "/")
        if name in view.manifest.docs:
            chosen.add(name)
        elif len(by_file.get(name, [])) == 1:
            chosen.add(by_file[name][0])
        else:
            unknown.append(str(raw))
    if unknown:
        raise QuestionError(
            f"Unknown document(s): {', '.join(map(repr, unknown))}. The knowledge base holds: "
            f"{', '.join(known)}. / 知识库中没有这些文档：{'、'.join(unknown)}。"
        )
    return frozenset(chosen)


def _searchable(chunk: object) -> bool:
    # Link-, image- or badge-only sections are kept for citations but never candidates; older
    # indexes have no such field, and every chunk of theirs is a candidate.
    return bool(getattr(chunk, "searchable", True))


class _Candidates:
    """Which chunks of a view may be returned, per scope; computed once per view and scope."""

    def __init__(self) -> None:
        self._view: IndexView | None = None
        self._by_scope: dict[Scope, tuple[frozenset[str], np.ndarray]] = {}

    def get(self, view: IndexView, scope: Scope) -> tuple[frozenset[str], np.ndarray]:
        if view is not self._view:
            self._view, self._by_scope = view, {}
        if scope not in self._by_scope:
            if len(self._by_scope) > 64:
                self._by_scope.clear()
            ids = frozenset(
                cid for cid, chunk in view.chunks.items()
                if _searchable(chunk) and (scope is None or chunk.doc in scope)
            )
            mask = np.fromiter((cid in ids for cid in view.bm25.ids), dtype=bool, count=len(view.bm25.ids))
            self._by_scope[scope] = (ids, mask)
        return self._by_scope[scope]


def _node(chunk_id: str, view: IndexView, score: float, retriever: str, rank: int) -> NodeWithScore:
    chunk = view.chunks[chunk_id]
    node = TextNode(
        id_=chunk_id,
        text=chunk.index_text(),
        metadata={"doc": chunk.doc, "section": chunk.section, "found_by": {retriever: rank},
                  "scores": {retriever: score}},
    )
    return NodeWithScore(node=node, score=score)


class DenseRetriever(BaseRetriever):
    """Nearest chunks by cosine similarity of e5 embeddings (query: / passage: prefixes)."""

    def __init__(self, kb: KnowledgeBase, view: Callable[[], IndexView], embed: BaseEmbedding, depth: int) -> None:
        super().__init__()
        self._kb, self._view, self._embed, self._depth = kb, view, embed, depth
        self._candidates = _Candidates()

    def query_vector(self, query: str) -> list[float]:
        return self._embed.get_query_embedding(query)

    def search(self, query: str, scope: Scope = None, vector: list[float] | None = None) -> list[NodeWithScore]:
        view = self._view()
        allowed, _ = self._candidates.get(view, scope)
        vector = vector or self.query_vector(query)
        hits = self._kb.dense_search(vector, self._depth, live=allowed, docs=scope, view=view)
        nodes = []
        for rank, hit in enumerate(hits, 1):
            node = _node(hit.chunk_id, view, hit.score, DENSE, rank)
            node.node.metadata[SENTENCES] = dict(hit.sentences)
            nodes.append(node)
        return nodes

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return self.search(query_bundle.query_str, None, query_bundle.embedding)


class BM25Retriever(BaseRetriever):
    """Okapi BM25 over jieba search-mode tokens, question words dropped."""

    def __init__(self, view: Callable[[], IndexView], depth: int) -> None:
        super().__init__()
        self._view, self._depth = view, depth
        self._candidates = _Candidates()

    def search(self, query: str, scope: Scope = None) -> list[NodeWithScore]:
        view = self._view()
        _, mask = self._candidates.get(view, scope)
        hits = view.bm25.search(query_tokens(query), self._depth, allowed=mask)
        return [_node(cid, view, score, BM25, rank) for rank, (cid, score) in enumerate(hits, 1)]

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return self.search(query_bundle.query_str)


class TranslatedBM25:
    """BM25 over some documents read word by word in another language, built on first use per view.

    The document side of dictionary translation: an English question cannot match Chinese text, but
    it can match that text's words read through their dictionary senses ("依赖" -> "depend on rely on").
    A document gives each word its context (jieba cuts it as it is meant), so this side is less noisy
    than looking up the question's words in reverse. Measured over the Chinese chunks alone, for the 28
    English questions on Chinese documents of the tune splits (seed and dev), the evidence's chunk came
    first for 19, against 15 for BM25 on the text as written.
    """

    def __init__(self, view: Callable[[], IndexView], docs: frozenset[str], read: Callable[[str], list[str]],
                 depth: int, cache: Callable[[int], Path] | None = None) -> None:
        """``cache``: where a generation's index is kept on disk (jieba is most of the build: ~1 ms a chunk)."""
        self._view, self._docs, self._read, self._depth, self._cache = view, docs, read, depth, cache
        self._lock = threading.Lock()
        self._built: tuple[IndexView, BM25Index] | None = None

    def _index(self) -> tuple[IndexView, BM25Index]:
        view = self._view()
        with self._lock:
            if self._built is None or self._built[0] is not view:
                ids = [cid for cid, chunk in view.chunks.items() if chunk.doc in self._docs and _searchable(chunk)]
                cached = BM25Index.load_cached(self._cache(view.generation), ids) if self._cache else None
                self._built = (view, cached or self._build(view, ids))
            return self._built

    def _build(self, view: IndexView, ids: list[str]) -> BM25Index:
        started = time.perf_counter()
        index = BM25Index.build(ids, [self._read(view.chunks[cid].index_text()) for cid in ids])
        log.info("Read %d chunks of %d documents in the other language word by word for BM25 (%.2f s)",
                 len(ids), len(self._docs), time.perf_counter() - started)
        if self._cache:
            try:
                index.save(self._cache(view.generation))
            except OSError as exc:  # a read-only cache folder costs the next process the build, nothing else
                log.warning("Could not cache the dictionary reading of the documents: %s", exc)
        return index

    def search(self, query: str, scope: Scope = None) -> list[NodeWithScore]:
        view, index = self._index()
        allowed = None if scope is None else np.fromiter(
            (view.chunks[cid].doc in scope for cid in index.ids), dtype=bool, count=len(index.ids))
        hits = index.search(query_tokens(query), self._depth, allowed=allowed)
        return [_node(cid, view, score, GLOSS, rank) for rank, (cid, score) in enumerate(hits, 1)]


def _default(name: str) -> float:
    return float(Settings.model_fields[name].default)


@dataclass(frozen=True)
class FusionWeights:
    """Weighted RRF parameters; the defaults are the settings' defaults (one source of the numbers)."""

    rrf_k: float = _default("rrf_k")
    by_retriever: tuple[tuple[str, float], ...] = (
        (DENSE, _default("dense_weight")), (BM25, _default("bm25_weight")), (CROSS, _default("cross_language_weight")),
        (GLOSS, _default("gloss_weight")))
    gloss_max: float = _default("gloss_weight_max")

    def weight(self, name: str) -> float:
        return dict(self.by_retriever).get(name, 1.0)

    def with_gloss_evidence(self, written: list[NodeWithScore], glossed: list[NodeWithScore]) -> FusionWeights:
        """These weights with the dictionary list's weight set by how much better it matched than the question.

        Rank fusion hears only ranks, so the dictionary list's first passage counts the same whether
        it matches the question's every word or a few of them. When the question read through the
        dictionary matches the other language's documents far better than the question as written
        matches any document (BM25's best scores), the answer is most likely in the other language:
        the list's weight grows with the square of that ratio, up to ``gloss_max``. Below a ratio of
        1 it keeps its own weight. Chosen on the tune splits (README, "Retrieval").
        """
        base = self.weight(GLOSS)
        if not glossed or not base:
            return self
        best_glossed = float(glossed[0].score or 0.0)
        best_written = float(written[0].score or 0.0) if written else 0.0
        ratio = best_glossed / best_written if best_written > 0 else math.inf
        weight = min(max(base, self.gloss_max), base * max(ratio, 1.0) ** 2)
        if weight == base:
            return self
        others = tuple((name, w) for name, w in self.by_retriever if name != GLOSS)
        return replace(self, by_retriever=(*others, (GLOSS, weight)))

    @classmethod
    def from_settings(cls, settings: Settings, language: str = "zh") -> FusionWeights:
        bm25 = settings.bm25_weight if language == "zh" else settings.bm25_weight_en
        return cls(rrf_k=settings.rrf_k, by_retriever=(
            (DENSE, settings.dense_weight), (BM25, bm25), (CROSS, settings.cross_language_weight),
            (GLOSS, settings.gloss_weight)), gloss_max=settings.gloss_weight_max)


def fuse(result_lists: Sequence[tuple[str, list[NodeWithScore]]], weights: FusionWeights) -> list[NodeWithScore]:
    """Weighted reciprocal rank fusion: score = sum over lists of w / (k + rank)."""
    fused: dict[str, NodeWithScore] = {}
    totals: dict[str, float] = {}
    for name, nodes in result_lists:
        w = weights.weight(name.split(":", 1)[0])
        for rank, hit in enumerate(nodes, 1):
            cid = hit.node.node_id
            totals[cid] = totals.get(cid, 0.0) + w / (weights.rrf_k + rank)
            if cid not in fused:
                # A shallow copy with its own metadata dict: the input nodes stay as they were, and a
                # deep copy of every candidate's text cost ~5 ms a query.
                node = hit.node.model_copy(update={"metadata": {
                    **hit.node.metadata, "found_by": {}, "scores": {}, SENTENCES: {}}})
                fused[cid] = NodeWithScore(node=node, score=0.0)
            meta = fused[cid].node.metadata
            meta["found_by"].setdefault(name, rank)
            meta["scores"].setdefault(name, float(hit.score or 0.0))
            for unit, sim in hit.node.metadata.get(SENTENCES, {}).items():  # every variant's closest sentences
                meta[SENTENCES][unit] = max(sim, meta[SENTENCES].get(unit, -1.0))
    ranked = sorted(fused.values(), key=lambda n: -totals[n.node.node_id])
    for hit in ranked:
        hit.score = totals[hit.node.node_id]
    return ranked


class HybridRetriever(BaseRetriever):
    """Dense and BM25 retrieved separately for each query variant, then fused.

    ``query_variants`` lets answering add, e.g., the question translated into the
    document's language; every variant's lists join the same fusion.
    """

    def __init__(self, retrievers: dict[str, BaseRetriever], weights: FusionWeights,
                 reranker: Reranker | None = None, rerank_depth: int = 20,
                 other_language_docs: frozenset[str] = frozenset(),
                 gloss: Callable[[str], str] | None = None, translated: TranslatedBM25 | None = None) -> None:
        super().__init__()
        self._retrievers, self._weights = retrievers, weights
        self._reranker, self._rerank_depth = reranker, rerank_depth
        self._other_language_docs = other_language_docs
        self._gloss = gloss  # the question's words in the other documents' language, for BM25 over them
        self._translated = translated  # or the other documents read in the question's language

    @property
    def reranks(self) -> bool:
        """Whether a reranker model reorders the fused candidates."""
        return self._reranker is not None

    def _cross_language(self, dense: DenseRetriever, query: str, vector: list[float],
                        scope: Scope) -> list[tuple[str, list[NodeWithScore]]]:
        """The dense search again over the documents in another language than the question.

        A question's cosine with text in its own language is higher than with the same content in
        another, so in a mixed knowledge base a Chinese question's best English passage ranks below
        Chinese passages that merely share its topic. Searched on their own, the other language's
        documents put their best passage first in a list of their own, which the fusion weighs in.
        When the scope holds no document in the question's language, that list is the dense list
        itself and is not added twice.
        """
        docs = self._other_language_docs_in(scope)
        if not docs or not self._weights.weight(CROSS):
            return []
        return [(CROSS, dense.search(query, docs, vector))]

    def _glossed(self, bm25: BM25Retriever, query: str, scope: Scope) -> list[tuple[str, list[NodeWithScore]]]:
        """BM25 over the other language's documents with the question's words looked up in a dictionary.

        BM25 cannot match a Chinese question's words in English text; their dictionary senses it can.
        An English question is searched over the Chinese documents read in English instead.
        """
        if not self._weights.weight(GLOSS):
            return []
        if self._translated is not None:  # its own documents: the question's BM25 list cannot read them at all
            return [(GLOSS, self._translated.search(query, scope))]
        docs = self._other_language_docs_in(scope)
        glossed = self._gloss(query) if self._gloss is not None and docs else ""
        return [(GLOSS, bm25.search(glossed, docs))] if glossed else []

    def _other_language_docs_in(self, scope: Scope) -> frozenset[str]:
        """The other language's documents a question with ``scope`` searches; none when the scope holds only
        those (then the question's own lists already search just them)."""
        docs = self._other_language_docs if scope is None else self._other_language_docs & scope
        return frozenset() if scope is not None and scope <= docs else frozenset(docs)

    def retrieve_variants(self, queries: Sequence[str], scope: Scope = None) -> list[NodeWithScore]:
        """Fused ranking of every query variant; ``scope`` limits it to some documents."""
        lists: list[tuple[str, list[NodeWithScore]]] = []
        written: list[NodeWithScore] = []  # the question's own BM25 list, against which the dictionary list is weighed
        for i, query in enumerate(queries):
            for name, retriever in self._retrievers.items():
                label = name if i == 0 else f"{name}:variant{i}"
                if isinstance(retriever, DenseRetriever):
                    vector = retriever.query_vector(query)
                    lists.append((label, retriever.search(query, scope, vector)))
                    if i == 0:
                        lists.extend(self._cross_language(retriever, query, vector, scope))
                    continue
                if isinstance(retriever, BM25Retriever):
                    hits = retriever.search(query, scope)
                    if i == 0:
                        written = hits
                        lists.extend(self._glossed(retriever, query, scope))
                else:
                    hits = retriever.retrieve(QueryBundle(query_str=query))
                    hits = [h for h in hits if scope is None or h.node.metadata.get("doc") in scope]
                lists.append((label, hits))
        glossed = next((hits for name, hits in lists if name == GLOSS), [])
        fused = fuse(lists, self._weights.with_gloss_evidence(written, glossed))
        if self._reranker is not None and queries:
            fused = rerank(self._reranker, queries[0], fused, self._rerank_depth)
        return fused

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return self.retrieve_variants([query_bundle.query_str])


def rerank(reranker: Reranker, question: str, fused: list[NodeWithScore], depth: int) -> list[NodeWithScore]:
    """The first ``depth`` fused candidates in the reranker's order, the rest after them.

    Each reranked node records the reranker's score in ``scores["rerank"]``; ``score`` stays the
    fused score of the position it now holds, so scores still fall with rank.
    """
    head, tail = fused[:depth], fused[depth:]
    result = rerank_order(reranker, question, [hit.node.get_content() for hit in head])
    if result is None:
        return fused
    order, scores = result
    position_scores = [hit.score for hit in head]
    reranked = []
    for position, index in enumerate(order):
        hit = head[index]
        hit.node.metadata.setdefault("scores", {})[RERANK] = scores[index]
        hit.node.metadata.setdefault("found_by", {})[RERANK] = position + 1
        reranked.append(NodeWithScore(node=hit.node, score=position_scores[position]))
    return reranked + tail


def to_passages(nodes: Sequence[NodeWithScore], view: IndexView) -> list[Passage]:
    passages = []
    for hit in nodes:
        cid = hit.node.node_id
        passage = Passage.from_chunk(cid, view.chunks[cid], float(hit.score or 0.0))
        passage.found_by = dict(hit.node.metadata.get("found_by", {}))
        passage.scores = dict(hit.node.metadata.get("scores", {}))
        sentences = hit.node.metadata.get(SENTENCES)
        if sentences:
            starts = view.chunks[cid].sentence_unit_starts()
            passage.sentence_scores = {starts[unit]: sim for unit, sim in sentences.items() if unit < len(starts)}
        passages.append(passage)
    return passages
