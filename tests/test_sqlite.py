"""kb.sqlite.connect: the one way the project opens a shared SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from kb.sqlite import connect


def test_connect_makes_the_folder_and_sets_wal_and_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "x.sqlite3"
    db = connect(path, timeout=2.5, foreign_keys=True, synchronous="NORMAL")
    try:
        assert path.exists()
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 2500
        assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    finally:
        db.close()
    plain = connect(path, timeout=1.0)
    try:
        assert plain.execute("PRAGMA foreign_keys").fetchone()[0] == 0  # off unless asked, as in SQLite
    finally:
        plain.close()


def test_a_writer_waits_for_another_writers_lock_then_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite3"
    first = connect(path, timeout=1.0)
    first.execute("CREATE TABLE t (v INTEGER)")
    first.commit()
    first.execute("BEGIN IMMEDIATE")  # holds the write lock
    second = connect(path, timeout=0.2)
    try:
        assert second.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 0  # WAL: readers are not blocked
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            second.execute("INSERT INTO t VALUES (1)")
    finally:
        first.rollback()
        first.close()
        second.close()
