"""Opening a SQLite file that several threads and processes share, in one place.

WAL lets readers go on while one writer writes; the busy timeout makes a writer wait for
another's lock instead of failing at once with "database is locked". Used by the vector cache
(``kb.vector_cache``) and the conversation store (``chat.conversations``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal


def connect(path: Path, *, timeout: float, check_same_thread: bool = True,
            synchronous: Literal["NORMAL", "FULL"] | None = None, foreign_keys: bool = False) -> sqlite3.Connection:
    """A connection to ``path`` (its folder made if need be) in WAL mode, waiting up to ``timeout``
    seconds for another connection's lock (``sqlite3.connect`` sets SQLite's busy timeout from it).

    ``synchronous="NORMAL"`` suits data that can be recomputed (a lost write costs time, not data);
    ``foreign_keys`` turns on SQLite's enforcement, which is off by default per connection.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), timeout=timeout, check_same_thread=check_same_thread)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        if synchronous is not None:
            db.execute(f"PRAGMA synchronous = {synchronous}")
        if foreign_keys:
            db.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        db.close()
        raise
    return db
