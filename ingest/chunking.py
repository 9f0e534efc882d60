"""Split a document into retrieval chunks that follow its outline.

Retrieval quality depends mostly on what a chunk is *about*, so chunks follow the document's
structure instead of a fixed window. The work happens in four passes:

1. **Blocks.** The source is cut into lines (``\\n``, ``\\r\\n`` or ``\\r``) and the lines into
   blocks: headings, paragraphs / list items, tables, fenced code and thematic breaks.
2. **Sections** (hard boundaries, no chunk crosses them): ATX headings, top-level numbered items
   that act as sub-headings (see :func:`_numbered_subsection`), and a question-and-answer after a
   closing ``---``. Inside a section, list items that carry a title and a body are **topics**
   (soft boundaries, see :func:`_find_topics`).
3. **Atoms.** Each section becomes a sequence of atoms (sentences, table rows, code lines) with a
   cost for cutting between each neighbouring pair: cheap between topics and paragraphs, dear
   inside a sentence, between a table's rows, or between a table and the line that introduces it.
4. **Packing.** A small dynamic program cuts each section into chunks of at most ``max_chars``
   at the cheapest places, also charging for every chunk, for long chunks and for chunks under
   ``min_chars`` -- so tiny pieces merge into a neighbour and big sections split where the
   structure says they should.

Every chunk's ``text`` is exactly ``source[start:end]``; surrounding whitespace is trimmed by
moving the offsets. Offsets count characters of the Python ``str``, not bytes.
"""

from __future__ import annotations

import hashlib
import re
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from ingest.frontmatter import parse_front_matter
from kb import chunk as chunk_records
from kb import markup, sentences
from kb.chunk import HEADING_SEPARATOR, Chunk
from kb.sentences import ASCII_ENDERS, CJK_ENDERS, abbreviation_before
from kb.settings import Settings

__all__ = [
    "CHUNKER_VERSION",
    "FAQ_TITLE",
    "PREAMBLE_TITLE",
    "chunk_markdown",
    "chunk_plain_text",
    "chunk_rst",
    "chunk_text",
    "chunking_config",
]

# Heading path of text before the first heading when the document has no single ``#`` title.
PREAMBLE_TITLE = "文档说明"
# Heading path of a question-and-answer that follows a closing ``---``.
FAQ_TITLE = "常见问题"

# --- costs of cutting between two atoms (lower = better place to cut) -----------------------
_BOLD_TOPIC_REWARD = -2.0  # start/end of a top-level bold topic in a big section (see _pack_section)
_TOPIC_REWARD = -1.0  # start/end of another top-level topic in a big section
_TOPIC = 0.0  # start/end of any other topic (+0.1 per level of nesting)
_PARA = 0.3  # blank line between blocks
_BLOCK = 0.6  # new block without a blank line (next list item, quote, ...)
_SENT_LINE = 1.0  # a sentence ends at a line break
_SENT = 1.5  # a sentence ends inside a line
_ROW = 2.0  # between two rows of a table (the header then goes into ``context``)
_MAX_HTML_TABLE_LINES = 2000  # an HTML table longer than this is not read as one
_SOFT = 4.0  # a line break that does not end a sentence (hard-wrapped text)
_CODE_LINE = 5.0  # between two lines of fenced code
_TABLE_INTRO = 6.0  # added in front of a table: its intro sentence belongs with it
_GLUE = 8.0  # added after a heading, a title line, or a line ending in a colon
_COMMA = 10.0  # inside an over-long sentence, after a comma
_FORBID = 40.0  # header row | separator row | first row of a table, fence markers
_CODE_WHOLE = 30.0  # between two lines of a code block that would fit one chunk: keep it whole
_LINKS_EDGE = -0.5  # between a block that is only links/badges and one with prose
_HARD = 60.0  # last resort: an over-long run without any punctuation

# --- costs of a chunk of length L ----------------------------------------------------------
_PER_CHUNK = 1.0  # fewer chunks is better, all else equal
_BALANCE = 5.0  # * (L / max_chars) ** 2: a section near the limit splits at a good place if it has one
_SMALL_BASE = 2.0  # a chunk under min_chars costs this much more ...
_SMALL_SLOPE = 4.0  # ... plus this times how far it falls short
# Merging whole sections into one chunk: each section that ends up labelled by an ancestor more
# than one level above its own heading costs this much per level (siblings under their parent: 0).
_MERGE_UP = 1.5

# Heading level of a ``<details>`` summary: relative, half a level under the heading it stands in, so
# the block's own ATX sub-headings nest inside it and ``</details>`` returns to that heading.
_DETAILS_LEVEL = 0
_MAX_TITLE = 48  # a list item longer than this is prose, not a title
_MAX_QUESTION = 64  # FAQ questions are kept whole up to this length in the heading path
_MIN_SUBSECTION_BODY = 60  # non-space characters a numbered item needs to become a section
_OPEN_TOPICS_AT = 0.5  # sections longer than this share of max_chars are cut at their topics

_CLOSERS = "”’\"'）)]」』】》*_~"
_TITLE_STOPPERS = tuple(CJK_ENDERS + ASCII_ENDERS + "，,、…;")  # a title does not end like a sentence or clause
_COMMA_CHARS = "，、：；"  # full-width: always a place to cut an over-long sentence
_ASCII_COMMAS = ",:;|"  # ASCII: only when followed by a space (not 1,000 or http://)

_BREAK_RE = re.compile(r"\r\n|\r|\n")
_ATX_RE = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
# reStructuredText section adornment: one punctuation character repeated, nothing else.
_ADMONITION_OPEN_RE = re.compile(
    r"^[ \t]*(?::{3,}[ \t]*[\w-]+.*|(?:!!!|\?\?\?\+?)[ \t]+[\w-]+.*|===\+?[ \t]+\".*|>[ \t]*\[![A-Za-z]+\][ \t]*"
    r"|\.\.[ \t]+[\w-]+::.*)$"
)
_ADMONITION_CLOSE_RE = re.compile(r"^[ \t]*:{3,}[ \t]*$")
_RULE_RE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_TABLE_SEP_RE = markup.table_separator()
_BOLD_ONLY_RE = re.compile(r"^(\*\*|__)(?P<t>.+?)\1[ \t]*[：:]?$")
_LINK_RE = re.compile(r"!?\[([^\]\n]*)\]\([^)\n]*\)")
_NUMBERING_RE = re.compile(r"^\d+(?:\.\d+)*(?:[.)][ \t]+|、[ \t]*)")
# Spans in which punctuation never ends a sentence: inline code, inline math, links, URLs.
_PROTECTED_RE = re.compile(r"`[^`\n]*`|\$[^$\n]+\$|!?\[[^\]\n]*\]\([^)\n]*\)|https?://\S+")
_TITLE_COLON_RE = re.compile(r"：|:(?=\s|$)")


