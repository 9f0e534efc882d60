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


# ---------------------------------------------------------------- the dev corpus and dev_qa.jsonl

DEV = ROOT / "eval" / "corpora" / "dev"
DEV_QA = ROOT / "eval" / "datasets" / "dev_qa.jsonl"
DEV_TYPES = {"single", "table", "paraphrase", "multi", "crosslingual", "code", "unanswerable"}
DEV_KEYS = QA_KEYS | {"doc"}


@cache
def dev_rows() -> tuple[dict, ...]:
    return tuple(load_jsonl(DEV_QA))


@cache
def dev_text(doc: str) -> str:
    return (DEV / "docs" / doc).read_text(encoding="utf-8")


def dev_split() -> dict[str, str]:
    """doc -> split, from the table in SPLIT.md (the one place the split is written down)."""
    rows = re.findall(r"^\| (tune|test) \| `([^`]+)` \|", (DEV / "SPLIT.md").read_text(encoding="utf-8"), re.MULTILINE)
    return {doc: split for split, doc in rows}


def test_dev_corpus_is_byte_exact():
    import hashlib

    sources = (DEV / "SOURCES.md").read_text(encoding="utf-8")
    listed = dict(re.findall(r"### \d+\. `docs/([^`]+)`.*?SHA-256: `([0-9a-f]{64})`", sources, re.DOTALL))
    listed |= {f"../LICENSES/{name}": sha for name, sha in
               re.findall(r"\| `LICENSES/([^`]+)` \| [\d,]+ \| `([0-9a-f]{64})` \|", sources)}
    assert len(listed) == 11, f"SOURCES.md lists {len(listed)} files"
    on_disk = {p.name for p in (DEV / "docs").iterdir()}
    assert on_disk == {n for n in listed if not n.startswith("../")}, "docs/ and SOURCES.md disagree"
    for name, sha in listed.items():
        data = (DEV / "docs" / name).resolve().read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha, f"{name} differs from its SHA-256 in SOURCES.md"


def test_dev_split_is_by_document_and_covers_the_corpus():
    split = dev_split()
    assert set(split) == {p.name for p in (DEV / "docs").iterdir()}, "SPLIT.md must place every document"
    assert set(split.values()) == {"tune", "test"}
    for row in dev_rows():
        assert row["doc"] in split, f"{row['id']}: unknown doc {row['doc']!r}"
        assert row["split"] == split[row["doc"]], f"{row['id']}: split {row['split']} but {row['doc']} is {split[row['doc']]}"


def test_dev_rows_have_exact_keys_and_types():
    ids = Counter(row.get("id") for row in dev_rows())
    assert not [i for i, c in ids.items() if c > 1], "duplicate dev ids"
    for row in dev_rows():
        rid = row.get("id")
        assert set(row) == DEV_KEYS, f"{rid}: keys {sorted(row)}"
        assert isinstance(rid, str) and re.fullmatch(r"d\d{3,}", rid), f"bad id {rid!r}"
        for key in ("question", "answer"):
            assert isinstance(row[key], str) and row[key].strip(), f"{rid}: empty {key}"
        assert row["lang"] in LANGS and row["type"] in DEV_TYPES, f"{rid}: lang/type {row['lang']}/{row['type']}"
        assert isinstance(row["answerable"], bool) and isinstance(row["evidence"], list)


def test_dev_evidence_is_verbatim_once_in_its_document():
    for row in dev_rows():
        text = dev_text(row["doc"])
        for ev in row["evidence"]:
            assert isinstance(ev, str) and ev.strip(), f"{row['id']}: empty evidence"
            assert "\n" not in ev, f"{row['id']}: evidence spans lines: {ev!r}"
            # once, so that the span a metric finds is the span the question was written on
            assert text.count(ev) == 1, f"{row['id']}: evidence found {text.count(ev)} times in {row['doc']}: {ev!r}"


def test_dev_answerability_and_cross_lingual_kinds():
    for row in dev_rows():
        rid = row["id"]
        if row["type"] == "unanswerable":
            assert row["answerable"] is False and row["evidence"] == [], f"{rid}: unanswerable with evidence"
        else:
            assert row["answerable"] is True and 1 <= len(row["evidence"]) <= 3, f"{rid}: 1 to 3 evidence strings"
        if row["type"] == "multi":
            assert len(row["evidence"]) >= 2, f"{rid}: multi row needs two evidence strings"
        if row["type"] == "crosslingual":
            doc_lang = "en" if row["doc"].startswith("en_") else "zh"
            assert row["lang"] != doc_lang, f"{rid}: a cross-lingual question must not be in the document's language"


def test_dev_balance_per_split_and_document():
    rows = dev_rows()
    for split in {r["split"] for r in rows}:
        in_split = [r for r in rows if r["split"] == split]
        share = sum(not r["answerable"] for r in in_split) / len(in_split)
        assert 0.10 <= share <= 0.20, f"{split}: unanswerable share {share:.2f}"
        assert {t for r in in_split for t in [r["type"]]} == DEV_TYPES, f"{split}: missing kinds"
        directions = {(r["lang"], r["doc"][:2]) for r in in_split if r["type"] == "crosslingual"}
        assert ("en", "zh") in directions and ("zh", "en") in directions, f"{split}: cross-lingual both ways"
    per_doc = Counter(r["doc"] for r in rows)
    assert all(n >= 12 for n in per_doc.values()), f"too few questions on some document: {per_doc}"
    assert len(rows) >= 150, f"only {len(rows)} dev questions"
