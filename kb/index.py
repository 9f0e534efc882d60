"""The knowledge base's storage: a Chroma collection of chunks, a manifest and a BM25 index.

Chroma is the source of truth. The manifest (which documents, their content hashes,
the embedding model, a generation number) is a single record in a second collection,
so writing it is the one atomic commit point of an ingest: chunks of a new generation
are written first under new ids, readers keep using the ids the old manifest names
until the new manifest lands, and only then are replaced chunks deleted. An ingest
killed halfway therefore leaves the previous index answering, plus orphans that the
next ingest removes.

Readers (any number of processes or replicas) hold an ``IndexView`` for one generation
(chunk table + BM25) and swap it when the manifest's generation changes. The view is
cached on disk per generation; a replica that did not ingest rebuilds it from Chroma.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kb.bm25 import BM25Index
from kb.cache_files import read_whole, replaced_atomically
from kb.chunk import Chunk
from kb.disk import free_text
from kb.errors import KbqaError
from kb.exact_search import ExactVectors
from kb.settings import Settings
from kb.text import TOKENIZER_VERSION, tokenize

log = logging.getLogger(__name__)

MANIFEST_ID = "manifest"
MANIFEST_FORMAT = 1
READ_PAGE = 1000  # records per get/delete: Chroma's SQLite limits the variables of one statement
EXACT_VECTORS = "vectors"  # the derived cache of a generation's vectors, for the exact dense search
# The HNSW graph of a new collection. e5 puts Chinese and English text in clusters of their own, and at
# Chroma's defaults (16 links, ef_construction 100) the graph of the dev corpus's 3,707 sentence vectors
# left an English question's nearest sentence, a Chinese one, unreachable even at ef_search 800. With 32
# links built at 200: 1 of the true top 20 missed over 191 questions (7 before), build 0.5 s, same query time.
HNSW_GRAPH = {"max_neighbors": 32, "ef_construction": 200}


class KnowledgeBaseError(KbqaError):
    """The knowledge base cannot be read or written as asked; the message says what to do."""


class IndexMissing(KnowledgeBaseError):
    pass


class IndexMismatch(KnowledgeBaseError):
    pass


class StoreUnavailable(KnowledgeBaseError):
    pass


class ConcurrentIngest(KnowledgeBaseError):
    pass


class StoreCorrupt(KnowledgeBaseError):
    """The store's files are damaged or are not a Chroma store this version can read."""


class DiskFull(KnowledgeBaseError):
    """The disk under the store filled up during a write; the previous generation still serves."""


# SQLite and Chroma messages that mean the files themselves are bad, not that a call failed.
_CORRUPT_MARKERS = (
    "database disk image is malformed", "file is not a database", "no such table", "no such column",
    "unsupported file format", "malformed database schema", "database schema has changed",
)
RETIRED_GRACE_SECONDS = 60.0  # longer than any one request reads through a replaced client


@dataclass
class _OpenStore:
    client: Any
    generation: int | None  # the committed generation the client is known to see
    identity: tuple[int, int] | None = None  # the SQLite file it opened: a rebuilt store is a new file


def _file_identity(folder: Path) -> tuple[int, int] | None:
    try:
        info = (folder / "chroma.sqlite3").stat()
    except OSError:
        return None
    return info.st_dev, info.st_ino


