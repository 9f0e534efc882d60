"""An answer's text into cited sentences, and sentences into atomic claims (the offline judge's unit).

Each line is a table row (one statement, whatever punctuation its cells hold) or prose, split into
sentences by the project's sentence rules (``kb.sentences.sentences_in_line``: 。！？!?, ". " but not after
an abbreviation or a number; a citation mark right after the end belongs to the sentence before it), with
one deliberate difference: semicolons do not end a sentence here. A sentence's citations cover all of it,
so "A；B [1]" is one sentence citing [1] with two claims. Every other line of an answer is prose: the
document splitter's line rules (headings as labels, separator-like lines skipped) are for documents.

A sentence is split into atomic claims at ；/; when both sides carry content, and at ，/, only where
the next part opens a new assertion (而/但/同时/并且…, "while", "whereas", "but"): splitting every
comma would tear conditions ("当…时，…") and shared subjects ("…，无法并行") from what they qualify.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from chat.grounding import content_units
from kb.sentences import ANSWER_MARK, SENTENCE_END, sentences_in_line

# A citation mark; what counts as one is decided by ``cited``: "[5, 4096]" is a matrix shape.
# The app's reading of marks in model output (kb.sentences); the spaces before a mark go with it here.
_MARK = re.compile(r"\s*" + ANSWER_MARK.pattern)
# kb.sentences' ends without the semicolons (see above).
CLAIM_SENTENCE_END = "".join(c for c in SENTENCE_END if c not in "；;")
_CLAUSE_SEMICOLON = re.compile(r"[；;]")
_NEW_ASSERTION = re.compile(r"[，,]\s*(?=(?:而且|而|但是|但|然而|同时|并且|此外|另外|while\b|whereas\b|but\b))", re.I)
MIN_CLAIM_UNITS = 3


@dataclass
class CitedSentence:
    text: str  # citation marks removed
    cites: list[int] = field(default_factory=list)  # 1-based passage numbers
    claims: list[str] = field(default_factory=list)


def _numbers(body: str) -> list[int]:
    numbers: list[int] = []
    for part in re.split(r"[,，、]", body):
        bounds = re.split(r"\s*[\-–]\s*", part.strip())
        if len(bounds) == 2 and all(b.isdigit() for b in bounds):
            numbers.extend(range(int(bounds[0]), int(bounds[1]) + 1))
        elif part.strip().isdigit():
            numbers.append(int(part))
    return numbers


def cited(mark_body: str, passages: int) -> list[int] | None:
    """The passage numbers a mark cites, or None when it is not a citation (a number out of range)."""
    numbers = _numbers(mark_body)
    if not numbers or not all(1 <= n <= passages for n in numbers):
        return None
    return list(dict.fromkeys(numbers))


def strip_marks(text: str, passages: int) -> tuple[str, list[int]]:
    """``text`` without its citation marks, and the numbers they cite, in order."""
    cites: list[int] = []

    def replace(mark: re.Match[str]) -> str:
        numbers = cited(mark.group(1), passages)
        if numbers is None:
            return mark.group(0)
        cites.extend(n for n in numbers if n not in cites)
        return ""

    return _MARK.sub(replace, text).strip(), cites


def _raw_sentences(text: str) -> list[str]:
    pieces: list[str] = []
    for line in text.splitlines():
        if line.strip().startswith("|"):
            pieces.append(line.strip())
        else:
            pieces.extend(span.text for span in sentences_in_line(line, ends=CLAIM_SENTENCE_END))
    return [p for p in pieces if p]


def protect(text: str) -> str:
    """Brackets as parentheses, so chat.grounding never mistakes "[5, 4096]" in a claim for a citation mark.

    Claims have had their marks stripped already (``strip_marks``); what brackets remain are text.
    """
    return text.replace("[", "(").replace("]", ")")


def _has_content(text: str) -> bool:
    return len(content_units(protect(text))) >= MIN_CLAIM_UNITS


def atomic_claims(sentence: str) -> list[str]:
    """Split at ；/; (both sides with content) and at ，/, before a new assertion (both sides with content)."""
    claims: list[str] = []
    for part in _CLAUSE_SEMICOLON.split(sentence):
        pieces = [p.strip(" ，,") for p in _NEW_ASSERTION.split(part)]
        if len(pieces) > 1 and not all(_has_content(p) for p in pieces):
            pieces = [part.strip()]
        claims.extend(p for p in pieces if p)
    merged: list[str] = []
    for claim in claims:  # a fragment without content of its own stays with its neighbour
        if merged and not _has_content(claim):
            merged[-1] = f"{merged[-1]}；{claim}"
        else:
            merged.append(claim)
    return [c for c in merged if _has_content(c)] or ([sentence] if _has_content(sentence) else [])


def cited_sentences(text: str, passages: int) -> list[CitedSentence]:
    """Each sentence of an answer with what it cites and its atomic claims; sentences without content skipped."""
    out: list[CitedSentence] = []
    for raw in _raw_sentences(text):
        plain, cites = strip_marks(raw, passages)
        plain = re.sub(r"^\s*(?:[-*+]|\d+\.)\s+", "", plain).replace("**", "").strip()
        if not _has_content(plain):
            continue  # headings like "总结：", list markers, bare marks
        out.append(CitedSentence(plain, cites, atomic_claims(plain)))
    return out


def claims_of(sentences: Sequence[CitedSentence]) -> list[tuple[str, list[int]]]:
    return [(claim, s.cites) for s in sentences for claim in s.claims]
