"""Hybrid retrieval: dense (Chroma, e5) and BM25 (jieba), fused by weighted reciprocal rank fusion.

Each retriever is a llama-index ``BaseRetriever`` so they compose with the rest of the
llama-index toolbox; the nodes they return carry the chunk id, and ``Passage`` objects
are made from the knowledge base's chunk table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.embeddings import BaseEmbedding
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from chat.passages import Passage
from kb.index import IndexView, KnowledgeBase
from kb.text import query_tokens

DENSE = "dense"
BM25 = "bm25"


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

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        view = self._view()
        vector = query_bundle.embedding or self._embed.get_query_embedding(query_bundle.query_str)
        hits = self._kb.dense_search(vector, self._depth, live=view.chunks.keys())
        return [_node(cid, view, score, DENSE, rank) for rank, (cid, score) in enumerate(hits, 1)]


class BM25Retriever(BaseRetriever):
    """Okapi BM25 over jieba search-mode tokens, question words dropped."""

    def __init__(self, view: Callable[[], IndexView], depth: int) -> None:
        super().__init__()
        self._view, self._depth = view, depth

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        view = self._view()
        hits = view.bm25.search(query_tokens(query_bundle.query_str), self._depth)
        return [_node(cid, view, score, BM25, rank) for rank, (cid, score) in enumerate(hits, 1)]


@dataclass(frozen=True)
class FusionWeights:
    rrf_k: float = 60.0
    by_retriever: tuple[tuple[str, float], ...] = ((DENSE, 1.0), (BM25, 1.0))

    def weight(self, name: str) -> float:
        return dict(self.by_retriever).get(name, 1.0)


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
                fused[cid] = NodeWithScore(node=hit.node.model_copy(deep=True), score=0.0)
                fused[cid].node.metadata["found_by"] = {}
                fused[cid].node.metadata["scores"] = {}
            meta = fused[cid].node.metadata
            meta["found_by"].setdefault(name, rank)
            meta["scores"].setdefault(name, float(hit.score or 0.0))
    ranked = sorted(fused.values(), key=lambda n: -totals[n.node.node_id])
    for hit in ranked:
        hit.score = totals[hit.node.node_id]
    return ranked


class HybridRetriever(BaseRetriever):
    """Dense and BM25 retrieved separately for each query variant, then fused.

    ``query_variants`` lets answering add, e.g., the question translated into the
    document's language; every variant's lists join the same fusion.
    """

    def __init__(self, retrievers: dict[str, BaseRetriever], weights: FusionWeights) -> None:
        super().__init__()
        self._retrievers, self._weights = retrievers, weights

    def retrieve_variants(self, queries: Sequence[str]) -> list[NodeWithScore]:
        lists: list[tuple[str, list[NodeWithScore]]] = []
        for i, query in enumerate(queries):
            for name, retriever in self._retrievers.items():
                label = name if i == 0 else f"{name}:variant{i}"
                lists.append((label, retriever.retrieve(QueryBundle(query_str=query))))
        return fuse(lists, self._weights)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return self.retrieve_variants([query_bundle.query_str])


def to_passages(nodes: Sequence[NodeWithScore], view: IndexView) -> list[Passage]:
    passages = []
    for hit in nodes:
        cid = hit.node.node_id
        passage = Passage.from_chunk(cid, view.chunks[cid], float(hit.score or 0.0))
        passage.found_by = dict(hit.node.metadata.get("found_by", {}))
        passage.scores = dict(hit.node.metadata.get("scores", {}))
        passages.append(passage)
    return passages
