"""The unit of the knowledge base: a span of one document with its place in the outline."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from kb.sentences import split_sentences

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
    """

    doc: str  # path relative to the docs folder, with forward slashes
    section: str  # heading path, e.g. "大模型架构与核心技术 > 现代 LLM 核心技术 > KV Cache"
    text: str
    start: int
    end: int
    index: int = 0  # position of the chunk within its document
    context: str = ""

    def index_text(self) -> str:
        """What retrievers see: the heading path in front of the text."""
        parts = [self.section] if self.section else []
        if self.context:
            parts.append(self.context)
        parts.append(self.text)
        return "\n".join(parts)

    def to_metadata(self) -> dict[str, str | int]:
        return asdict(self)

    def sentence_units(self) -> list[str]:
        """Each sentence or table row with the heading path in front, embedded besides the whole chunk.

        A question usually targets one sentence; its embedding is not diluted by the rest
        of an 800-character chunk, which lifts dense retrieval of paraphrases and of
        English questions over Chinese text.
        """
        units = []
        for span in split_sentences(self.text):
            if len(_WORDISH.findall(span.text)) >= MIN_UNIT_CHARS:
                units.append(f"{self.section}\n{span.text}" if self.section else span.text)
        return units
