"""Citations in an answer: resolve its ``[n]`` marks (parsed by kb.sentences) to passages and quotes, check support."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from chat.answer import Citation, SentenceCheck
from chat.grounding import SUPPORT_THRESHOLD, best_span, support_score
from chat.passages import Passage
from kb.sentences import cited_numbers, split_sentences, strip_citations


def check_sentences(
    text: str,
    passages: Sequence[Passage],
    embed_similarity: Callable[[str, str], float] | None = None,
    quotes: Mapping[int, tuple[int, int]] | None = None,
) -> tuple[list[Citation], list[SentenceCheck]]:
    """Resolve each cited number to a quote and score each sentence against what it cites.

    ``quotes`` gives, for passage numbers whose quoted span is known (an extractive answer knows
    what it copied: offsets into the passage's text), that span instead of the best match of the
    first sentence citing it; a table row spelled out as "name — column: value" shares more words
    with the table's header than with itself.
    """
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
                known = (quotes or {}).get(n)
                citations[n] = (span_citation(n, passages[n - 1], *known) if known
                                else make_citation(n, passages[n - 1], plain))
    return [citations[n] for n in sorted(citations)], checks


def make_citation(n: int, passage: Passage, claim: str) -> Citation:
    span = best_span(claim, passage.text)
    if span is None:
        return Citation(n, passage, passage.text, passage.start, passage.end)
    return span_citation(n, passage, span.start, span.end)


def span_citation(n: int, passage: Passage, start: int, end: int) -> Citation:
    """A citation quoting ``passage.text[start:end]`` (offsets into the passage), with document offsets."""
    return Citation(n, passage, passage.text[start:end], passage.start + start, passage.start + end)


def _has_claim(sentence: str) -> bool:
    """Headings like '总结：' or bare list markers carry nothing to check."""
    return len(re.sub(r"[\W_]+", "", sentence)) >= 4