def chunk_text(
    text: str, doc: str, fmt: str, *, max_chars: int = 900, min_chars: int = 120, title: str = ""
) -> list[Chunk]:
    """Chunk ``text`` read from a ``fmt`` file ("markdown", "rst" or "text")."""
    if fmt == "markdown":
        return chunk_markdown(text, doc, max_chars=max_chars, min_chars=min_chars, title=title)
    if fmt == "rst":
        return chunk_rst(text, doc, max_chars=max_chars, min_chars=min_chars, title=title)
    return chunk_plain_text(text, doc, max_chars=max_chars, min_chars=min_chars, title=title)


def chunk_markdown(
    text: str, doc: str, *, max_chars: int = 900, min_chars: int = 120, title: str = ""
) -> list[Chunk]:
    """Chunk a Markdown (or MDX) document along its headings, numbered sub-sections, topics and tables.

    YAML front matter is metadata, not text: no chunk covers it; its ``title`` (or ``title``) roots
    the heading paths of a document that has no single ``#`` title.
    """
    min_chars = _checked_sizes(max_chars, min_chars)
    front = parse_front_matter(text)
    lines = _split_lines(text, front.end)
    blocks = _scan(lines, _markdown_block_at, partial(_starts_block, markdown=True))
    return _chunk_outline(text, doc, lines, blocks, max_chars, min_chars, title or front.title)


def chunk_rst(text: str, doc: str, *, max_chars: int = 900, min_chars: int = 120, title: str = "") -> list[Chunk]:
    """Chunk a reStructuredText document along its underlined (and over-and-underlined) headings.

    ``code-block``/``code`` directives, ``::`` literal blocks and grid tables are code blocks:
    kept whole up to ``max_chars``, and a ``#`` line inside them is code, not a heading.
    """
    min_chars = _checked_sizes(max_chars, min_chars)
    lines = _split_lines(text)
    return _chunk_outline(text, doc, lines, _scan_rst(lines), max_chars, min_chars, title)


def _chunk_outline(
    text: str, doc: str, lines: list[_Line], blocks: list[_Block], max_chars: int, min_chars: int, title: str
) -> list[Chunk]:
    sections = _merge_tiny_sections(_outline(lines, blocks, title), lines, min_chars)
    pieces: list[_Piece] = []
    for section in sections:
        spans = _pack_section(text, lines, section, max_chars, min_chars)
        for span in spans:
            pieces.append(_Piece(span, whole=len(spans) == 1, links=_links_only(text[span.start : span.end])))
    return _to_chunks(text, doc, _merge_siblings(text, pieces, max_chars, min_chars))


def chunk_plain_text(
    text: str, doc: str, *, max_chars: int = 900, min_chars: int = 120, title: str = ""
) -> list[Chunk]:
    """Chunk text without Markdown structure (.txt, or text extracted from pdf/html/docx).

    Paragraphs and list items are the preferred cuts, then sentence ends. Every chunk's section is
    ``title`` (for example the document's title from its metadata), or "" if there is none.
    """
    min_chars = _checked_sizes(max_chars, min_chars)
    lines = _split_lines(text)
    scanned = _scan(lines, _plain_block_at, partial(_starts_block, markdown=False))
    blocks = [_numbered_heading(lines, b) for b in scanned]
    if any(b.kind == "heading" for b in blocks):
        # Chinese reports number their parts "一、" / "（一）": in text without markup that is the outline.
        return _chunk_outline(text, doc, lines, blocks, max_chars, min_chars, title.strip())
    section = _Section((title.strip(),) if title.strip() else ())
    for block in blocks:
        section.add(block)
    if not section.blocks:
        return []
    return _to_chunks(text, doc, _pack_section(text, lines, section, max_chars, min_chars, topics=False))


def _numbered_heading(lines: list[_Line], block: _Block) -> _Block:
    """A one-line paragraph numbered ``一、`` (level 1) or ``（一）`` (level 2) that reads like a title."""
    if block.kind != "para" or block.first != block.last:
        return block
    line = lines[block.first].stripped
    match = markup.CN_NUMBERING_RE.match(line)
    if not match or not _title_like(line[match.end() :]):
        return block
    level = 1 if match.group(1) else 2
    return _Block("heading", block.first, block.last, block.blank_before, level=level,
                  title=_clean_title(line[match.end() :]))


# ---------------------------------------------------------------------------------------------
# Data carried between the passes
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Line:
    start: int
    end: int  # exclusive, before the line break
    text: str

    @property
    def blank(self) -> bool:
        return not self.text.strip()

    @property
    def stripped(self) -> str:
        return self.text.strip()

    @property
    def indent(self) -> int:
        expanded = self.text.expandtabs(4)
        return len(expanded) - len(expanded.lstrip())


@dataclass(slots=True)
class _Block:
    kind: str  # "heading" | "para" | "table" | "code" | "rule"
    first: int  # index of its first line
    last: int  # index of its last non-blank line
    blank_before: bool
    level: int = 0  # headings only
    title: str = ""  # headings only
    path: tuple[str, ...] = ()  # heading path of the section it belongs to


@dataclass(slots=True)
class _Section:
    path: tuple[str, ...]
    blocks: list[_Block] = field(default_factory=list)
    title_lines: set[int] = field(default_factory=set)  # numbered items that title the section

    def add(self, block: _Block) -> None:
        block.path = self.path  # blocks keep their path when a tiny section merges into the next
        self.blocks.append(block)


@dataclass(frozen=True, slots=True)
class _Topic:
    first: int
    last: int
    title: str
    bold: bool
    top: bool  # not nested in another topic


@dataclass(frozen=True, slots=True)
class _Table:
    header: str
    separator: str


@dataclass(frozen=True, slots=True)
class _Atom:
    start: int
    end: int
    line: int  # line the atom starts on (decides its topic)
    table: _Table | None = None
    header_row: bool = False


@dataclass(frozen=True, slots=True)
class _Span:
    start: int
    end: int
    path: tuple[str, ...]
    context: str


@dataclass(frozen=True, slots=True)
class _Piece:
    span: _Span
    whole: bool  # the span holds its whole section: it may merge with neighbouring whole sections
    links: bool  # only links, images or badges


def _checked_sizes(max_chars: int, min_chars: int) -> int:
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, got {max_chars}")
    if min_chars < 0:
        raise ValueError(f"min_chars must not be negative, got {min_chars}")
    # A minimum above the maximum cannot be honoured; the maximum is the hard limit.
    return min(min_chars, max_chars)


# ---------------------------------------------------------------------------------------------
# Pass 1: lines and blocks
# ---------------------------------------------------------------------------------------------


