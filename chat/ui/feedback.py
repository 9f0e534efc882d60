"""Thumbs up/down from the chat UI, appended as JSON lines to ``data_dir/feedback.jsonl``."""

from __future__ import annotations

import fcntl
import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chat.answer import Answer

FEEDBACK_FILE = "feedback.jsonl"

_lock = threading.Lock()  # one writer at a time within the process; flock covers other processes


class FeedbackLog:
    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / FEEDBACK_FILE

    def append(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _lock, open(self.path, "a", encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                f.write(line)
                f.flush()
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def record(self, *, rating: str, question: str, answer: Answer | None, error: str | None = None,
               session: str = "", turn: int = 0, top_k: int | None = None) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "rating": rating,
            "question": question,
            "answer": answer.text if answer else None,
            "citations": [c.to_dict() for c in answer.citations] if answer else [],
            "mode": answer.mode if answer else None,
            "model": answer.model if answer else None,
            "complete": answer.complete if answer else False,
            "error": error if answer is None else answer.error,
            "top_k": top_k,
            "session": session,
            "turn": turn,
        }
        self.append(entry)
        return entry

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
