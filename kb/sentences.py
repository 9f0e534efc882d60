"""Splitting text into sentences and table rows, with offsets, for indexing, quoting and extraction."""

from __future__ import annotations

import re
from dataclasses import dataclass

SENTENCE_END = "。！？；!?;"
# A citation mark right after a sentence end belongs to that sentence: "…显存。[1]". Citation
# numbers have one or two digits, so a matrix shape such as "[5, 4096]" is text, not a citation.
CITATION_MARK = re.compile(
    r"\s*(?:\[\s*\d{1,2}(?:\s*[,，、\-–]\s*\d{1,2})*\s*\]|【\s*\d{1,2}(?:\s*[,，、]\s*\d{1,2})*\s*】)(?!\d)"
)
# Words whose trailing "." does not end a sentence; the one list for the sentence splitter here
# and the chunker's sentence ends (ingest/chunking.py).
ABBREVIATIONS = frozenset(
    "vs etc e.g i.e eg ie mr mrs ms dr prof fig figs no nos vol inc ltd co corp jr sr st "
    "approx cf al eq sec ch pp p.s a.k.a u.s".split()
)
_WORD_BEFORE_DOT = re.compile(r"(?:[A-Za-z]+(?:\.[A-Za-z]+)*|[0-9]+)$")
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{2,}")


@dataclass(frozen=True)
class Span:
    start: int  # offsets into the text that was split
    end: int
    text: str
    is_table_row: bool = False
    is_heading: bool = False  # a Markdown heading line: a label, not a statement


def split_sentences(text: str) -> list[Span]:
    """Sentences (and table rows, one per row) with offsets; citation marks stay with their sentence."""
    spans: list[Span] = []
    pos = 0
    for line in text.splitlines(keepends=True):
        line_start, stripped = pos, line.strip()
        pos += len(line)
        if not stripped or _TABLE_SEPARATOR.match(stripped):
            continue
        offset = line_start + line.index(stripped)
        if stripped.startswith("|"):
            spans.append(Span(offset, offset + len(stripped), stripped, is_table_row=True))
            continue
        if stripped.startswith("#"):
            spans.append(Span(offset, offset + len(stripped), stripped, is_heading=True))
            continue
        spans.extend(sentences_in_line(line, line_start))
    return spans


def sentences_in_line(line: str, base: int = 0, ends: str = SENTENCE_END) -> list[Span]:
    """The sentences of one line of prose, offsets from ``base``; ``ends``: the characters that end one
    (besides "." before a space that follows no abbreviation or number)."""
    spans: list[Span] = []
    start = 0
    i = 0
    n = len(line)
    while i < n:
        ch = line[i]
        end_here = ch in ends or (
            ch == "." and (i + 1 == n or line[i + 1].isspace()) and not _abbreviation_or_number(line, i)
        )
        if end_here:
            j = i + 1
            mark = CITATION_MARK.match(line, j)
            while mark:
                j = mark.end()
                mark = CITATION_MARK.match(line, j)
            spans.append(_trimmed(line, start, j, base))
            start = i = j
            continue
        i += 1
    if line[start:].strip():
        spans.append(_trimmed(line, start, n, base))
    return [s for s in spans if s.text]


def _abbreviation_or_number(line: str, dot: int) -> bool:
    # "e.g." and "a.k.a." are dotted words: the whole "e.g" is looked up, not just its last letter.
    word = _WORD_BEFORE_DOT.search(line, max(0, dot - 24), dot)
    return bool(word) and (word.group().isdigit() or word.group().lower() in ABBREVIATIONS)


def _trimmed(line: str, start: int, end: int, base: int) -> Span:
    piece = line[start:end]
    lead = len(piece) - len(piece.lstrip())
    text = piece.strip()
    return Span(base + start + lead, base + start + lead + len(text), text)
