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
import os
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kb.bm25 import BM25Index
from kb.chunk import Chunk
from kb.errors import KbqaError
from kb.settings import Settings
from kb.text import tokenize

log = logging.getLogger(__name__)

MANIFEST_ID = "manifest"
READ_PAGE = 1000  # records per get/delete: Chroma's SQLite limits the variables of one statement
MANIFEST_FORMAT = 1


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


@dataclass
class IndexView:
    """Everything a retriever needs from one committed generation."""

    manifest: Manifest
    chunks: dict[str, Chunk]
    bm25: BM25Index

    @property
    def generation(self) -> int:
        return self.manifest.generation


def _chunk_metadata(chunk: Chunk) -> dict[str, str | int]:
    meta = chunk.to_metadata()
    del meta["text"]  # the text is the Chroma document, after the index prefix
    meta["prefix_len"] = len(chunk.index_text()) - len(chunk.text)
    return meta


def _chunk_from_record(document: str, meta: dict[str, Any]) -> Chunk:
    return Chunk(
        doc=str(meta["doc"]),
        section=str(meta.get("section", "")),
        text=document[int(meta["prefix_len"]):],
        start=int(meta["start"]),
        end=int(meta["end"]),
        index=int(meta.get("index", 0)),
        context=str(meta.get("context", "")),
    )


class KnowledgeBase:
    """Storage of one knowledge base: connect, read and write chunks, manifest and views."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Any = None
        self._lock = threading.RLock()
        self._view: IndexView | None = None

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

        chroma_settings = ChromaSettings(anonymized_telemetry=False)
        s = self.settings
        try:
            if s.uses_chroma_server:
                client = chromadb.HttpClient(
                    host=s.chroma_host or "127.0.0.1", port=s.chroma_port, ssl=s.chroma_ssl,
                    settings=chroma_settings,
                )
                client.heartbeat()
            else:
                s.chroma_path.mkdir(parents=True, exist_ok=True)
                client = chromadb.PersistentClient(path=str(s.chroma_path), settings=chroma_settings)
        except Exception as exc:
            raise StoreUnavailable(self._unreachable(exc)) from exc
        return client

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
            return self._client

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a Chroma call; a lost server becomes StoreUnavailable and the next call reconnects."""
        try:
            return fn(*args, **kwargs)
        except KnowledgeBaseError:
            raise
        except Exception as exc:
            if self.settings.uses_chroma_server and _looks_like_connection_error(exc):
                with self._lock:
                    self._client = None
                raise StoreUnavailable(self._unreachable(exc)) from exc
            raise

    def _collection(self, suffix: str) -> Any:
        name = f"{self.settings.collection}_{suffix}"
        # embedding_function=None: Chroma's default would download a model; we always pass vectors.
        return self._call(
            lambda: self.client.get_or_create_collection(
                name=name, embedding_function=None, metadata={"hnsw:space": "cosine"}
            )
        )

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
        return Manifest.from_json(got["documents"][0])

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
            metadatas=[{"generation": manifest.generation}],
        )

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
                sentence_ids.append(f"{cid}.s{j:03d}")
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
                     docs: Collection[str] | None = None) -> list[tuple[str, float]]:
        """Nearest live chunks: the best cosine of the chunk itself or any of its sentences.

        Orphans of an unfinished ingest (and chunks that are not candidates) are skipped, so a
        few more than ``k`` are asked for. ``docs`` limits the search to those documents
        through Chroma metadata filters (sentences carry their chunk's id).
        """
        scores: dict[str, float] = {}
        chunk_where: dict[str, Any] | None = None
        sentence_where: dict[str, Any] | None = None
        if docs is not None:
            chunk_where = {"doc": {"$in": sorted(docs)}}
            if not live:
                return []
            # A very wide scope would exceed SQLite's variable limit; there the live filter below suffices.
            sentence_where = {"chunk_id": {"$in": sorted(live)}} if len(live) <= 5000 else None
        got = self._call(self.chunks_collection().query, query_embeddings=[vector], n_results=k + 16,
                         where=chunk_where, include=["distances"])
        for cid, dist in zip(got["ids"][0], got["distances"][0], strict=True):
            scores[cid] = 1.0 - dist
        got = self._call(self.sentences_collection().query, query_embeddings=[vector], n_results=4 * k + 16,
                         where=sentence_where, include=["distances", "metadatas"])
        for meta, dist in zip(got["metadatas"][0], got["distances"][0], strict=True):
            cid = meta["chunk_id"]
            scores[cid] = max(scores.get(cid, -1.0), 1.0 - dist)
        ranked = sorted(((cid, sim) for cid, sim in scores.items() if cid in live), key=lambda item: -item[1])
        return ranked[:k]

    def _max_batch(self) -> int:
        try:
            return int(self.client.get_max_batch_size())
        except Exception:
            return 1000

    # --- views for readers -----------------------------------------------------------
    def view_cache_path(self, generation: int) -> Path:
        return self.settings.cache_dir / f"{self.settings.collection}-g{generation}.npz"

    def build_view(self, manifest: Manifest, chunks: dict[str, Chunk]) -> IndexView:
        ids = manifest.live_ids()
        bm25 = BM25Index.build(ids, [tokenize(chunks[cid].index_text()) for cid in ids])
        return IndexView(manifest=manifest, chunks={cid: chunks[cid] for cid in ids}, bm25=bm25)

    def save_view(self, view: IndexView) -> None:
        path = self.view_cache_path(view.generation)
        view.bm25.save(path)
        table = {cid: asdict(chunk) for cid, chunk in view.chunks.items()}
        _write_atomic(path.with_suffix(".chunks.json"), json.dumps(table, ensure_ascii=False))

    def _load_cached_view(self, manifest: Manifest) -> IndexView | None:
        path = self.view_cache_path(manifest.generation)
        table_path = path.with_suffix(".chunks.json")
        if not (path.exists() and table_path.exists()):
            return None
        try:
            table = json.loads(table_path.read_text(encoding="utf-8"))
            bm25 = BM25Index.load(path)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("Ignoring unreadable index cache %s (%s); rebuilding it", path, exc)
            return None
        if bm25.ids != manifest.live_ids():
            return None
        return IndexView(manifest=manifest, chunks={k: Chunk(**v) for k, v in table.items()}, bm25=bm25)

    def view(self) -> IndexView:
        """The current generation's view, reloaded when another process has committed a new one."""
        manifest = self.read_manifest()
        if manifest is None or not manifest.docs:
            raise IndexMissing(
                f"The knowledge base in the {self.location} is empty. "
                "Run the ingest first: python -m ingest"
            )
        with self._lock:
            if self._view is not None and self._view.generation == manifest.generation:
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
        prefix = f"{self.settings.collection}-g"
        if not self.settings.cache_dir.exists():
            return
        for path in self.settings.cache_dir.glob(f"{prefix}*"):
            generation = path.name[len(prefix):].split(".", 1)[0]
            if generation.isdigit() and int(generation) != keep_generation:
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


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
