"""Loading the gold set and the labelled claims, line by line, skipping bad lines with a clear message."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

DATASETS = Path(__file__).resolve().parent / "datasets"
QA_PATH = DATASETS / "qa.jsonl"
CLAIMS_PATH = DATASETS / "claims.jsonl"
# Written after the offline judge's rules were fixed, to measure them on claims they were not tuned on.
HOLDOUT_CLAIMS_PATH = DATASETS / "claims_holdout.jsonl"
QA_FIELDS = ("id", "question", "lang", "type", "answer", "evidence", "answerable")
CLAIM_FIELDS = ("id", "claim", "passage", "supported")


@dataclass(frozen=True)
class GoldQuestion:
    id: str
    question: str
    lang: str
    type: str
    answer: str
    evidence: tuple[str, ...]
    answerable: bool
    split: str = "tune"


@dataclass(frozen=True)
class LabelledClaim:
    id: str
    claim: str
    passage: str
    supported: bool
    lang: str = "zh"
    kind: str = ""


@dataclass
class Loaded:
    rows: list = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "line N: why", one per skipped line

    @property
    def skipped(self) -> int:
        return len(self.problems)


def _read_jsonl(path: Path, required: tuple[str, ...]) -> tuple[list[tuple[int, dict]], list[str]]:
    rows, problems = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{path.name} line {number}: not valid JSON ({exc.msg})")
            continue
        if not isinstance(row, dict):
            problems.append(f"{path.name} line {number}: not a JSON object")
            continue
        missing = [name for name in required if name not in row]
        if missing:
            problems.append(f"{path.name} line {number}: missing field(s) {', '.join(missing)}")
            continue
        rows.append((number, row))
    return rows, problems


def load_gold(path: Path = QA_PATH, documents: dict[str, str] | None = None) -> Loaded:
    """Gold questions; evidence not found in any of ``documents`` (name -> text) skips the line."""
    raw, problems = _read_jsonl(path, QA_FIELDS)
    loaded = Loaded(problems=problems)
    corpus = list((documents or {}).values())
    for number, row in raw:
        evidence = row["evidence"]
        if not isinstance(evidence, list) or not all(isinstance(e, str) and e for e in evidence):
            loaded.problems.append(f"{path.name} line {number}: evidence must be a list of strings")
            continue
        absent = [e for e in evidence if corpus and not any(e in text for text in corpus)]
        if absent:
            loaded.problems.append(f"{path.name} line {number}: evidence not in the documents: {absent[0][:40]!r}")
            continue
        loaded.rows.append(GoldQuestion(
            id=str(row["id"]), question=str(row["question"]), lang=str(row["lang"]), type=str(row["type"]),
            answer=str(row["answer"]), evidence=tuple(evidence), answerable=bool(row["answerable"]),
            split=str(row.get("split", "tune")),
        ))
    for problem in loaded.problems:
        log.warning("Skipped %s", problem)
    return loaded


def load_claims(path: Path = CLAIMS_PATH) -> Loaded:
    raw, problems = _read_jsonl(path, CLAIM_FIELDS)
    loaded = Loaded(problems=problems)
    for _number, row in raw:
        loaded.rows.append(LabelledClaim(
            id=str(row["id"]), claim=str(row["claim"]), passage=str(row["passage"]),
            supported=bool(row["supported"]), lang=str(row.get("lang", "zh")), kind=str(row.get("kind", "")),
        ))
    for problem in loaded.problems:
        log.warning("Skipped %s", problem)
    return loaded
