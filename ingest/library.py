"""The Documents service: list, add, delete and re-index the files of the knowledge base.

The chat UI's Documents tab and the HTTP API call this one class. Every change to the index
goes through ``ingest.pipeline.run_ingest`` (the code behind ``python -m ingest``), so an
upload is atomic, never duplicates chunks, and the previous index keeps answering until the
new manifest is committed.

File changes are made so that nothing is lost when the ingest cannot run (another ingest holds
the lock past the wait): a new file is removed again, a replaced file gets its old bytes back, a
deleted file comes back. The caller is told "busy, try again".
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.callbacks.base_handler import BaseCallbackHandler

from ingest.pipeline import IngestError, IngestReport, chunk_document, run_ingest
from ingest.reader import SUPPORTED_SUFFIXES, Candidate, Skipped, decode_text, discover, read_document
from kb.chunk import page_at
from kb.disk import free_text, out_of_space
from kb.errors import ActionError, KbqaError
from kb.index import KnowledgeBase, Manifest
from kb.records import Record
from kb.settings import Settings

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
CONFLICT_CHOICES = ("error", "replace", "keep_both")
MAX_NAME_CHARS = 120
# Characters kept in a stored name besides letters and digits (any script).
_NAME_PUNCTUATION = set("-_.()+,=@")
_COPY_SUFFIX = re.compile(r"^(?P<stem>.*?) \((?P<n>\d+)\)$")
# Magic numbers of the binary formats ingest reads: a file that claims the type must start so.
_MAGIC = {".pdf": b"%PDF", ".docx": b"PK\x03\x04"}


class DocumentError(ActionError):
    """A document action that cannot be done; ``status`` is the HTTP status it maps to."""


@dataclass
class DocumentInfo(Record):
    name: str  # path relative to its folder, forward slashes (what Passage.doc shows)
    kind: str  # "md", "pdf", ...
    size: int
    chunks: int  # 0 when skipped
    indexed_at: float | None
    skipped: str | None  # reason, when the file is in the folder but not indexed


@dataclass
class UploadResult(Record):
    name: str  # the stored (sanitised) name
    status: str  # "added" | "replaced" | "kept_both" | "unchanged"
    chunks: int
    message: str


@dataclass
class ReindexResult(Record):
    name: str | None
    generation: int
    documents: int
    chunks: int
    message: str


def sanitize_filename(filename: str) -> str:
    """A safe single-component file name: no folders, no hidden files, no control characters.

    Letters and digits of every script are kept (Chinese names stay readable); anything else,
    emoji and whitespace included, becomes "_".
    """
    raw = unicodedata.normalize("NFC", str(filename or "")).replace("\x00", "")
    base = re.split(r"[\\/]", raw)[-1].strip()
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, ""
    suffix = "".join(ch for ch in suffix.lower() if ch.isascii() and ch.isalnum())
    cleaned = "".join(ch if ch.isalnum() or ch in _NAME_PUNCTUATION else "_" for ch in stem)
    stem = re.sub(r"_+", "_", cleaned).strip("._ ")[: MAX_NAME_CHARS - len(suffix) - 1].rstrip("._ ") or "document"
    return f"{stem}.{suffix}" if suffix else stem


class _EmbedProgress(BaseCallbackHandler):
    """Counts texts embedded, from llama-index's embedding events, to report progress."""

    def __init__(self, on_texts: Callable[[int], None]) -> None:
        super().__init__(event_starts_to_ignore=[], event_ends_to_ignore=[])
        self._on_texts = on_texts

    def on_event_start(self, event_type: CBEventType, payload: dict[str, Any] | None = None,
                       event_id: str = "", parent_id: str = "", **kwargs: Any) -> str:
        return event_id

    def on_event_end(self, event_type: CBEventType, payload: dict[str, Any] | None = None,
                     event_id: str = "", **kwargs: Any) -> None:
        if event_type == CBEventType.EMBEDDING and payload:
            self._on_texts(len(payload.get(EventPayload.CHUNKS) or []))

    def start_trace(self, trace_id: str | None = None) -> None:
        return None

    def end_trace(self, trace_id: str | None = None, trace_map: dict[str, list[str]] | None = None) -> None:
        return None


