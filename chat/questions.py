"""Turning what the user typed into a question retrieval can use."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from chat.answer import Notice, NoticeKind
from kb.errors import KbqaError
from kb.text import CJK_CHAR, LATIN_WORD, Language
from kb.text import detect_language as detect_language  # its home is kb.text; callers of chat.questions keep it

History = Sequence[tuple[str, str]] | Sequence[dict[str, str]]


# A follow-up leans on the previous turn when it points back or is too short to stand alone.
_ZH_ANAPHORA = re.compile(r"(它|它们|他们|这|那|其|该|此|上述|前者|后者|这个|那个|这种|那种)")
_EN_ANAPHORA = re.compile(r"\b(it|its|they|them|their|this|that|these|those|the former|the latter)\b", re.I)
_EN_FOLLOW_UP_OPENERS = re.compile(r"^\s*(and|what about|how about|and what about|why)\b", re.I)
_ZH_FOLLOW_UP_OPENERS = re.compile(r"^\s*(那|那么|还有|而|为什么|为何)")
_SURROGATE = re.compile(r"[\ud800-\udfff]")

# The history budget: only the last HISTORY_TURNS turns are read, each question cut to the
# question limit (KBQA_MAX_QUESTION_CHARS) and each answer to HISTORY_ANSWER_CHARS. A chat
# window keeps whatever was typed; without this, one huge earlier question reaches the rewrite,
# the embedding model and the LLM again with every follow-up.
HISTORY_TURNS = 3
HISTORY_ANSWER_CHARS = 400


class QuestionError(KbqaError, ValueError):
    """The question cannot be answered as given; the message says why."""


@dataclass
class PreparedQuestion:
    text: str  # what retrieval and generation use
    original: str
    language: Language
    notices: list[Notice] = field(default_factory=list)
    rewritten_from_history: bool = False


def validate(question: object, max_chars: int) -> tuple[str, list[Notice]]:
    """The question as retrieval and the LLM will read it: valid text, stripped, at most ``max_chars``."""
    if isinstance(question, (bytes, bytearray)):
        question = bytes(question).decode("utf-8", errors="surrogateescape")  # bad bytes become surrogates
    notices: list[Notice] = []
    if isinstance(question, str):
        question, removed = repair_text(question)
        if removed and not question.strip():
            raise QuestionError(
                "The question holds only characters that are not valid text (invalid UTF-8 or lone surrogates). "
                "Type it again, or check the terminal's encoding is UTF-8. / 问题只包含无效字符，请重新输入。"
            )
        if removed:
            notices.append(Notice(
                f"The question held {removed} character(s) that are not valid text (invalid UTF-8 or a lone "
                f"surrogate); they were left out. / 问题中有 {removed} 个无效字符（非法 UTF-8 或孤立代理项），已忽略。",
                NoticeKind.QUESTION,
            ))
    if not isinstance(question, str) or not question.strip():
        raise QuestionError("The question is empty. Type a question about the document. / 问题为空，请输入一个关于文档的问题。")
    text = question.strip()
    if len(text) > max_chars:
        notices.append(Notice(
            f"The question was {len(text)} characters long; only its first {max_chars} were used. "
            f"/ 问题过长（{len(text)} 字符），只使用了前 {max_chars} 个字符。",
            NoticeKind.QUESTION,
        ))
        text = text[:max_chars]
    return text, notices


def repair_text(text: str) -> tuple[str, int]:
    """``text`` without lone surrogates (which no encoder accepts), and how many were dropped.

    Surrogate pairs written as two code units (JSON ``\\ud83d\\ude00``) are joined into their character.
    """
    if not _SURROGATE.search(text):
        return text, 0
    joined = text.encode("utf-16", "surrogatepass").decode("utf-16", "surrogatepass")
    cleaned = _SURROGATE.sub("", joined)
    return cleaned, len(joined) - len(cleaned)


def bound(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars``: the one limit for anything that reaches retrieval or the LLM."""
    return text if len(text) <= max_chars else text[:max_chars]


def history_turns(history: History | None, max_chars: int) -> list[tuple[str, str]]:
    """The last (user, assistant) pairs within the history budget (see HISTORY_TURNS), from either
    tuples or chat-message dicts (Gradio's format)."""
    turns = [(bound(repair_text(user)[0], max_chars), bound(repair_text(answer)[0], HISTORY_ANSWER_CHARS))
             for user, answer in _all_turns(history)[-HISTORY_TURNS:]]
    return [(user, answer) for user, answer in turns if user.strip() or answer.strip()]


def _all_turns(history: History | None) -> list[tuple[str, str]]:
    if not history:
        return []
    turns: list[tuple[str, str]] = []
    pending_user: str | None = None
    for item in history:
        if isinstance(item, dict):
            role, content = item.get("role"), _content_text(item.get("content"))
            if role == "user":
                pending_user = content
            elif role == "assistant" and pending_user is not None:
                turns.append((pending_user, content))
                pending_user = None
        else:
            user, assistant = item
            turns.append((str(user), str(assistant or "")))
    if pending_user is not None:
        turns.append((pending_user, ""))
    return turns


def _content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # Gradio may send a list of content parts
        return " ".join(str(part.get("text", "")) if isinstance(part, dict) else str(part) for part in content)
    return str(content or "")


def needs_context(question: str, language: Language) -> bool:
    if language == "zh":
        short = len(CJK_CHAR.findall(question)) <= 8
        return bool(_ZH_ANAPHORA.search(question) or _ZH_FOLLOW_UP_OPENERS.search(question)) or short
    words = LATIN_WORD.findall(question)
    return bool(_EN_ANAPHORA.search(question) or _EN_FOLLOW_UP_OPENERS.search(question)) or len(words) <= 4


def rule_based_standalone(question: str, turns: list[tuple[str, str]], language: Language,
                          max_chars: int) -> str | None:
    """The extractive mode's rewrite rule: a follow-up that points back (它/that/what about…)
    or is very short gets the previous question put in front of it. Returns None when the
    question stands on its own. The result stays within ``max_chars``: the follow-up is kept
    whole and the end of the previous question (nearest to it) fills the rest."""
    if not turns or not needs_context(question, language):
        return None
    previous = turns[-1][0].strip()
    room = max_chars - len(question) - 1
    if not previous or room <= 0:
        return None
    return f"{previous[-room:].lstrip()} {question}"
