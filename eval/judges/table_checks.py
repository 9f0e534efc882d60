"""Markdown tables inside passages, and the two ways a claim misreads one.

- Wrong row: the claim names one row's label (its first cell) while its content comes from another row.
  Content is located by the row that holds most of the claim's content units (character bigrams /
  words); for a claim in another language than the table, by the e5 similarity of claim and row.
- Wrong column: the claim names a column (a header cell) and pairs it with a value that stands in a
  different column of that row. Each value unit is paired with the nearest column named before it
  ("TPOT 变差、TTFT 变好" pairs 变差 with TPOT). Flagged when two or more value units sit in another
  column, or one does and none sits only in the named column.

A cell's name is recognised by its *distinctive* units: those no sibling cell shares ("常规模型" vs
"大模型": 常规, 规模 vs 大模), per variant ("RAG (检索增强)" has the variants "RAG" and "检索增强").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from chat.grounding import content_units
from eval.judges.checks import has_term, technical_terms
from eval.judges.claims import protect
from kb.markup import table_separator
from kb.text import normalize

Similarity = Callable[[str, str], float]
CROSS_LINGUAL_CELL_MARGIN = 0.01  # e5 cosine by which another column's cell must beat the named one
_SEPARATOR = table_separator(first_dashes=2, whole_row=False)  # a table block's |---| row
_PARENS = re.compile(r"[(（]([^)）]*)[)）]")
_LATIN = re.compile(r"[A-Za-z][A-Za-z0-9.+\-/]*")


@dataclass
class Table:
    header: list[str] | None
    rows: list[list[str]]

    def row_text(self, i: int) -> str:
        return " | ".join(self.rows[i])


def split_cells(line: str) -> list[str]:
    return [cell.replace("**", "").replace("<br>", "，").strip() for cell in line.strip().strip("|").split("|")]


def tables_in(text: str) -> list[Table]:
    """Tables as header + rows; a passage that starts inside a table may have a partial header or none."""
    tables: list[Table] = []
    block: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.count("|") >= 2:
            block.append(line.strip())
            continue
        if block:
            tables.append(_parse(block))
            block = []
    return [t for t in tables if t.rows]


def _parse(block: list[str]) -> Table:
    separator = next((i for i, line in enumerate(block) if _SEPARATOR.match(line)), None)
    if separator is None:
        return Table(None, [split_cells(line) for line in block])
    rows = [split_cells(line) for line in block[separator + 1 :]]
    header = split_cells(block[separator - 1]) if separator >= 1 else None
    width = max((len(r) for r in rows), default=0)
    if header is not None and len(header) < width:  # a passage cut inside the header row keeps its right end
        header = [""] * (width - len(header)) + header
    return Table(header, rows)


def units(text: str) -> set[str]:
    return content_units(protect(text))


def _variants(cell: str) -> list[str]:
    """A cell's names: outside and inside parentheses, and each split by script ("SFT 微调": SFT, 微调)."""
    inner = _PARENS.findall(cell)
    outer = _PARENS.sub(" ", cell).strip()
    names = [v.strip() for v in [outer, *inner] if v.strip()]
    for name in list(names):
        cjk, latin = _LATIN.sub(" ", name).strip(), " ".join(_LATIN.findall(name))
        names.extend(part for part in (latin, cjk) if part and part != name)
    return names


def mentions(claim: str, names: Sequence[str], values: str = "") -> dict[int, int]:
    """Which of ``names`` (sibling cells) the claim names -> position of the first mention.

    A name's unit that also occurs in ``values`` (the row's cells) may be part of a value, not a mention.
    """
    text = normalize(claim)
    values = normalize(values)
    found: dict[int, int] = {}
    all_units = [units(name) for name in names]
    for i, name in enumerate(names):
        others = set().union(*(u for j, u in enumerate(all_units) if j != i)) if len(names) > 1 else set()
        for variant in _variants(name):
            distinctive = units(variant) - others - {u for u in units(variant) if u in values}
            if distinctive and all(u in text for u in distinctive):
                found[i] = min(text.find(u) for u in distinctive)
                break
    return found


def best_row(claim: str, table: Table, similarity: Similarity | None) -> int | None:
    claim_units = units(claim)
    coverage = [sum(1 for u in claim_units if u in normalize(table.row_text(i))) for i in range(len(table.rows))]
    if max(coverage, default=0) > 0:
        top = max(coverage)
        tied = [i for i, c in enumerate(coverage) if c == top]
        if len(tied) == 1 or similarity is None:
            return tied[0]
        return max(tied, key=lambda i: similarity(claim, table.row_text(i)))
    if similarity is None:
        return None
    return max(range(len(table.rows)), key=lambda i: similarity(claim, table.row_text(i)))


def table_problem(claim: str, table: Table, similarity: Similarity | None = None) -> str | None:
    """Why the claim misreads ``table`` (wrong row or wrong column), or None."""
    row = best_row(claim, table, similarity)
    if row is None:
        return None
    labels = [r[0] if r else "" for r in table.rows]
    named_rows = mentions(claim, labels)
    if named_rows and row not in named_rows:
        other = labels[min(named_rows, key=named_rows.get)]  # type: ignore[arg-type]
        return f"wrong table row: names “{other}” but the content is from the row “{labels[row]}”"
    stray = _foreign_row_terms(claim, table, row)
    if stray:
        return f"wrong table row: “{stray[0]}” belongs to another row than the content (row “{labels[row]}”)"
    if table.header and len(table.header) >= 3:
        return _column_problem(claim, table, row, similarity)
    return None


def _foreign_row_terms(claim: str, table: Table, row: int) -> list[str]:
    """Technical terms of the claim that stand only in other rows: content must come from ONE row + header."""
    own = normalize(" | ".join([*(table.header or []), *table.rows[row]]))
    others = [normalize(table.row_text(i)) for i in range(len(table.rows)) if i != row]
    return sorted(t for t in technical_terms(claim)
                  if not has_term(own, t) and any(has_term(text, t) for text in others))


def _column_problem(claim: str, table: Table, row: int, similarity: Similarity | None) -> str | None:
    assert table.header is not None
    names = table.header[1:]
    named = mentions(claim, names, " ".join(table.rows[row][1:]))  # value column (0-based) -> position
    if not named:
        return None
    cells = [normalize(c) for c in table.rows[row][1 : len(names) + 1]]
    if len(cells) < 2:
        return None
    text = normalize(claim)
    skip = units(" ".join(names)) | units(table.rows[row][0])
    foreign = own = 0
    for unit in units(claim) - skip:
        holders = [c for c, cell in enumerate(cells) if unit in cell]
        if not holders or len(holders) == len(cells):
            continue
        position = text.find(unit)
        before = [c for c, at in named.items() if at <= position]
        column = max(before, key=lambda c: named[c]) if before else min(named, key=named.get)  # type: ignore[arg-type]
        if column in holders:
            own += 1
        else:
            foreign += 1
    if foreign >= 2 or (foreign and not own):
        return f"wrong table column: pairs “{names[next(iter(named))]}” with a value from another column"
    if foreign or own or similarity is None or len(named) != 1:
        return None
    # No shared words (a claim in another language): compare the claim with each value cell.
    column = next(iter(named))
    scores = [similarity(claim, cell) for cell in table.rows[row][1 : len(names) + 1]]
    best = max(range(len(scores)), key=scores.__getitem__)
    if best != column and scores[best] - scores[column] >= CROSS_LINGUAL_CELL_MARGIN:
        return f"wrong table column: “{names[column]}” does not hold this value; “{names[best]}” does"
    return None