class Library:
    """The documents of one knowledge base (its docs folder, plus the uploads folder if set apart)."""

    # One change at a time per process; other processes are kept out by the ingest lock.
    _locks: ClassVar[dict[str, threading.Lock]] = {}
    _locks_guard: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, settings: Settings, *, busy_wait: float = 60.0) -> None:
        self.settings = settings
        self.busy_wait = busy_wait
        self._embedding: Any = None
        key = str(settings.data_dir.resolve())
        with Library._locks_guard:
            self._lock = Library._locks.setdefault(key, threading.Lock())

    # --- folders --------------------------------------------------------------------
    @property
    def docs_dir(self) -> Path:
        return self.settings.docs_dir

    @property
    def uploads_dir(self) -> Path:
        return self.settings.uploads_dir or self.settings.docs_dir

    @property
    def roots(self) -> list[Path]:
        """The folders ingested: the docs folder, and the uploads folder when it is not inside it."""
        roots = [self.docs_dir]
        up = self.uploads_dir.resolve()
        docs = self.docs_dir.resolve()
        if up != docs and docs not in up.parents:
            roots.append(self.uploads_dir)
        return roots

    def _upload_name(self, filename: str) -> str:
        """The document name a file stored in the uploads folder gets (relative to its root)."""
        up, docs = self.uploads_dir.resolve(), self.docs_dir.resolve()
        if docs in up.parents:
            return f"{up.relative_to(docs).as_posix()}/{filename}"
        return filename

    # --- list -----------------------------------------------------------------------
    def manifest(self) -> Manifest:
        return KnowledgeBase(self.settings).read_manifest() or Manifest()

    def list(self) -> list[DocumentInfo]:
        """Indexed documents and, for files in the folders that are not indexed, the reason."""
        manifest = self.manifest()
        out: dict[str, DocumentInfo] = {}
        for name, entry in manifest.docs.items():
            source = Path(entry.source)
            out[name] = DocumentInfo(
                name=name, kind=_kind(name), size=entry.size, chunks=entry.chunks, indexed_at=entry.ingested_at,
                skipped=None if source.exists() else "the file was removed from the folder; re-index to drop it",
            )
        max_bytes = self.max_bytes()
        for root in self.roots:
            if not root.exists():
                continue
            candidates, skipped = discover([root])
            for item in skipped:
                name = item.path.resolve().relative_to(root.resolve()).as_posix()
                out.setdefault(name, DocumentInfo(name, _kind(name), _size(item.path), 0, None, item.reason))
            for cand in candidates:
                if cand.name in manifest.docs:
                    continue
                result = read_document(cand, max_bytes)
                reason = result.reason if isinstance(result, Skipped) else "not indexed yet; re-index to add it"
                out[cand.name] = DocumentInfo(cand.name, _kind(cand.name), _size(cand.path), 0, None, reason)
        return [out[name] for name in sorted(out)]

    def get(self, name: str) -> DocumentInfo:
        for info in self.list():
            if info.name == name:
                return info
        raise DocumentError(f"No document named {name!r} in the library.", status=404)

    def path_of(self, name: str) -> Path:
        """The file behind a document name; never a path outside the library's folders."""
        entry = self.manifest().docs.get(name)
        candidates = [Path(entry.source)] if entry else []
        candidates += [root / name for root in self.roots]
        for path in candidates:
            resolved = path.resolve()
            if any(_inside(resolved, root.resolve()) for root in self.roots) and resolved.is_file():
                return resolved
        raise DocumentError(f"No document named {name!r} in the library.", status=404)

    # --- add ------------------------------------------------------------------------
    def add(
        self,
        filename: str,
        data: bytes | BinaryIO,
        *,
        on_conflict: str = "error",
        progress: Progress | None = None,
    ) -> UploadResult:
        """Store one uploaded file under a sanitised name and index it.

        The size limit and the type are checked before anything is written; the write is
        atomic (a hidden temporary file renamed into place); a name that exists is an error
        unless ``on_conflict`` says "replace" or "keep_both".
        """
        report = progress or _no_progress
        if on_conflict not in CONFLICT_CHOICES:
            raise DocumentError(f"on_conflict must be one of {', '.join(CONFLICT_CHOICES)}, not {on_conflict!r}.")
        safe = sanitize_filename(filename)
        suffix = Path(safe).suffix.lower()
        if suffix not in SUPPORTED_SUFFIXES:
            kinds = ", ".join(sorted(SUPPORTED_SUFFIXES))
            raise DocumentError(
                f"{filename!r}: file type {suffix or '(none)'} is not supported; upload one of {kinds}.", status=400
            )
        raw = self._read_limited(filename, data)
        _check_content(filename, suffix, raw)
        report(0.02, f"Checked {safe} ({len(raw):,} bytes)")

        with self._exclusive(report):
            self.uploads_dir.mkdir(parents=True, exist_ok=True)
            target = self.uploads_dir / safe
            status = "added"
            backup: Path | None = None
            if target.exists():
                if _sha(target.read_bytes()) == _sha(raw):
                    name = self._upload_name(safe)
                    indexed = self.manifest().docs.get(name)
                    if indexed and indexed.sha256 == _sha(raw):
                        return UploadResult(name, "unchanged", indexed.chunks,
                                            f"{name} is already in the library with the same content.")
                    status = "replaced"  # same bytes on disk but not indexed yet: index it now
                elif on_conflict == "error":
                    raise DocumentError(
                        f"A document named {safe!r} already exists. Choose to replace it or to keep both.", status=409
                    )
                elif on_conflict == "replace":
                    status = "replaced"
                    backup = target.with_name(f".{safe}.{uuid.uuid4().hex[:8]}.bak")
                    os.link(target, backup)
                else:
                    status = "kept_both"
                    target = self._free_name(target)
            name = self._upload_name(target.name)
            created = not target.exists()
            try:
                _write_atomic(target, raw, exclusive=created)
            except BaseException:  # the file in place is as it was: only the backup link goes
                if backup is not None:
                    backup.unlink(missing_ok=True)
                raise
            report(0.05, f"Saved {name}")
            try:
                ingest = self._ingest(report, expected=self._expected_texts(target, name))
            except BaseException:
                # Leave the folder as it was, so the file on disk and the index agree.
                if backup is not None:
                    os.replace(backup, target)
                elif created:
                    target.unlink(missing_ok=True)
                raise
            finally:
                if backup is not None:
                    backup.unlink(missing_ok=True)
        entry = self.manifest().docs.get(name)
        if entry is None:
            reason = next((s.reason for s in ingest.skipped if s.path.resolve() == target.resolve()), "no text to index")
            return UploadResult(name, status, 0, f"{name} was saved but not indexed: {reason}.")
        verb = {"added": "Added", "replaced": "Replaced", "kept_both": "Added (kept both)"}[status]
        return UploadResult(name, status, entry.chunks,
                            f"{verb} {name}: {entry.chunks} chunks, indexed in {ingest.seconds:.1f} s.")

    # --- delete ---------------------------------------------------------------------
    def delete(self, name: str) -> None:
        """Remove the file and its chunks (Chroma and BM25) through a normal ingest."""
        path = self.path_of(name)
        with self._exclusive(_no_progress):
            hidden = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.deleting")
            os.replace(path, hidden)  # hidden files are not ingested; the rename is atomic
            try:
                self._ingest(_no_progress)
            except BaseException:
                os.replace(hidden, path)
                raise
            hidden.unlink(missing_ok=True)
        log.info("Deleted %s", name)

    # --- re-index -------------------------------------------------------------------
    def reindex(self, name: str | None = None, progress: Progress | None = None, *,
                rebuild: bool = False) -> ReindexResult:
        """Bring the index in line with the folders (one name: check it exists first).

        Unchanged files are not embedded again (the ingest compares their bytes); ``rebuild``
        re-embeds everything.
        """
        report = progress or _no_progress
        if name is not None:
            self.path_of(name)
        with self._exclusive(report):
            result = self._ingest(report, rebuild=rebuild)
        if name is None:
            message = result.summary().splitlines()[1]
        elif name in result.added or name in result.updated:
            message = f"Re-indexed {name}."
        else:
            message = f"{name} is up to date (its file has not changed)."
        return ReindexResult(name, result.generation, result.documents, result.chunks, message)

    # --- internals ------------------------------------------------------------------
    def max_bytes(self) -> int:
        return int(self.settings.max_doc_mb * 1e6)

    def _read_limited(self, filename: str, data: bytes | BinaryIO) -> bytes:
        limit = self.max_bytes()
        stream = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
        raw = stream.read(limit + 1)  # never more than the limit plus one byte in memory
        if len(raw) > limit:
            raise DocumentError(
                f"{filename!r} is over the {self.settings.max_doc_mb:g} MB limit (KBQA_MAX_DOC_MB); nothing was saved.",
                status=413,
            )
        if not raw:
            raise DocumentError(f"{filename!r} is empty (0 bytes); nothing was saved.", status=400)
        return bytes(raw)

    def _free_name(self, target: Path) -> Path:
        stem, suffix = target.stem, target.suffix
        match = _COPY_SUFFIX.match(stem)
        base, n = (match["stem"], int(match["n"])) if match else (stem, 1)
        while True:
            n += 1
            candidate = target.with_name(f"{base} ({n}){suffix}")
            if not candidate.exists():
                return candidate

    @contextmanager
    def _exclusive(self, report: Progress) -> Iterator[None]:
        """This process's one-at-a-time lock; a second caller waits (and is told so)."""
        if not self._lock.acquire(blocking=False):
            report(0.01, "Waiting for another upload or re-index to finish…")
            if not self._lock.acquire(timeout=self.busy_wait):
                raise DocumentError(
                    "The library is busy with another upload or re-index; try again in a moment.", status=409
                )
        try:
            yield
        finally:
            self._lock.release()

    def _embedding_pair(self) -> Any:
        if self._embedding is None:
            from kb.embeddings import load_embedding, upload_threads

            # Questions keep being answered while an upload embeds: leave them a core.
            self._embedding = load_embedding(self.settings, threads=upload_threads())
        return self._embedding

    def _expected_texts(self, path: Path, name: str) -> int:
        doc = read_document(Candidate(path.resolve(), name), self.max_bytes())
        if isinstance(doc, Skipped):
            return 0
        chunks = chunk_document(doc, self.settings)
        units = sum(len(c.sentence_units()) for c in chunks) if self.settings.sentence_vectors else 0
        return len(chunks) + units

    def _ingest(self, report: Progress, *, expected: int = 0, rebuild: bool = False) -> IngestReport:
        """Run the ingest over the library's folders, waiting while another process holds its lock."""
        report(0.08, "Loading the embedding model…")
        emb, info = self._embedding_pair()
        done = 0

        def on_texts(n: int) -> None:
            nonlocal done
            done += n
            if expected:
                report(0.1 + 0.85 * min(done / expected, 1.0), f"Embedding: {min(done, expected)}/{expected} texts")
            else:
                report(0.5, f"Embedding: {done} texts")

        handler = _EmbedProgress(on_texts)
        emb.callback_manager.add_handler(handler)
        deadline = time.monotonic() + self.busy_wait
        try:
            while True:
                try:
                    report(0.1, "Reading and chunking…")
                    result = run_ingest(self.settings, self.roots, rebuild=rebuild, embedding=(emb, info))
                    break
                except IngestError as exc:
                    if "Another ingest is running" not in str(exc) or time.monotonic() > deadline:
                        if "Another ingest is running" in str(exc):
                            raise DocumentError(
                                "Another ingest is running on this knowledge base; nothing was changed. "
                                "Try again when it has finished.", status=409,
                            ) from exc
                        raise
                    report(0.05, "Waiting for another ingest to finish…")
                    time.sleep(0.5)
        finally:
            emb.callback_manager.remove_handler(handler)
        report(1.0, "Indexed")
        return result


