"""Knowledge bases the eval builds for itself, apart from the user's own.

- The dev corpus (``eval/corpora/dev/docs`` and the seed document) gets a data folder of its own under
  ``<data_dir>/eval-kb/``, named by a hash of everything that shapes its index: the documents' bytes,
  the settings that change chunks or vectors, and the source of ``ingest/`` and ``kb/``. A later run
  with the same hash reuses it without reading a file; any change builds a new folder (embedding the
  corpus takes minutes on two cores, so never needlessly). Vectors go through the shared vector cache,
  so a new folder re-embeds only texts that were never embedded.
- A user's folder (``python -m eval --gold FILE --docs DIR``) is built in a temporary data folder that
  is removed afterwards.

``documents()`` reads a corpus the way ingest reads it, so gold evidence is looked up in the same text
the chunks' offsets point into.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ingest.pipeline import run_ingest
from ingest.reader import SourceDocument, discover, read_document
from kb.embeddings import shared_embedding
from kb.settings import Settings
from kb.vector_cache import DEFAULT_NAME

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
DEV_DOCS = ROOT / "eval" / "corpora" / "dev" / "docs"
SEED_DOC = ROOT / "kb" / "docs" / "llm-primer.md"
# Code whose change can change the chunks or the stored index.
SHAPING_CODE = (ROOT / "ingest", ROOT / "kb")
# Settings whose change can change the chunks or the vectors.
SHAPING_SETTINGS = ("embed_model", "embed_runtime", "chunk_max_chars", "chunk_min_chars", "sentence_vectors",
                    "collection")
KEEP_FOLDERS = 3  # per corpus: older builds are removed


class CorpusError(ValueError):
    """A corpus folder that cannot be evaluated (missing, or no readable document)."""


@dataclass(frozen=True)
class Corpus:
    name: str
    roots: tuple[Path, ...]


DEV = Corpus("dev", (DEV_DOCS, SEED_DOC))
SPLIT_FILE = DEV_DOCS.parent / "SPLIT.md"


def split_documents(split: str) -> list[Path]:
    """The dev documents of one split, as written in SPLIT.md (the one place the split is decided)."""
    import re

    rows = re.findall(r"^\| (tune|test) \| `([^`]+)` \|", SPLIT_FILE.read_text(encoding="utf-8"), re.MULTILINE)
    chosen = [DEV_DOCS / doc for s, doc in rows if s == split]
    if not chosen:
        raise CorpusError(f"SPLIT.md names no {split} document")
    return chosen


def documents(roots: Sequence[Path]) -> dict[str, str]:
    """name -> text, as ingest names and reads them.

    A file ingest cannot read (an unsupported type) is still a document the user gave: its raw text is
    kept when it decodes as UTF-8, so questions about it count as misses instead of vanishing.
    """
    candidates, skipped = discover([Path(r) for r in roots])
    out: dict[str, str] = {}
    for candidate in candidates:
        doc = read_document(candidate, max_bytes=10**12)
        if isinstance(doc, SourceDocument):
            out[doc.name] = doc.text
    for item in skipped:
        path = Path(item.path)
        if path.is_file():
            try:
                out[_name(path, roots)] = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
    return out


def _name(path: Path, roots: Sequence[Path]) -> str:
    for root in map(Path, roots):
        if root.is_dir() and path.resolve().is_relative_to(root.resolve()):
            return path.resolve().relative_to(root.resolve()).as_posix()
    return path.name


def _code_digest() -> str:
    digest = hashlib.sha256()
    for folder in SHAPING_CODE:
        for path in sorted(folder.rglob("*.py")):
            digest.update(path.relative_to(ROOT).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def fingerprint(corpus: Corpus, settings: Settings) -> str:
    files = []
    candidates, _ = discover(list(corpus.roots))
    for candidate in candidates:
        files.append((candidate.name, hashlib.sha256(candidate.path.read_bytes()).hexdigest()))
    record = {"files": sorted(files), "settings": {k: str(getattr(settings, k)) for k in SHAPING_SETTINGS},
              "code": _code_digest()}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def kb_settings(base: Settings, data_dir: Path, docs_dir: Path) -> Settings:
    """``base`` pointed at another data folder: embedded Chroma, the base's vector cache shared."""
    cache = base.vector_cache or base.cache_dir / DEFAULT_NAME
    return base.model_copy(update={"data_dir": Path(data_dir), "docs_dir": Path(docs_dir),
                                   "vector_cache": Path(cache).resolve(), "chroma_host": None})


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One builder per corpus folder at a time; a second eval waits instead of failing on ingest's lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def ensure_dev_kb(base: Settings, corpus: Corpus = DEV) -> Settings:
    """Settings of the corpus's knowledge base, built first when nothing with the same fingerprint exists."""
    missing = [str(r) for r in corpus.roots if not r.exists()]
    if missing:
        raise CorpusError(f"The {corpus.name} corpus is missing: {', '.join(missing)}")
    key = fingerprint(corpus, base)
    home = base.data_dir / "eval-kb"
    folder = home / f"{corpus.name}-{key[:16]}"
    settings = kb_settings(base, folder, corpus.roots[0])
    ready = folder / "READY"
    with _locked(home / f".{corpus.name}.lock"):
        if ready.is_file() and ready.read_text().strip() == key:
            log.info("Reusing the %s knowledge base in %s", corpus.name, folder)
            return settings
        log.info("Building the %s knowledge base in %s (documents, settings or index code changed)",
                 corpus.name, folder)
        report = run_ingest(settings, list(corpus.roots), rebuild=True, embedding=shared_embedding(settings))
        log.info("%s", report.summary())
        ready.write_text(key + "\n")
        _prune(home, corpus.name, keep=folder)
    return settings


def _prune(home: Path, name: str, keep: Path) -> None:
    builds = sorted((p for p in home.glob(f"{name}-*") if p.is_dir() and p != keep),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    for old in builds[KEEP_FOLDERS - 1:]:
        shutil.rmtree(old, ignore_errors=True)


def build_folder_kb(base: Settings, docs_dir: Path, data_dir: Path) -> Settings:
    """A knowledge base of a user's folder in ``data_dir`` (a temporary folder the caller owns)."""
    docs_dir = Path(docs_dir)
    if not docs_dir.is_dir():
        raise CorpusError(f"--docs {docs_dir}: no such folder")
    if not documents([docs_dir]):
        raise CorpusError(f"--docs {docs_dir}: no readable document in it (Markdown, text, reStructuredText, ...)")
    settings = kb_settings(base, data_dir, docs_dir)
    report = run_ingest(settings, [docs_dir], embedding=shared_embedding(settings))
    log.info("%s", report.summary())
    return settings
