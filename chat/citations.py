"""Citations in an answer: parse ``[n]`` marks, resolve them to passages and quotes, check support."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from chat.answer import Citation, SentenceCheck
from chat.grounding import SUPPORT_THRESHOLD, best_span, split_sentences, strip_citations, support_score
from chat.passages import Passage

# [1]  [1,2]  [1, 2]  [1-3]  【1】  ［1］ — models write all of these. One or two digits only:
# "[5, 4096]" is a matrix shape from the document, not a citation.
_MARK = re.compile(r"[\[【［]\s*(\d{1,2}(?:\s*[,，、\-–]\s*\d{1,2})*)\s*[\]】］]")
_RANGE = re.compile(r"(\d+)\s*[\-–]\s*(\d+)")


def cited_numbers(text: str) -> list[int]:
    """Every number cited in ``text``, in order of first appearance."""
    numbers: list[int] = []
    for mark in _MARK.finditer(text):
        body = mark.group(1)
        for part in re.split(r"[,，、]", body):
            part = part.strip()
            rng = _RANGE.fullmatch(part)
            values = range(int(rng.group(1)), int(rng.group(2)) + 1) if rng else [int(part)]
            numbers.extend(v for v in values if v not in numbers)
    return numbers


def normalize_marks(text: str, valid: int) -> str:
    """Rewrite every mark as ``[n]`` (one per number) and drop numbers that point at nothing."""

    def replace(mark: re.Match[str]) -> str:
        return "".join(f"[{n}]" for n in cited_numbers(mark.group(0)) if 1 <= n <= valid)

    return _MARK.sub(replace, text)


def check_sentences(
    text: str,
    passages: Sequence[Passage],
    embed_similarity: Callable[[str, str], float] | None = None,
) -> tuple[list[Citation], list[SentenceCheck]]:
    """Resolve each cited number to a quote and score each sentence against what it cites."""
    citations: dict[int, Citation] = {}
    checks: list[SentenceCheck] = []
    for span in split_sentences(text):
        cites = [n for n in cited_numbers(span.text) if 1 <= n <= len(passages)]
        plain = strip_citations(span.text)
        if not _has_claim(plain):
            continue
        if not cites:
            checks.append(SentenceCheck(plain, [], 0.0, False, "no citation / 没有引用来源"))
            continue
        scores = [support_score(plain, passages[n - 1].display_text, embed_similarity) for n in cites]
        best = max(scores)
        supported = best >= SUPPORT_THRESHOLD
        reason = "" if supported else "the cited passages do not clearly say this / 引用的段落没有明确支持这句话"
        checks.append(SentenceCheck(plain, cites, best, supported, reason))
        for n in cites:
            if n not in citations:
                citations[n] = make_citation(n, passages[n - 1], plain)
    return [citations[n] for n in sorted(citations)], checks


def make_citation(n: int, passage: Passage, claim: str) -> Citation:
    span = best_span(claim, passage.text)
    if span is None:
        return Citation(n, passage, passage.text, passage.start, passage.end)
    return Citation(n, passage, span.text, passage.start + span.start, passage.start + span.end)


def _has_claim(sentence: str) -> bool:
    """Headings like '总结：' or bare list markers carry nothing to check."""
    return len(re.sub(r"[\W_]+", "", sentence)) >= 4
