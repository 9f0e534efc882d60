"""Splitting text into sentences and table rows, with offsets, for indexing, quoting and extraction."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, replace
from functools import lru_cache

from kb import markup
from kb.markup import table_separator

# Sentence ends for every splitter: CJK ones end a sentence wherever they stand, ASCII ones only
# before a space or the end of a line (not in 3.5 or a.b; nor after an abbreviation, see
# abbreviation_before). The chunker's sentence ends (ingest/chunking.py) use these.
CJK_ENDERS = "。！？；"
ASCII_ENDERS = ".!?"
# split_sentences also ends a sentence at an ASCII "!", "?" or ";" wherever it stands: kept so,
# because the extractive answers and the citation checks were measured with it.
SENTENCE_END = CJK_ENDERS + "!?;"

# --- citation marks ------------------------------------------------------------------------
# Citation numbers have one or two digits, so a matrix shape such as "[5, 4096]" is text, not a
# citation. A mark holds one number, a list ("1,2", "1、2") or a range ("1-3").
_CITED = r"\d{1,2}"
_LIST_OR_RANGE = rf"{_CITED}(?:\s*[,，、\-–]\s*{_CITED})*"
_LIST = rf"{_CITED}(?:\s*[,，、]\s*{_CITED})*"
# Two readings of the marks, on purpose. ANSWER_MARK reads what a model wrote, however it wrote
# it: [1]  [1,2]  [1-3]  【1】  ［1］, brackets mixed; it runs on answer text only, which
# ``normalize_marks`` then rewrites as plain "[n]". CITATION_MARK runs on any text that is split
# into sentences or stripped of marks, documents too, so it takes only well-formed marks ("[…]",
# or "【…】" without ranges), not followed by a digit, with the spaces before them: a mark right
# after a sentence end belongs to that sentence ("…显存。[1]").
ANSWER_MARK = re.compile(rf"[\[【［]\s*({_LIST_OR_RANGE})\s*[\]】］]")
CITATION_MARK = re.compile(rf"\s*(?:\[\s*{_LIST_OR_RANGE}\s*\]|【\s*{_LIST}\s*】)(?!\d)")
# The one form normalised answers hold (what the UI turns into links): "[n]".
PLAIN_MARK = re.compile(r"\[(\d{1,2})\]")
_RANGE = re.compile(r"(\d+)\s*[\-–]\s*(\d+)")


def cited_numbers(text: str) -> list[int]:
    """Every number cited in ``text`` (marks as a model writes them), in order of first appearance."""
    numbers: list[int] = []
    for mark in ANSWER_MARK.finditer(text):
        for part in re.split(r"[,，、]", mark.group(1)):
            part = part.strip()
            rng = _RANGE.fullmatch(part)
            values = range(int(rng.group(1)), int(rng.group(2)) + 1) if rng else [int(part)]
            numbers.extend(v for v in values if v not in numbers)
    return numbers


def normalize_marks(text: str, valid: int) -> str:
    """Rewrite every mark as ``[n]`` (one per number) and drop numbers that point at nothing."""

    def replace(mark: re.Match[str]) -> str:
        return "".join(f"[{n}]" for n in cited_numbers(mark.group(0)) if 1 <= n <= valid)

    return ANSWER_MARK.sub(replace, text)


def strip_citations(text: str) -> str:
    """``text`` without its citation marks (and the spaces before them)."""
    return CITATION_MARK.sub("", text).strip()


# --- sentences -----------------------------------------------------------------------------
# Words whose trailing "." does not end a sentence; the one list for the sentence splitter here
# and the chunker's sentence ends (ingest/chunking.py).
ABBREVIATIONS = frozenset(
    "vs etc e.g i.e eg ie mr mrs ms dr prof fig figs no nos vol inc ltd co corp jr sr st "
    "approx cf al eq sec ch pp p.s a.k.a u.s".split()
)
_WORD_BEFORE_DOT = re.compile(r"(?:[A-Za-z]+(?:\.[A-Za-z]+)*|[0-9]+)$")
# The whole row is matched: a line that only opens with dashes is prose ("--tp 8: 张量并行度", a CLI
# flag explained), which an extractive answer must be able to quote.
_TABLE_SEPARATOR = table_separator(first_dashes=2)


def _between_rows(stripped: str) -> bool:
    """A table's markup line between its rows: the |---| separator or a grid table's +---+ border."""
    return bool(_TABLE_SEPARATOR.match(stripped) or markup.GRID_BORDER_RE.match(stripped))


_URL = re.compile(r"https?://[^\s<>()\[\]（）【】，。！？；]+")


@dataclass(frozen=True)
class Span:
    start: int  # offsets into the text that was split
    end: int
    text: str
    is_table_row: bool = False
    is_heading: bool = False  # a Markdown heading line (or a <details> summary): a label, not a statement
    in_code: bool = False  # inside a fenced code block, where "#" starts a comment and "|" no table row


def split_sentences(text: str) -> list[Span]:
    """Sentences (and table rows, one per row) with offsets; citation marks stay with their sentence.

    Cached per text: an answer reads each passage's sentences several times (the refusal rule, the
    reorder, the scorer, the choice, the lead-in), about 30 splits a question before."""
    return list(_split_sentences(text))


@lru_cache(maxsize=1024)
def _split_sentences(text: str) -> tuple[Span, ...]:
    spans: list[Span] = []
    pos = 0
    lines = text.splitlines(keepends=True)
    underlines = _title_underlines(lines)
    fence = _open_fence_at_start(lines, underlines)  # the marker of the code block being read, if any
    literal: int | None = None  # the indent of the reStructuredText line that opened the code block being read
    html_rows = {m.start(): m.end() for m in markup.HTML_ROW_RE.finditer(text)}
    row_end = 0  # the end of the last HTML table row read: its other lines are in it
    running: Span | None = None  # the last sentence, when it runs on past the end of its line
    for number, line in enumerate(lines):
        line_start, stripped = pos, line.strip()
        pos += len(line)
        runs_on, running = running, None
        if line_start < row_end:
            continue
        if literal is not None and stripped and _indent(line) <= literal:
            literal = None  # back at the directive's indent: the block has ended
        if literal is not None:
            spans.extend(_code_spans(line, line_start))
            continue
        opening = markup.FENCE_RE.match(stripped)
        if fence and markup.closes_fence(stripped, fence):
            fence = ""
        elif number in underlines and not fence:
            continue  # the line under a title ("~~~~" in reStructuredText is no fence)
        elif opening and not fence:
            fence = opening.group(1)
        elif fence:
            spans.extend(_code_spans(line, line_start))
            continue
        if markup.opens_rst_code(line) and not fence:
            item = markup.LIST_ITEM_RE.match(line)  # in a list item the block ends back at the item's text
            literal = item.end() if item else _indent(line)
        if not stripped or _between_rows(stripped):
            continue
        offset = line_start + line.index(stripped)
        first_row = _html_row_in(line, offset - line_start, html_rows, line_start)
        if first_row is not None:
            rows = _html_rows_from(text, first_row, html_rows)
            spans.extend(Span(start, end, text[start:end], is_table_row=True) for start, end in rows)
            row_end = rows[-1][1]
            # What follows the last row on its line ("</table> See the notes below.") is prose again.
            line_end = text.find("\n", row_end)
            line_end = len(text) if line_end < 0 else line_end
            after = markup.HTML_TABLE_TAGS_PREFIX_RE.match(text, row_end, line_end).end()
            spans.extend(sentences_in_line(text[after:line_end], after))
            continue
        if markup.HTML_TABLE_TAGS_RE.match(stripped):
            continue
        if stripped.startswith("|"):
            spans.append(Span(offset, offset + len(stripped), stripped, is_table_row=True))
            continue
        if (stripped.startswith("#") or markup.DETAILS_SUMMARY_RE.match(stripped) or number + 1 in underlines
                or markup.is_bold_title(stripped) or markup.is_block_title(stripped) or _numbered_title(stripped)
                or markup.html_heading(stripped)):
            spans.append(Span(offset, offset + len(stripped), stripped, is_heading=True))
            continue
        in_line = sentences_in_line(line, line_start)
        if (runs_on is not None and in_line and in_line[0].end - runs_on.start <= _MAX_WRAPPED_CHARS
                and _continues(lines[number - 1], line)):
            # A paragraph wrapped at a fixed width (PDF text, reStructuredText, many READMEs): the sentence
            # the last line left open goes on here, and is one span.
            spans[-1] = Span(runs_on.start, in_line[0].end, text[runs_on.start : in_line[0].end])
            in_line = in_line[1:]
        spans.extend(in_line)
        if spans and spans[-1].end == offset + len(stripped) and not _LINE_ENDS_SENTENCE.search(stripped):
            running = spans[-1]
    return tuple(spans)


def _numbered_title(line: str) -> bool:
    """"（二）L1 与 L2 正则化": a line numbered in Chinese whose text reads as a title (short, not ended like a
    sentence or clause), as the chunker reads it in plain text; it heads the sentences after it."""
    match = markup.CN_NUMBERING_RE.match(line)
    if not match:
        return False
    rest = line[match.end() :].rstrip("*_ \t")
    title = " ".join(markup.clean_markup(rest).replace("**", "").replace("`", "").split())
    return 0 < len(title) <= _MAX_NUMBERED_TITLE and not rest.endswith(_TITLE_ENDS)


_MAX_NUMBERED_TITLE = 48
_TITLE_ENDS = tuple(CJK_ENDERS + ASCII_ENDERS + "，,、…;：:")


# A line whose last sentence is complete: it ends in a sentence end or a colon (closing quotes and
# brackets after it), or in a tag (an HTML line is no prose to run on).
_LINE_ENDS_SENTENCE = re.compile(r"(?:[.!?;:。！？；：…]|>)[\"'”’）)\]」』*_`]*$")


_MAX_WRAPPED_CHARS = 1000  # a sentence no longer than this runs on over lines (a page of unended lines is no sentence)
_MIN_WRAPPED_COLUMNS = 50  # a line this wide (a CJK character is two columns) may be wrapped; a shorter one is a title


def wraps_into(previous: str, line: str) -> bool:
    """Whether ``previous`` is a wrapped line of the paragraph that ``line``, the line after it, goes on
    (it ends in no sentence end, and ``line`` carries it on): how ``split_sentences`` joins a sentence."""
    return not _LINE_ENDS_SENTENCE.search(previous.strip()) and _continues(previous, line)


def _continues(previous: str, line: str) -> bool:
    """Whether ``line`` carries on the paragraph of ``previous``, the line before it (no blank line
    between): ``previous`` is as wide as wrapped lines are, not a title line, and ``line`` starts where
    its text does (a list item's wrapped lines are indented to the item's text), no list item, quote or
    alert, fence, HTML or table line of its own."""
    before, now = previous.strip(), line.strip()
    if before.startswith(">") != now.startswith(">") or markup.is_alert_marker(before):
        return False
    previous, line = _QUOTE_MARKS.sub("", previous), _QUOTE_MARKS.sub("", line)  # a quote's lines as its text
    before, now = previous.strip(), line.strip()
    if markup.LIST_ITEM_RE.match(line) or now.startswith(("<", "|", "[!")) or before.startswith(("<", "|")):
        return False
    if markup.FENCE_RE.match(line) or markup.FENCE_RE.match(previous) or _columns(before) < _MIN_WRAPPED_COLUMNS:
        return False
    item = markup.LIST_ITEM_RE.match(previous)
    return _indent(line) == (item.end() if item else _indent(previous))


_QUOTE_MARKS = re.compile(r"^[ \t]*(?:>[ \t]?)+")


def _columns(text: str) -> int:
    """How wide ``text`` is on screen: wide (East Asian) characters take two columns."""
    return len(text) + sum(1 for ch in text if unicodedata.east_asian_width(ch) in "WF")


def _title_underlines(lines: list[str]) -> set[int]:
    """The lines that underline the title above them, read from the top outside code. A run of "~" under
    a title is one too when longer than a fence usually is (reStructuredText underlines titles with it;
    Markdown opens code with "~~~"), unless the line above ends in a colon (then it introduces code)."""
    found: set[int] = set()
    first = 1
    if len(lines) > 1 and lines[0].strip() == "---" and ":" in lines[1]:  # YAML front matter: its "---" ends it
        first = next((n for n in range(1, len(lines)) if lines[n].strip() == "---"), 0) + 1
    fence = ""
    for number in range(first, len(lines)):
        under = lines[number].strip()
        opening = markup.FENCE_RE.match(under)
        if fence:
            if markup.closes_fence(under, fence):
                fence = ""
            continue
        title = lines[number - 1].rstrip("\r\n")
        introduces_code = title.rstrip().endswith((":", "："))
        if markup.underlines_title(title, under) and (
                not opening or (under[0] == "~" and len(under) > 3 and not introduces_code)):
            found.add(number)
        elif opening:
            fence = opening.group(1)
    return found


def _html_row_in(line: str, at: int, html_rows: dict[int, int], line_start: int) -> int | None:
    """Where the HTML table row that ``line`` (its text from ``at``) opens starts, if it opens one: at
    once, or after tags of the table (``<table><tr>``); a row after prose leaves the line prose."""
    head = line[at:]
    found = _ROW_OPEN.search(head)
    i = found.start() if found else -1
    if i < 0 or line_start + at + i not in html_rows:
        return None
    if i and not markup.HTML_TABLE_TAGS_RE.match(head[:i]):
        return None
    return line_start + at + i


_BLANK = re.compile(r"\s*")
_ROW_OPEN = re.compile(r"<tr\b", re.IGNORECASE)


def _html_rows_from(text: str, start: int, html_rows: dict[int, int]) -> list[tuple[int, int]]:
    """The HTML table rows from ``start`` on, one after another while only white space stands between."""
    rows = [(start, html_rows[start])]
    while (following := _BLANK.match(text, rows[-1][1]).end()) in html_rows:
        rows.append((following, html_rows[following]))
    return rows


def _code_spans(line: str, line_start: int) -> list[Span]:
    """The spans of one line of a code block: split as any other line (the stored sentence vectors are
    numbered by these spans), but a comment or a pipe is one span, as a heading or a row was."""
    stripped = line.strip()
    if not stripped or _between_rows(stripped):
        return []
    offset = line_start + line.index(stripped)
    if stripped.startswith(("#", "|")) or markup.DETAILS_SUMMARY_RE.match(stripped):
        return [Span(offset, offset + len(stripped), stripped, in_code=True)]
    return [replace(span, in_code=True) for span in sentences_in_line(line, line_start)]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _open_fence_at_start(lines: list[str], underlines: set[int]) -> str:
    """The marker of the code block ``lines`` start inside, or "" when they start outside any.

    A chunk of a long code block can start inside it; then its first fence line, bare, closes the block.
    Told from an opening fence by what stands before it: code, no heading. When it is not that clear,
    outside (as a text that is not a chunk always starts).
    """
    at = [number for number, line in enumerate(lines) if markup.FENCE_RE.match(line) and number not in underlines]
    fences = [lines[number].strip() for number in at]
    if not fences or not _is_bare(fences[0]):  # none, or the first names a language: it opens
        return ""
    if len(fences) % 2 == 0 and _is_bare(fences[-1]):
        return ""  # balanced, and nothing suggests the last one opens a block the text ends in
    before = [line.strip() for line in lines[: at[0]]]
    titled = any(number + 1 in underlines for number in range(at[0]))
    if not any(before) or titled or any(b.startswith("#") or markup.DETAILS_SUMMARY_RE.match(b) for b in before):
        return ""
    opening = markup.FENCE_RE.match(fences[0])
    return opening.group(1) if opening else ""


def _is_bare(fence_line: str) -> bool:
    """A fence line with no language after it ("```", not "```bash")."""
    return not fence_line.strip(fence_line[0])


def sentences_in_line(line: str, base: int = 0, ends: str = SENTENCE_END) -> list[Span]:
    """The sentences of one line of prose, offsets from ``base``; ``ends``: the characters that end one
    (besides "." before a space that follows no abbreviation or number)."""
    spans: list[Span] = []
    start = 0
    i = 0
    n = len(line)
    # Inside a URL "?", "!" and ";" are characters of the address ("https://x.com/a?b=1"), not ends.
    in_url = [False] * n
    for url in _URL.finditer(line):
        in_url[url.start() : url.end()] = [True] * (url.end() - url.start())
    while i < n:
        ch = line[i]
        end_here = (ch in ends and not in_url[i]) or (
            # Numbers count as abbreviations here: "1. First step. 2. Second step." keeps "2." with its item.
            ch == "." and (i + 1 == n or line[i + 1].isspace())
            and not abbreviation_before(line, i, numbers=True, initials=False)
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


def abbreviation_before(text: str, dot: int, lo: int = 0, *, numbers: bool, initials: bool) -> bool:
    """Whether the "." at ``text[dot]`` closes an abbreviation ("e.g.", "vs.") rather than a sentence.

    ``numbers``: a number before the dot ("3.") counts as one; ``initials``: so does a single capital
    letter ("J. Smith"). The word is looked for in ``text[lo:dot]`` only, at most 24 characters back.
    """
    if text[dot] != ".":
        return False
    # "e.g." and "a.k.a." are dotted words: the whole "e.g" is looked up, not just its last letter.
    word = _WORD_BEFORE_DOT.search(text, max(lo, dot - 24), dot)  # bounded: long lines stay linear
    if word is None:
        return False
    token = word.group()
    if token.isdigit():
        return numbers
    return token.lower() in ABBREVIATIONS or (initials and len(token) == 1 and token.isupper())


def _trimmed(line: str, start: int, end: int, base: int) -> Span:
    piece = line[start:end]
    lead = len(piece) - len(piece.lstrip())
    text = piece.strip()
    return Span(base + start + lead, base + start + lead + len(text), text)
