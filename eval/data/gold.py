"""Gold questions and labelled claims as typed rows, loaded line by line; a bad line is skipped with a clear message.

A gold file is JSONL, one question per line. Required: ``id``, ``question``, ``answerable``, ``evidence``
(verbatim substrings of a document: the spans that answer; empty for an unanswerable question).
Optional: ``answer``, ``lang`` (zh | en; detected from the question when absent), ``type``, ``doc`` (the
document the evidence is in, to look it up there first), ``split`` (tune | test; absent: ``all``).
Unknown keys (e.g. ``sections``) are ignored.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from chat.questions import detect_language

log = logging.getLogger(__name__)

DATASETS = Path(__file__).resolve().parents[1] / "datasets"  # the gold JSONL files (package data)
QA_PATH = DATASETS / "qa.jsonl"
DEV_QA_PATH = DATASETS / "dev_qa.jsonl"
CLAIMS_PATH = DATASETS / "claims.jsonl"
# Written after the offline judge's rules were fixed, to measure them on claims they were not tuned on.
HOLDOUT_CLAIMS_PATH = DATASETS / "claims_holdout.jsonl"
SPLITS = ("tune", "test", "all")


class GoldQuestion(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str = Field(min_length=1)
    question: str = Field(min_length=1)
    answerable: bool
    evidence: tuple[str, ...]
    answer: str = ""
    lang: str = ""
    type: str = ""
    doc: str | None = None
    split: str = "all"

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    @field_validator("evidence")
    @classmethod
    def _non_empty_evidence(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not e.strip() for e in value):
            raise ValueError("evidence strings must not be empty")
        return value

    @field_validator("split")
    @classmethod
    def _known_split(cls, value: str) -> str:
        if value not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}")
        return value

    @model_validator(mode="after")
    def _defaults_and_answerability(self) -> GoldQuestion:
        if self.answerable and not self.evidence:
            raise ValueError("an answerable question needs at least one evidence string")
        if not self.answerable and self.evidence:
            raise ValueError("an unanswerable question has no evidence")
        # frozen: defaults that depend on other fields are set through the object's dict
        if not self.lang:
            object.__setattr__(self, "lang", detect_language(self.question))
        if not self.type:
            object.__setattr__(self, "type", "single" if self.answerable else "unanswerable")
        return self


class LabelledClaim(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str = Field(min_length=1)
    claim: str = Field(min_length=1)
    passage: str
    supported: bool
    lang: str = "zh"
    kind: str = ""


Row = TypeVar("Row", bound=BaseModel)


@dataclass
class Loaded(Generic[Row]):
    rows: list[Row] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "file line N: why", one per skipped line

    @property
    def skipped(self) -> int:
        return len(self.problems)


def _why(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        if error["type"] == "missing":
            parts.append(f"missing field {where}")
        else:
            message = error["msg"].removeprefix("Value error, ")
            parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def _read_jsonl(path: Path, model: type[Row]) -> tuple[list[tuple[int, Row]], list[str]]:
    if not path.is_file():
        raise FileNotFoundError(f"No such gold file: {path}")
    rows, problems = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{path.name} line {number}: not valid JSON ({exc.msg})")
            continue
        if not isinstance(raw, dict):
            problems.append(f"{path.name} line {number}: not a JSON object")
            continue
        try:
            rows.append((number, model.model_validate(raw)))
        except ValidationError as exc:
            problems.append(f"{path.name} line {number}: {_why(exc)}")
    return rows, problems


def load_gold(path: Path = QA_PATH, documents: dict[str, str] | None = None, split: str = "all") -> Loaded[GoldQuestion]:
    """Gold questions; evidence not found in any of ``documents`` (name -> text) skips the line.

    ``split`` tune | test keeps that split's rows only, before the evidence check: a knowledge base of
    one split's documents does not hold the other split's evidence, and that is not a problem of the file.
    """
    parsed, problems = _read_jsonl(Path(path), GoldQuestion)
    loaded: Loaded[GoldQuestion] = Loaded(problems=problems)
    corpus = list((documents or {}).values())
    seen: set[str] = set()
    for number, row in parsed:
        if split != "all" and row.split != split:
            continue
        if row.id in seen:
            loaded.problems.append(f"{Path(path).name} line {number}: duplicate id {row.id!r}")
            continue
        absent = [e for e in row.evidence if corpus and not any(e in text for text in corpus)]
        if absent:
            loaded.problems.append(f"{Path(path).name} line {number}: evidence not in the documents: {absent[0][:40]!r}")
            continue
        seen.add(row.id)
        loaded.rows.append(row)
    for problem in loaded.problems:
        log.warning("Skipped %s", problem)
    return loaded


def load_claims(path: Path = CLAIMS_PATH) -> Loaded[LabelledClaim]:
    parsed, problems = _read_jsonl(Path(path), LabelledClaim)
    loaded = Loaded(rows=[row for _, row in parsed], problems=problems)
    for problem in loaded.problems:
        log.warning("Skipped %s", problem)
    return loaded