class _EmbeddedStores:
    """One embedded Chroma client per store folder in this process, reopened after foreign commits.

    chromadb keeps one ``System`` per folder in a process-wide cache (``SharedSystemClient``), and
    its in-memory vector segments never see another process's writes: after an ingest by another
    process, queries miss the new records and return deleted ones with ``None`` metadata, while
    ``get`` (straight from SQLite) sees the change (chroma-core/chroma#3792). A new
    ``PersistentClient`` alone reuses the cached ``System``; so reopening drops that cache entry
    first, which makes the new client load the segments from disk. The replaced ``System`` is
    stopped only after a grace period, since a request on another thread may still be reading
    through it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, _OpenStore] = {}
        self._retired: list[tuple[float, Any]] = []

    def get(self, path: Path) -> _OpenStore:
        with self._lock:
            key = str(path)
            if key not in self._open:
                self._open[key] = self._new_store(key)
            return self._open[key]

    def reopen(self, path: Path, stale: Any = None) -> _OpenStore:
        """A fresh client for ``path``, unless another thread already replaced ``stale``."""
        with self._lock:
            key = str(path)
            current = self._open.get(key)
            if current is not None and stale is not None and current.client is not stale:
                return current
            if current is not None:
                self._retire(self._open.pop(key).client)  # popped first: a failed open leaves nothing stale
            self._open[key] = self._new_store(key)
            return self._open[key]

    def forget(self, path: Path) -> None:
        """Let go of ``path`` (its folder is being moved aside): the next ``get`` opens anew."""
        with self._lock:
            current = self._open.pop(str(path), None)
            if current is not None:
                self._retire(current.client)
            self._drop_cached_system(str(path))

    def discard(self, path: Path) -> None:
        """Stop ``path``'s client now: after a write failed on a full disk, chromadb's ``System`` holds the
        store so that every later call on it, or on a new client of the folder, waits forever (holding
        the GIL); only stopping it lets a new client read. A request still on it gets an error, not a hang."""
        with self._lock:  # stopped before another thread can open the folder again
            current = self._open.pop(str(path), None)
            self._drop_cached_system(str(path))
            if current is not None:
                self._stop(getattr(current.client, "_server", None), level=logging.WARNING)

    def _new_store(self, key: str) -> _OpenStore:
        client = self._new_client(key)
        return _OpenStore(client, None, _file_identity(Path(key)))

    def _new_client(self, key: str) -> Any:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        self._drop_cached_system(key)
        self._stop_retired()
        Path(key).mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=key, settings=ChromaSettings(anonymized_telemetry=False))

    @staticmethod
    def _drop_cached_system(key: str) -> None:
        from chromadb.api.shared_system_client import SharedSystemClient

        # Only the cache entry: clients still holding the old System keep working until retired.
        SharedSystemClient._identifier_to_system.pop(key, None)

    def _retire(self, client: Any) -> None:
        self._retired.append((time.monotonic(), getattr(client, "_server", None)))

    def _stop_retired(self) -> None:
        now = time.monotonic()
        keep = []
        for retired_at, server in self._retired:
            if now - retired_at < RETIRED_GRACE_SECONDS:
                keep.append((retired_at, server))
                continue
            self._stop(server)
        self._retired = keep

    @staticmethod
    def _stop(server: Any, level: int = logging.DEBUG) -> None:
        try:
            system = getattr(server, "_system", None)
            if system is not None:
                system.stop()
        except Exception as exc:  # a store failing to stop must not fail a live request
            log.log(level, "Stopping a Chroma client failed: %s", exc)


_EMBEDDED = _EmbeddedStores()


# SQLite's SQLITE_FULL and the kernel's ENOSPC, as Chroma passes them on (embedded, or a server's reply).
_DISK_FULL_MARKERS = ("database or disk is full", "no space left on device", "os error 28")


def _mentions(exc: BaseException, markers: tuple[str, ...]) -> bool:
    """Whether ``exc`` or an exception it came from says one of ``markers`` (Chroma wraps SQLite's errors)."""
    text = " ".join(str(e).lower() for e in _causes(exc))
    return any(marker in text for marker in markers)


def _is_disk_full(exc: BaseException) -> bool:
    return _mentions(exc, _DISK_FULL_MARKERS)


def _is_corrupt(exc: BaseException) -> bool:
    return _mentions(exc, _CORRUPT_MARKERS)


@dataclass
class DocEntry:
    sha256: str
    key: str  # prefix of this version's chunk ids
    chunks: int
    source: str  # absolute path it was read from
    size: int
    ingested_at: float

    def chunk_ids(self) -> list[str]:
        return [chunk_id(self.key, i) for i in range(self.chunks)]


@dataclass
class Manifest:
    generation: int = 0
    embedding: dict[str, Any] = field(default_factory=dict)  # model, runtime, dim
    chunking: dict[str, Any] = field(default_factory=dict)
    docs: dict[str, DocEntry] = field(default_factory=dict)
    updated_at: float = 0.0

    def live_ids(self) -> list[str]:
        return [cid for doc in sorted(self.docs) for cid in self.docs[doc].chunk_ids()]

    def to_json(self) -> str:
        data = asdict(self)
        data["format"] = MANIFEST_FORMAT
        return json.dumps(data, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str) -> Manifest:
        data = json.loads(raw)
        data.pop("format", None)
        docs = {name: DocEntry(**entry) for name, entry in data.pop("docs", {}).items()}
        return cls(docs=docs, **data)


def chunk_id(key: str, index: int) -> str:
    return f"{key}-{index:05d}"


def sentence_id(chunk: str, unit: int) -> str:
    """The id of a chunk's ``unit``-th sentence vector (``Chunk.sentence_units`` order)."""
    return f"{chunk}.s{unit:03d}"


def _sentence_unit(sid: str) -> int | None:
    """The unit number in a :func:`sentence_id` (None for an id of another shape)."""
    _, _, unit = sid.rpartition(".s")
    return int(unit) if unit.isdigit() else None


def dense_request_sizes(k: int) -> tuple[int, int]:
    """How many chunk vectors and sentence vectors a dense search for ``k`` chunks asks Chroma for.

    A few more chunks than ``k``, as orphans and non-candidates are skipped; four sentences a chunk,
    as a chunk's best sentences crowd the list.
    """
    return k + 16, 4 * k + 16


@dataclass(frozen=True)
class DenseHit:
    """A chunk the dense search found: its best cosine, and its sentences that came up (unit -> cosine)."""

    chunk_id: str
    score: float
    sentences: dict[int, float]


@dataclass
class IndexView:
    """Everything a retriever needs from one committed generation."""

    manifest: Manifest
    chunks: dict[str, Chunk]
    bm25: BM25Index

    @property
    def generation(self) -> int:
        return self.manifest.generation


def _chunk_metadata(chunk: Chunk) -> dict[str, str | int | bool]:
    # The Chroma document is the cleaned index text, so the exact source slice travels in the metadata.
    return chunk.to_metadata()


def _chunk_from_record(document: str, meta: dict[str, Any]) -> Chunk:
    return Chunk.from_metadata(meta, document=document)  # also reads records from before `text` was stored


class KnowledgeBase:
    """Storage of one knowledge base: connect, read and write chunks, manifest and views."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Any = None
        self._lock = threading.RLock()
        self._view: IndexView | None = None
        # The view the exact search last read vectors for, and them (None: over the limit, or unreadable);
        # compared by identity, so a new view reads again.
        self._exact: tuple[IndexView, ExactVectors | None] | None = None
        # Collection handles of the current client: looking one up is a round trip per call (7 ms).
        self._collections: dict[str, tuple[Any, Any]] = {}  # name -> (client, collection)

    # --- connection -----------------------------------------------------------------
    @property
    def location(self) -> str:
        s = self.settings
        if s.uses_chroma_server:
            return f"Chroma server {'https' if s.chroma_ssl else 'http'}://{s.chroma_host}:{s.chroma_port}"
        return f"embedded Chroma at {s.chroma_path}"

    def _connect(self) -> Any:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        s = self.settings
        try:
            if s.uses_chroma_server:
                client = chromadb.HttpClient(
                    host=s.chroma_host or "127.0.0.1", port=s.chroma_port, ssl=s.chroma_ssl,
                    settings=ChromaSettings(anonymized_telemetry=False),
                )
                client.heartbeat()
            else:
                client = _EMBEDDED.get(s.chroma_path).client
        except Exception as exc:
            raise self._store_error(exc) from exc
        return client

    def _disk_full(self, exc: BaseException) -> str:
        where = "the Chroma server's disk" if self.settings.uses_chroma_server else (
            f"the disk under {self.settings.chroma_path} ({free_text(self.settings.chroma_path)})")
        # The manifest names the live chunks and is written last, so a write cut short changes nothing served.
        return (f"The {self.location} could not be written: {where} is full ({exc}). Free some space and run "
                "the ingest again; the knowledge base answers as it did before this change.")

    def _store_error(self, exc: BaseException) -> KnowledgeBaseError:
        if _is_disk_full(exc):
            return DiskFull(self._disk_full(exc))
        if not self.settings.uses_chroma_server and _is_corrupt(exc):
            return StoreCorrupt(
                f"The {self.location} is damaged or is not a Chroma store this version can read "
                f"({type(exc).__name__}: {exc}). Run: python -m ingest --rebuild "
                "(it moves the damaged store aside, keeps it, and re-embeds the documents)."
            )
        return StoreUnavailable(self._unreachable(exc))

    def reopen(self) -> None:
        """Open the embedded store afresh, so this process sees what other processes wrote."""
        if self.settings.uses_chroma_server:
            return
        with self._lock:
            stale, self._client = self._client, None
            try:
                self._client = _EMBEDDED.reopen(self.settings.chroma_path, stale).client
            except Exception as exc:
                raise self._store_error(exc) from exc

    def _sync_with(self, manifest: Manifest | None) -> Manifest | None:
        """``manifest``, or, when our embedded client cannot see the store as it is now (another
        process committed, or the store was rebuilt), the manifest read again through a fresh client."""
        if self.settings.uses_chroma_server:
            return manifest  # a server's clients all see one state
        path = self.settings.chroma_path
        generation = manifest.generation if manifest else 0
        opened = _EMBEDDED.get(path)
        if opened.identity == _file_identity(path) and opened.generation is None:
            opened.generation = generation  # the client was opened after this commit landed
        if self._client_sees(generation):
            return manifest
        log.info("The %s changed in another process (generation %d); reopening it", self.location, generation)
        self.reopen()
        manifest = self.read_manifest()
        _EMBEDDED.get(path).generation = manifest.generation if manifest else 0
        return manifest

    def move_aside(self) -> Path:
        """Rename a damaged embedded store out of the way (kept, not deleted) and return where it went."""
        source = self.settings.chroma_path
        target = source.with_name(f"{source.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        with self._lock:
            self._client = None
            self._view = None
            _EMBEDDED.forget(source)
            source.rename(target)
        return target

    def _unreachable(self, exc: BaseException) -> str:
        hint = (
            "Start it (chroma run --path DIR --host 127.0.0.1 --port N) or unset KBQA_CHROMA_HOST "
            "to use embedded Chroma."
            if self.settings.uses_chroma_server
            else "Check that the data folder is writable and not used by another Chroma version."
        )
        return f"Cannot reach the {self.location}: {type(exc).__name__}: {exc}. {hint}"

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            elif not self.settings.uses_chroma_server:
                self._client = _EMBEDDED.get(self.settings.chroma_path).client  # another thread may have reopened
            return self._client

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a Chroma call; a lost server becomes StoreUnavailable and the next call reconnects."""
        try:
            return fn(*args, **kwargs)
        except KnowledgeBaseError:
            raise
        except Exception as exc:
            if _is_disk_full(exc):
                if not self.settings.uses_chroma_server:
                    with self._lock:
                        self._client = None
                    _EMBEDDED.discard(self.settings.chroma_path)
                raise self._store_error(exc) from exc
            if not self.settings.uses_chroma_server and _is_corrupt(exc):
                with self._lock:
                    self._client = None
                _EMBEDDED.forget(self.settings.chroma_path)  # the next call opens it again (rebuilt?)
                raise self._store_error(exc) from exc
            if self.settings.uses_chroma_server and _looks_like_connection_error(exc):
                with self._lock:
                    self._client = None
                raise StoreUnavailable(self._unreachable(exc)) from exc
            raise

    def _collection(self, suffix: str) -> Any:
        name = f"{self.settings.collection}_{suffix}"
        client = self._call(lambda: self.client)  # opening a damaged store is a store error too
        cached = self._collections.get(name)
        if cached is not None and cached[0] is client:  # a reopened or reconnected client gets new handles
            return cached[1]
        # embedding_function=None: Chroma's default would download a model; we always pass vectors.
        ef = self.settings.dense_search_ef
        handle = self._call(
            lambda: client.get_or_create_collection(
                name=name, embedding_function=None,
                configuration={"hnsw": {"space": "cosine", "ef_search": ef, **HNSW_GRAPH}},
            )
        )
        self._tune_search(handle, ef)
        self._collections[name] = (client, handle)
        return handle

    def _tune_search(self, handle: Any, ef: int) -> None:
        """An existing collection (older version, other settings) searches with this ``ef`` from its next load."""
        hnsw = (handle.configuration or {}).get("hnsw") or {}
        if hnsw.get("ef_search", ef) != ef:
            log.info("Collection %s: HNSW ef_search %s -> %s", handle.name, hnsw.get("ef_search"), ef)
            self._call(handle.modify, configuration={"hnsw": {"ef_search": ef}})
        if hnsw.get("max_neighbors", HNSW_GRAPH["max_neighbors"]) < HNSW_GRAPH["max_neighbors"]:
            log.info("Collection %s has an older, sparser search graph; `python -m ingest --rebuild` "
                     "builds the current one (better recall across languages)", handle.name)

    def chunks_collection(self) -> Any:
        return self._collection("chunks")

    def meta_collection(self) -> Any:
        return self._collection("meta")

    def sentences_collection(self) -> Any:
        return self._collection("sentences")

    # --- manifest -------------------------------------------------------------------
    def read_manifest(self) -> Manifest | None:
        got = self._call(self.meta_collection().get, ids=[MANIFEST_ID], include=["documents"])
        if not got["ids"]:
            return None
        try:
            return Manifest.from_json(got["documents"][0])
        except (TypeError, ValueError) as exc:
            raise StoreCorrupt(
                f"The manifest in the {self.location} is not one this version wrote ({exc}). "
                "Run: python -m ingest --rebuild"
            ) from exc

    def commit(self, manifest: Manifest, expected_generation: int) -> None:
        """Make ``manifest`` the live one, unless another ingest committed since we read ours."""
        current = self.read_manifest()
        current_generation = current.generation if current else 0
        if current_generation != expected_generation:
            raise ConcurrentIngest(
                f"Another ingest committed generation {current_generation} while this one ran "
                f"(started from {expected_generation}); nothing was changed. Run the ingest again."
            )
        self._call(
            self.meta_collection().upsert,
            ids=[MANIFEST_ID],
            documents=[manifest.to_json()],
            embeddings=[[0.0]],
            # The stamp lets a reader see that nothing changed without fetching the whole manifest.
            metadatas=[{"generation": manifest.generation, "updated_at": manifest.updated_at}],
        )
        if not self.settings.uses_chroma_server:
            _EMBEDDED.get(self.settings.chroma_path).generation = manifest.generation  # our own writes

    # --- chunks ---------------------------------------------------------------------
    def add_chunks(
        self,
        ids: Sequence[str],
        chunks: Sequence[Chunk],
        vectors: Sequence[list[float]],
        sentence_vectors: Sequence[Sequence[list[float]]],
    ) -> None:
        """Store chunks (through llama-index's ChromaVectorStore) and their sentence-level vectors."""
        from llama_index.core.schema import TextNode
        from llama_index.vector_stores.chroma import ChromaVectorStore

        store = ChromaVectorStore(chroma_collection=self.chunks_collection())
        nodes = [
            TextNode(id_=cid, text=chunk.index_text(), metadata=_chunk_metadata(chunk), embedding=vec)
            for cid, chunk, vec in zip(ids, chunks, vectors, strict=True)
        ]
        self._call(store.add, nodes)
        sentence_ids, embeddings, metadatas = [], [], []
        for cid, per_chunk in zip(ids, sentence_vectors, strict=True):
            for j, vec in enumerate(per_chunk):
                sentence_ids.append(sentence_id(cid, j))
                embeddings.append(vec)
                metadatas.append({"chunk_id": cid})
        collection = self.sentences_collection()
        size = self._max_batch()
        for i in range(0, len(sentence_ids), size):
            self._call(collection.upsert, ids=sentence_ids[i : i + size], embeddings=embeddings[i : i + size],
                       metadatas=metadatas[i : i + size])

    def stored_ids(self) -> set[str]:
        return {cid for cid, _ in self._scan(self.chunks_collection(), include=[])}

    def _scan(self, collection: Any, include: list[str]) -> Iterator[tuple[str, Any]]:
        """Every record of a collection, in pages: one get of everything fails in Chroma's SQLite past
        ~32k records ("too many SQL variables"), i.e. ~130 documents of 20 KB with sentence vectors."""
        page = READ_PAGE
        offset = 0
        while True:
            got = self._call(collection.get, include=include, limit=page, offset=offset)
            metadatas = got.get("metadatas") or [None] * len(got["ids"])
            yield from zip(got["ids"], metadatas, strict=True)
            if len(got["ids"]) < page:
                return
            offset += page

    def delete_ids(self, ids: Iterable[str]) -> None:
        """Delete chunks and their sentence vectors."""
        chunks, sentences = self.chunks_collection(), self.sentences_collection()
        for batch in _batches(list(ids), READ_PAGE):
            self._call(chunks.delete, ids=batch)
            self._call(sentences.delete, where={"chunk_id": {"$in": batch}})

    def orphan_sentence_ids(self, live: set[str]) -> list[str]:
        return [sid for sid, meta in self._scan(self.sentences_collection(), include=["metadatas"])
                if meta["chunk_id"] not in live]

    def delete_sentence_ids(self, ids: Sequence[str]) -> None:
        collection = self.sentences_collection()
        for batch in _batches(list(ids), READ_PAGE):
            self._call(collection.delete, ids=batch)

    def load_chunks(self, ids: Sequence[str]) -> dict[str, Chunk]:
        collection = self.chunks_collection()
        found: dict[str, Chunk] = {}
        for batch in _batches(list(ids), READ_PAGE):
            got = self._call(collection.get, ids=batch, include=["documents", "metadatas"])
            for cid, document, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True):
                found[cid] = _chunk_from_record(document, meta)
        missing = [cid for cid in ids if cid not in found]
        if missing:
            raise IndexMissing(
                f"The index names {len(missing)} chunk(s) that are not in the {self.location} "
                f"(e.g. {missing[0]}). Rebuild it with: python -m ingest --rebuild"
            )
        return found

    def dense_search(self, vector: list[float], k: int, live: Collection[str],
                     docs: Collection[str] | None = None, view: IndexView | None = None) -> list[DenseHit]:
        """Nearest ``live`` chunks: the best cosine of the chunk itself or any of its sentences.

        ``live`` is what may come back: orphans of an unfinished ingest and chunks that are not
        candidates are left out. Given the ``view`` it serves, a knowledge base of up to
        ``exact_search_max_vectors`` vectors is searched exactly in memory; otherwise Chroma's HNSW
        index is asked for a few more than ``k`` (``docs``, which ``live`` lies within, narrows it
        through metadata filters; sentences carry their chunk's id). Each hit also says which of its
        sentences came up and how close (answering picks sentences with it).
        """
        n_chunks, n_sentences = dense_request_sizes(k)
        exact = self.exact_vectors(view) if view is not None else None
        if exact is not None:
            allowed = live if isinstance(live, frozenset) else frozenset(live)
            chunk_hits, sentence_hits = exact.search(vector, n_chunks, n_sentences, allowed)
        else:
            chunk_hits, sentence_hits = self._graph_search(vector, n_chunks, n_sentences, live, docs)
        scores: dict[str, float] = dict(chunk_hits)
        sentences: dict[str, dict[int, float]] = {}
        for cid, unit, sim in sentence_hits:
            scores[cid] = max(scores.get(cid, -1.0), sim)
            if unit is not None:
                sentences.setdefault(cid, {})[unit] = sim
        ranked = sorted(((cid, sim) for cid, sim in scores.items() if cid in live), key=lambda item: -item[1])
        return [DenseHit(cid, sim, sentences.get(cid, {})) for cid, sim in ranked[:k]]

    def _graph_search(self, vector: list[float], n_chunks: int, n_sentences: int, live: Collection[str],
                      docs: Collection[str] | None) -> tuple[list[tuple[str, float]], list[tuple[str, int | None, float]]]:
        """Chroma's nearest chunks and sentences, (chunk id, cosine) and (chunk id, unit, cosine)."""
        chunk_where: dict[str, Any] | None = None
        sentence_where: dict[str, Any] | None = None
        if docs is not None:
            chunk_where = {"doc": {"$in": sorted(docs)}}
            if not live:
                return [], []
            # A very wide scope would exceed SQLite's variable limit; there the live filter suffices.
            sentence_where = {"chunk_id": {"$in": sorted(live)}} if len(live) <= 5000 else None
        got = self._call(self.chunks_collection().query, query_embeddings=[vector], n_results=n_chunks,
                         where=chunk_where, include=["distances"])
        chunk_hits = [(cid, 1.0 - dist) for cid, dist in zip(got["ids"][0], got["distances"][0], strict=True)]
        got = self._call(self.sentences_collection().query, query_embeddings=[vector], n_results=n_sentences,
                         where=sentence_where, include=["distances", "metadatas"])
        sentence_hits = [
            (meta["chunk_id"], _sentence_unit(sid), 1.0 - dist)
            for sid, meta, dist in zip(got["ids"][0], got["metadatas"][0], got["distances"][0], strict=True)
            if meta  # else deleted since the segment was loaded (a reopen follows the next commit)
        ]
        return chunk_hits, sentence_hits

    def exact_vectors(self, view: IndexView) -> ExactVectors | None:
        """The vectors of ``view``'s live chunks and their sentences in memory, when the store holds no
        more than ``exact_search_max_vectors`` (0: never); read once per view, cached on disk."""
        limit = self.settings.exact_search_max_vectors
        if not limit:
            return None
        held = self._exact
        if held is not None and held[0] is view:
            return held[1]
        with self._lock:
            held = self._exact
            if held is not None and held[0] is not view and held[0].manifest.updated_at > view.manifest.updated_at:
                return None  # a request still on the view a new commit replaced: the graph answers it
            if held is None or held[0] is not view:
                self._exact = (view, self._read_exact_vectors(view, limit))
            return self._exact[1]

    def _read_exact_vectors(self, view: IndexView, limit: int) -> ExactVectors | None:
        chunks, sentences = self.chunks_collection(), self.sentences_collection()
        stored = self._call(chunks.count) + self._call(sentences.count)
        if stored > limit:
            log.info("%d vectors stored, more than exact_search_max_vectors (%d): Chroma's HNSW index searches them",
                     stored, limit)
            return None
        live = view.manifest.live_ids()
        path = self.view_cache_path(view.generation, EXACT_VECTORS)
        stamp = json.dumps({"updated_at": view.manifest.updated_at, "embedding": view.manifest.embedding}, sort_keys=True)
        cached = ExactVectors.load_cached(path, stamp, live)
        if cached is not None:
            return cached
        started = time.perf_counter()
        # Asked for by live id: the records an ingest killed mid-write left behind can fail a read of
        # everything ("Error finding id"), and are no candidates anyway.
        chunk_records = (
            (cid, vector) for batch in _batches(live, READ_PAGE)
            for got in [self._call(chunks.get, ids=batch, include=["embeddings"])]
            for cid, vector in zip(got["ids"], got["embeddings"], strict=True)
        )
        sentence_records = (  # a hundred chunks' sentences a page: some thousands of records
            (meta["chunk_id"], unit, vector) for batch in _batches(live, READ_PAGE // 10)
            for got in [self._call(sentences.get, where={"chunk_id": {"$in": batch}},
                                   include=["embeddings", "metadatas"])]
            for sid, meta, vector in zip(got["ids"], got["metadatas"], got["embeddings"], strict=True)
            if (unit := _sentence_unit(sid)) is not None
        )
        try:
            vectors = ExactVectors.from_records(stamp, live, chunk_records, sentence_records)
        except ValueError as exc:  # a chunk replaced while reading: the next view reads again
            log.warning("Searching with Chroma's HNSW index: %s", exc)
            return None
        try:
            vectors.save(path)
        except OSError as exc:
            log.warning("Could not cache the vectors for the exact search: %s", exc)
        log.info("Exact dense search over %d vectors (read in %.0f ms)", len(vectors),
                 (time.perf_counter() - started) * 1000)
        return vectors

    def _max_batch(self) -> int:
        try:
            return int(self.client.get_max_batch_size())
        except Exception:
            return 1000

    # --- views for readers -----------------------------------------------------------
    def view_cache_path(self, generation: int, derived: str = "") -> Path:
        """The cached BM25 index of a generation's view; ``derived`` names another index made from the same
        chunks (chat.retrieval's dictionary reading), which lives and goes with it."""
        # The BM25 index in it holds tokens: another tokenizer's cache is another file.
        name = f"{self.settings.collection}-g{generation}-t{TOKENIZER_VERSION}" + (f"-{derived}" if derived else "")
        return self.settings.cache_dir / f"{name}.npz"

    def build_view(self, manifest: Manifest, chunks: dict[str, Chunk]) -> IndexView:
        ids = manifest.live_ids()
        bm25 = BM25Index.build(ids, [tokenize(chunks[cid].index_text()) for cid in ids])
        return IndexView(manifest=manifest, chunks={cid: chunks[cid] for cid in ids}, bm25=bm25)

    def save_view(self, view: IndexView) -> None:
        path = self.view_cache_path(view.generation)
        view.bm25.save(path)
        table = {cid: asdict(chunk) for cid, chunk in view.chunks.items()}
        with replaced_atomically(path.with_suffix(".chunks.json")) as fh:
            fh.write(json.dumps(table, ensure_ascii=False).encode("utf-8"))

    def _load_cached_view(self, manifest: Manifest) -> IndexView | None:
        path = self.view_cache_path(manifest.generation)
        table_path = path.with_suffix(".chunks.json")
        if not (path.exists() and table_path.exists()):
            return None
        bm25 = BM25Index.load_cached(path, manifest.live_ids())
        if bm25 is None:
            return None
        table = read_whole(table_path, lambda p: json.loads(p.read_text(encoding="utf-8")), "index cache")
        if table is None:
            return None
        return IndexView(manifest=manifest, chunks={k: Chunk(**v) for k, v in table.items()}, bm25=bm25)

    def _unchanged_view(self) -> IndexView | None:
        """The view in memory when the store's commit stamp says it is still the live one.

        Every request asks for the view; the stamp is a metadata-only read, where the manifest
        (which lists every live chunk id) grows with the knowledge base.
        """
        view = self._view
        if view is None:
            return None
        got = self._call(self.meta_collection().get, ids=[MANIFEST_ID], include=["metadatas"])
        stamp = got["metadatas"][0] if got["ids"] and got["metadatas"] else None
        if not stamp or (stamp.get("generation"), stamp.get("updated_at")) != (view.generation, view.manifest.updated_at):
            return None
        # Another process's commit is visible to an embedded store only through a fresh client: view() reopens.
        return view if self._client_sees(view.generation) else None

    def _client_sees(self, generation: int) -> bool:
        """Whether this process's client sees the store as it is, at ``generation`` (a server's always do)."""
        if self.settings.uses_chroma_server:
            return True
        opened = _EMBEDDED.get(self.settings.chroma_path)
        return opened.identity == _file_identity(self.settings.chroma_path) and opened.generation == generation

    def view(self) -> IndexView:
        """The current generation's view, reloaded when another process has committed a new one."""
        unchanged = self._unchanged_view()
        if unchanged is not None:
            return unchanged
        manifest = self._sync_with(self.read_manifest())
        if manifest is None or not manifest.docs:
            raise IndexMissing(
                f"The knowledge base in the {self.location} is empty. "
                "Run the ingest first: python -m ingest"
            )
        with self._lock:
            # A rebuilt store starts its generations again: a commit is its generation and its time.
            if (self._view is not None and self._view.generation == manifest.generation
                    and self._view.manifest.updated_at == manifest.updated_at):
                return self._view
            started = time.perf_counter()
            view = self._load_cached_view(manifest)
            if view is None:
                view = self._build_from_store(manifest)
                manifest = view.manifest
                try:
                    self.save_view(view)
                except OSError as exc:
                    log.warning("Could not cache the index view: %s", exc)
            log.info(
                "Loaded index generation %d: %d documents, %d chunks (%.0f ms)",
                manifest.generation, len(manifest.docs), len(view.chunks),
                (time.perf_counter() - started) * 1000,
            )
            self._view = view
            return view

    def _build_from_store(self, manifest: Manifest) -> IndexView:
        # Another replica may commit a newer generation and delete this one's replaced chunks
        # while we read them: that is not a broken index, so follow the newer manifest.
        for _ in range(3):
            try:
                return self.build_view(manifest, self.load_chunks(manifest.live_ids()))
            except IndexMissing:
                latest = self.read_manifest()
                if latest is None or not latest.docs or latest.generation == manifest.generation:
                    raise
                log.info("Generation %d was replaced while loading it; loading %d", manifest.generation,
                         latest.generation)
                manifest = latest
        return self.build_view(manifest, self.load_chunks(manifest.live_ids()))

    def remove_stale_caches(self, keep_generation: int) -> None:
        """Drop the view caches of other generations, and of other tokenizers (older releases named none)."""
        if not self.settings.cache_dir.exists():
            return
        keep = self.view_cache_path(keep_generation).stem
        ours = re.compile(rf"{re.escape(self.settings.collection)}-g\d+(?:-t\w+)?(?:-[a-z0-9-]+)?")
        for path in self.settings.cache_dir.glob(f"{self.settings.collection}-g*"):
            stem = path.name.removesuffix(".chunks.json").removesuffix(".npz")
            if ours.fullmatch(stem) and stem != keep and not stem.startswith(f"{keep}-"):
                path.unlink(missing_ok=True)


def _looks_like_connection_error(exc: BaseException) -> bool:
    names = {type(e).__name__ for e in _causes(exc)}
    text = str(exc).lower()
    return bool(
        names & {"ConnectError", "ConnectionError", "ConnectTimeout", "ReadTimeout", "RemoteProtocolError",
                 "ConnectionRefusedError", "ReadError", "ChromaConnectionError"}
        or "connect" in text
        or "could not connect" in text
    )


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


def _batches(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), max(1, size)):
        yield items[i : i + size]
