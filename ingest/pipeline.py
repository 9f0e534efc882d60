"""Ingest: documents on disk into the knowledge base (read, plan, then apply: chunk, embed, write, commit).

Only documents whose bytes changed are chunked and embedded again (``ingest.plan`` decides which);
the manifest is written last (see kb.index), so readers never see a half-done ingest.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from llama_index.core.embeddings import BaseEmbedding

from ingest.chunking import chunk_text, chunking_config
from ingest.plan import IngestPlan, Sources, plan
from ingest.reader import Skipped, SourceDocument, discover, is_emptied, read_document, unusable_entries
from kb.chunk import Chunk
from kb.embeddings import EmbeddingInfo, load_embedding, resolve_runtime
from kb.index import DocEntry, KnowledgeBase, KnowledgeBaseError, Manifest, StoreCorrupt, chunk_id
from kb.settings import Settings
from kb.vector_cache import cached_passage_embeddings

log = logging.getLogger(__name__)


class IngestError(KnowledgeBaseError):
    pass


@dataclass
class IngestReport:
    generation: int = 0
    documents: int = 0
    chunks: int = 0
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    emptied: list[str] = field(default_factory=list)  # among ``removed``: the file is there but has no text
    unchanged: list[str] = field(default_factory=list)
    moved_aside: Path | None = None  # where --rebuild put a damaged store
    embedded_chunks: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0
    embed_seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    def summary(self) -> str:
        lines = []
        if self.moved_aside:
            lines.append(f"The damaged store was moved aside to {self.moved_aside}; rebuilt from the documents.")
        emptied = f" ({len(self.emptied)} emptied: {', '.join(self.emptied)})" if self.emptied else ""
        lines += [
            f"Knowledge base generation {self.generation}: {self.documents} documents, {self.chunks} chunks.",
            f"This run: {len(self.added)} added, {len(self.updated)} updated, {len(self.removed)} removed{emptied}, "
            f"{len(self.unchanged)} unchanged; {self.embedded_chunks} chunks embedded "
            f"in {self.embed_seconds:.1f} s; {self.seconds:.2f} s in all.",
        ]
        if self.skipped:
            lines.append(f"Skipped {len(self.skipped)} file(s):")
            lines.extend(f"  - {item}" for item in self.skipped)
        return "\n".join(lines)


def chunk_document(doc: SourceDocument, settings: Settings) -> list[Chunk]:
    return chunk_text(doc.text, doc.name, doc.format, max_chars=settings.chunk_max_chars,
                      min_chars=settings.chunk_min_chars, title=doc.title)


@contextmanager
def ingest_lock(settings: Settings) -> Iterator[None]:
    """One ingest at a time per data folder; a second one is told so instead of racing."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.data_dir / "ingest.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise IngestError(f"Another ingest is running on {settings.data_dir}; wait for it to finish.") from exc
        yield


def run_ingest(
    settings: Settings,
    paths: Sequence[Path] | None = None,
    *,
    rebuild: bool = False,
    embedding: tuple[BaseEmbedding, EmbeddingInfo] | None = None,
) -> IngestReport:
    """Bring the knowledge base in line with the documents under ``paths`` (default: the docs folder)."""
    started = time.perf_counter()
    roots = [Path(p) for p in (paths or [settings.docs_dir])]
    with ingest_lock(settings):
        kb, current, moved_aside = _open_store(settings, rebuild=rebuild)
        sources, skipped = read_sources(roots, settings, indexed=[Path(e.source) for e in current.docs.values()])
        runtime = resolve_runtime(settings)
        todo = plan(current, sources, settings, runtime, rebuild=rebuild)
        if todo.redo_all and current.docs:
            log.info("Re-embedding everything (%s)", todo.redo_reason)
        report = IngestReport(
            generation=current.generation, moved_aside=moved_aside, skipped=skipped,
            added=list(todo.added), updated=list(todo.updated), removed=list(todo.removed),
            emptied=list(todo.emptied), unchanged=list(todo.unchanged),
        )
        if not todo.changed:
            return _finish(report, current, started)
        manifest = apply(kb, current, todo, settings, runtime, embedding=embedding, report=report)
        return _finish(report, manifest, started)


def _open_store(settings: Settings, *, rebuild: bool) -> tuple[KnowledgeBase, Manifest, Path | None]:
    """The store and its live manifest; with ``rebuild``, a damaged embedded store is moved aside first."""
    kb = KnowledgeBase(settings)
    try:
        # A writer must start from what is on disk now, not from this process's cached segments.
        kb.reopen()
        return kb, kb.read_manifest() or Manifest(), None
    except StoreCorrupt:
        if not rebuild or settings.uses_chroma_server:
            raise
        moved_aside = kb.move_aside()
        log.warning("The store at %s was damaged; moved it aside to %s and rebuilding it",
                    settings.chroma_path, moved_aside)
        kb.remove_stale_caches(keep_generation=-1)  # views of the damaged store's generations
        return kb, kb.read_manifest() or Manifest(), moved_aside


