"""reStructuredText's directive tables (``list-table``, ``csv-table``) rewritten as pipe tables.

Their rows are nested bullet lists or CSV lines, which every reader downstream would take for a list
of one-word items ("- int", "- 5") or a paragraph: no row keeps its column names, and a one-character
value is no statement. A pipe table is the form the chunker cuts between rows, carrying the header
into the next chunk, and the answers read each row with its header (a grid table padded to its widest
cell outgrew a chunk and was cut as code). The directive's title stays, as a line of its own above the
table; its options go. A table without a header row, or that cannot be parsed, is left as it was.
"""

from __future__ import annotations

import csv
import re

from kb.text import CJK_CHAR

_DIRECTIVE_RE = re.compile(r"^([ \t]*)\.\.[ \t]+(list-table|csv-table)::[ \t]*(.*)$")
_OPTION_RE = re.compile(r"^[ \t]+:([\w-]+):[ \t]*(.*)$")
_ROW_RE = re.compile(r"^([ \t]*)\*[ \t]+-[ \t]+(.*)$")  # "* - first cell" opens a list-table row
_CELL_RE = re.compile(r"^([ \t]*)-[ \t]+(.*)$")  # "  - next cell"
_MAX_CELLS = 400  # rows x columns; a bigger table is left as it is


def directive_tables_as_pipe_tables(text: str) -> str:
    """``text`` with each ``list-table`` and ``csv-table`` that parses replaced by a pipe table."""
    if "-table::" not in text:
        return text
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _DIRECTIVE_RE.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        end = _body_end(lines, i, len(match.group(1).expandtabs()))
        table = _as_pipe_table(match.group(1), match.group(2), match.group(3).strip(), lines[i + 1 : end])
        if table is None:
            out.extend(lines[i:end])
        else:
            out.extend(table)
            if end < len(lines) and lines[end].strip():
                out.append("")
        i = end
    return "\n".join(out)


def _body_end(lines: list[str], start: int, indent: int) -> int:
    """The index after the directive's body: the lines indented deeper than the directive (blank lines
    inside it included)."""
    last = start
    for k in range(start + 1, len(lines)):
        line = lines[k].expandtabs()
        if not line.strip():
            continue
        if len(line) - len(line.lstrip()) <= indent:
            break
        last = k
    return last + 1


def _as_pipe_table(indent: str, kind: str, title: str, body: list[str]) -> list[str] | None:
    options: dict[str, str] = {}
    content: list[str] = []
    for line in body:
        option = _OPTION_RE.match(line)
        if option and not content:
            options[option.group(1).lower()] = option.group(2).strip()
        elif line.strip() or content:
            content.append(line)
    try:
        header_rows = int(options.get("header-rows", "1" if "header" in options else "0"))
    except ValueError:
        return None
    rows = _list_rows(content) if kind == "list-table" else _csv_rows(content, options)
    if not rows or any(len(row) != len(rows[0]) for row in rows) or len(rows) * len(rows[0]) > _MAX_CELLS:
        return None
    if kind == "csv-table" and "header" in options:
        header = _csv_line(options["header"])
        if len(header) != len(rows[0]):
            return None
        rows, header_rows = [header, *rows], 1
    if not 1 <= header_rows < len(rows):
        return None  # no header to read the rows with: nothing gained
    header, data = rows[0], rows[header_rows:]  # a second header row reads as no data
    table = [_pipe_row(header), "| " + " | ".join("---" for _ in header) + " |", *(_pipe_row(r) for r in data)]
    lead = [f"{indent}{title}", ""] if title else []
    return lead + [f"{indent}{line}" for line in table]


def _pipe_row(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _list_rows(content: list[str]) -> list[list[str]] | None:
    rows: list[list[str]] = []
    cell_indent = None
    for line in content:
        if not line.strip():
            continue
        row = _ROW_RE.match(line)
        cell = _CELL_RE.match(line)
        if row:
            rows.append([row.group(2).strip()])
            cell_indent = len(row.group(1)) + 2
        elif cell and rows and len(cell.group(1)) == cell_indent:
            rows[-1].append(cell.group(2).strip())
        elif rows and rows[-1]:
            rows[-1][-1] = _joined(rows[-1][-1], line.strip())  # a cell's continued text
        else:
            return None
    return rows


def _joined(text: str, more: str) -> str:
    """A cell's lines as one: a space between them, none between two CJK characters (or after CJK punctuation)."""
    if text and more and _CJK_END.search(text) and CJK_CHAR.match(more):
        return text + more
    return f"{text} {more}".strip()


_CJK_END = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]$")


def _csv_rows(content: list[str], options: dict[str, str]) -> list[list[str]] | None:
    if "file" in options or "url" in options:
        return None  # the data is elsewhere
    rows = [_csv_line(line) for line in content if line.strip()]
    return rows or None


def _csv_line(line: str) -> list[str]:
    return [cell.strip() for cell in next(csv.reader([line.strip()], skipinitialspace=True), [])]