PAGED_SUFFIXES = (".pdf",)


class DocumentTexts:
    """A document's text as ingest reads it (chunk offsets point into it), cached per file version."""

    def __init__(self, library: Library) -> None:
        self.library = library
        self._cache: dict[str, tuple[tuple[int, int], str]] = {}
        self._lock = threading.Lock()

    def text(self, name: str) -> str:
        path = self.library.path_of(name)
        stat = path.stat()
        key = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            cached = self._cache.get(name)
            if cached and cached[0] == key:
                return cached[1]
        doc = read_document(Candidate(path, name), self.library.max_bytes())
        if isinstance(doc, Skipped):
            raise DocumentError(f"{name} cannot be read now: {doc.reason}", status=409)
        with self._lock:
            self._cache[name] = (key, doc.text)
        return doc.text

    def page_of(self, name: str, offset: int) -> int | None:
        """1-based page of an offset in a PDF; None for documents without pages (or unreadable now)."""
        if not name.lower().endswith(PAGED_SUFFIXES):
            return None
        try:
            return page_at(self.text(name), offset) or 1
        except KbqaError:
            return None


def _no_progress(fraction: float, message: str) -> None:
    return None


def _kind(name: str) -> str:
    return Path(name).suffix.lower().lstrip(".") or "(none)"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _sha(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _check_content(filename: str, suffix: str, raw: bytes) -> None:
    """Refuse, before writing, a file whose bytes are not the type its name claims."""
    magic = _MAGIC.get(suffix)
    if magic is not None:
        if magic not in raw[:1024]:
            raise DocumentError(f"{filename!r} is not a {suffix[1:].upper()} file (its content does not match).")
        return
    decoded = decode_text(raw)
    if isinstance(decoded, Skipped):
        raise DocumentError(f"{filename!r} {decoded.reason}; nothing was saved.")
    if not decoded.strip():
        raise DocumentError(f"{filename!r} has no text; nothing was saved.")


def _write_atomic(target: Path, raw: bytes, *, exclusive: bool) -> None:
    """Write to a hidden temporary file and move it into place, so no reader sees half a file.

    ``exclusive``: the name must still be free (``link`` fails if a file appeared meanwhile).
    """
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        with open(tmp, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        if exclusive:
            try:
                os.link(tmp, target)
            except FileExistsError as exc:
                raise DocumentError(f"A document named {target.name!r} appeared meanwhile; try again.", 409) from exc
        else:
            os.replace(tmp, target)
    except OSError as exc:
        if not out_of_space(exc):
            raise
        raise DocumentError(
            f"Could not save {target.name!r} ({len(raw):,} bytes) in {target.parent}: the disk is full "
            f"({free_text(target.parent)}). Nothing was changed.", status=507,
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