def _split_lines(text: str, start: int = 0) -> list[_Line]:
    # Our own splitter: str.splitlines() also breaks at \x0b, \x1c, \u2028 ..., which Markdown
    # does not, and we need the exact offsets of every line.
    lines: list[_Line] = []
    pos = max(start, 1 if text.startswith("\ufeff") else 0)  # a byte-order mark is not content
    for match in _BREAK_RE.finditer(text, pos):
        lines.append(_Line(pos, match.start(), text[pos : match.start()]))
        pos = match.end()
    if pos < len(text):
        lines.append(_Line(pos, len(text), text[pos:]))
    return lines


# A dialect says what a line starts: the blocks found there (a heading, code, a table, a rule) and
# the line after them, or None for a paragraph; and where a paragraph that began at ``first`` stops.
_BlockAt = Callable[[list[_Line], int, bool], tuple[list[_Block], int] | None]
_EndsParagraph = Callable[[list[_Line], int, _Line], bool]


def _scan(
    lines: list[_Line], block_at: _BlockAt, ends_paragraph: _EndsParagraph, *, literal_blocks: bool = False
) -> list[_Block]:
    """Lines into blocks, for any dialect (Markdown, reStructuredText, plain text).

    ``literal_blocks``: a paragraph ending in ``::`` makes the indented lines after it code
    (reStructuredText's literal blocks).
    """
    blocks: list[_Block] = []
    blank_before = False
    i = 0
    while i < len(lines):
        if lines[i].blank:
            blank_before = True
            i += 1
            continue
        found = block_at(lines, i, blank_before)
        if found is None:
            end = i
            while end + 1 < len(lines) and not lines[end + 1].blank and not ends_paragraph(lines, end + 1, lines[i]):
                end += 1
            found = [_Block("para", i, end, blank_before)], end + 1
            last = _indented_end(lines, end) if literal_blocks and lines[end].text.rstrip().endswith("::") else end
            if last > end:
                found = [*found[0], _Block("code", end + 1, last, True)], last + 1
        new, i = found
        blocks.extend(new)
        blank_before = False
    return [_trim_block(b, lines) for b in blocks]


def _markdown_block_at(lines: list[_Line], i: int, blank_before: bool) -> tuple[list[_Block], int] | None:
    line = lines[i]
    if fence := markup.FENCE_RE.match(line.text):
        end = _fence_end(lines, i, fence.group(1))
        last = max(k for k in range(i, end + 1) if not lines[k].blank)
        return [_Block("code", i, last, blank_before)], end + 1
    if (summary := markup.details_title(line.text)) is not None:
        return [_Block("heading", i, i, blank_before, level=_DETAILS_LEVEL, title=_clean_title(summary))], i + 1
    if markup.DETAILS_CLOSE_RE.match(line.text):
        return [_Block("para", i, i, blank_before)], i + 1
    if heading := _ATX_RE.match(line.text):
        title = _clean_title(heading.group(2) or "")
        return [_Block("heading", i, i, blank_before, level=len(heading.group(1)), title=title)], i + 1
    if html_heading := markup.html_heading(line.text):
        level, title = html_heading
        return [_Block("heading", i, i, blank_before, level=level, title=_clean_title(title))], i + 1
    if level := _setext_level(lines, i):
        return [_Block("heading", i, i + 1, blank_before, level=level, title=_clean_title(line.text))], i + 2
    if _RULE_RE.match(line.text):
        return [_Block("rule", i, i, blank_before)], i + 1
    if (end := _html_table_end(lines, i)) is not None:
        return [_Block("html_table", i, end, blank_before)], end + 1
    if _is_table_start(lines, i):
        end = i
        # Like GFM, a table runs until a line without a pipe (cell counts are not checked,
        # so broken tables stay together as table-ish lines).
        while end + 1 < len(lines) and "|" in lines[end + 1].text and not lines[end + 1].blank:
            end += 1
        return [_Block("table", i, end, blank_before)], end + 1
    return None


def _plain_block_at(lines: list[_Line], i: int, blank_before: bool) -> None:
    return None  # text without markup is paragraphs (and list items) only


def _setext_level(lines: list[_Line], i: int) -> int:
    """1 or 2 when line i is a one-line paragraph underlined with ``===`` or ``---``, else 0."""
    if i + 1 >= len(lines) or lines[i].indent > 3 or markup.LIST_ITEM_RE.match(lines[i].text):
        return 0
    if lines[i].stripped.startswith((">", "|", "<")) or "|" in lines[i].text:
        return 0
    underline = markup.SETEXT_UNDERLINE_RE.match(lines[i + 1].text)
    if not underline:
        return 0
    return 1 if underline.group(1)[0] == "=" else 2


def _rst_block_at(styles: list[tuple[str, bool]]) -> _BlockAt:
    """reStructuredText's headings and code; heading levels follow the order adornments first appear
    in, which ``styles`` records for one document."""

    def block_at(lines: list[_Line], i: int, blank_before: bool) -> tuple[list[_Block], int] | None:
        line = lines[i]
        if heading := _rst_heading(lines, i):
            style, title, last = heading
            if style not in styles:
                styles.append(style)
            return [_Block("heading", i, last, blank_before, level=styles.index(style) + 1, title=title)], last + 1
        if line.stripped.startswith("|") and i + 1 < len(lines) and _is_separator_row(lines[i + 1].stripped):
            # A pipe table (the reader's form of a list-table; a "|" line without a separator under it is
            # a line block): cut between rows, its header carried on, as in Markdown.
            end = i + 1
            while end + 1 < len(lines) and lines[end + 1].stripped.startswith("|"):
                end += 1
            return [_Block("table", i, end, blank_before)], end + 1
        if markup.RST_CODE_RE.match(line.text) or line.stripped.startswith(("+-", "+=")):
            last = _indented_end(lines, i) if not line.stripped.startswith("+") else _grid_end(lines, i)
            return [_Block("code", i, last, blank_before)], last + 1
        return None

    return block_at


def _scan_rst(lines: list[_Line]) -> list[_Block]:
    return _scan(lines, _rst_block_at([]), _rst_block_start, literal_blocks=True)


def _rst_heading(lines: list[_Line], i: int) -> tuple[tuple[str, bool], str, int] | None:
    """(adornment style, title, last line) of a section title starting at line i, else None."""
    over = markup.RST_ADORNMENT_RE.match(lines[i].text)
    if over and i + 2 < len(lines) and not lines[i + 1].blank:
        under = markup.RST_ADORNMENT_RE.match(lines[i + 2].text)
        if under and under.group(1) == over.group(1):
            return (over.group(1), True), _clean_title(lines[i + 1].text), i + 2
    if over or lines[i].indent or i + 1 >= len(lines):
        return None
    under = markup.RST_ADORNMENT_RE.match(lines[i + 1].text)
    if not under or lines[i + 1].indent:
        return None
    # docutils wants the underline at least as wide as the title; real files are often sloppier
    # with CJK titles (two columns per character), so any underline of 3+ characters counts.
    return (under.group(1), False), _clean_title(lines[i].text), i + 1


