"""Integrity checks for the gold QA set and the labelled claims, against the shipped document.

Retrieval is scored by whether a retrieved chunk contains an evidence string, so every evidence
string and passage must be a verbatim substring of the document; a retyped full-width colon or
a stray space silently turns a gold row into a guaranteed miss.
"""

import json
import re
from collections import Counter
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "kb" / "docs" / "llm-primer.md"
QA = ROOT / "eval" / "datasets" / "qa.jsonl"
CLAIMS = ROOT / "eval" / "datasets" / "claims.jsonl"

QA_KEYS = {"id", "question", "lang", "type", "answer", "evidence", "answerable", "split", "sections"}
CLAIM_KEYS = {"id", "claim", "passage", "supported", "lang", "kind"}
QA_TYPES = {"single", "table", "paraphrase", "multi", "english", "unanswerable"}
SUPPORTED_KINDS = {"faithful", "paraphrase"}
UNSUPPORTED_KINDS = {"changed_number", "swapped_term", "wrong_table_row", "negated", "unsupported_extra"}
LANGS = {"zh", "en"}


@cache
def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def load_jsonl(path: Path) -> list[dict]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        assert line.strip(), f"{path.name}:{n} is blank"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"{path.name}:{n} is not valid JSON: {exc}") from exc
        assert isinstance(row, dict), f"{path.name}:{n} is not a JSON object"
        rows.append(row)
    return rows


@cache
def qa_rows() -> tuple[dict, ...]:
    return tuple(load_jsonl(QA))


@cache
def claim_rows() -> tuple[dict, ...]:
    return tuple(load_jsonl(CLAIMS))


def headings() -> set[str]:
    return {m.group(1).strip() for m in re.finditer(r"^#{1,6} (.+)$", doc_text(), flags=re.MULTILINE)}


def tables() -> list[list[str]]:
    """Each Markdown table of the document as its list of body rows (header and separator dropped)."""
    found, current = [], []
    for line in doc_text().split("\n"):
        if line.strip().startswith("|"):
            current.append(line)
        elif current:
            found.append(current)
            current = []
    if current:
        found.append(current)
    return [t[2:] for t in found]


# ---------------------------------------------------------------- qa.jsonl


def test_qa_rows_have_exact_keys_and_types():
    for row in qa_rows():
        rid = row.get("id")
        assert set(row) == QA_KEYS, f"{rid}: keys {sorted(row)}"
        assert isinstance(rid, str) and re.fullmatch(r"q\d{3,}", rid), f"bad id {rid!r}"
        for key in ("question", "answer"):
            assert isinstance(row[key], str) and row[key].strip(), f"{rid}: empty {key}"
        assert row["lang"] in LANGS, f"{rid}: lang {row['lang']!r}"
        assert row["type"] in QA_TYPES, f"{rid}: type {row['type']!r}"
        assert row["split"] in {"tune", "test"}, f"{rid}: split {row['split']!r}"
        assert isinstance(row["answerable"], bool), f"{rid}: answerable must be a bool"
        for key in ("evidence", "sections"):
            assert isinstance(row[key], list), f"{rid}: {key} must be a list"
            assert all(isinstance(x, str) and x for x in row[key]), f"{rid}: {key} items must be strings"


def test_qa_ids_unique():
    counts = Counter(row["id"] for row in qa_rows())
    dupes = [i for i, c in counts.items() if c > 1]
    assert not dupes, f"duplicate qa ids: {dupes}"


def test_qa_evidence_is_verbatim_and_on_one_line():
    text = doc_text()
    for row in qa_rows():
        for ev in row["evidence"]:
            assert ev in text, f"{row['id']}: evidence not in document: {ev!r}"
            assert "\n" not in ev, f"{row['id']}: evidence spans lines: {ev!r}"
            # a pipe means the string crosses table cells, which chunkers may reformat
            assert "|" not in ev, f"{row['id']}: evidence spans table cells: {ev!r}"


