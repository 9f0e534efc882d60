"""The result of a question: text, citations you can check, and how it was made."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from chat.passages import Passage

Mode = Literal["generative", "extractive"]


@dataclass
class Citation:
    n: int  # the number as written in the answer, 1-based into ``Answer.passages``
    passage: Passage
    quote: str  # exact substring of the source document: source[start:end]
    start: int
    end: int

    @property
    def doc(self) -> str:
        return self.passage.doc

    @property
    def section(self) -> str:
        return self.passage.section

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "doc": self.doc, "section": self.section, "quote": self.quote,
                "start": self.start, "end": self.end, "passage_id": self.passage.id}


@dataclass
class SentenceCheck:
    """One answer sentence and how well the passages it cites support it."""

    text: str
    cites: list[int]
    support: float
    supported: bool
    reason: str = ""  # why it is flagged, for the UI

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "cites": self.cites, "support": round(self.support, 3),
                "supported": self.supported, "reason": self.reason}


@dataclass
class Timings:
    retrieval_ms: float = 0.0
    first_token_ms: float | None = None
    total_ms: float = 0.0
    generation_ms: float = 0.0

    @property
    def overhead_ms(self) -> float:
        """Time spent in our code rather than waiting for the model."""
        return self.total_ms - self.generation_ms

    def to_dict(self) -> dict[str, float | None]:
        return {"retrieval_ms": round(self.retrieval_ms, 2),
                "first_token_ms": None if self.first_token_ms is None else round(self.first_token_ms, 2),
                "total_ms": round(self.total_ms, 2), "generation_ms": round(self.generation_ms, 2)}


@dataclass
class Answer:
    question: str
    text: str
    mode: Mode
    citations: list[Citation] = field(default_factory=list)
    passages: list[Passage] = field(default_factory=list)
    sentences: list[SentenceCheck] = field(default_factory=list)
    refused: bool = False
    complete: bool = True  # False when generation stopped early (stream cut, timeout)
    model: str | None = None
    standalone_question: str | None = None  # the rewritten question, when history was used
    notices: list[str] = field(default_factory=list)  # things the user should know
    error: str | None = None
    timings: Timings = field(default_factory=Timings)

    @property
    def unsupported(self) -> list[SentenceCheck]:
        return [s for s in self.sentences if not s.supported]

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question, "text": self.text, "mode": self.mode, "model": self.model,
            "refused": self.refused, "complete": self.complete, "error": self.error,
            "standalone_question": self.standalone_question, "notices": self.notices,
            "citations": [c.to_dict() for c in self.citations],
            "sentences": [s.to_dict() for s in self.sentences],
            "unsupported": [s.text for s in self.unsupported],
            "passages": [p.to_dict() for p in self.passages],
            "timings": self.timings.to_dict(),
        }
