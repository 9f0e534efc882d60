"""Text rules shared by every package: normalisation and tokenisation (the BM25 index and its
queries must tokenise the same way), language detection, and the noise stripped from questions.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from functools import lru_cache
from typing import Literal

import jieba
import snowballstemmer

jieba.setLogLevel(logging.WARNING)

# Words that ask rather than tell: they appear in questions, rarely in the answer's text.
QUESTION_WORDS = frozenset(
    """
    什么 什么样 哪些 哪个 哪种 哪里 哪 如何 怎么 怎样 怎么样 为什么 为何 是否 是不是 能否 可否 多少 几 几个
    吗 呢 吧 啊 呀 么 嘛 的 了 地 得 和 与 及 或 是 在 有 被 把 对 中 里 上 下 这 那 这个 那个 这些 那些 其 它 它们
    请 请问 一下 介绍 解释 说明 说说 讲讲 告诉 我 我们 你 你们 文中 文档 本文 文章 提到 提及 指 叫 称为 什么叫
    主要 一般 通常 哪方面 有何 有哪些 是什么 是啥 啥 如何理解 一个 一种 会 要 需要 可以 能 能够
    what which who whom whose why how when where is are was were be been do does did the a an of to in on for
    and or as by with about from this that these those it its what's whats does please explain describe tell me
    document doc text say says said mention mentioned according can could should would will
    might shall have has had having need needs want wants i me my we us our you your
    they them their there here many much also just very
    """.split()
)

Language = Literal["zh", "en"]

CJK_CHAR = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")  # CJK ideographs (extension A, compatibility forms)
LATIN_WORD = re.compile(r"[A-Za-z]+")  # a run of Latin letters: "e5-small" is two
LATIN_TERM = re.compile(r"[A-Za-z][A-Za-z0-9.+\-]*[A-Za-z0-9+]|[A-Za-z]")  # a technical term: "e5-small" is one


def detect_language(text: str, *, min_cjk: int = 1, words: re.Pattern[str] = LATIN_WORD) -> Language:
    """Chinese when CJK characters are at least as many as Latin ``words`` (and at least ``min_cjk``).

    The defaults are the question rule (retrieval weights, refusal, prompt language): one Chinese
    character among no English words makes a Chinese question. ``is_chinese`` is the stricter rule
    of the eval's judges.
    """
    cjk = len(CJK_CHAR.findall(text))
    return "zh" if cjk >= max(min_cjk, len(words.findall(text))) else "en"


def is_chinese(text: str) -> bool:
    """The eval judges' rule for claims and passages (eval/checks.py, eval/scoring.py): at least two
    CJK characters, weighed against whole technical terms, so that an English passage quoting one
    character, or full of terms like "e5-small", is not taken for Chinese text."""
    return detect_language(text, min_cjk=2, words=LATIN_TERM) == "zh"


_TOKEN_RE = re.compile(r"[\w\u4e00-\u9fff$%+#.]+", re.UNICODE)
_HAS_CONTENT = re.compile(r"[0-9a-z\u4e00-\u9fff]")


def normalize(text: str) -> str:
    """Fold full-width to half-width (NFKC) and case, so 'ＫＶ' matches 'kv'."""
    return unicodedata.normalize("NFKC", text).lower()


@lru_cache(maxsize=4096)
def _segment(fragment: str) -> tuple[str, ...]:
    return tuple(jieba.lcut_for_search(fragment))


# Part of the name of every cached BM25 index: bump it whenever tokenize() changes the tokens it makes.
TOKENIZER_VERSION = 4
# English words are stemmed ("codes", "checking", "retrievers" meet "code", "check", "retriever"; dev tune
# hybrid hit@1 0.753 -> 0.785, seed tune equal). Shorter words are mostly acronyms (api, gpu, llm), and
# words with digits are names (llama3, v2): both stay as they are.
_STEMMABLE = re.compile(r"[a-z]{4,}")
_ENGLISH = snowballstemmer.stemmer("english")
_STEM_LOCK = threading.Lock()  # a Snowball stemmer keeps its working state on the object


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    with _STEM_LOCK:
        return str(_ENGLISH.stemWord(word))


def tokenize(text: str, *, wholes: bool = True) -> list[str]:
    """Tokens for BM25: jieba search-mode words for Chinese, whole (stemmed) words for Latin script, and
    each version of three or more parts and each snake_case name also whole (jieba cuts "2.3.1" into
    "2.3" and "1", "save_history" into "save" and "history"): the index knows them whole, so that a
    question naming one it never saw can tell (``wholes=False`` leaves them out)."""
    tokens: list[str] = []
    for fragment in _TOKEN_RE.findall(normalize(text)):
        for token in _segment(fragment):
            token = token.strip(".")
            if token and _HAS_CONTENT.search(token):
                tokens.append(_stem(token) if _STEMMABLE.fullmatch(token) else token)
        if wholes and "." in fragment:
            tokens.extend(full_versions(fragment))
        if wholes and "_" in fragment:
            tokens.extend(identifiers(fragment))
    return tokens


_IDENTIFIER = re.compile(r"(?<![a-z0-9_])[a-z][a-z0-9]*(?:_[a-z0-9]+)++(?![a-z0-9_])")


def identifiers(text: str) -> list[str]:
    """The snake_case names in ``text`` ("dataset_num_proc"), as tokenize() keeps them whole besides the
    pieces jieba cuts them into."""
    return _IDENTIFIER.findall(normalize(text))


# A version of three or more parts ("v2.3.1", "9.0.0"), its "v" dropped: "v2.3.0" and "2.3.0" are one.
# Possessive: a long run of dots and digits is scanned once, not once per starting point.
_FULL_VERSION = re.compile(r"(?<![\d.])v?(\d+(?:\.\d+){2,}+)(?!\.*\d)", re.IGNORECASE)


def full_versions(text: str) -> list[str]:
    """The versions of three or more parts in ``text``, as tokenize() keeps them whole ("2.3.1")."""
    return [m.group(1) for m in _FULL_VERSION.finditer(normalize(text))]


def is_version_number(version: str) -> bool:
    """Whether a dotted number from ``full_versions`` reads as a software version: not an IPv4 address
    (four parts of at most 255) nor a date (a first part from 1900 on)."""
    parts = [int(p) for p in version.split(".")]
    if len(parts) == 4 and all(p <= 255 for p in parts):
        return False
    return not 1900 <= parts[0] <= 2100


# Noise that is not content: what terminals, trackers and editors add around a question. Dropped
# before a question's words are weighed, so "(v2)" or "ticket 4711" neither sinks the question's
# coverage nor counts as a term the documents never mention.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2060\ufeff]")
_REFERENCE = re.compile(
    r"(?<![A-Za-z])(?:ticket|issue|bug|case|ref|req|pr|jira|task|id|no)\.?\s*[#:：]?\s*\d+(?![\d.])"
    r"|(?<![\w#&])#\d+(?![\d.])",
    re.IGNORECASE,
)
_TAG = re.compile(
    r"[(\[（【]\s*(?:v(?:er(?:sion)?)?\s*\d+(?:\.\d+)?|rev\.?\s*\d+|draft|wip|updated?|edit(?:ed)?|urgent|"
    r"todo|fyi|resend|repost)\s*[)\]）】]",
    re.IGNORECASE,
)


def strip_noise(text: str) -> str:
    """``text`` without terminal escapes, control characters, ticket references and status tags."""
    text = _ANSI.sub(" ", text)
    text = _CONTROL.sub(" ", text)
    text = _TAG.sub(" ", text)
    text = _REFERENCE.sub(" ", text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


# The question words as tokenize() leaves them: "does" is the token "doe", which no text contains.
_QUESTION_TOKENS = QUESTION_WORDS | frozenset(_stem(w) for w in QUESTION_WORDS if _STEMMABLE.fullmatch(w))


def query_tokens(question: str) -> list[str]:
    """Tokens of a question with noise, question words and particles dropped."""
    # Without whole names: searched, "save_history" and its pieces would weigh its words twice.
    return [t for t in tokenize(strip_noise(question), wholes=False) if t not in _QUESTION_TOKENS]
