"""The offline judge: is a claim supported by the passages it cites? No LLM needed.

A claim (split into atomic claims first, eval.judges.claims) is supported when it shares enough content with a
cited passage AND none of the checks in ``eval.judges.checks`` / ``eval.judges.table_checks`` finds it misstating what it
shares. Thresholds, tuned on ``eval/datasets/claims.jsonl`` and checked on ``claims_holdout.jsonl``:

- Same language (a Chinese claim over Chinese text): lexical support, the share of the claim's content
  units (character bigrams for Chinese, words for Latin script; ``chat.grounding.lexical_support``) found
  in the passage, at least ``LEXICAL_SUPPORTED`` = 0.35; or at least ``LEXICAL_FLOOR`` = 0.2 when the e5
  cosine of claim and best passage segment is at least ``PARAPHRASE_COSINE`` = 0.95 (a paraphrase).
- Across languages (an English claim over Chinese text): e5 cosine of claim and best segment (sentence,
  list item or table row), both embedded as e5 queries, at least ``CROSS_LINGUAL_COSINE`` = 0.845.
  multilingual-e5-small's cosines sit in a narrow band (~0.78-0.99): these are not probabilities.
- Then the checks, against the segment the claim aligns to (most shared units; across languages,
  highest e5 cosine) or against the cited passages:
  numbers: every number of the claim in the passage, and "2 months" not where the passage says "2 周";
  negation: a cue (不/没有/无/非/未/难以/无法/not/never…) on one side only, within
  ``checks.NEGATION_WINDOW`` = 8 characters of at least ``checks.MIN_SHARED_FOR_NEGATION`` = 2 shared units;
  swapped terms: a term of ``checks.CONTRAST_GROUPS`` (RLHF/DPO, TTFT/TPOT, Encoder/Decoder, K/V, LoRA/全量,
  稀疏/稠密, 高/低…) absent from the aligned segment (or clause, at ``MIN_CLAUSE_OVERLAP`` = 0.5 of the
  claim clause's units) while a sibling is there, or standing where the passage puts its sibling; an
  acronym (RLHF, TTFT, GPT-4) where the aligned segment has another, with ``checks.REPLACED_TERM_MIN_OVERLAP``
  = 0.6 of the rest in common; a technical term no cited passage mentions;
  tables: the claim's content in ONE row plus the header (a named row label, or a technical term, of
  another row fails), and a named column paired with a value from another column (two such value units,
  or one and none from the named column; across languages, another column's cell more similar by
  ``tables.CROSS_LINGUAL_CELL_MARGIN`` = 0.01 e5 cosine).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from chat.grounding import content_units, cosine, lexical_support
from eval.data.gold import LabelledClaim
from eval.judges import checks
from eval.judges.claims import atomic_claims, protect
from eval.judges.table_checks import split_cells, table_problem, tables_in
from kb.sentences import split_sentences
from kb.text import normalize

log = logging.getLogger(__name__)

LEXICAL_SUPPORTED = 0.35
LEXICAL_FLOOR = 0.2
PARAPHRASE_COSINE = 0.95
CROSS_LINGUAL_COSINE = 0.845
MIN_CLAUSE_OVERLAP = 0.5  # a claim clause is compared with the passage clause holding this share of it
_CLAUSE = re.compile(r"[，,；;：:]")


@dataclass(frozen=True)
class Verdict:
    supported: bool | None  # None: the judge gave no usable answer (LLM judge only); never scored
    score: float = 0.0  # lexical support (same language) or e5 cosine (across languages)
    reason: str = ""  # why not supported, or why no verdict

    def to_dict(self) -> dict[str, object]:
        return {"supported": self.supported, "score": round(self.score, 3), "reason": self.reason}


class Judge(Protocol):
    name: str

    def judge(self, claim: str, passages: Sequence[str]) -> Verdict: ...


class Embedder(Protocol):
    def get_query_embedding(self, query: str) -> list[float]: ...


@dataclass(frozen=True)
class _Segment:
    text: str
    passage: int
    is_table_row: bool


class OfflineJudge:
    """Lexical + e5 support with checks for subtle errors; ``embedding`` None = lexical only."""

    name = "offline"

    def __init__(self, embedding: Embedder | None = None) -> None:
        self.embedding = embedding
        self._vectors: dict[str, list[float]] = {}

    def similarity(self, a: str, b: str) -> float:
        if self.embedding is None:
            return 0.0
        vectors = []
        for text in (a, b):
            if text not in self._vectors:
                # Both sides as queries: claim and segment are peers of similar length, not query and document.
                self._vectors[text] = self.embedding.get_query_embedding(text)
                if len(self._vectors) > 20000:
                    self._vectors.pop(next(iter(self._vectors)))
            vectors.append(self._vectors[text])
        return cosine(vectors[0], vectors[1])

    def judge(self, claim: str, passages: Sequence[str]) -> Verdict:
        """Supported when every atomic claim in ``claim`` is (see eval.judges.claims.atomic_claims)."""
        parts = atomic_claims(claim.strip()) or [claim.strip()]
        verdicts = [self._judge_one(part, passages) for part in parts]
        failed = next((v for v in verdicts if not v.supported), None)
        return failed or min(verdicts, key=lambda v: v.score)

    def _judge_one(self, claim: str, passages: Sequence[str]) -> Verdict:
        if not passages:
            return Verdict(False, 0.0, "cites no passage")
        segments = [_Segment(s.text, i, s.is_table_row) for i, p in enumerate(passages) for s in split_sentences(p)]
        if not segments:
            return Verdict(False, 0.0, "the cited passages are empty")
        cross = checks.is_chinese(claim) != any(checks.is_chinese(p) for p in passages)
        protected = protect(claim)
        similarity = self.similarity if self.embedding is not None else None

        if cross:
            best = max(segments, key=lambda s: self.similarity(claim, s.text))
            score = self.similarity(claim, best.text)
            if score < CROSS_LINGUAL_COSINE:
                return Verdict(False, score, f"too little support (e5 {score:.3f} < {CROSS_LINGUAL_COSINE})")
        else:
            best = max(segments, key=lambda s: (lexical_support(protected, s.text), -len(s.text)))
            score = max(lexical_support(protected, p) for p in passages)
            if score < LEXICAL_SUPPORTED:
                cos = max(self.similarity(claim, s.text) for s in segments) if similarity else 0.0
                if score < LEXICAL_FLOOR or cos < PARAPHRASE_COSINE:
                    return Verdict(False, score, f"too little support (lexical {score:.2f} < {LEXICAL_SUPPORTED})")

        problem = self._problem(claim, passages, best, segments, cross, similarity)
        return Verdict(problem is None, score, problem or "")

    def _problem(self, claim: str, passages: Sequence[str], best: _Segment, segments: list[_Segment], cross: bool,
                 similarity: Callable[[str, str], float] | None) -> str | None:
        joined = "\n".join(passages)
        found = checks.number_problem(claim, joined) or checks.new_term_problem(claim, passages)
        if found:
            return found
        if not cross:
            found = checks.negation_problem(claim, best.text, [s.text for s in segments])
            if found:
                return found
        found = (checks.contrast_problem(claim, best.text) or checks.contrast_in_context(claim, joined)
                 or (None if cross else checks.replaced_term_problem(claim, best.text, acronyms_only=True))
                 or self._clause_problem(claim, best, segments, cross))
        if found:
            return found
        if best.is_table_row:
            row = split_cells(best.text)
            for table in tables_in(passages[best.passage]):
                if row in table.rows or row == table.header:
                    return table_problem(claim, table, similarity)
        return None

    def _clause_problem(self, claim: str, best: _Segment, segments: list[_Segment], cross: bool) -> str | None:
        """Swaps inside a sentence: each claim clause against the passage clause that holds most of it."""
        if cross:
            return None
        clauses = [c for s in segments if s.passage == best.passage and not s.is_table_row
                   for c in _CLAUSE.split(s.text) if len(content_units(protect(c))) >= 3]
        for part in _CLAUSE.split(claim):
            units = content_units(protect(part))
            if len(units) < 3 or not clauses:
                continue
            coverage = [(sum(1 for u in units if u in normalize(c)) / len(units), c) for c in clauses]
            share, clause = max(coverage, key=lambda item: item[0])
            if share < MIN_CLAUSE_OVERLAP:
                continue
            found = checks.contrast_problem(part, clause) or checks.replaced_term_problem(part, clause)
            if found:
                return found
        return None


# --- judging the judges ----------------------------------------------------------------------
@dataclass
class JudgeScore:
    judge: str
    total: int
    correct: int
    unparseable: int
    by_kind: dict[str, dict[str, float]]
    by_lang: dict[str, dict[str, float]]
    mistakes: list[dict[str, object]]

    @property
    def accuracy(self) -> float:
        """Unparseable judgements count as wrong: a judge that cannot answer is not right."""
        return self.correct / self.total if self.total else float("nan")

    def to_dict(self) -> dict[str, object]:
        return {"judge": self.judge, "accuracy": round(self.accuracy, 4), "total": self.total, "correct": self.correct,
                "unparseable": self.unparseable, "by_kind": self.by_kind, "by_lang": self.by_lang,
                "mistakes": self.mistakes}


def _group(rows: list[tuple[str, bool, bool | None]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for key in sorted({k for k, _, _ in rows}):
        mine = [(gold, got) for k, gold, got in rows if k == key]
        right = sum(1 for gold, got in mine if got is not None and got == gold)
        out[key] = {"n": len(mine), "accuracy": round(right / len(mine), 4),
                    "unparseable": sum(1 for _, got in mine if got is None)}
    return out


def score_judge(judge: Judge, claims: Sequence[LabelledClaim], progress: bool = True) -> JudgeScore:
    """Accuracy of ``judge`` on labelled claims, overall, by kind and language."""
    from tqdm import tqdm

    kinds: list[tuple[str, bool, bool | None]] = []
    langs: list[tuple[str, bool, bool | None]] = []
    mistakes: list[dict[str, object]] = []
    correct = unparseable = 0
    for item in tqdm(claims, desc=f"judge {judge.name}", disable=not progress, unit="claim"):
        verdict = judge.judge(item.claim, [item.passage])
        kinds.append((item.kind, item.supported, verdict.supported))
        langs.append((item.lang, item.supported, verdict.supported))
        if verdict.supported is None:
            unparseable += 1
        if verdict.supported == item.supported:
            correct += 1
        else:
            mistakes.append({"id": item.id, "kind": item.kind, "lang": item.lang,
                             "claim": item.claim, "gold": item.supported, **verdict.to_dict()})
    return JudgeScore(judge.name, len(claims), correct, unparseable, _group(kinds), _group(langs), mistakes)
