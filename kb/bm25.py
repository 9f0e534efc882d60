"""A small Okapi BM25 index over pre-tokenised text, stored as a sparse matrix.

llama-index's BM25Retriever ignores custom tokenizers (and so scores unsegmented
Chinese 0); this one takes jieba tokens. Scores are precomputed per (chunk, term),
so a query is one sparse column slice and a sum.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
from scipy import sparse

from kb.cache_files import opened_npz, read_whole, replaced_atomically

K1 = 1.5
B = 0.75


class BM25Index:
    def __init__(self, ids: list[str], vocab: dict[str, int], weights: sparse.csc_matrix) -> None:
        self.ids = ids
        self.vocab = vocab
        self.weights = weights  # shape (len(ids), len(vocab))

    @classmethod
    def build(cls, ids: list[str], token_lists: list[list[str]]) -> BM25Index:
        vocab: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        tfs: list[float] = []
        lengths = np.array([len(t) for t in token_lists], dtype=np.float64)
        for row, tokens in enumerate(token_lists):
            for term, tf in Counter(tokens).items():
                rows.append(row)
                cols.append(vocab.setdefault(term, len(vocab)))
                tfs.append(tf)
        n_docs = len(ids)
        tf_matrix = sparse.csr_matrix((tfs, (rows, cols)), shape=(n_docs, len(vocab)), dtype=np.float64)
        df = np.bincount(np.asarray(cols, dtype=np.int64), minlength=len(vocab))
        idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
        avg_len = lengths.mean() if n_docs else 1.0
        norm = K1 * (1 - B + B * lengths / max(avg_len, 1e-9))
        tf_coo = tf_matrix.tocoo()
        data = idf[tf_coo.col] * tf_coo.data * (K1 + 1) / (tf_coo.data + norm[tf_coo.row])
        weights = sparse.csc_matrix((data, (tf_coo.row, tf_coo.col)), shape=tf_matrix.shape)
        return cls(list(ids), vocab, weights)

    def scores(self, tokens: list[str]) -> np.ndarray:
        """BM25 score of every indexed text for the query ``tokens`` (a repeated token counts again)."""
        cols = [self.vocab[t] for t in tokens if t in self.vocab]
        if not cols or not self.ids:
            return np.zeros(len(self.ids))
        return np.asarray(self.weights[:, cols].sum(axis=1)).ravel()

    def search(self, tokens: list[str], k: int, allowed: np.ndarray | None = None) -> list[tuple[str, float]]:
        """The ``k`` best-scoring texts; ``allowed`` (a boolean mask over ``ids``) limits the candidates."""
        scores = self.scores(tokens)
        if allowed is not None and len(scores):
            scores = np.where(allowed, scores, 0.0)
        k = min(k, int((scores > 0).sum()))
        if k == 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self.ids[i], float(scores[i])) for i in top]

    def idf(self, term: str) -> float:
        """Inverse document frequency of a term (0 for terms the index has never seen)."""
        col = self.vocab.get(term)
        if col is None:
            return 0.0
        df = int(self.weights.indptr[col + 1] - self.weights.indptr[col])
        n = len(self.ids)
        return float(np.log1p((n - df + 0.5) / (df + 0.5)))

    def __len__(self) -> int:
        return len(self.ids)

    # --- persistence: replaced whole (kb.cache_files), so a reader never sees half a file ---
    def save(self, path: Path) -> None:
        with replaced_atomically(path) as fh:
            np.savez_compressed(
                fh,
                data=self.weights.data,
                indices=self.weights.indices,
                indptr=self.weights.indptr,
                shape=np.array(self.weights.shape),
                meta=np.frombuffer(json.dumps({"ids": self.ids, "vocab": self.vocab}).encode(), dtype=np.uint8),
            )

    @classmethod
    def load(cls, path: Path) -> BM25Index:
        """The index saved at ``path``; ``ValueError`` when the file is not a whole one (OSError when unreadable)."""
        with opened_npz(path) as npz:
            meta = json.loads(npz["meta"].tobytes().decode())
            weights = sparse.csc_matrix((npz["data"], npz["indices"], npz["indptr"]), shape=tuple(npz["shape"]))
        return cls(meta["ids"], meta["vocab"], weights)

    @classmethod
    def load_cached(cls, path: Path, ids: list[str]) -> BM25Index | None:
        """The index cached at ``path`` when it is there, whole and indexes exactly ``ids``; else None, and
        an unreadable file is logged (the caller rebuilds it)."""
        index = read_whole(path, cls.load, "index cache")
        return index if index is not None and index.ids == ids else None
