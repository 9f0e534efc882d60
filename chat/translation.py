"""Query translation into the language(s) the knowledge base holds.

BM25 only matches words a question shares with the text, so a question in another
language than a document finds it by dense retrieval alone. With an LLM, the question
is also retrieved in each language of the knowledge base it is not written in: an
English question over Chinese documents in Chinese, a Chinese question over English
documents in English, both over a mixed knowledge base. The languages come from the
chunks themselves, so nothing assumes which documents a user added.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Protocol

from chat.generation import GenerationError
from chat.prompts import LANGUAGE_NAMES, TRANSLATE_PROMPT
from kb.index import IndexView
from kb.text import CJK_CHAR, LATIN_WORD, Language, detect_language

log = logging.getLogger(__name__)

MIN_SHARE = 0.05  # of the indexed text: a language below this is a quotation, not a document language


class Completer(Protocol):
    def complete(self, prompt: str) -> str: ...


_weights_cache: dict[tuple[int, int], dict[str, Counter[Language]]] = {}


def _language_weights(view: IndexView) -> dict[str, Counter[Language]]:
    """Per document, how much of its text is in each language (computed once per view).

    Text is counted in comparable units: a CJK character is about a word's worth of text.
    """
    key = (id(view), view.generation)
    if key not in _weights_cache:
        weights: dict[str, Counter[Language]] = {}
        for chunk in view.chunks.values():
            amount = len(CJK_CHAR.findall(chunk.text)) + len(LATIN_WORD.findall(chunk.text))
            weights.setdefault(chunk.doc, Counter())[detect_language(chunk.text)] += amount
        if len(_weights_cache) > 16:
            _weights_cache.clear()
        _weights_cache[key] = weights
    return _weights_cache[key]


def kb_languages(view: IndexView) -> tuple[Language, ...]:
    """The languages of the knowledge base's text, most text first."""
    weight: Counter[Language] = sum(_language_weights(view).values(), Counter())
    total = sum(weight.values()) or 1
    ranked = tuple(lang for lang, w in weight.most_common() if w / total >= MIN_SHARE)
    return ranked or ("zh",)


def doc_languages(view: IndexView) -> dict[str, Language]:
    """Each document's language: the one most of its text is in."""
    return {doc: w.most_common(1)[0][0] for doc, w in _language_weights(view).items()}


def translation_targets(question_language: Language, languages: tuple[Language, ...]) -> list[Language]:
    return [lang for lang in languages if lang != question_language]


def translations(llm: Completer, question: str, question_language: Language, languages: tuple[Language, ...],
                 max_chars: int) -> tuple[str, ...]:
    """The question in every knowledge-base language it is not written in (a failed translation is skipped)."""
    out: list[str] = []
    for target in translation_targets(question_language, languages):
        try:
            reply = llm.complete(TRANSLATE_PROMPT.format(language=LANGUAGE_NAMES[target], question=question)).strip()
        except GenerationError as exc:
            log.info("Query translation into %s failed: %s", target, exc)
            continue
        reply = reply.splitlines()[0].strip() if reply else ""
        if reply and reply != question:
            out.append(reply[:max_chars])  # a runaway reply must not become a huge query
    return tuple(out)