def _rst_block_start(lines: list[_Line], i: int, first: _Line) -> bool:
    line = lines[i]
    if markup.LIST_ITEM_RE.match(line.text) or line.indent < first.indent or markup.RST_CODE_RE.match(line.text):
        return True
    return _rst_heading(lines, i) is not None


def _indented_end(lines: list[_Line], i: int) -> int:
    """Last line of the block indented under line i (blank lines inside it allowed)."""
    base, last = lines[i].indent, i
    for k in range(i + 1, len(lines)):
        if lines[k].blank:
            continue
        if lines[k].indent <= base:
            break
        last = k
    return last


def _grid_end(lines: list[_Line], i: int) -> int:
    last = i
    while last + 1 < len(lines) and lines[last + 1].stripped.startswith(("+", "|")):
        last += 1
    return last


def _html_table_end(lines: list[_Line], i: int) -> int | None:
    """The line that closes the HTML table opening at line ``i`` (``<table>``), or None when none opens
    there or it is never closed (then its lines are read as they come)."""
    if not markup.HTML_TABLE_OPEN_RE.match(lines[i].stripped):
        return None
    for k in range(i, min(len(lines), i + _MAX_HTML_TABLE_LINES)):
        if "</table" in lines[k].text.lower():
            return k
        if k > i and _ATX_RE.match(lines[k].text):
            return None  # a heading before any </table>: the table was never closed
    return None


def _trim_block(block: _Block, lines: list[_Line]) -> _Block:
    while block.last > block.first and lines[block.last].blank:
        block.last -= 1
    return block


def _fence_end(lines: list[_Line], i: int, marker: str) -> int:
    for k in range(i + 1, len(lines)):
        if markup.closes_fence(lines[k].stripped, marker):
            return k
    return len(lines) - 1  # unclosed: like CommonMark, it runs to the end of the document


def _is_table_start(lines: list[_Line], i: int) -> bool:
    stripped = lines[i].stripped
    if stripped.startswith("|"):
        return True
    # A GFM table may omit the outer pipes; then only its separator row gives it away.
    return "|" in stripped and i + 1 < len(lines) and _is_separator_row(lines[i + 1].stripped)


def _is_separator_row(stripped: str) -> bool:
    return "|" in stripped and "-" in stripped and bool(_TABLE_SEP_RE.match(stripped))


def _starts_block(lines: list[_Line], i: int, first: _Line, *, markdown: bool) -> bool:
    line = lines[i]
    if markup.LIST_ITEM_RE.match(line.text) or line.indent < first.indent:
        return True
    if not markdown:
        return False
    if markup.FENCE_RE.match(line.text) or _ATX_RE.match(line.text) or _RULE_RE.match(line.text):
        return True
    if markup.DETAILS_SUMMARY_RE.match(line.text) or markup.DETAILS_CLOSE_RE.match(line.text):
        return True
    if markup.html_heading(line.text):
        return True
    if _setext_level(lines, i) or markup.SETEXT_UNDERLINE_RE.match(line.text):
        return True
    if _is_table_start(lines, i):
        return True
    return line.stripped.startswith(">") != first.stripped.startswith(">")


# ---------------------------------------------------------------------------------------------
# Pass 2: sections and topics
# ---------------------------------------------------------------------------------------------


def _outline(lines: list[_Line], blocks: list[_Block], title: str = "") -> list[_Section]:
    headings = [b for b in blocks if b.kind == "heading"]
    titles = [b.title for b in headings if b.level == 1 and b.title]
    # Text before the first heading (here: how the document was written) needs a path of its
    # own; a document with a single top-level title gives it that title, and a document
    # without one roots every path in the title of its metadata (front matter), if any.
    stack: list[tuple[float, str]] = []
    if len(titles) == 1:
        base: tuple[str, ...] = (titles[0],)
    elif title:
        base = (_clean_title(title),)
        stack.append((0, base[0]))
    else:
        base = (PREAMBLE_TITLE,) if headings else ()
    sections = [_Section(base)]
    sub_end: int | None = None  # last line of the numbered sub-section being filled
    details: list[tuple[int, tuple[float, str]]] = []  # open <details> blocks: stack depth, stack entry
    for k, block in enumerate(blocks):
        if sub_end is not None and block.first > sub_end:
            sections.append(_Section(base))  # back in the parent after the numbered item's body
            sub_end = None
        if block.kind == "heading" and block.level == _DETAILS_LEVEL:
            entry = ((stack[-1][0] if stack else 0) + 0.5, block.title)
            details.append((len(stack), entry))
            stack.append(entry)
            base = tuple(title for _, title in stack if title)
            sections.append(_Section(base))
            sub_end = None
        elif block.kind == "heading":
            while stack and stack[-1][0] >= block.level and stack[-1][0] > 0:
                stack.pop()
            stack.append((block.level, block.title))
            base = tuple(title for _, title in stack if title)
            sections.append(_Section(base))
            sub_end = None
        elif block.kind == "para" and details and markup.DETAILS_CLOSE_RE.match(lines[block.first].text):
            sections[-1].add(block)  # the closing tag ends what it closes
            depth, entry = details.pop()
            if len(stack) > depth and stack[depth] is entry:  # not already closed by a higher heading
                del stack[depth:]
            base = tuple(title for _, title in stack if title)
            sections.append(_Section(base))
            sub_end = None
            continue
        elif block.kind == "rule" and (question := _faq_question(lines, blocks, k)):
            sections[-1].add(block)  # the rule closes what came before it
            base = (FAQ_TITLE, question)
            sections.append(_Section(base))
            sub_end = None
            continue
        elif block.kind == "para" and sub_end is None and (sub := _numbered_subsection(lines, block)):
            title, sub_end = sub
            sections.append(_Section((*base, title), title_lines={block.first}))
        sections[-1].add(block)
    return [s for s in sections if s.blocks]


def _numbered_subsection(lines: list[_Line], block: _Block) -> tuple[str, int] | None:
    """Title and last line of a numbered item that acts as a sub-heading, else None.

    The rule, decided by structure alone: the item is numbered (``1.``, ``2)``, ``3、``), starts
    at column 0 (an indented item belongs to a list inside something else), its own line reads
    like a title (short, and not ending like a sentence: ``3. 大模型区别于……涌现能力。`` is prose),
    and it is followed by an indented body -- blank lines allowed -- of at least
    ``_MIN_SUBSECTION_BODY`` non-space characters. The body ends at the next non-blank line in
    column 0. So ``1. Embedding：语义的向量空间映射`` with its tables is a section, while a
    list of one-line steps (``1. 使用 …；``) or the indented ``1. **接收信号：**`` are not.
    """
    line = lines[block.first]
    item = markup.LIST_ITEM_RE.match(line.text)
    if line.indent != 0 or not item or item.group("num") is None:
        return None
    text = line.text[item.end() :]
    if not _title_like(text):
        return None
    body_chars, last = 0, block.first
    for k in range(block.first + 1, len(lines)):
        other = lines[k]
        if other.blank:
            continue
        if other.indent == 0 or _ATX_RE.match(other.text):
            break
        body_chars += _non_space(other.text)
        last = k
    if body_chars < _MIN_SUBSECTION_BODY:
        return None
    return _clean_title(text), last


