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


_languages_cache: dict[tuple[int, int], tuple[Language, ...]] = {}
_doc_languages_cache: dict[tuple[int, int], dict[str, Language]] = {}


def _weight(text: str) -> int:
    # Text counted in comparable units: a CJK character is about a word's worth of text.
    return len(CJK_CHAR.findall(text)) + len(LATIN_WORD.findall(text))


def kb_languages(view: IndexView) -> tuple[Language, ...]:
    """The languages of the knowledge base's text, most text first (computed once per view)."""
    key = (id(view), view.generation)
    if key not in _languages_cache:
        weight: Counter[Language] = Counter()
        for chunk in view.chunks.values():
            weight[detect_language(chunk.text)] += _weight(chunk.text)
        total = sum(weight.values()) or 1
        ranked = tuple(lang for lang, w in weight.most_common() if w / total >= MIN_SHARE)
        if len(_languages_cache) > 16:
            _languages_cache.clear()
        _languages_cache[key] = ranked or ("zh",)
    return _languages_cache[key]


def doc_languages(view: IndexView) -> dict[str, Language]:
    """Each document's language: the one most of its text is in (computed once per view)."""
    key = (id(view), view.generation)
    if key not in _doc_languages_cache:
        weight: dict[str, Counter[Language]] = {}
        for chunk in view.chunks.values():
            weight.setdefault(chunk.doc, Counter())[detect_language(chunk.text)] += _weight(chunk.text)
        if len(_doc_languages_cache) > 16:
            _doc_languages_cache.clear()
        _doc_languages_cache[key] = {doc: w.most_common(1)[0][0] for doc, w in weight.items()}
    return _doc_languages_cache[key]


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
