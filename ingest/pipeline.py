"""Ingest: documents on disk into the knowledge base (read, chunk, embed, write, commit).

Only documents whose bytes changed are chunked and embedded again; the manifest is
written last (see kb.index), so readers never see a half-done ingest.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import stat
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from llama_index.core.embeddings import BaseEmbedding

from ingest.chunking import CHUNKER_VERSION, chunk_text
from ingest.reader import Skipped, SourceDocument, decode_text, discover, read_document
from kb.chunk import Chunk
from kb.embeddings import EmbeddingInfo, load_embedding, resolve_runtime, vector_family
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


def chunking_config(settings: Settings) -> dict[str, int | bool | str]:
    return {
        "version": CHUNKER_VERSION,  # a hash of the chunker's constants: any change re-chunks
        "max_chars": settings.chunk_max_chars,
        "min_chars": settings.chunk_min_chars,
        "sentence_vectors": settings.sentence_vectors,
    }


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
        kb = KnowledgeBase(settings)
        moved_aside = None
        try:
            # A writer must start from what is on disk now, not from this process's cached segments.
            kb.reopen()
            current = kb.read_manifest() or Manifest()
        except StoreCorrupt:
            if not rebuild or settings.uses_chroma_server:
                raise
            moved_aside = kb.move_aside()
            log.warning("The store at %s was damaged; moved it aside to %s and rebuilding it",
                        settings.chroma_path, moved_aside)
            kb.remove_stale_caches(keep_generation=-1)  # views of the damaged store's generations
            current = kb.read_manifest() or Manifest()
        report = IngestReport(generation=current.generation, moved_aside=moved_aside)

        candidates, report.skipped = discover(roots)
        report.skipped += unusable_entries(roots)
        max_bytes = int(settings.max_doc_mb * 1e6)
        documents: list[SourceDocument] = []
        for candidate in candidates:
            result = read_document(candidate, max_bytes)
            if isinstance(result, Skipped):
                report.skipped.append(result)
            else:
                documents.append(result)
        for item in report.skipped:
            log.warning("Skipped %s", item)
        if not candidates and not current.docs:
            log.warning("No documents found in %s", ", ".join(map(str, roots)))

        runtime = resolve_runtime(settings)
        redo_all = rebuild or _config_changed(current, settings, runtime)
        if redo_all and current.docs:
            log.info("Re-embedding everything (%s)", "--rebuild" if rebuild else "embedding or chunking changed")

        new_docs: dict[str, DocEntry] = {}
        to_embed: list[SourceDocument] = []
        for doc in documents:
            old = current.docs.get(doc.name)
            if old and old.sha256 == doc.sha256 and not redo_all:
                new_docs[doc.name] = old
                report.unchanged.append(doc.name)
            else:
                to_embed.append(doc)
                (report.updated if old else report.added).append(doc.name)

        seen = {doc.name for doc in documents}
        skipped_paths = {item.path.resolve() for item in report.skipped if item.path.exists()}
        for name, entry in current.docs.items():
            if name in seen:
                continue
            source = Path(entry.source)
            if source in skipped_paths and _emptied(source):
                # Emptying a file is how people retract it: it goes like a deleted one, and is said so.
                report.removed.append(name)
                report.emptied.append(name)
            elif source in skipped_paths or not _covered(source, roots) or source.exists():
                # Unreadable now, outside this run's paths, or found under another name:
                # keep what is indexed rather than lose it.
                if source in skipped_paths:
                    log.warning("Keeping the indexed version of %s; the file on disk is not usable now", name)
                new_docs[name] = entry
            else:
                report.removed.append(name)

        if not (report.added or report.updated or report.removed or redo_all):
            return _finish(report, current, started)

        generation = current.generation + 1
        new_chunks: dict[str, Chunk] = {}
        info: EmbeddingInfo | None = None
        if to_embed:
            emb, info = embedding or load_embedding(settings)
            embed_started = time.perf_counter()
            for doc, chunks in _chunked(to_embed, settings):
                key = _version_key(doc, generation)
                ids = [chunk_id(key, i) for i in range(len(chunks))]
                units = [chunk.sentence_units() if settings.sentence_vectors else [] for chunk in chunks]
                texts = [chunk.index_text() for chunk in chunks] + [u for per_chunk in units for u in per_chunk]
                # Texts embedded before by this model (an earlier chunking, another data folder) come from the cache.
                vectors, computed = cached_passage_embeddings(
                    settings, info.model, info.runtime, texts,
                    lambda todo: emb.get_text_embedding_batch(todo, show_progress=len(todo) > 16),
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
        kb.save_view(kb.build_view(manifest, all_chunks))
        kb.commit(manifest, expected_generation=current.generation)
        _collect_garbage(kb, manifest)
        return _finish(report, manifest, started)


def _chunked(docs: list[SourceDocument], settings: Settings) -> Iterator[tuple[SourceDocument, list[Chunk]]]:
    for doc in docs:
        chunks = chunk_document(doc, settings)
        if chunks:
            yield doc, chunks
        else:
            log.warning("%s has no text to index after chunking", doc.name)


def unusable_entries(roots: Sequence[Path]) -> list[Skipped]:
    """Links and special files that the folder walk passes over without a word, each with its reason.

    Only ``lstat`` is used on them, never ``open``: opening a FIFO blocks until someone writes to it.
    """
    found: list[Skipped] = []
    for root in roots:
        if root.is_dir() and not root.is_symlink():
            for folder, dirs, files in os.walk(root, followlinks=False):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted([*dirs, *files]):
                    reason = _unusable(Path(folder) / name)
                    if reason and not name.startswith("."):
                        found.append(Skipped(Path(folder) / name, reason))
        elif root.is_symlink() or root.exists():
            reason = _unusable(root)
            if reason and not root.is_dir():
                found.append(Skipped(root, reason))
    return found


def _unusable(path: Path) -> str | None:
    try:
        mode = path.lstat().st_mode
    except OSError:
        return None
    if stat.S_ISLNK(mode):
        try:
            target = path.stat()
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return "symbolic link loop (the link points back at itself)"
            return f"dangling symbolic link (its target {os.readlink(path)!r} does not exist)"
        if stat.S_ISDIR(target.st_mode):
            return "symbolic link to a folder: not followed (it could loop); add the folder itself"
        return None if stat.S_ISREG(target.st_mode) else "symbolic link to something that is not a regular file"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe), not a regular file: not read, so the ingest never waits on it"
    if stat.S_ISSOCK(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a socket or device, not a regular file"
    return None


def _emptied(path: Path) -> bool:
    """The file is there but holds no text (whitespace at most)."""
    try:
        if not path.is_file():
            return False
        text = decode_text(path.read_bytes())
    except OSError:
        return False
    return isinstance(text, str) and not text.strip()


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


def _config_changed(current: Manifest, settings: Settings, runtime: str) -> bool:
    if not current.docs:
        return False
    recorded = current.embedding
    return (
        recorded.get("model") != settings.embed_model
        or vector_family(str(recorded.get("runtime"))) != vector_family(runtime)
        or current.chunking != chunking_config(settings)
    )


def _embedding_record(
    info: EmbeddingInfo | None, current: Manifest, settings: Settings, runtime: str
) -> dict[str, object]:
    if info is not None:
        return {"model": info.model, "runtime": info.runtime, "dim": info.dim}
    if current.embedding:
        return current.embedding
    return {"model": settings.embed_model, "runtime": runtime, "dim": None}


def _covered(source: Path, roots: Sequence[Path]) -> bool:
    for root in roots:
        root = root.resolve()
        if source == root or root in source.parents:
            return True
    return False


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
