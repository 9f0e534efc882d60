"""Finding and reading documents: bytes on disk into text, or a reason why not."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kb.chunk import PDF_PAGE_JOIN

log = logging.getLogger(__name__)

MARKDOWN_SUFFIXES = {".md", ".markdown"}
TEXT_SUFFIXES = {".txt"}
RICH_SUFFIXES = {".pdf", ".html", ".htm", ".docx"}
SUPPORTED_SUFFIXES = MARKDOWN_SUFFIXES | TEXT_SUFFIXES | RICH_SUFFIXES
TEXT_ENCODINGS = ("utf-8-sig", "gb18030")


@dataclass(frozen=True)
class SourceDocument:
    name: str  # stable id: path relative to the folder it was found in
    path: Path
    text: str
    sha256: str  # of the raw bytes: any change to the file is a change
    size: int

    @property
    def is_markdown(self) -> bool:
        return self.path.suffix.lower() in MARKDOWN_SUFFIXES


@dataclass(frozen=True)
class Skipped:
    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class Candidate:
    path: Path
    name: str


def discover(paths: Iterable[Path]) -> tuple[list[Candidate], list[Skipped]]:
    """Files to read under the given files and folders, and the paths that were not usable."""
    found: list[Candidate] = []
    skipped: list[Skipped] = []
    for root in paths:
        if not root.exists():
            skipped.append(Skipped(root, "no such file or folder"))
        elif root.is_file():
            found.append(Candidate(root.resolve(), root.name))
        else:
            files = sorted(p for p in root.rglob("*") if p.is_file() and not _hidden(p.relative_to(root)))
            for path in files:
                if path.suffix.lower() in SUPPORTED_SUFFIXES:
                    found.append(Candidate(path.resolve(), path.relative_to(root).as_posix()))
                else:
                    skipped.append(Skipped(path, f"unsupported file type {path.suffix or '(none)'}"))
    return found, skipped


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def read_document(candidate: Candidate, max_bytes: int) -> SourceDocument | Skipped:
    path = candidate.path
    try:
        size = path.stat().st_size
        if size > max_bytes:
            return Skipped(
                path, f"{size / 1e6:.1f} MB is over the {max_bytes / 1e6:.0f} MB limit (KBQA_MAX_DOC_MB)"
            )
        raw = path.read_bytes()
    except OSError as exc:
        return Skipped(path, f"cannot be read ({exc.strerror or exc})")
    suffix = path.suffix.lower()
    if suffix in RICH_SUFFIXES:
        text_or_reason = _extract_rich(path)
    else:
        text_or_reason = decode_text(raw)
    if isinstance(text_or_reason, Skipped):
        return Skipped(path, text_or_reason.reason)
    if not text_or_reason.strip():
        return Skipped(path, "is empty (no text)")
    return SourceDocument(candidate.name, path, text_or_reason, hashlib.sha256(raw).hexdigest(), size)


def decode_text(raw: bytes) -> str | Skipped:
    """UTF-8, then GB18030 (common for Chinese files); binary content is refused, not guessed."""
    if b"\x00" in raw[:65536]:
        return Skipped(Path(), "looks binary (contains NUL bytes), not text")
    for encoding in TEXT_ENCODINGS:
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        if _mostly_control_characters(text):
            return Skipped(Path(), "looks binary (control characters), not text")
        if encoding != "utf-8-sig":
            log.info("Decoded as %s", encoding)
        return text
    return Skipped(Path(), "is neither UTF-8 nor GB18030 text")


def _mostly_control_characters(text: str) -> bool:
    sample = text[:4096]
    controls = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\n\r\t\f")
    return bool(sample) and controls / len(sample) > 0.05


def _extract_rich(path: Path) -> str | Skipped:
    """PDF, HTML and DOCX through llama-index's file readers."""
    from llama_index.readers.file import DocxReader, HTMLTagReader, PDFReader

    suffix = path.suffix.lower()
    reader = {".pdf": PDFReader, ".docx": DocxReader}.get(suffix)
    try:
        if reader is not None:
            docs = reader().load_data(file=path)
        else:
            docs = HTMLTagReader(tag="body").load_data(file=path)
    except Exception as exc:
        return Skipped(path, f"could not be parsed as {suffix[1:].upper()} ({type(exc).__name__}: {exc})")
    if suffix == ".pdf":
        # One reader document per page; the page breaks stay in the text so offsets give the page.
        return PDF_PAGE_JOIN.join(doc.text or "" for doc in docs)
    return "\n\n".join(doc.text for doc in docs if doc.text)