def _faq_question(lines: list[_Line], blocks: list[_Block], k: int) -> str | None:
    """The question that follows a closing ``---``, shortened for the heading path."""
    if lines[blocks[k].first].indent != 0 or k + 1 >= len(blocks):
        return None
    nxt = blocks[k + 1]
    first = lines[nxt.first]
    if nxt.kind != "para" or markup.LIST_ITEM_RE.match(first.text):
        return None
    question = _clean_title(first.text, limit=None)
    if not question.endswith(("？", "?")):
        return None
    return _shorten(question, _MAX_QUESTION)


def _merge_tiny_sections(sections: list[_Section], lines: list[_Line], min_chars: int) -> list[_Section]:
    # A heading with (almost) nothing under it but its own sub-sections would be a near-empty
    # chunk; it joins its first sub-section, whose path already contains its title. A bare heading is
    # never the end of what comes before it: a short intro stays a chunk of its own rather than take the
    # next section's heading, whose text then started without it.
    merged: list[_Section] = []
    pending: _Section | None = None
    for section in sections:
        if pending is not None:
            if (_extends(section.blocks[0].path, pending.blocks[-1].path)
                    and not (_only_headings(section) and not _only_headings(pending))):
                section = _Section(
                    section.path, pending.blocks + section.blocks, pending.title_lines | section.title_lines
                )
            else:
                merged.append(pending)
            pending = None
        if _section_length(section, lines) < min_chars or _only_headings(section):
            pending = section
        else:
            merged.append(section)
    if pending is not None:
        merged.append(pending)
    return merged


def _only_headings(section: _Section) -> bool:
    return all(block.kind == "heading" for block in section.blocks)


def _section_length(section: _Section, lines: list[_Line]) -> int:
    first, last = lines[section.blocks[0].first], lines[section.blocks[-1].last]
    start = first.start + len(first.text) - len(first.text.lstrip())
    end = last.start + len(last.text.rstrip())
    return end - start


def _find_topics(lines: list[_Line], section: _Section) -> list[_Topic]:
    """List items inside a section that read as sub-headings of what follows them.

    A topic is a list item whose own line is title-like (short, not a sentence, e.g.
    ``- **KV Cache：推理加速的“笔记术”**`` or ``- 多头注意力与多层堆叠``) and that has a body:
    more-indented lines below it, or -- for a bullet like ``- 运行流程（…）`` -- a numbered list
    at its own indentation right after it. Topics only steer where long sections are cut and
    what the chunk's heading path says; they never force a cut.
    """
    hi = section.blocks[-1].last
    found: list[tuple[int, int, str, bool]] = []
    for block in section.blocks:
        if block.kind != "para" or block.first in section.title_lines:
            continue
        item = markup.LIST_ITEM_RE.match(lines[block.first].text)
        title = _item_title(lines[block.first].text[item.end() :]) if item else None
        if item is None or title is None:
            continue
        last = _children_end(lines, block.first, hi)
        if last == block.first:
            last = _introduced_list_end(lines, block.first, hi, ordered=item.group("num") is not None)
        if last > block.first:
            found.append((block.first, last, *title))
    topics = []
    for first, last, title, bold in found:
        top = not any(f < first and last <= end for f, end, _, _ in found)
        topics.append(_Topic(first, last, title, bold, top))
    return topics


def _children_end(lines: list[_Line], i: int, hi: int) -> int:
    last = i
    for k in range(i + 1, hi + 1):
        if lines[k].blank:
            continue
        if lines[k].indent <= lines[i].indent:
            break
        last = k
    return last


def _introduced_list_end(lines: list[_Line], i: int, hi: int, *, ordered: bool) -> int:
    """Last line of a list of the other kind (numbered after a bullet) that directly follows line i."""
    indent = lines[i].indent

    def other_kind_item(line: _Line) -> bool:
        item = markup.LIST_ITEM_RE.match(line.text)
        return item is not None and line.indent == indent and (item.group("num") is not None) != ordered

    k = next((k for k in range(i + 1, hi + 1) if not lines[k].blank), None)
    if k is None or not other_kind_item(lines[k]):
        return i
    last = k
    for j in range(k + 1, hi + 1):
        if lines[j].blank:
            continue
        if lines[j].indent <= indent and not other_kind_item(lines[j]):
            break
        last = j
    return last


# ---------------------------------------------------------------------------------------------
# Pass 3: atoms and the cost of cutting between them
# ---------------------------------------------------------------------------------------------


def _section_atoms(
    source: str, lines: list[_Line], section: _Section, max_chars: int, glue_lines: set[int]
) -> tuple[list[_Atom], list[float], list[float]]:
    """Atoms plus, for each gap between neighbours, its structural cost and its glue cost."""
    atoms: list[_Atom] = []
    base: list[float] = []
    glue: list[float] = []
    previous: _Block | None = None
    for block in section.blocks:
        new, inner = _block_atoms(source, lines, block, max_chars, glue_lines)
        if not new:
            continue
        if atoms and previous is not None:
            gap_base, gap_glue = _block_gap(source, lines, previous, block, atoms[-1], glue_lines)
            base.append(gap_base)
            glue.append(gap_glue)
        atoms.extend(new)
        base.extend(inner)
        glue.extend(0.0 for _ in inner)
        previous = block
    return atoms, base, glue


def _block_gap(
    source: str, lines: list[_Line], previous: _Block, block: _Block, last_atom: _Atom, glue_lines: set[int]
) -> tuple[float, float]:
    base = _PARA if block.blank_before else _BLOCK
    glue = 0.0
    if previous.kind == "heading" or previous.last in glue_lines:
        glue += _GLUE
    if _ends_with_colon(source[last_atom.start : last_atom.end]):
        glue += _GLUE
    if block.kind in ("table", "html_table"):
        glue += _TABLE_INTRO
    if block.kind == "rule":
        glue += _GLUE  # a thematic break closes what precedes it
    if _ADMONITION_OPEN_RE.match(lines[previous.last].text) or _ADMONITION_CLOSE_RE.match(lines[block.first].text):
        glue += _GLUE  # ":::tip[Title]" / "!!! note" belongs with its body, a closing ":::" with what it closes
    if _links_only(_block_text(source, lines, previous)) != _links_only(_block_text(source, lines, block)):
        base += _LINKS_EDGE  # a badge row or link list is cut off from the prose next to it
    return base, glue


