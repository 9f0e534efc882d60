"""Markup that is not content: what retrievers should not see, and text that is only links.

A chunk's ``text`` is the exact source slice (citations point into the file); what is embedded and
BM25-indexed is that text with the markup noise of real-world documents taken out: HTML tags,
badges, link targets and bare URLs, admonition markers, fence lines and base64 blobs. Those carry
tokens (``https``, ``shields``, ``img``, ``iVBORw0KGgo...``) that match questions they have
nothing to do with and dilute the embedding of the prose around them.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from functools import lru_cache

# Tags real READMEs use for layout; a closed list, so that ``List<String>`` or ``<think>`` in
# prose or code stays text.
_HTML_TAGS = (
    "a abbr b big blockquote br center code dd details div dl dt em figcaption figure font h1 h2 h3 h4 h5 h6 "
    "hr i img input kbd li ol p picture pre s small source span strike strong sub summary sup table tbody td "
    "tfoot th thead tr tt u ul video"
).split()
_TAG_RE = re.compile(rf"</?(?:{'|'.join(_HTML_TAGS)})(?:\s[^<>]*)?/?>", re.IGNORECASE)
_COMMENT_RE = re.compile(r"<!--.*?-->", re.DOTALL)
LAYOUT_TAG_RE = _TAG_RE  # for what answers show: a quoted line's <a>, <b> or <br> is markup there too
# Fenced code (CommonMark): a run of three or more backticks or tildes opens a block, and a line of only
# that character, at least as long, closes it. The chunker keeps such blocks whole; the sentence splitter
# reads their "#" lines as comments. Display math between "$$" lines is fenced the same way: one block,
# never prose (a formula line had run on into the closing "$$").
FENCE_RE = re.compile(r"^[ \t]*(`{3,}|~{3,}|\$\$(?=[ \t]*$))")
# A list item's marker: a bullet, or a number with "." / ")" / "、". The chunker cuts and titles by it;
# the extractive answers read a list item's later sentences with its first ones.
LIST_ITEM_RE = re.compile(r"^[ \t]*(?:(?P<bullet>[-*+•])(?=[ \t]|$)|(?P<num>\d{1,9})(?:[.)](?=[ \t]|$)|、))[ \t]*")


# Chinese numbering of a document's parts: "一、" (level 1) and "（一）" (level 2); on a line of its own that
# reads like a title it heads what follows (reports, course notes, text extracted from PDFs).
CN_NUMBERING_RE = re.compile(r"^(?:([一二三四五六七八九十百]+)[、．.]|[（(][一二三四五六七八九十]+[）)])[ \t]*(?=\S)")


# reStructuredText code: a code directive, or a paragraph ending in "::" (a literal block), opens a
# block of the lines indented under it. The chunker keeps it whole; the sentence splitter reads it as code.
RST_CODE_RE = re.compile(r"^[ \t]*\.\.[ \t]+(?:code-block|code|sourcecode|literalinclude|parsed-literal|math)::")


def opens_rst_code(line: str) -> bool:
    """Whether the lines indented under ``line`` are reStructuredText code (a directive's options too)."""
    stripped = line.strip()
    if RST_CODE_RE.match(line):
        return True
    return stripped.endswith("::") and not stripped.startswith("..") and stripped.rstrip(":") != ""


def closes_fence(line: str, marker: str) -> bool:
    """Whether ``line`` closes the code block that the fence ``marker`` (e.g. "```") opened."""
    stripped = line.strip()
    return stripped.startswith(marker[0] * len(marker)) and not stripped.strip(marker[0])


_BASE64_RE = re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+|[A-Za-z0-9+/]{80,}={0,2}")
_BADGE_RE = re.compile(r"\[!\[[^\]\n]*\]\([^)\n]*\)\]\([^)\n]*\)")
_IMAGE_RE = re.compile(r"!\[([^\]\n]*)\]\([^)\n]*\)")
_LINK_RE = re.compile(r"\[([^\]\n]*)\]\([^)\n]*\)")
_REF_LINK_RE = re.compile(r"\[([^\]\n]+)\]\[[^\]\n]*\]")
_REF_DEF_RE = re.compile(r"^[ \t]*\[(?!\^)[^\]\n]+\]:[ \t]*\S+.*$", re.MULTILINE)  # "[^1]: …" is a footnote: text
# A footnote's mark ("…installed.[^1]") and its definition's label ("[^1]: The flag was added in 2.4.").
FOOTNOTE_MARK_RE = re.compile(r"^[ \t]*\[\^[^\]\s]+\]:[ \t]*|\[\^[^\]\s]+\]", re.MULTILINE)
_RST_LINK_RE = re.compile(r"`([^`<\n]+?)\s*<[^>\n]+>`_{1,2}")
_URL_RE = re.compile(r"<?(?:https?|ftp)://[^\s)>\]]+>?")
# Admonitions: Docusaurus/MDX ``:::tip[Title]``, MkDocs ``!!! note "Title"`` / ``??? note``,
# GitHub ``> [!NOTE]``, reStructuredText ``.. note::``. The marker goes, a title stays.
_COLON_FENCE_RE = re.compile(r"^[ \t]*:{3,}[ \t]*(?:[\w-]+)?[ \t]*(?:\[([^\]\n]*)\])?[^\n]*$", re.MULTILINE)
_MKDOCS_RE = re.compile(r'^[ \t]*(?:!!!|\?\?\?\+?)[ \t]+[\w-]+(?:[ \t]+"([^"\n]*)")?[^\n]*$', re.MULTILINE)
# MkDocs Material's content tab ('=== "pip"'), whose indented body is the tab's content.
_CONTENT_TAB_RE = re.compile(r'^[ \t]*===\+?[ \t]+"([^"\n]*)"[ \t]*$', re.MULTILINE)


def is_block_title(line: str) -> bool:
    """Whether ``line`` opens an MkDocs admonition ('!!! note "Supported versions"') or content tab
    ('=== "From source"'): a title over the indented block under it, never a sentence of its own."""
    return bool(_MKDOCS_RE.fullmatch(line.strip()) or _CONTENT_TAB_RE.fullmatch(line.strip()))
_GITHUB_ALERT_RE = re.compile(r"^([ \t]*>[ \t]*)\[!(?:NOTE|TIP|IMPORTANT|WARNING|CAUTION)\][ \t]*$",
                              re.MULTILINE | re.IGNORECASE)
_RST_DIRECTIVE_RE = re.compile(r"^[ \t]*\.\.[ \t]+[\w:-]+::[^\n]*$", re.MULTILINE)
# An admonition's text may start on its directive's line (".. warning:: Never enable debug mode in
# production"): the marker goes, that text stays.
_ADMONITIONS = (r"(?:admonition|attention|caution|danger|error|hint|important|note|seealso|tip|todo|warning"
                r"|deprecated|versionadded|versionchanged|rubric)::")
_RST_ADMONITION_RE = re.compile(rf"^([ \t]*)\.\.[ \t]+{_ADMONITIONS}[ \t]*", re.MULTILINE | re.IGNORECASE)
_ADMONITION_MARKER_RE = re.compile(rf"^(?:\.\.[ \t]+)?{_ADMONITIONS}[ \t]*", re.IGNORECASE)
_RST_ROLE_RE = re.compile(r":[\w:-]+:`([^`\n]*)`")
# A collapsible block of a README, ``<details><summary>Title</summary> ... </details>``: GitHub shows it
# as a titled section, so the outline treats the summary line as a heading and the closing tag as its end.
DETAILS_SUMMARY_RE = re.compile(r"^[ \t]*(?:<details\b[^>]*>[ \t]*)?<summary\b[^>]*>(?P<title>.*?)</summary>[ \t]*$",
                                re.IGNORECASE)
DETAILS_CLOSE_RE = re.compile(r"^[ \t]*</details>[ \t]*$", re.IGNORECASE)
_BLANKS_RE = re.compile(r"[ \t]+\n")
_MANY_NEWLINES_RE = re.compile(r"\n{3,}")


# A grid table's border line (reStructuredText, some Markdown): "+-----+-----+", "+=====+=====+" under
# its header. Like the |---| row, it is markup between rows.
GRID_BORDER_RE = re.compile(r"^[ \t]*\+(?::?[-=]+:?\+)+[ \t]*$", re.MULTILINE)
GRID_HEADER_BORDER_RE = re.compile(r"^[ \t]*\+(?::?=+:?\+)+[ \t]*$")  # the border under a grid table's header


def table_separator(*, first_dashes: int = 1, whole_row: bool = True) -> re.Pattern[str]:
    """The row under a Markdown table's header (``|---|:--:|``): the one definition of it.

    Lines are matched one at a time (``re.MULTILINE``), blanks in front allowed. ``first_dashes``:
    how many dashes the first cell needs; ``whole_row=False`` looks only at how the line starts.
    """
    head = rf"^[ \t]*\|?[ \t]*:?-{{{first_dashes},}}"
    if not whole_row:
        return re.compile(head, re.MULTILINE)
    return re.compile(rf"{head}:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$", re.MULTILINE)


_WORDISH_RE = re.compile(r"[\u4e00-\u9fff\u3040-\u30ff\uac00-\ud7af]|[A-Za-z0-9]+")
# A chunk with fewer words of its own than this, outside links, images and URLs, is a link list.
MIN_PROSE_WORDS = 8
LINK_RATIO = 3  # ... and the links hold at least this many times its own words


def _alt_text(match: re.Match[str]) -> str:
    return match.group(1).lstrip("# ")


def _title_or_nothing(match: re.Match[str]) -> str:
    return match.group(1) or ""


# What clean_markup takes out, in order: each pattern with what stands in its place.
_CLEANING: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    (_COMMENT_RE, " "),
    (_BASE64_RE, " "),
    (_BADGE_RE, " "),
    (_IMAGE_RE, _alt_text),
    (_LINK_RE, r"\1"),
    (_REF_LINK_RE, r"\1"),
    (_RST_LINK_RE, r"\1"),
    (_REF_DEF_RE, ""),
    (FOOTNOTE_MARK_RE, ""),
    (_RST_ROLE_RE, r"\1"),
    (_TAG_RE, " "),  # before URLs: a tag's src="https://..." must go with the tag
    (_URL_RE, " "),
    (_COLON_FENCE_RE, _title_or_nothing),
    (_MKDOCS_RE, _title_or_nothing),
    (_CONTENT_TAB_RE, r"\1"),
    (_GITHUB_ALERT_RE, ""),
    (_RST_ADMONITION_RE, r"\1"),
    (_RST_DIRECTIVE_RE, ""),
    (re.compile(r"^[ \t]*(?:`{3,}|~{3,})[^\n]*$", re.MULTILINE), ""),  # code fence lines
    # Three dashes at least: a "--" line in prose is text, a "---" rule is noise like the separator.
    (table_separator(first_dashes=3), ""),
    (GRID_BORDER_RE, ""),
    (re.compile(r"^[ \t]*(?:>[ \t]?)+", re.MULTILINE), ""),  # quote markers
    (re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+", re.MULTILINE), ""),  # heading marks (the heading stays)
    (re.compile(r"\*\*|__|`"), ""),  # emphasis and code marks
)


# Underlined titles: Markdown's setext headings (=== or ---) and reStructuredText's section titles (a run
# of one punctuation character; docutils wants it as wide as the title, real CJK files are sloppier).
SETEXT_UNDERLINE_RE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
RST_ADORNMENT_RE = re.compile(r"^([!-/:-@\[-`{-~])\1{2,}[ \t]*$")


_MAX_TITLE_CHARS = 120


def underlines_title(line: str, underline: str) -> bool:
    """Whether ``underline`` makes ``line``, the line above it, a title (a one-line paragraph of prose)."""
    line, underline = line.rstrip("\r\n"), underline.strip()
    stripped = line.strip()
    indent = len(line) - len(line.lstrip(" \t"))
    item = LIST_ITEM_RE.match(line)
    if not stripped or indent > 3 or stripped.startswith((">", "<", "#")) or "|" in line:
        return False
    if item and item.group("bullet"):
        return False  # a list's last item above a rule; a numbered title ("1. 单机部署") is a title
    if RST_ADORNMENT_RE.match(stripped) or FENCE_RE.match(line) or len(stripped) > _MAX_TITLE_CHARS:
        return False  # an overline, a fence, or a paragraph above a rule
    adornment = RST_ADORNMENT_RE.match(underline)
    # ":::" closes an MDX admonition, "***" and "___" are Markdown rules: no title's.
    return bool(SETEXT_UNDERLINE_RE.match(underline) or (adornment and adornment.group(1) not in ":*_" and not indent))


# An HTML table in Markdown (wide model tables of READMEs): a row from <tr> to </tr>, on one line or
# several, is a table row as a "| a | b |" line is; its cells are <th>/<td>. Lines of only the table's
# own tags (<table>, <tbody>, </tr> ...) state nothing.
# (A row ends before the next "<tr": an unclosed one is no row, and the search stays linear.)
HTML_ROW_RE = re.compile(r"<tr\b[^>]*>(?:(?!<tr\b|</tr)[\s\S])*</tr\s*>", re.IGNORECASE)
HTML_CELL_RE = re.compile(r"<t[hd]\b[^>]*>(.*?)(?:</t[hd]\s*>|(?=<t[hd]\b)|$)", re.IGNORECASE | re.DOTALL)
HTML_TABLE_OPEN_RE = re.compile(r"<table\b", re.IGNORECASE)
_TABLE_TAG = r"</?(?:table|thead|tbody|tfoot|tr|colgroup|col)\b[^>]*>"
HTML_TABLE_TAGS_RE = re.compile(rf"^[ \t]*(?:{_TABLE_TAG}[ \t]*)+$", re.IGNORECASE)
HTML_TABLE_TAGS_PREFIX_RE = re.compile(rf"(?:\s*{_TABLE_TAG})*\s*", re.IGNORECASE)  # what may lead into text


def html_text(fragment: str) -> str:
    """An HTML fragment's text on one line: layout tags gone, entities decoded, whitespace collapsed."""
    return " ".join(_TAG_RE.sub(" ", html.unescape(fragment)).split())


def html_cells(row: str) -> list[str]:
    """The cells of an HTML table row, as text (tags and entities gone)."""
    return [html_text(cell) for cell in HTML_CELL_RE.findall(row)]


def is_alert_marker(line: str) -> bool:
    """A GitHub alert's first line ("> [!NOTE]"): a label of the quote under it, not its first words."""
    return bool(_GITHUB_ALERT_RE.match(line.strip()))


# A line that is only a short bold label, "**Parameters**", "**See also**" or "__注意事项__": an API
# reference's or a README's sub-heading. A longer one, or one with a number, may state a fact ("**默认端口为
# 8080**", "**This project is no longer maintained**"); one ending like a sentence or a label ("**优点：**",
# "**Q: Why?**") is text.
_BOLD_TITLE_RE = re.compile(r"^[ \t]*(\*\*|__)(?P<title>(?:[A-Za-z]+(?: [A-Za-z]+){0,2}|[\u4e00-\u9fff]{1,6}))\1[ \t]*$")


def is_bold_title(line: str) -> bool:
    """Whether ``line`` is a bold-only sub-heading (see ``_BOLD_TITLE_RE``)."""
    return bool(_BOLD_TITLE_RE.match(line))


# An HTML heading on a line of its own, maybe inside layout tags: '<h1 align="center">灵犀-VL</h1>',
# '<div align="center"><h2>Quick start</h2></div>' (READMEs that centre their titles).
_HTML_HEADING_RE = re.compile(
    r"^[ \t]*(?:<(?:div|p|center|span|a)\b[^<>]*>[ \t]*)*<h([1-6])\b[^<>]*>(?P<title>.*?)</h\1\s*>"
    r"[ \t]*(?:</(?:div|p|center|span|a)\s*>[ \t]*)*$", re.IGNORECASE)


def html_heading(line: str) -> tuple[int, str] | None:
    """The level and title (tags removed) of a line that is only an HTML heading; else None. A heading
    holding no words (a logo image) is none."""
    match = _HTML_HEADING_RE.match(line)
    if not match:
        return None
    title = html_text(match.group("title"))
    return (int(match.group(1)), title) if _WORDISH_RE.search(title) else None


def details_title(line: str) -> str | None:
    """The title of a ``<summary>`` line that opens a collapsible block, tags removed; else None."""
    match = DETAILS_SUMMARY_RE.match(line)
    return html_text(match.group("title")) if match else None


def clean_markup(text: str) -> str:
    """``text`` without markup noise, for embedding and BM25 (never for quoting)."""
    for pattern, replacement in _CLEANING:
        text = pattern.sub(replacement, text)
    text = html.unescape(text).replace("\xa0", " ")
    text = _BLANKS_RE.sub("\n", text)
    text = _MANY_NEWLINES_RE.sub("\n\n", text)
    return text.strip()


def without_admonition_marker(sentence: str) -> str:
    """``sentence`` without the reStructuredText admonition marker it starts with: "warning:: Never …" is
    "Never …" (the sentence splitter cuts a directive's line after its two dots)."""
    return _ADMONITION_MARKER_RE.sub("", sentence, count=1)


_RST_OPTION_RE = re.compile(r"^[ \t]+:[\w-]+:(?:[ \t][^\n]*)?$")  # "   :header-rows: 1" under a directive


# Directives whose indented body is instructions to the builder, not text: a toctree's entries
# ("configuration", "deployment"), an include's path. (``only`` and autodoc bodies hold prose.)
_RST_MARKUP_BODY_RE = re.compile(
    r"^([ \t]*)\.\.[ \t]+(?:toctree|contents|include|raw|meta|index|highlight|sectnum|tabularcolumns)::",
    re.IGNORECASE)


@lru_cache(maxsize=1024)
def markup_lines(text: str) -> frozenset[int]:
    """Where the lines of ``text`` that are only markup start: lines that ``markup_only`` finds empty, the
    option lines of a reStructuredText directive (".. list-table:: Title" then "   :header-rows: 1"), and
    the body of a directive that is no text (a toctree's entries). One pass over the text, each line
    cleaned once; cached, as an answer reads each passage's candidates several times (the reorder, the
    scorer, the choice)."""
    found: set[int] = set()
    start, in_options, body_indent = 0, False, None
    for line in text.splitlines(keepends=True):
        bare = line.rstrip("\r\n")
        indent = len(bare.expandtabs()) - len(bare.expandtabs().lstrip())
        if body_indent is not None and (not bare.strip() or indent > body_indent):
            found.add(start)  # a toctree's option or entry, or a blank line inside its body
        elif in_options and _RST_OPTION_RE.match(bare):
            found.add(start)
        else:
            in_options = bool(_RST_DIRECTIVE_RE.match(bare))
            body = _RST_MARKUP_BODY_RE.match(bare)
            body_indent = len(body.group(1).expandtabs()) if body else None
            if markup_only(bare):
                found.add(start)
        start += len(line)
    return frozenset(found)


def markup_only(line: str) -> bool:
    """Whether ``line`` is nothing but markup (an admonition's marker, a directive, a fence): cleaned, no
    word of it is left."""
    return not _WORDISH_RE.search(clean_markup(line))


def prose_words(text: str) -> int:
    """Words (a CJK character counts as one) outside links, images, URLs and tags; headings count."""
    text = _COMMENT_RE.sub(" ", text)
    text = _BASE64_RE.sub(" ", text)
    for pattern in (_BADGE_RE, _IMAGE_RE, _LINK_RE, _REF_LINK_RE, _RST_LINK_RE, _REF_DEF_RE, _TAG_RE, _URL_RE):
        text = pattern.sub(" ", text)
    return len(_WORDISH_RE.findall(text))


def link_words(text: str) -> int:
    """Words in the visible text of links and images (badges count as none)."""
    text = _BADGE_RE.sub(" ", text)
    shown = [m.group(1) for m in _IMAGE_RE.finditer(text)]
    text = _IMAGE_RE.sub(" ", text)
    shown += [m.group(1) for p in (_LINK_RE, _REF_LINK_RE, _RST_LINK_RE) for m in p.finditer(text)]
    return sum(len(_WORDISH_RE.findall(s)) for s in shown)


def is_link_only(text: str) -> bool:
    """True for text that is only links, images, badges or base64 data (a table of contents, a badge
    row, a reference list, an inlined image): fewer than ``MIN_PROSE_WORDS`` words of its own, and those few (a heading)
    dwarfed by the links' words. "See [the training example](...)" under a question stays prose."""
    own = prose_words(text)
    if own >= MIN_PROSE_WORDS:
        return False
    has_markup = bool(_BADGE_RE.search(text) or _IMAGE_RE.search(text) or _LINK_RE.search(text)
                      or _URL_RE.search(text) or _TAG_RE.search(text) or _BASE64_RE.search(text))
    return has_markup and own * LINK_RATIO <= link_words(text)
