"""Finding and reading documents: bytes on disk into text, or a reason why not."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ingest.frontmatter import parse_front_matter
from ingest.rst_tables import directive_tables_as_pipe_tables
from kb.chunk import PAGE_BREAK, PDF_PAGE_JOIN

log = logging.getLogger(__name__)

MARKDOWN_SUFFIXES = {".md", ".markdown", ".mdx"}
RST_SUFFIXES = {".rst", ".rest"}
TEXT_SUFFIXES = {".txt"}
RICH_SUFFIXES = {".pdf", ".html", ".htm", ".docx"}
SUPPORTED_SUFFIXES = MARKDOWN_SUFFIXES | RST_SUFFIXES | TEXT_SUFFIXES | RICH_SUFFIXES
PDF_MAGIC = b"%PDF-"
CONVERTED_TO_MARKDOWN = {".html", ".htm", ".docx"}  # read as the Markdown ingest/to_markdown.py writes

TextFormat = Literal["markdown", "rst", "text"]
TEXT_ENCODINGS = ("utf-8-sig", "gb18030")


@dataclass(frozen=True)
class SourceDocument:
    name: str  # stable id: path relative to the folder it was found in
    path: Path
    text: str
    sha256: str  # of the raw bytes: any change to the file is a change
    size: int
    metadata: dict[str, str] = field(default_factory=dict)  # YAML front matter of Markdown/MDX files

    @property
    def format(self) -> TextFormat:
        """How the text is structured: decides which chunker reads its outline."""
        suffix = self.path.suffix.lower()
        if suffix in MARKDOWN_SUFFIXES or suffix in CONVERTED_TO_MARKDOWN:
            return "markdown"
        if suffix in RST_SUFFIXES:
            return "rst"
        return "text"

    @property
    def is_markdown(self) -> bool:
        return self.format == "markdown"

    @property
    def title(self) -> str:
        return self.metadata.get("title", "")


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
        text_or_reason = _extract_rich(path, raw)
    else:
        text_or_reason = decode_text(raw)
    if isinstance(text_or_reason, Skipped):
        return Skipped(path, text_or_reason.reason)
    if not text_or_reason.strip():
        return Skipped(path, "is empty (no text)")
    metadata: dict[str, str] = {}
    if suffix in RST_SUFFIXES:
        text_or_reason = directive_tables_as_pipe_tables(text_or_reason)
    if suffix in MARKDOWN_SUFFIXES:
        front = parse_front_matter(text_or_reason)
        if front.end and not text_or_reason[front.end :].strip():
            return Skipped(path, "is empty (only YAML front matter, no text)")
        metadata = front.fields
    return SourceDocument(candidate.name, path, text_or_reason, hashlib.sha256(raw).hexdigest(), size, metadata)


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


def _extract_rich(path: Path, raw: bytes) -> str | Skipped:
    """PDF with pypdf; HTML and DOCX as Markdown (ingest/to_markdown.py), so their outline is read."""
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        return _extract_pdf(raw)
    from ingest.to_markdown import docx_to_markdown, html_to_markdown

    try:
        if suffix == ".docx":
            return docx_to_markdown(path)
        if b"\x00" in raw[:65536] and not raw.startswith((b"\xff\xfe", b"\xfe\xff")):  # NULs, and no UTF-16 BOM
            return Skipped(path, "looks binary (contains NUL bytes), not HTML")
        return html_to_markdown(raw)  # the parser decodes by the page's own charset (meta, BOM), else UTF-8
    except Exception as exc:  # a parser's own error types are many and undocumented
        return Skipped(path, f"could not be parsed as {suffix[1:].upper()} ({type(exc).__name__}: {exc})")


def _extract_pdf(raw: bytes) -> str | Skipped:
    """Text of every page, read once (llama-index's PDFReader retries three times and repeats
    pypdf's warnings each time; a file that is not a PDF deserves one clear line)."""
    import io

    import pypdf
    from pypdf.errors import PyPdfError

    if PDF_MAGIC not in raw[:1024]:
        return Skipped(Path(), "is not a valid PDF (no %PDF header; is it another kind of file renamed .pdf?)")
    try:
        with _quiet("pypdf"):
            reader = pypdf.PdfReader(io.BytesIO(raw))
            pages = [page.extract_text() or "" for page in reader.pages]
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        return Skipped(Path(), f"is not a valid PDF ({type(exc).__name__}: {exc})")
    # Every page, empty ones too, joined by a page break: a chunk's offset then tells its page.
    text = PDF_PAGE_JOIN.join(p.strip() for p in pages)
    if not text.replace(PAGE_BREAK, "").strip():
        return Skipped(Path(), "is a PDF without extractable text (a scan? run OCR first)")
    return text


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    # pypdf logs every recoverable oddity as a warning; the one outcome that matters is reported.
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


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


def is_emptied(path: Path) -> bool:
    """The file is there but holds no text (whitespace at most)."""
    try:
        if not path.is_file():
            return False
        text = decode_text(path.read_bytes())
    except OSError:
        return False
    return isinstance(text, str) and not text.strip()
