"""The unit of the knowledge base: a span of one document with its place in the outline."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from kb.sentences import split_sentences

HEADING_SEPARATOR = " > "
MIN_UNIT_CHARS = 6
_WORDISH = re.compile(r"[\w\u4e00-\u9fff]")


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
