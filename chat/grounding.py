"""How well a sentence is supported by a passage, and where in the passage the support is.

Lexical support is the share of the sentence's content units found in the passage:
character bigrams for Chinese, words (and numbers) for Latin script. It is fast,
deterministic and language-aware; cross-lingual sentences (an English answer over
Chinese passages) get their support from the e5 embedding similarity instead.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

from kb.sentences import Span, split_sentences, strip_citations
from kb.text import QUESTION_WORDS, normalize

_CJK_RUN = re.compile(r"[\u3400-\u9fff]+")
_WORD = re.compile(r"[a-z0-9][a-z0-9.+\-]*[a-z0-9+]|[a-z0-9]")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")

# Cosine similarities of e5 are compressed into roughly [0.7, 0.95]; these map them to [0, 1].
E5_COSINE_FLOOR = 0.78
E5_COSINE_CEIL = 0.92
# A sentence counts as supported at or above this score.
SUPPORT_THRESHOLD = 0.5


def content_units(text: str) -> set[str]:
    """Chinese character bigrams (and single characters of one-character runs) plus Latin words."""
    text = normalize(strip_citations(text))
    units: set[str] = set()
    for run in _CJK_RUN.findall(text):
        if len(run) == 1:
            units.add(run)
        units.update(run[i : i + 2] for i in range(len(run) - 1))
    units.update(w for w in _WORD.findall(text) if w not in QUESTION_WORDS)
    return units


def lexical_support(sentence: str, passage: str) -> float:
    """Share of the sentence's content units that occur in the passage (0..1)."""
    units = content_units(sentence)
    if not units:
        return 0.0
    haystack = normalize(passage)
    return sum(1 for u in units if u in haystack) / len(units)


def numbers_missing(sentence: str, passage: str) -> list[str]:
    """Numbers the sentence states that the passage never mentions: a common way to be wrong."""
    haystack = set(_NUMBER.findall(normalize(passage)))
    return [n for n in _NUMBER.findall(normalize(strip_citations(sentence))) if n not in haystack]


def semantic_support(cosine: float) -> float:
    return min(1.0, max(0.0, (cosine - E5_COSINE_FLOOR) / (E5_COSINE_CEIL - E5_COSINE_FLOOR)))


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


def support_score(
    sentence: str, passage: str, embed_similarity: Callable[[str, str], float] | None = None
) -> float:
    """Support of one sentence by one passage, 0..1.

    Lexical support decides for same-language text; across languages (an English
    sentence over Chinese text) words cannot match, so the e5 similarity decides. A number
    the passage never states caps the score below the threshold.
    """
    score = lexical_support(sentence, passage)
    crosses_languages = bool(_CJK_RUN.search(sentence)) != bool(_CJK_RUN.search(passage))
    if score < SUPPORT_THRESHOLD and crosses_languages and embed_similarity is not None:
        score = max(score, semantic_support(embed_similarity(sentence, passage)))
    if numbers_missing(sentence, passage):
        score = min(score, SUPPORT_THRESHOLD - 0.01)
    return score


def best_span(sentence: str, passage_text: str) -> Span | None:
    """The passage sentence (or table row) that best supports ``sentence``."""
    candidates = split_sentences(passage_text)
    if not candidates:
        return None
    units = content_units(sentence)
    if not units:
        return candidates[0]

    def overlap(span: Span) -> float:
        found = normalize(span.text)
        return sum(1 for u in units if u in found) / len(units)

    return max(candidates, key=overlap)