def _block_text(source: str, lines: list[_Line], block: _Block) -> str:
    return source[lines[block.first].start : lines[block.last].end]


def _links_only(text: str) -> bool:
    """Only links, images, badges or headings (see kb.markup): cited, never a candidate of its own."""
    return markup.is_link_only(text)


def _block_atoms(
    source: str, lines: list[_Line], block: _Block, max_chars: int, glue_lines: set[int]
) -> tuple[list[_Atom], list[float]]:
    atoms: list[_Atom] = []
    costs: list[float] = []

    def add(start: int, end: int, line: int, cost_before: float, table: _Table | None = None) -> None:
        start, end = _trim(source, start, end)
        if start >= end:
            return
        pieces, inner = _split_oversized(source, start, end, max_chars)
        if atoms:
            costs.append(cost_before)
        header_row = table is not None and line == block.first
        for n, (s, e) in enumerate(pieces):
            atoms.append(_Atom(s, e, line, table, header_row=header_row and n == 0))
            if n < len(inner):
                costs.append(inner[n])

    if block.kind in ("heading", "rule"):
        add(lines[block.first].start, lines[block.last].end, block.first, 0.0)  # setext/RST: 2-3 lines
    elif block.kind == "code":
        # A code block that fits a chunk is never cut; a bigger one is cut at its blank lines first.
        fits = lines[block.last].end - lines[block.first].start <= max_chars
        for k in range(block.first, block.last + 1):
            edge = k in (block.first + 1, block.last)  # keep the fence markers on their code
            cost = _CODE_WHOLE if fits else _CODE_LINE - (1.0 if lines[k - 1].blank else 0.0)
            add(lines[k].start, lines[k].end, k, cost + (_FORBID if edge else 0.0))
    elif block.kind == "table":
        table = _table_info(lines, block)
        has_separator = bool(table.separator)
        for k in range(block.first, block.last + 1):
            row = k - block.first
            cost = _ROW
            if row == 1 or (row == 2 and has_separator):
                cost += _FORBID if has_separator else _GLUE
            add(lines[k].start, lines[k].end, k, cost, table)
    elif block.kind == "html_table":
        # Cut between rows only (a row may span lines); the table's own tags go with the row after them,
        # the closing ones with the last. The first row is the header a later chunk carries in its context.
        begin, finish = lines[block.first].start, lines[block.last].end
        rows = [(m.start(), m.end()) for m in markup.HTML_ROW_RE.finditer(source, begin, finish)]
        table = _Table(source[rows[0][0] : rows[0][1]], "") if rows else None
        starts = [line.start for line in lines]
        pos = begin
        for n, (_, end) in enumerate(rows):
            line = block.first if n == 0 else bisect_right(starts, pos) - 1
            add(pos, finish if n == len(rows) - 1 else end, line, _ROW + (_FORBID if n == 1 else 0.0), table)
            pos = end
        if not rows:
            add(begin, finish, block.first, 0.0)
    else:
        cost_before = 0.0
        for k in range(block.first, block.last + 1):
            line = lines[k]
            content = line.start + _content_offset(line.text, first=k == block.first)
            cuts = [p for p in _sentence_ends(source, content, line.end) if p > line.start]
            bounds = [line.start, *cuts, line.end]
            for n in range(len(bounds) - 1):
                add(bounds[n], bounds[n + 1], k, cost_before if n == 0 else _SENT)
            cost_before = _SENT_LINE if _ends_sentence(line.text) else _SOFT
            if k in glue_lines or _ends_with_colon(line.text):
                cost_before += _GLUE
    return atoms, costs


def _table_info(lines: list[_Line], block: _Block) -> _Table:
    header = lines[block.first].stripped
    separator = ""
    if block.first + 1 <= block.last and _is_separator_row(lines[block.first + 1].stripped):
        separator = lines[block.first + 1].stripped
    return _Table(header, separator)


def _content_offset(text: str, *, first: bool) -> int:
    """Where a line's prose starts: after indentation, quote markers and (first line) a list marker."""
    pos = len(text) - len(text.lstrip())
    while pos < len(text) and text[pos] == ">":
        pos += 1
        while pos < len(text) and text[pos] in " \t":
            pos += 1
    if first and (item := markup.LIST_ITEM_RE.match(text)):
        pos = max(pos, item.end())
    return pos


def _sentence_ends(source: str, lo: int, hi: int) -> list[int]:
    """Offsets just after each sentence end in ``source[lo:hi]`` that has more text after it."""
    protected = [m.span() for m in _PROTECTED_RE.finditer(source, lo, hi)]
    last_text = _trim(source, lo, hi)[1]  # a sentence end needs more text before this offset
    ends: list[int] = []
    i, p = lo, 0
    while i < hi:
        while p < len(protected) and protected[p][1] <= i:
            p += 1
        if p < len(protected) and protected[p][0] <= i:
            i = protected[p][1]
            continue
        ch = source[i]
        if ch in CJK_ENDERS or ch in ASCII_ENDERS:
            j = i + 1
            while j < hi and (source[j] in CJK_ENDERS or source[j] in ASCII_ENDERS or source[j] in _CLOSERS):
                j += 1
            cjk = any(c in CJK_ENDERS for c in source[i:j])
            # ASCII punctuation ends a sentence only before a space: not in 3.5, a.b or vs. LoRA. Unlike
            # quoting (kb.sentences.split_sentences), a chunk may end after a number ("in 2023."): list
            # markers are never inside the text scanned here; an initial ("J. Smith") stays whole.
            before_space = j >= hi or source[j].isspace()
            ends_here = cjk or (before_space and not abbreviation_before(source, i, lo, numbers=False, initials=True))
            if ends_here and j < last_text:
                ends.append(j)
            i = j
            continue
        i += 1
    return ends


def _ends_sentence(text: str) -> bool:
    tail = text.rstrip().rstrip(_CLOSERS).rstrip()
    return tail.endswith(tuple(CJK_ENDERS + ASCII_ENDERS))


def _ends_with_colon(text: str) -> bool:
    return text.rstrip().rstrip("*_").rstrip().endswith(("：", ":"))


def _split_oversized(source: str, start: int, end: int, max_chars: int) -> tuple[list[tuple[int, int]], list[float]]:
    """Cut an atom longer than ``max_chars``: after commas, else at spaces, else anywhere."""
    if end - start <= max_chars:
        return [(start, end)], []
    cuts = [
        i + 1
        for i in range(start, end - 1)
        if source[i] in _COMMA_CHARS or (source[i] in _ASCII_COMMAS and source[i + 1].isspace())
    ]
    pieces: list[tuple[int, int]] = []
    costs: list[float] = []
    for s, e in zip([start, *cuts], [*cuts, end], strict=True):
        s, e = _trim(source, s, e)
        if s >= e:
            continue
        for n, (hs, he) in enumerate(_hard_cut(source, s, e, max_chars)):
            if pieces:
                costs.append(_HARD if n else _COMMA)
            pieces.append((hs, he))
    return pieces, costs


