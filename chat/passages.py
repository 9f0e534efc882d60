"""What retrieval hands to answering, the UI and the eval."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kb.chunk import Chunk


@dataclass
class Passage:
    id: str
    text: str  # exactly source[start:end] of the document
    doc: str
    section: str  # heading path
    start: int
    end: int
    score: float  # fused score; higher is better
    context: str = ""  # e.g. a table's header row when the chunk continues a table
    found_by: dict[str, int] = field(default_factory=dict)  # retriever -> 1-based rank
    scores: dict[str, float] = field(default_factory=dict)  # retriever -> its own score
    # sentence start (offset into text) -> its cosine with the question, for the sentences the dense
    # search returned (its sentence vectors); the extractive answer picks sentences with it
    sentence_scores: dict[int, float] = field(default_factory=dict)

    @classmethod
    def from_chunk(cls, chunk_id: str, chunk: Chunk, score: float = 0.0) -> Passage:
        return cls(
            id=chunk_id, text=chunk.text, doc=chunk.doc, section=chunk.section, start=chunk.start,
            end=chunk.end, score=score, context=chunk.context,
        )

    @property
    def display_text(self) -> str:
        """Text with the context it needs to be read on its own (a continued table's header)."""
        return f"{self.context}\n{self.text}" if self.context else self.text

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id, "doc": self.doc, "section": self.section, "start": self.start, "end": self.end,
            "score": self.score, "found_by": self.found_by, "scores": self.scores, "context": self.context,
            "text": self.text,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Passage:
        return cls(id=str(data["id"]), text=str(data["text"]), doc=str(data["doc"]),
                   section=str(data.get("section", "")), start=int(data["start"]), end=int(data["end"]),
                   score=float(data.get("score", 0.0)), context=str(data.get("context", "")),
                   found_by=dict(data.get("found_by") or {}), scores=dict(data.get("scores") or {}))
