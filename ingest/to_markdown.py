"""HTML pages and Word documents as Markdown text, so that the Markdown chunker reads their outline.

Flattened to plain text (what llama-index's HTML and DOCX readers give), a page loses what the
retrieval leans on: its headings become lines like any other (no section paths, no FAQ entries to
merge), its tables become one cell per line, its code runs into the prose. Written as Markdown, an
``<h2>`` or a "Heading 2" paragraph is a ``##`` heading, a list item a ``-`` line, a table a pipe
table (one row per line, so a row is read with its header), ``<pre>`` a fenced block. A page's
navigation, header, footer, scripts and styles are not content and are left out. Citations point into
this text, as they point into a PDF's extracted text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_NOT_CONTENT = ("script", "style", "noscript", "template", "nav", "svg", "button")
# A page's header and footer are its site's, not its content, unless they hold a heading (an article's
# <header><h1>Release notes</h1>).
_CHROME = ("header", "footer")
_BLOCK_DESCENDANTS = ("h1", "h2", "h3", "h4", "h5", "h6", "p", "ul", "ol", "table", "pre", "blockquote", "div")
_BLOCKS = {"p", "div", "section", "article", "main", "aside", "figure", "figcaption", "dl", "dt", "dd", "details",
           "summary", "center", "body", "html"}
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")


# --- HTML -----------------------------------------------------------------------------------------
def html_to_markdown(html: str | bytes) -> str:
    """The content of an HTML page as Markdown (headings, paragraphs, lists, tables, code, quotes);
    bytes are decoded by the page's own ``<meta charset>`` (else UTF-8)."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup.find_all(_NOT_CONTENT):
        tag.decompose()
    for tag in soup.find_all(_CHROME):
        if not tag.find(list(_HEADINGS)):
            tag.decompose()
    for tag in soup.find_all(attrs={"role": "navigation"}):
        if not tag.find(list(_HEADINGS)) or _is_menu(tag):  # a Sphinx page's "Navigation" bar has a heading
            tag.decompose()
    for tag in [*soup.find_all("aside"), *soup.find_all(attrs={"role": list(_SIDEBAR_ROLES)})]:
        if not tag.decomposed and _is_menu(tag):  # a sidebar; an aside of prose (a callout, a note) is content
            tag.decompose()
    for tag in soup.find_all(class_=list(_THEME_CHROME)):
        tag.decompose()
    _documentation_structure(soup)
    root = soup.body or soup
    try:
        return _joined(_html_blocks(root))
    except RecursionError:  # hundreds of nested <div>s: their text, without the outline
        return _inline_text(root.get_text("\n"))


# Page chrome of the documentation generators most pages come from (Sphinx and its Read the Docs theme,
# MkDocs Material): sidebars, the related-pages bar, the footer. Their class names, not their content.
_THEME_CHROME = ("sphinxsidebar", "related", "footer", "wy-nav-side", "rst-footer-buttons", "md-sidebar",
                 "md-footer", "md-header", "headerlink")
_SIDEBAR_ROLES = ("complementary", "search")


def _documentation_structure(soup: Any) -> None:
    """A generated documentation page's structure in the terms the Markdown reader knows.

    An admonition's title paragraph ("Note", "Warning") leads its first paragraph ("Note: …") instead of
    standing as a sentence of its own. A permalink ("¶") goes from its heading. An API entry of a
    Sphinx domain (``<dl class="py function"><dt id="pkg.memoize">signature</dt><dd>…``) is a section
    titled by its name under the current heading, its signature a paragraph: without it, a class's
    parameters and the next function's ran together under one "API reference".
    """
    for link in soup.find_all("a"):
        if link.get_text(strip=True) in ("¶", "#", "§", "🔗") and str(link.get("href", "")).startswith("#"):
            link.decompose()
    for title in soup.find_all("p", class_="admonition-title"):
        label = title.get_text(" ", strip=True)
        following = title.find_next_sibling("p")
        if following is not None and label:
            following.insert(0, f"{label.rstrip(':')}: ")
        title.decompose()
    made: set[int] = set()
    for entry in soup.find_all("dt", id=True):
        if entry.find_parent("dl") is None or not entry.get_text(strip=True):
            continue
        above = entry.find_previous(lambda t: t.name in _HEADINGS and id(t) not in made)
        nesting = len(entry.find_parents("dl"))  # a class's methods are one level under the class
        level = min(6, (_HEADINGS[above.name] if above is not None else 1) + nesting)
        heading = soup.new_tag(f"h{level}")
        heading.string = str(entry["id"])
        signature = soup.new_tag("p")
        signature.string = " ".join(entry.get_text().split())
        made.add(id(heading))
        entry.replace_with(heading)
        heading.insert_after(signature)


def _is_menu(tag: Any) -> bool:
    """Whether ``tag`` is a menu: three links or more, which hold at least half of its text (a callout
    whose one sentence is a link is no menu), and no ``role="note"``."""
    links = tag.find_all("a")
    if tag.get("role") == "note" or len(links) < _MENU_LINKS:
        return False
    text = len("".join(tag.get_text().split()))
    linked = sum(len("".join(a.get_text().split())) for a in links)
    return 2 * linked >= text


_MENU_LINKS = 3


