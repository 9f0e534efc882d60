"""The unit of the knowledge base: a span of one document with its place in the outline."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from kb.markup import clean_markup, prose_words
from kb.sentences import Span, split_sentences

HEADING_SEPARATOR = " > "
MIN_UNIT_CHARS = 6
_WORDISH = re.compile(r"[\w\u4e00-\u9fff]")
# PDF text keeps its page boundaries: pages are joined by a form feed on a line of its own
# (a blank line to the chunker), so a chunk's offset tells its page.
PAGE_BREAK = "\f"
PDF_PAGE_JOIN = "\n\f\n"


def page_at(text: str, offset: int) -> int | None:
    """1-based page of ``text[offset]`` when ``text`` has page breaks; None for a text without pages."""
    if PAGE_BREAK not in text:
        return None
    return text.count(PAGE_BREAK, 0, max(0, offset)) + 1


def page_text(text: str, page: int) -> tuple[int, int]:
    """(start, end) of 1-based ``page`` in ``text``; the whole text when it has no pages."""
    if PAGE_BREAK not in text:
        return 0, len(text)
    start = 0
    for _ in range(page - 1):
        found = text.find(PAGE_BREAK, start)
        if found < 0:
            return len(text), len(text)
        start = found + 1
    end = text.find(PAGE_BREAK, start)
    return start, len(text) if end < 0 else end


@dataclass(frozen=True)
class Chunk:
    """A contiguous span ``source[start:end]`` of a document.

    ``text`` is exactly that slice, so a citation can always point back at the file.
    ``context`` is text that is *not* in the span but is needed to read it (a table's
    header row when a long table is split); it is indexed, never quoted.
    ``searchable`` is False for a chunk that is only links, images or badges (a table of
    contents, a badge row): it stays in the knowledge base for citations, but is not a
    retrieval candidate on its own -- its link texts match questions it cannot answer.
    """

    doc: str  # path relative to the docs folder, with forward slashes
    section: str  # heading path, e.g. "大模型架构与核心技术 > 现代 LLM 核心技术 > KV Cache"
    text: str
    start: int
    end: int
    index: int = 0  # position of the chunk within its document
    context: str = ""
    searchable: bool = True

    def index_text(self) -> str:
        """What retrievers see: the heading path, the context, and the text without markup noise."""
        cached = self.__dict__.get("_index_text")
        if cached is None:
            parts = [self.section] if self.section else []
            if self.context:
                parts.append(clean_markup(self.context))
            parts.append(clean_markup(self.text))
            cached = "\n".join(p for p in parts if p)
            # Every retrieval builds nodes from it (a regex pass per candidate, ~9 ms a query): kept on
            # the instance, outside the dataclass fields, as it depends on nothing else.
            self.__dict__["_index_text"] = cached
        return cached

    def to_metadata(self) -> dict[str, str | int | bool]:
        """Every field, in types a Chroma record accepts."""
        return asdict(self)

    @classmethod
    def from_metadata(cls, meta: dict[str, Any], document: str | None = None) -> Chunk:
        """A chunk from :meth:`to_metadata`'s dict; also reads records written before ``text`` and
        ``searchable`` were stored (their text is the end of ``document``, after ``prefix_len``)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in meta.items() if k in known}
        if "text" not in values:
            if document is None:
                raise ValueError("a chunk record without its text needs the stored document")
            values["text"] = document[int(meta.get("prefix_len", 0)) :]
        return cls(
            doc=str(values["doc"]),
            section=str(values.get("section", "")),
            text=str(values["text"]),
            start=int(values["start"]),
            end=int(values["end"]),
            index=int(values.get("index", 0)),
            context=str(values.get("context", "")),
            searchable=bool(values.get("searchable", True)),
        )

    def sentence_units(self) -> list[str]:
        """Each sentence or table row with the heading path in front, embedded besides the whole chunk.

        A question usually targets one sentence; its embedding is not diluted by the rest
        of an 800-character chunk, which lifts dense retrieval of paraphrases and of
        English questions over Chinese text. Units that are only markup (a badge, a link) are left out.
        """
        return [f"{self.section}\n{unit}" if self.section else unit for _, unit in self._units()]

    def sentence_unit_starts(self) -> tuple[int, ...]:
        """Where each of :meth:`sentence_units` starts in ``text`` (unit j of the stored vectors)."""
        cached = self.__dict__.get("_unit_starts")
        if cached is None:
            # Every retrieval maps the dense search's sentence hits through it (~0.3 ms a chunk): kept
            # on the instance like index_text, as it depends on nothing else.
            cached = self.__dict__["_unit_starts"] = tuple(span.start for span, _ in self._units())
        return cached

    def _units(self) -> list[tuple[Span, str]]:
        if not self.searchable:
            return []
        units = []
        for span in split_sentences(self.text):
            if not prose_words(span.text):
                continue  # a badge, an image or a bare link
            unit = clean_markup(span.text)
            if len(_WORDISH.findall(unit)) >= MIN_UNIT_CHARS:
                units.append((span, unit))
        return units