def _hard_cut(source: str, start: int, end: int, max_chars: int) -> list[tuple[int, int]]:
    pieces = []
    while end - start > max_chars:
        limit = start + max_chars
        space = max((i for i in range(start + max_chars // 2, limit) if source[i].isspace()), default=None)
        cut = space if space is not None else limit
        s, e = _trim(source, start, cut)
        if s < e:
            pieces.append((s, e))
        start, _ = _trim(source, cut, end)
    if start < end:
        pieces.append((start, end))
    return pieces


def _trim(source: str, start: int, end: int) -> tuple[int, int]:
    while start < end and source[start].isspace():
        start += 1
    while end > start and source[end - 1].isspace():
        end -= 1
    return start, end


# ---------------------------------------------------------------------------------------------
# Pass 4: packing atoms into chunks
# ---------------------------------------------------------------------------------------------


def _pack_section(
    source: str,
    lines: list[_Line],
    section: _Section,
    max_chars: int,
    min_chars: int,
    *,
    topics: bool = True,
) -> list[_Span]:
    found = _find_topics(lines, section) if topics else []
    glue_lines = set(section.title_lines) | {t.first for t in found}
    atoms, base, glue = _section_atoms(source, lines, section, max_chars, glue_lines)
    if not atoms:
        return []
    line_topics = _topics_by_line(found)
    block_path = {k: b.path for b in section.blocks for k in range(b.first, b.last + 1)}
    section_paths = [block_path[a.line] for a in atoms]
    paths = [p + tuple(t.title for t in line_topics.get(a.line, ())) for p, a in zip(section_paths, atoms, strict=True)]

    # In a section longer than half a chunk, top-level topics get chunks of their own (unless
    # that leaves a piece under min_chars): a retriever then finds "KV Cache" under its own
    # heading path instead of inside a mix of three topics. Bold topics are sub-headings in
    # disguise and are rewarded more than plain title-like bullets.
    big = atoms[-1].end - atoms[0].start > _OPEN_TOPICS_AT * max_chars
    for k in range(len(atoms) - 1):
        before, after = line_topics.get(atoms[k].line, ()), line_topics.get(atoms[k + 1].line, ())
        if before == after:
            continue
        shared = 0
        while shared < min(len(before), len(after)) and before[shared] == after[shared]:
            shared += 1
        changed = before[shared:] + after[shared:]
        opened = [t for t in changed if big and t.top and _topic_length(lines, t) >= min_chars]
        if opened:
            base[k] = _BOLD_TOPIC_REWARD if any(t.bold for t in opened) else _TOPIC_REWARD
        else:
            base[k] = min(base[k], _TOPIC + 0.1 * shared)

    cuts = [b + g for b, g in zip(base, glue, strict=True)]
    runs = _best_partition(atoms, cuts, max_chars, min_chars)
    if len(runs) == 1:
        paths = section_paths  # a chunk holding a whole section is labelled by that section
    spans = []
    for i, j in runs:
        chunk_atoms = atoms[i : j + 1]
        weights = [_non_space(source[a.start : a.end]) for a in chunk_atoms]
        spans.append(
            _Span(
                start=atoms[i].start,
                end=atoms[j].end,
                path=_label(paths[i : j + 1], weights),
                context=_table_context(chunk_atoms[0]),
            )
        )
    return spans


def _topics_by_line(topics: list[_Topic]) -> dict[int, tuple[_Topic, ...]]:
    by_line: dict[int, tuple[_Topic, ...]] = {}
    for topic in sorted(topics, key=lambda t: (t.first, -t.last)):  # outer topics first
        for k in range(topic.first, topic.last + 1):
            by_line[k] = (*by_line.get(k, ()), topic)
    return by_line


def _topic_length(lines: list[_Line], topic: _Topic) -> int:
    first, last = lines[topic.first], lines[topic.last]
    return last.start + len(last.text.rstrip()) - (first.start + first.indent)


def _best_partition(atoms: list[_Atom], cuts: list[float], max_chars: int, min_chars: int) -> list[tuple[int, int]]:
    """Cheapest cut of ``atoms`` into runs no longer than ``max_chars`` (inclusive index pairs)."""
    n = len(atoms)
    best = [0.0] + [float("inf")] * n
    back = [0] * (n + 1)
    for j in range(1, n + 1):
        end = atoms[j - 1].end
        for i in range(j - 1, -1, -1):
            length = end - atoms[i].start
            if length > max_chars:
                break  # every atom fits on its own, so j - 1 alone is always feasible
            cost = best[i] + (cuts[i - 1] if i else 0.0) + _chunk_cost(length, max_chars, min_chars)
            if cost < best[j] - 1e-9:  # strict: ties go to the longest chunk, deterministically
                best[j], back[j] = cost, i
    runs = []
    j = n
    while j > 0:
        runs.append((back[j], j - 1))
        j = back[j]
    return runs[::-1]


def _chunk_cost(length: int, max_chars: int, min_chars: int) -> float:
    cost = _PER_CHUNK + _BALANCE * (length / max_chars) ** 2
    if length < min_chars:
        cost += _SMALL_BASE + _SMALL_SLOPE * (1 - length / min_chars)
    return cost


def _label(paths: list[tuple[str, ...]], weights: list[int]) -> tuple[str, ...]:
    """Heading path for a chunk whose atoms have these paths.

    The deepest path that (a) every atom's path lies on -- an ancestor or a descendant of it --
    and (b) holds at least half of the chunk's characters. So a section intro merged into its
    first topic is labelled with that topic (whose path still names the section), but a chunk
    holding two sibling topics gets their common parent.
    """
    total = sum(weights) or 1
    shared = paths[0]
    for path in paths[1:]:
        n = 0
        while n < min(len(shared), len(path)) and shared[n] == path[n]:
            n += 1
        shared = shared[:n]
    label = shared
    candidates = sorted({p[:n] for p in paths for n in range(len(shared) + 1, len(p) + 1)}, key=lambda c: (len(c), c))
    for cand in candidates:
        on_line = all(_extends(p, cand) or _extends(cand, p) for p in paths)
        inside = sum(w for p, w in zip(paths, weights, strict=True) if _extends(p, cand))
        if on_line and 2 * inside >= total and len(cand) > len(label):
            label = cand
    return label


def _table_context(first: _Atom) -> str:
    # A chunk that starts inside a table cannot be read without the table's header; the header
    # is not part of the span, so it travels in ``context``.
    if first.table is None or first.header_row:
        return ""
    return "\n".join(part for part in (first.table.header, first.table.separator) if part)


def _merge_siblings(source: str, pieces: list[_Piece], max_chars: int, min_chars: int) -> list[_Span]:
    """Join runs of whole small sections (siblings under one parent, mostly) into chunks up to ``max_chars``.

    A FAQ whose every question is a heading, or an API reference with a "Request" and a "Response"
    sub-heading per call, would otherwise give one tiny chunk per heading, each sharing its
    parent's words through the heading path. Merged, the chunk is labelled with the common parent
    and keeps each section's own heading line in its text. Only whole sections merge (a piece of a
    split section stays where its section's packing put it), and link lists merge only with link
    lists. The cut is the cheapest by the same chunk costs as inside a section.
    """
    n = len(pieces)
    best = [0.0] + [float("inf")] * n
    back = [0] * (n + 1)
    for j in range(1, n + 1):
        last = pieces[j - 1]
        for i in range(j - 1, -1, -1):
            first = pieces[i]
            length = last.span.end - first.span.start
            if i < j - 1 and (
                length > max_chars
                or not (first.whole and last.whole)
                or first.links != last.links
            ):
                break
            group = pieces[i:j]
            cost = best[i] + _chunk_cost(length, max_chars, min_chars) + _merge_up_cost([p.span.path for p in group])
            if cost < best[j] - 1e-9:
                best[j], back[j] = cost, i
    runs: list[tuple[int, int]] = []
    j = n
    while j > 0:
        runs.append((back[j], j))
        j = back[j]
    spans = []
    for i, j in reversed(runs):
        group = pieces[i:j]
        if len(group) == 1:
            spans.append(group[0].span)
            continue
        paths = [p.span.path for p in group]
        weights = [_non_space(source[p.span.start : p.span.end]) for p in group]
        spans.append(_Span(group[0].span.start, group[-1].span.end, _label(paths, weights), group[0].span.context))
    return spans


def _merge_up_cost(paths: list[tuple[str, ...]]) -> float:
    if len(paths) < 2:
        return 0.0
    common = len(paths[0])
    for path in paths[1:]:
        n = 0
        while n < min(common, len(path)) and paths[0][n] == path[n]:
            n += 1
        common = n
    # Labelled by no heading at all (sections under different top-level headings), a chunk loses every
    # section's path: that counts as one more level up.
    root = 1 if common == 0 and any(paths) else 0
    return _MERGE_UP * sum(max(0, len(p) - 1 - common) + root for p in paths)


def _to_chunks(source: str, doc: str, spans: list[_Span]) -> list[Chunk]:
    chunks = []
    for index, span in enumerate(spans):
        text = source[span.start : span.end]
        chunks.append(
            Chunk(
                doc=doc,
                section=HEADING_SEPARATOR.join(p for p in span.path if p),
                text=text,
                start=span.start,
                end=span.end,
                index=index,
                context=span.context,
                searchable=not _links_only(text),
            )
        )
    return chunks


def _parameters() -> dict[str, object]:
    """Every module-level constant that shapes chunks (costs, limits, patterns, titles), and those of
    the text rules it uses: markup's and the sentence rules', and the chunk record's (which sentences
    get a vector: the stored vectors are matched to sentences by their order)."""
    found: dict[str, object] = {}
    for module_name, namespace in (("chunking", globals()), ("markup", vars(markup)), ("sentences", vars(sentences)),
                                   ("chunk", vars(chunk_records))):
        for name, value in sorted(namespace.items()):
            if not name.lstrip("_").isupper() or name in ("__all__", "CHUNKER_VERSION"):
                continue
            stable = _stable(value)
            if stable is not None:
                found[f"{module_name}.{name}"] = stable
    return found


def _stable(value: object) -> object:
    """``value`` in a form whose repr is the same in every process (None: not a parameter)."""
    if isinstance(value, re.Pattern):
        return (value.pattern, value.flags)
    if isinstance(value, frozenset | set):
        return sorted(value)
    if isinstance(value, tuple | list):
        return [_stable(v) for v in value]
    if callable(value):
        return getattr(value, "__qualname__", None)  # a replacement function, by name
    return value if isinstance(value, int | float | str) else None


# Derived, not bumped by hand: changing a cost, a limit or a pattern re-chunks every document.
# (Code changes that do not touch a constant should bump _ALGORITHM.)
_ALGORITHM = 7  # the reader: 4 HTML sidebar menus; 5, 7 rst directive tables; 6 documentation-generator pages
def _version_of(parameters: dict[str, object]) -> str:
    return hashlib.sha256(repr(sorted(parameters.items())).encode()).hexdigest()[:16]


CHUNKER_VERSION = _version_of(_parameters())


def chunking_config(settings: Settings) -> dict[str, int | bool | str]:
    """What shapes the chunks, as the manifest records it: a different record re-chunks every document."""
    return {
        "version": CHUNKER_VERSION,
        "max_chars": settings.chunk_max_chars,
        "min_chars": settings.chunk_min_chars,
        "sentence_vectors": settings.sentence_vectors,
    }


# ---------------------------------------------------------------------------------------------
# Small text helpers
# ---------------------------------------------------------------------------------------------


def _extends(path: tuple[str, ...], prefix: tuple[str, ...]) -> bool:
    return path[: len(prefix)] == prefix


def _non_space(text: str) -> int:
    return sum(1 for ch in text if not ch.isspace())


def _title_like(text: str) -> bool:
    stripped = text.strip()
    cleaned = _clean_title(stripped, limit=None)
    if not cleaned or len(cleaned) > _MAX_TITLE:
        return False
    return not stripped.rstrip("*_ \t").endswith(_TITLE_STOPPERS)


def _item_title(text: str) -> tuple[str, bool] | None:
    """Title and boldness of a title-like list item, else None.

    For ``**KV Cache：推理加速的“笔记术”**`` the title is the bold text before the colon,
    ``KV Cache``: the name of the topic, not its tagline.
    """
    stripped = text.strip()
    if not _title_like(stripped):
        return None
    bold = _BOLD_ONLY_RE.match(stripped)
    if bold:
        inner = bold.group("t").strip()
        title = _clean_title(_TITLE_COLON_RE.split(inner, maxsplit=1)[0]) or _clean_title(inner)
        return (title, True) if title else None
    title = _clean_title(stripped)
    return (title, False) if title else None


def _clean_title(text: str, limit: int | None = _MAX_TITLE) -> str:
    """A heading path element: no Markdown markup, no leading numbering, no trailing colon."""
    text = _LINK_RE.sub(r"\1", text)
    text = text.replace("**", "").replace("__", "").replace("`", "")
    text = " ".join(text.split())
    text = _NUMBERING_RE.sub("", text)
    text = text.rstrip("：:").strip()
    return _shorten(text, limit) if limit else text


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    # Prefer to stop after a clause so the path stays readable.
    comma = max(head.rfind(c) for c in "，,、：:；;")
    if comma >= limit // 2:
        head = head[:comma]
    return head.rstrip() + "…"
