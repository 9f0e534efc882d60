"""The result of a question: text, citations you can check, and how it was made."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from chat.passages import Passage

Mode = Literal["generative", "extractive"]


class NoticeKind(StrEnum):
    """What a notice is about, so that each front end can place it (or leave it out) its own way."""

    QUESTION = "question"  # the question was changed to be answerable: cut to the limit, bad characters dropped
    EXTRACTIVE = "extractive"  # why this answer is extractive: Ollama unreachable, model missing, generation failed
    SETUP = "setup"  # how to turn generation on (the UI's status line says it, so answers leave it out)
    LIMIT = "limit"  # the answer reached the token limit it was given
    INFO = "info"  # anything else (and notices stored before kinds existed)


class Notice(str):
    """A thing the user should know about an answer: its text, and its ``kind``.

    A ``str`` subclass on purpose: ``answer.notices`` was a list of strings, and code that reads
    them as text (``"limit" in notice``, ``json.dumps``) keeps working; front ends that care
    look at ``.kind``.
    """

    __slots__ = ("kind",)
    kind: NoticeKind

    def __new__(cls, text: str, kind: NoticeKind | str = NoticeKind.INFO) -> Notice:
        self = super().__new__(cls, text)
        self.kind = NoticeKind(kind)
        return self

    def __getnewargs__(self) -> tuple[str, NoticeKind]:  # copy and pickle keep the kind
        return str(self), self.kind

    def __repr__(self) -> str:
        return f"Notice({str(self)!r}, {self.kind.value!r})"

    @property
    def text(self) -> str:
        return str(self)

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind.value, "text": str(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | str) -> Notice:
        """From ``to_dict()``; a plain string (answers stored before kinds existed) is an ``INFO`` notice."""
        if isinstance(data, str):
            return data if isinstance(data, Notice) else cls(data)
        try:
            kind = NoticeKind(data.get("kind", NoticeKind.INFO))
        except ValueError:  # a kind this version does not know: still worth showing
            kind = NoticeKind.INFO
        return cls(str(data.get("text", "")), kind)


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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SentenceCheck:
        return cls(text=str(data["text"]), cites=list(data.get("cites", [])), support=float(data["support"]),
                   supported=bool(data["supported"]), reason=str(data.get("reason", "")))


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

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Timings:
        t = data or {}
        return cls(retrieval_ms=float(t.get("retrieval_ms", 0.0)), first_token_ms=t.get("first_token_ms"),
                   total_ms=float(t.get("total_ms", 0.0)), generation_ms=float(t.get("generation_ms", 0.0)))


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
    notices: list[Notice] = field(default_factory=list)  # things the user should know, each with its kind
    error: str | None = None  # why the answer is incomplete, when it failed midway (the text is only the answer)
    timings: Timings = field(default_factory=Timings)

    def __post_init__(self) -> None:
        self.notices = [Notice.from_dict(n) for n in self.notices]  # a plain string is an INFO notice

    @property
    def unsupported(self) -> list[SentenceCheck]:
        return [s for s in self.sentences if not s.supported]

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question, "text": self.text, "mode": self.mode, "model": self.model,
            "refused": self.refused, "complete": self.complete, "error": self.error,
            "standalone_question": self.standalone_question,
            "notices": [n.to_dict() for n in self.notices],
            "citations": [c.to_dict() for c in self.citations],
            "sentences": [s.to_dict() for s in self.sentences],
            "unsupported": [s.text for s in self.unsupported],
            "passages": [p.to_dict() for p in self.passages],
            "timings": self.timings.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Answer:
        """Rebuild an ``Answer`` from ``to_dict()``; fields missing from older dicts take their defaults."""
        passages = [Passage.from_dict(p) for p in data.get("passages", [])]
        by_id = {p.id: p for p in passages}
        citations = []
        for c in data.get("citations", []):
            passage = by_id.get(str(c.get("passage_id")))
            if passage is None and 0 < int(c["n"]) <= len(passages):
                passage = passages[int(c["n"]) - 1]
            if passage is None:  # a citation must point at a passage; the stored one is not there
                passage = Passage(id=str(c.get("passage_id", "")), text=str(c["quote"]), doc=str(c["doc"]),
                                  section=str(c.get("section", "")), start=int(c["start"]), end=int(c["end"]),
                                  score=0.0)
            citations.append(Citation(n=int(c["n"]), passage=passage, quote=str(c["quote"]),
                                      start=int(c["start"]), end=int(c["end"])))
        return cls(
            question=str(data.get("question", "")), text=str(data.get("text", "")),
            mode=data.get("mode", "extractive"), citations=citations, passages=passages,
            sentences=[SentenceCheck.from_dict(s) for s in data.get("sentences", [])],
            refused=bool(data.get("refused", False)), complete=bool(data.get("complete", True)),
            model=data.get("model"), standalone_question=data.get("standalone_question"),
            notices=[Notice.from_dict(n) for n in data.get("notices", [])], error=data.get("error"),
            timings=Timings.from_dict(data.get("timings")),
        )


def incomplete_line(answer: Answer) -> str | None:
    """The plain-text line that says an answer stopped early, for front ends that show only text
    (the CLI, the OpenAI-compatible content, the Markdown export); the UI draws a banner instead."""
    if not answer.error:  # cut at the token limit is incomplete too, but not a failure: a LIMIT notice says it
        return None
    return f"⚠ 回答未完成 / Answer incomplete: {answer.error}"