def read_sources(
    roots: Sequence[Path], settings: Settings, *, indexed: Sequence[Path] = ()
) -> tuple[Sources, list[Skipped]]:
    """Read every document under ``roots``; also the files passed over, each with its reason.

    ``indexed`` are the files the manifest was built from: of those that cannot be read now, the
    ones that are there but empty are retractions (see ``ingest.plan``).
    """
    candidates, skipped = discover(roots)
    skipped += unusable_entries(roots)
    max_bytes = int(settings.max_doc_mb * 1e6)
    documents: list[SourceDocument] = []
    for candidate in candidates:
        result = read_document(candidate, max_bytes)
        if isinstance(result, Skipped):
            skipped.append(result)
        else:
            documents.append(result)
    for item in skipped:
        log.warning("Skipped %s", item)
    if not candidates and not indexed:
        log.warning("No documents found in %s", ", ".join(map(str, roots)))
    unusable = frozenset(item.path.resolve() for item in skipped if item.path.exists())
    sources = Sources(
        documents=tuple(documents),
        roots=tuple(root.resolve() for root in roots),
        unusable=unusable,
        emptied=frozenset(path for path in indexed if path in unusable and is_emptied(path)),
    )
    return sources, skipped


def apply(
    kb: KnowledgeBase,
    current: Manifest,
    todo: IngestPlan,
    settings: Settings,
    runtime: str,
    *,
    embedding: tuple[BaseEmbedding, EmbeddingInfo] | None = None,
    report: IngestReport | None = None,
) -> Manifest:
    """Carry out ``todo``: embed and write the new chunks, then the view, commit the manifest, collect garbage.

    The manifest is committed last, so readers never see a half-done ingest. Returns it.
    """
    report = report if report is not None else IngestReport()
    generation = current.generation + 1
    new_docs = dict(todo.kept)
    new_chunks: dict[str, Chunk] = {}
    info: EmbeddingInfo | None = None
    if todo.to_embed:
        emb, info = embedding or load_embedding(settings)
        embed_started = time.perf_counter()
        for doc, chunks in _chunked(todo.to_embed, settings):
            key = _version_key(doc, generation)
            ids = [chunk_id(key, i) for i in range(len(chunks))]
            units = [chunk.sentence_units() if settings.sentence_vectors else [] for chunk in chunks]
            texts = [chunk.index_text() for chunk in chunks] + [u for per_chunk in units for u in per_chunk]
            # Texts embedded before by this model (an earlier chunking, another data folder) come from the cache.
            vectors, computed = cached_passage_embeddings(
                settings, info.model, info.runtime, texts,
                lambda missing: emb.get_text_embedding_batch(missing, show_progress=len(missing) > 16),
            )
            log.info("%s: embedded %d of %d texts (the rest from the vector cache)", doc.name, computed, len(texts))
            kb.add_chunks(ids, chunks, vectors[: len(chunks)], _regroup(vectors[len(chunks) :], units))
            new_chunks.update(zip(ids, chunks, strict=True))
            new_docs[doc.name] = DocEntry(
                sha256=doc.sha256, key=key, chunks=len(chunks), source=str(doc.path),
                size=doc.size, ingested_at=time.time(),
            )
            report.embedded_chunks += len(chunks)
        report.embed_seconds = time.perf_counter() - embed_started

    manifest = Manifest(
        generation=generation,
        embedding=_embedding_record(info, current, settings, runtime),
        chunking=chunking_config(settings),
        docs=dict(sorted(new_docs.items())),
        updated_at=time.time(),
    )
    kept_ids = [cid for cid in manifest.live_ids() if cid not in new_chunks]
    all_chunks = {**kb.load_chunks(kept_ids), **new_chunks}
    view = kb.build_view(manifest, all_chunks)
    kb.save_view(view)
    kb.exact_vectors(view)  # cached with the view: the first question after this ingest need not read them
    kb.commit(manifest, expected_generation=current.generation)
    _collect_garbage(kb, manifest)
    return manifest


def _chunked(docs: Sequence[SourceDocument], settings: Settings) -> Iterator[tuple[SourceDocument, list[Chunk]]]:
    for doc in docs:
        chunks = chunk_document(doc, settings)
        if chunks:
            yield doc, chunks
        else:
            log.warning("%s has no text to index after chunking", doc.name)


def _regroup(flat: list[list[float]], groups: list[list[str]]) -> list[list[list[float]]]:
    out, i = [], 0
    for group in groups:
        out.append(flat[i : i + len(group)])
        i += len(group)
    return out


def _version_key(doc: SourceDocument, generation: int) -> str:
    # The generation makes every re-embedded version's ids new, so its chunks never
    # overwrite the ones the live manifest still points at.
    digest = hashlib.sha256(f"{doc.name}\0{doc.sha256}".encode()).hexdigest()[:12]
    return f"g{generation}-{digest}"


def _embedding_record(
    info: EmbeddingInfo | None, current: Manifest, settings: Settings, runtime: str
) -> dict[str, object]:
    if info is not None:
        return {"model": info.model, "runtime": info.runtime, "dim": info.dim}
    if current.embedding:
        return current.embedding
    return {"model": settings.embed_model, "runtime": runtime, "dim": None}


def _collect_garbage(kb: KnowledgeBase, manifest: Manifest) -> None:
    """Delete chunks no manifest points at: replaced versions and orphans of killed runs."""
    live = set(manifest.live_ids())
    stale = kb.stored_ids() - live
    if stale:
        kb.delete_ids(stale)
        log.info("Removed %d replaced chunk(s)", len(stale))
    orphans = kb.orphan_sentence_ids(live)
    if orphans:
        kb.delete_sentence_ids(orphans)
    kb.remove_stale_caches(keep_generation=manifest.generation)


def _finish(report: IngestReport, manifest: Manifest, started: float) -> IngestReport:
    report.generation = manifest.generation
    report.documents = len(manifest.docs)
    report.chunks = sum(entry.chunks for entry in manifest.docs.values())
    report.seconds = time.perf_counter() - started
    return report
