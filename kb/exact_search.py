"""The dense search done exactly, in memory, for knowledge bases small enough to hold their vectors.

Chroma's HNSW graph answers a query at ef_search 800 in ~6 ms whatever the collection's size, and a
question's dense search asks it four times (chunks and sentences, for its own list and the other
language's): on the dev corpus (4,233 vectors) that was 25 of a retrieval's 44 ms. A matrix product
over the same vectors, read from Chroma once per generation and cached beside the BM25 index, is
exact and takes 0.7 ms there (retrieval p95 25 ms, was 53-60); its cost grows with the collection, so past
``Settings.exact_search_max_vectors`` Chroma's graph answers (see ``KnowledgeBase.dense_search``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from kb.cache_files import opened_npz, read_whole, replaced_atomically

_MASKS_KEPT = 64  # candidate sets (one per scope) whose row masks are kept


class ExactVectors:
    """The vectors of one generation's live chunks and of their sentences, unit length, float32."""

    def __init__(self, stamp: str, chunk_ids: list[str], chunks: np.ndarray, owners: np.ndarray, units: np.ndarray,
                 sentences: np.ndarray) -> None:
        # Which commit and model the vectors are of: a store started again (its folder deleted, a server's
        # collection reset) reuses generation numbers and chunk ids, and another model's vectors must not load.
        self.stamp = stamp
        self.chunk_ids = chunk_ids
        self.chunks = chunks  # (chunks, dim)
        self.owners = owners  # (sentences,): the row of each sentence's chunk
        self.units = units  # (sentences,): its unit number in the chunk (``kb.index.sentence_id``)
        self.sentences = sentences  # (sentences, dim)
        self._masks: dict[frozenset[str], tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def from_records(cls, stamp: str, live: list[str], chunks: Iterable[tuple[str, np.ndarray]],
                     sentences: Iterable[tuple[str, int, np.ndarray]]) -> ExactVectors:
        """From stored (chunk id, vector) and (chunk id, unit, vector) records; those of chunks that are
        not ``live`` (orphans of an unfinished ingest, replaced versions) are left out."""
        row = {cid: i for i, cid in enumerate(live)}
        chunk_vectors: list[np.ndarray | None] = [None] * len(live)
        for cid, vector in chunks:
            if cid in row:
                chunk_vectors[row[cid]] = vector
        missing = [cid for cid, vector in zip(live, chunk_vectors, strict=True) if vector is None]
        if missing:
            raise ValueError(f"{len(missing)} live chunk(s) have no stored vector (e.g. {missing[0]})")
        kept = [(row[cid], unit, vector) for cid, unit, vector in sentences if cid in row]
        dim = len(chunk_vectors[0]) if chunk_vectors else 0
        return cls(
            stamp,
            list(live),
            _unit_rows(np.asarray(chunk_vectors, dtype=np.float32).reshape(len(live), dim)),
            np.asarray([owner for owner, _, _ in kept], dtype=np.int32),
            np.asarray([unit for _, unit, _ in kept], dtype=np.int32),
            _unit_rows(np.asarray([vector for _, _, vector in kept], dtype=np.float32).reshape(len(kept), dim)),
        )

    def search(self, vector: list[float], n_chunks: int, n_sentences: int,
               allowed: frozenset[str]) -> tuple[list[tuple[str, float]], list[tuple[str, int, float]]]:
        """The ``n_chunks`` allowed chunks and ``n_sentences`` sentences of allowed chunks nearest to
        ``vector``, each with its cosine, nearest first."""
        query = np.array(vector, dtype=np.float32)  # a copy: the caller's vector is left as it was
        query /= max(float(np.linalg.norm(query)), 1e-12)
        chunk_mask, sentence_mask = self._mask(allowed)
        # einsum, not `@`: BLAS's threads, woken for a product this small, then spin and take the two
        # cores from the embedding model; measured on the dev corpus, retrieval p95 52-58 ms with `@`
        # and with Chroma's graph, 26-27 ms with einsum's single-threaded loop.
        chunk_rows, chunk_sims = _nearest(np.einsum("ij,j->i", self.chunks, query), chunk_mask, n_chunks)
        sentence_rows, sentence_sims = _nearest(np.einsum("ij,j->i", self.sentences, query), sentence_mask, n_sentences)
        return (
            [(self.chunk_ids[i], float(sim)) for i, sim in zip(chunk_rows, chunk_sims, strict=True)],
            [(self.chunk_ids[self.owners[i]], int(self.units[i]), float(sim))
             for i, sim in zip(sentence_rows, sentence_sims, strict=True)],
        )

    def _mask(self, allowed: frozenset[str]) -> tuple[np.ndarray, np.ndarray]:
        # A retriever passes the same frozenset for every question of a scope (its hash is cached).
        masks = self._masks.get(allowed)
        if masks is None:
            chunk_mask = np.fromiter((cid in allowed for cid in self.chunk_ids), dtype=bool, count=len(self.chunk_ids))
            masks = (chunk_mask, chunk_mask[self.owners])
            if len(self._masks) >= _MASKS_KEPT:
                self._masks.clear()
            self._masks[allowed] = masks
        return masks

    def __len__(self) -> int:
        return len(self.chunk_ids) + len(self.owners)

    # --- persistence: replaced whole (kb.cache_files), so a reader never sees half a file ---
    def save(self, path: Path) -> None:
        with replaced_atomically(path) as fh:
            np.savez(fh, stamp=np.asarray(self.stamp), chunk_ids=np.asarray(self.chunk_ids), chunks=self.chunks,
                     owners=self.owners, units=self.units, sentences=self.sentences)

    @classmethod
    def load(cls, path: Path) -> ExactVectors:
        """The vectors saved at ``path``; ``ValueError`` when the file is not a whole one (OSError when unreadable)."""
        with opened_npz(path) as npz:
            return cls(str(npz["stamp"]), npz["chunk_ids"].tolist(), npz["chunks"], npz["owners"], npz["units"],
                       npz["sentences"])

    @classmethod
    def load_cached(cls, path: Path, stamp: str, live: list[str]) -> ExactVectors | None:
        """The vectors cached at ``path`` when they are there, whole, of the commit ``stamp`` names and of
        exactly the ``live`` chunks; else None, and an unreadable file is logged (the caller reads the store)."""
        loaded = read_whole(path, cls.load, "vector cache")
        return loaded if loaded is not None and loaded.stamp == stamp and loaded.chunk_ids == live else None


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


def _nearest(sims: np.ndarray, mask: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the ``n`` highest similarities among those ``mask`` allows, highest first."""
    rows = np.flatnonzero(mask)
    if n <= 0 or not len(rows):
        return rows[:0], sims[:0]
    candidate = sims[rows]
    if len(rows) > n:
        top = np.argpartition(-candidate, n - 1)[:n]
        rows, candidate = rows[top], candidate[top]
    order = np.argsort(-candidate, kind="stable")
    return rows[order], candidate[order]