def _html_blocks(node: Any, depth: int = 0) -> Iterator[str]:
    """Markdown blocks of ``node``'s children, in order; inline runs between blocks become paragraphs."""
    from bs4 import NavigableString, Tag

    inline: list[str] = []

    def paragraph() -> Iterator[str]:
        text = _inline_text("".join(inline))
        inline.clear()
        if text:
            yield text

    for child in node.children:
        if isinstance(child, NavigableString):
            if type(child) is NavigableString:  # not a comment, doctype or CDATA
                inline.append(str(child))
            continue
        if not isinstance(child, Tag):
            continue
        name = child.name.lower()
        if name == "br":
            inline.append("\n")
            continue
        block = _html_block(child, name, depth)
        if block is None and child.find(_BLOCK_DESCENDANTS):
            block = list(_html_blocks(child, depth))  # an inline element around blocks (<a><h2>…</h2></a>)
        if block is None:
            inline.append(_inline_markup(child))
            continue
        yield from paragraph()
        yield from block
    yield from paragraph()


def _html_block(tag: Any, name: str, depth: int) -> Iterable[str] | None:
    """The Markdown of a block element, or None for an inline one."""
    if name in _HEADINGS:
        title = _inline_text(tag.get_text(" "))
        return [f"{'#' * _HEADINGS[name]} {title}"] if title else []
    if name == "pre":
        code = tag.get_text().strip("\n")
        return [f"```\n{code}\n```"] if code.strip() else []
    if name in ("ul", "ol"):
        return [_html_list(tag, name == "ol", depth)]
    if name == "table":
        return [_pipe_table(_html_rows(tag))]
    if name == "blockquote":
        inner = _joined(_html_blocks(tag, depth))
        return ["\n".join(f"> {line}" if line else ">" for line in inner.splitlines())] if inner else []
    if name == "hr":
        return ["---"]
    if name in _BLOCKS or name == "li":
        return list(_html_blocks(tag, depth))
    return None


def _html_list(tag: Any, numbered: bool, depth: int) -> str:
    items = []
    for n, item in enumerate(tag.find_all("li", recursive=False), 1):
        marker = f"{n}." if numbered else "-"
        body = _joined(_html_blocks(item, depth + 1)).splitlines() or [""]
        pad = " " * (len(marker) + 1)
        items.append("\n".join([f"{marker} {body[0]}", *(f"{pad}{line}" if line else "" for line in body[1:])]))
    return "\n".join(items)


def _html_rows(table: Any) -> list[list[str]]:
    rows = []
    for row in table.find_all("tr"):
        if row.find_parent("table") is not table:
            continue  # a nested table's rows belong to it
        cells = []
        for cell in row.find_all(("th", "td"), recursive=False):
            span = str(cell.get("colspan", "1"))
            # A cell spanning columns stands in each, so the cells after it stay under their headers.
            cells.extend([_inline_text(cell.get_text(" "))] * (int(span) if span.isdigit() and 0 < int(span) < 50 else 1))
        if any(cells):
            rows.append(cells)
    return rows


def _inline_markup(tag: Any) -> str:
    """An inline element's text; code keeps its backticks (answers show inline code as such)."""
    text = tag.get_text()
    if tag.name.lower() in ("code", "kbd", "tt") and text.strip() and "`" not in text:
        return f"`{text.strip()}`"
    return text


# --- Word -----------------------------------------------------------------------------------------
def docx_to_markdown(path: Any) -> str:
    """The paragraphs and tables of a Word document, in order, as Markdown: a "Heading N" (or "Title")
    paragraph is a heading, a "List ..." paragraph a list item."""
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    document = docx.Document(str(path))
    blocks: list[str] = []
    for element in document.element.body.iterchildren():
        tag = element.tag.rsplit("}", 1)[-1]
        if tag == "p":
            blocks.append(_docx_paragraph(Paragraph(element, document)))
        elif tag == "tbl":
            table = Table(element, document)
            # python-docx repeats a merged cell in each column it spans: the columns stay aligned.
            blocks.append(_pipe_table([[_inline_text(cell.text) for cell in row.cells] for row in table.rows]))
    return _joined(blocks)


def _docx_paragraph(paragraph: Any) -> str:
    text = _inline_text(paragraph.text)
    style = (paragraph.style.name if paragraph.style is not None else "") or ""
    if not text:
        return ""
    if style == "Title":
        return f"# {text}"
    heading = re.fullmatch(r"Heading (\d)", style)
    if heading:
        return f"{'#' * min(6, int(heading.group(1)))} {text}"
    if style.startswith("List"):
        return f"{'1.' if 'Number' in style else '-'} {text}"
    return text


# --- shared ---------------------------------------------------------------------------------------
def _pipe_table(rows: list[list[str]]) -> str:
    """Rows as a Markdown table, the first as its header, rows padded to one width; a pipe in a cell
    becomes " / " (escaped, it would still split the row for the table readers)."""
    if not rows:
        return ""
    width = max(len(row) for row in rows)

    def line(cells: list[str]) -> str:
        cells = [c.replace("|", " / ").replace("\n", " ") for c in cells] + [""] * (width - len(cells))
        return "| " + " | ".join(cells) + " |"

    return "\n".join([line(rows[0]), "| " + " | ".join(["---"] * width) + " |", *(line(r) for r in rows[1:])])


def _inline_text(text: str) -> str:
    """Runs of white space as one space, each line trimmed, empty lines dropped."""
    lines = (_SPACES.sub(" ", line).strip() for line in text.replace("\r\n", "\n").split("\n"))
    return "\n".join(line for line in lines if line)


def _joined(blocks: Iterable[str]) -> str:
    return "\n\n".join(block for block in blocks if block and block.strip())