def test_qa_answerability_matches_evidence():
    for row in qa_rows():
        rid = row["id"]
        if row["type"] == "unanswerable":
            assert row["answerable"] is False, f"{rid}: unanswerable type marked answerable"
            assert row["evidence"] == [], f"{rid}: unanswerable row has evidence"
        else:
            assert row["answerable"] is True, f"{rid}: {row['type']} row marked unanswerable"
            assert 1 <= len(row["evidence"]) <= 3, f"{rid}: needs 1 to 3 evidence strings"
        if row["type"] == "multi":
            assert len(row["evidence"]) >= 2, f"{rid}: multi row needs one evidence per passage"


def test_qa_languages_follow_type():
    for row in qa_rows():
        if row["type"] == "english":
            assert row["lang"] == "en", f"{row['id']}: english row not lang en"
        elif row["type"] != "unanswerable":
            assert row["lang"] == "zh", f"{row['id']}: {row['type']} row should be Chinese"
    unanswerable_langs = {row["lang"] for row in qa_rows() if row["type"] == "unanswerable"}
    assert unanswerable_langs == LANGS, f"unanswerable rows cover only {unanswerable_langs}"


def test_qa_sections_are_document_headings():
    known = headings()
    for row in qa_rows():
        for section in row["sections"]:
            assert section in known, f"{row['id']}: {section!r} is not a heading of the document"


def test_qa_size_and_type_balance():
    rows = qa_rows()
    assert len(rows) >= 80, f"only {len(rows)} qa rows"
    per_type = Counter(row["type"] for row in rows)
    for typ in QA_TYPES:
        assert per_type[typ] >= 10, f"type {typ} has only {per_type[typ]} rows"


def test_qa_every_type_has_both_splits():
    splits: dict[str, set[str]] = {}
    for row in qa_rows():
        splits.setdefault(row["type"], set()).add(row["split"])
    for typ in QA_TYPES:
        assert splits.get(typ) == {"tune", "test"}, f"type {typ} has splits {splits.get(typ)}"


def test_qa_covers_every_table():
    evidence = [ev for row in qa_rows() for ev in row["evidence"]]
    for n, body in enumerate(tables(), 1):
        assert any(ev in line for line in body for ev in evidence), (
            f"table {n} (first row {body[0].strip()[:40]!r}) has no question"
        )


# ---------------------------------------------------------------- claims.jsonl


def test_claim_rows_have_exact_keys_and_types():
    for row in claim_rows():
        rid = row.get("id")
        assert set(row) == CLAIM_KEYS, f"{rid}: keys {sorted(row)}"
        assert isinstance(rid, str) and re.fullmatch(r"c\d{3,}", rid), f"bad id {rid!r}"
        assert isinstance(row["claim"], str) and row["claim"].strip(), f"{rid}: empty claim"
        assert isinstance(row["passage"], str), f"{rid}: passage must be a string"
        assert isinstance(row["supported"], bool), f"{rid}: supported must be a bool"
        assert row["lang"] in LANGS, f"{rid}: lang {row['lang']!r}"
        allowed = SUPPORTED_KINDS if row["supported"] else UNSUPPORTED_KINDS
        assert row["kind"] in allowed, f"{rid}: kind {row['kind']!r} with supported={row['supported']}"


def test_claim_ids_unique():
    counts = Counter(row["id"] for row in claim_rows())
    dupes = [i for i, c in counts.items() if c > 1]
    assert not dupes, f"duplicate claim ids: {dupes}"


def test_claim_passages_are_verbatim():
    text = doc_text()
    for row in claim_rows():
        passage = row["passage"]
        assert passage in text, f"{row['id']}: passage not in document: {passage[:60]!r}"
        assert 40 <= len(passage) <= 600, f"{row['id']}: passage length {len(passage)}"


def test_claims_size_and_balance():
    rows = claim_rows()
    assert len(rows) >= 60, f"only {len(rows)} claims"
    share = sum(row["supported"] for row in rows) / len(rows)
    assert 0.45 <= share <= 0.55, f"supported share {share:.2f}"
    assert {row["lang"] for row in rows} == LANGS, "claims should include both languages"
