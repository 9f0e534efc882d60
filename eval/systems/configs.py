"""The configurations compared in one run, each turning a question into an ``AnswerRecord``.

- ``extractive``: ``Assistant(llm="none")``, sentences quoted from the document, cited.
- ``generative``: ``Assistant`` with the configured Ollama model.
- ``naive``: the llama-index default query engine (eval.systems.baselines). It writes no citation marks, so each of
  its sentences is judged against all the chunks it was given (its "contexts", as RAGAS does), and a
  refusal is recognised by the phrases in ``NAIVE_REFUSAL``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from chat import Assistant
from eval.systems.baselines import NaiveBaseline

log = logging.getLogger(__name__)
T = TypeVar("T")

CONFIGS = ("extractive", "generative", "naive")
NAIVE_REFUSAL = re.compile(
    r"empty response|does not (?:contain|provide|mention|say|include|specify)|doesn't (?:contain|provide|mention|say)|"
    r"not (?:mentioned|provided|specified|stated|included) in|no (?:information|mention) (?:about|on|of)|"
    r"(?:cannot|can't|unable to) (?:answer|determine|find)|没有(?:提到|提及|相关|找到|包含|给出)|未(?:提及|提到|给出)|"
    r"无法(?:回答|确定|找到)|不包含|并未",
    re.I,
)


@dataclass
class PassageRef:
    doc: str
    start: int
    end: int
    text: str  # what a judge reads: the passage with the context it needs (a continued table's header)
    section: str = ""


@dataclass
class Quote:
    """A citation's quote: ``text`` should be exactly ``documents[doc][start:end]``."""

    doc: str
    start: int
    end: int
    text: str


@dataclass
class AnswerRecord:
    config: str
    text: str
    refused: bool
    passages: list[PassageRef]
    timings: dict[str, float | None]
    cites_all: bool = False  # no citation marks: every sentence stands on all passages (naive baseline)
    mode: str = ""
    model: str | None = None
    complete: bool = True
    error: str | None = None
    notices: list[str] = field(default_factory=list)
    quotes: list[Quote] = field(default_factory=list)  # the citations' quotes (this project's answers only)

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "refused": self.refused, "mode": self.mode, "model": self.model,
                "complete": self.complete, "error": self.error, "notices": self.notices,
                "cites_all": self.cites_all,
                "timings": {k: None if v is None else round(v, 2) for k, v in self.timings.items()},
                "passages": [{"doc": p.doc, "start": p.start, "end": p.end, "section": p.section}
                             for p in self.passages],
                "quotes": [{"doc": q.doc, "start": q.start, "end": q.end, "text": q.text} for q in self.quotes]}


def guarded(config: str, question: str, ask: Callable[[str], T], cites_all: bool = False) -> T | AnswerRecord:
    """``ask(question)``, or when it raises, the record of a question the configuration could not answer:
    scored as an error, and the run goes on (one bad question must not end it)."""
    started = time.perf_counter()
    try:
        return ask(question)
    except Exception as exc:
        log.warning("%s failed on %r: %s", config, question[:60], exc)
        return AnswerRecord(config, "", False, [], {"total_ms": (time.perf_counter() - started) * 1000},
                            cites_all=cites_all, error=f"{type(exc).__name__}: {exc}", complete=False)


class Config(Protocol):
    name: str

    def answer(self, question: str) -> AnswerRecord: ...


class AssistantConfig:
    """The project's own answering, through the same ``Assistant.ask`` every interface uses."""

    def __init__(self, name: str, bot: Assistant) -> None:
        self.name = name
        self.bot = bot

    def answer(self, question: str) -> AnswerRecord:
        answer = guarded(self.name, question, self.bot.ask)
        if isinstance(answer, AnswerRecord):
            return answer
        passages = [PassageRef(p.doc, p.start, p.end, p.display_text, p.section) for p in answer.passages]
        t = answer.timings
        return AnswerRecord(
            self.name, answer.text, answer.refused, passages,
            {"retrieval_ms": t.retrieval_ms, "first_token_ms": t.first_token_ms, "total_ms": t.total_ms},
            mode=answer.mode, model=answer.model, complete=answer.complete, error=answer.error,
            notices=list(answer.notices),
            quotes=[Quote(c.doc, c.start, c.end, c.quote) for c in answer.citations],
        )


class NaiveConfig:
    name = "naive"

    def __init__(self, baseline: NaiveBaseline, model: str) -> None:
        self.baseline = baseline
        self.model = model

    def answer(self, question: str) -> AnswerRecord:
        asked = guarded(self.name, question, self.baseline.ask, cites_all=True)
        if isinstance(asked, AnswerRecord):
            return asked
        text, nodes, timings = asked
        passages = [PassageRef(n.node.metadata.get("doc", ""), n.node.start_char_idx or 0, n.node.end_char_idx or 0,
                               n.node.get_content()) for n in nodes]
        refused = not text or bool(NAIVE_REFUSAL.search(text))
        return AnswerRecord(self.name, text, refused, passages, timings, cites_all=True, mode="naive",
                            model=self.model)
