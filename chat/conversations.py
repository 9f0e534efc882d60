"""Conversations that last: SQLite in the data folder, one owner per conversation.

Each conversation belongs to one user (the login name, or ``LOCAL_USER`` for the anonymous user
of a loopback server); every read and write is keyed by that user, so with a login each person
sees only their own. A turn stores the whole ``Answer.to_dict()``, from which the answer (with
its citations and passages) is rebuilt to render it again or to export it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chat.answer import Answer, NoticeKind, incomplete_line
from chat.generation import ENABLE_HINT, PULL_HINT
from kb.errors import ActionError
from kb.records import Record
from kb.settings import Settings
from kb.sqlite import connect

log = logging.getLogger(__name__)

DB_FILE = "conversations.sqlite3"
LOCAL_USER = "local"
TITLE_CHARS = 60
SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    title TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_by_user ON conversations (user, updated DESC);
CREATE TABLE IF NOT EXISTS turns (
    conversation TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    question TEXT NOT NULL,
    answer TEXT,            -- Answer.to_dict() as JSON; NULL when the turn failed
    error TEXT,
    created REAL NOT NULL,
    PRIMARY KEY (conversation, seq)
);
"""


class ConversationError(ActionError):
    """Unknown conversation (or one of another user), or a bad title; ``status`` for HTTP."""

    default_status = 404


@dataclass
class ConversationSummary(Record):
    id: str
    title: str
    created: float
    updated: float
    turns: int


@dataclass
class StoredTurn(Record):
    seq: int
    question: str
    answer: dict[str, Any] | None
    error: str | None
    created: float

    def to_answer(self) -> Answer | None:
        return answer_from_dict(self.answer) if self.answer else None


@dataclass
class Conversation(Record):
    id: str
    title: str
    created: float
    updated: float
    turns: list[StoredTurn] = field(default_factory=list)


def title_from(question: str) -> str:
    line = " ".join(question.split())
    return (line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1] + "…") or "（空 / empty）"


# What the Assistant wrote into answers before notices had kinds and the cut had its own fields:
# stored conversations of that time are upgraded as they load, so every front end sees one form.
_LEGACY_INCOMPLETE_NOTE = "\n\n⚠ 回答未完成 / Answer incomplete:"
_LEGACY_SETUP_HINTS = (ENABLE_HINT, PULL_HINT)  # reworded hints would leave old notices whole (INFO), not lost


def answer_from_dict(data: dict[str, Any]) -> Answer:
    """Rebuild an ``Answer`` from its stored ``Answer.to_dict()``, including dicts stored by earlier versions."""
    return Answer.from_dict(_upgrade(data))


def _upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """An answer dict of an earlier version in today's form (new dicts pass unchanged).

    Then: the "answer incomplete" note was part of ``text`` (and checked as a sentence), and the
    how-to-enable-generation hint was the tail of a plain-string notice.
    """
    data = dict(data)
    text = str(data.get("text", ""))
    if data.get("error") and _LEGACY_INCOMPLETE_NOTE in text:
        data["text"] = text[: text.rindex(_LEGACY_INCOMPLETE_NOTE)]
        data["sentences"] = [s for s in data.get("sentences", []) if not str(s.get("text", "")).startswith("⚠")]
    notices: list[Any] = []
    for notice in data.get("notices", []):
        if not isinstance(notice, str):
            notices.append(notice)
            continue
        hint = next((h for h in _LEGACY_SETUP_HINTS if h in notice), None)
        rest = notice.replace(hint, "").strip() if hint else notice
        if rest:
            notices.append({"kind": NoticeKind.EXTRACTIVE if hint else NoticeKind.INFO, "text": rest})
        if hint:
            notices.append({"kind": NoticeKind.SETUP, "text": hint})
    data["notices"] = notices
    return data


class ConversationStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        with self._db() as db:
            db.executescript(SCHEMA)

    @classmethod
    def for_settings(cls, settings: Settings) -> ConversationStore:
        return cls(settings.data_dir / DB_FILE)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        # A connection per call: Gradio runs handlers on many threads, and SQLite's own locking
        # (WAL, busy timeout) serialises writers across threads and processes.
        db = connect(self.path, timeout=10.0, foreign_keys=True)
        try:
            with db:
                yield db
        finally:
            db.close()

    # --- writes -----------------------------------------------------------------------
    def create(self, user: str, title: str = "") -> str:
        cid = uuid.uuid4().hex[:16]
        now = time.time()
        with self._db() as db:
            db.execute("INSERT INTO conversations (id, user, title, created, updated) VALUES (?, ?, ?, ?, ?)",
                       (cid, user, title.strip(), now, now))
        return cid

    def add_turn(self, conversation: str, user: str, question: str, answer: Answer | None,
                 error: str | None = None) -> int:
        """Append a turn; the first question titles a conversation that has no title yet."""
        now = time.time()
        payload = json.dumps(answer.to_dict(), ensure_ascii=False) if answer is not None else None
        with self._db() as db:
            row = self._owned(db, conversation, user)
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM turns WHERE conversation = ?",
                             (conversation,)).fetchone()[0]
            db.execute("INSERT INTO turns (conversation, seq, question, answer, error, created) "
                       "VALUES (?, ?, ?, ?, ?, ?)", (conversation, seq, question, payload, error, now))
            title = row[1] or title_from(question)
            db.execute("UPDATE conversations SET updated = ?, title = ? WHERE id = ?", (now, title, conversation))
        return int(seq)

    def rename(self, conversation: str, user: str, title: str) -> None:
        title = " ".join(str(title or "").split())
        if not title:
            raise ConversationError("A conversation's title cannot be empty.", status=400)
        with self._db() as db:
            self._owned(db, conversation, user)
            db.execute("UPDATE conversations SET title = ? WHERE id = ?", (title[:200], conversation))

    def delete(self, conversation: str, user: str) -> None:
        with self._db() as db:
            self._owned(db, conversation, user)
            db.execute("DELETE FROM turns WHERE conversation = ?", (conversation,))
            db.execute("DELETE FROM conversations WHERE id = ?", (conversation,))

    # --- reads ------------------------------------------------------------------------
    def list(self, user: str) -> list[ConversationSummary]:
        """The user's conversations, newest first (by their last turn); empty ones are left out."""
        with self._db() as db:
            rows = db.execute(
                "SELECT c.id, c.title, c.created, c.updated, COUNT(t.seq) FROM conversations c "
                "JOIN turns t ON t.conversation = c.id WHERE c.user = ? GROUP BY c.id "
                "ORDER BY c.updated DESC, c.created DESC", (user,)).fetchall()
        return [ConversationSummary(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def get(self, conversation: str, user: str) -> Conversation:
        with self._db() as db:
            row = self._owned(db, conversation, user)
            turns = db.execute("SELECT seq, question, answer, error, created FROM turns WHERE conversation = ? "
                               "ORDER BY seq", (conversation,)).fetchall()
        return Conversation(
            id=row[0], title=row[1] or "（未命名 / untitled）", created=row[2], updated=row[3],
            turns=[StoredTurn(t[0], t[1], json.loads(t[2]) if t[2] else None, t[3], t[4]) for t in turns],
        )

    def _owned(self, db: sqlite3.Connection, conversation: str, user: str) -> tuple[Any, ...]:
        row = db.execute("SELECT id, title, created, updated FROM conversations WHERE id = ? AND user = ?",
                         (str(conversation or ""), user)).fetchone()
        if row is None:
            # The same message whether it does not exist or belongs to someone else.
            raise ConversationError(f"No conversation {conversation!r}.", status=404)
        return tuple(row)

    # --- export -----------------------------------------------------------------------
    def export_json(self, conversation: str, user: str) -> dict[str, Any]:
        data = self.get(conversation, user).to_dict()
        data["format"] = "kbqa-conversation/1"
        return data

    def export_markdown(self, conversation: str, user: str,
                        page_of: Callable[[str, int], int | None] | None = None) -> str:
        """The conversation as Markdown: each question, its answer, and the cited quotes.

        ``page_of(doc, offset)`` adds "p. N" to citations of paged documents (PDF).
        """
        conv = self.get(conversation, user)
        out = [f"# {conv.title}", "",
               f"_{time.strftime('%Y-%m-%d %H:%M', time.localtime(conv.created))} · {len(conv.turns)} turns_", ""]
        for turn in conv.turns:
            out += [f"## {turn.question.strip() or '（空 / empty）'}", ""]
            answer = turn.to_answer()
            if answer is None:
                out += [f"> ⚠ {turn.error or 'no answer'}", ""]
                continue
            out += [answer.text.strip(), ""]
            if cut := incomplete_line(answer):
                out += [f"> {cut}", ""]
            if answer.citations:
                out += ["**来源 / Sources**", ""]
                for c in answer.citations:
                    page = page_of(c.doc, c.start) if page_of else None
                    where = " › ".join(part for part in (c.doc, c.section.replace(" > ", " › ")) if part)
                    where += f", p. {page}" if page else ""
                    quote = " ".join(c.quote.split())
                    out.append(f"{c.n}. {where} ({c.start}–{c.end})")
                    out.append(f"   > {quote}")
                out.append("")
        return "\n".join(out).rstrip() + "\n"
