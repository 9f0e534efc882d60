"""Cache files replaced whole and read whole.

Caches beside the index (BM25, the chunk table, the exact search's vectors) are read by other processes
while an ingest writes them: each is written under a temporary name and renamed over the old one (a rename
is atomic, so a reader sees the old file or the new one, never half). A file a kill or a full disk still
cut short is read as missing, with a warning, and its owner builds it again.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import numpy as np

log = logging.getLogger(__name__)

T = TypeVar("T")


@contextmanager
def replaced_atomically(path: Path) -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s new content into, renamed over ``path`` when the block ends
    (and removed when the block fails)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            yield fh
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_whole(path: Path, load: Callable[[Path], T], what: str) -> T | None:
    """``load(path)``; None when ``path`` is missing, and when ``load`` cannot read it (OSError, or ValueError:
    not a whole file of its kind), which is logged as an unreadable ``what``."""
    if not path.exists():
        return None
    try:
        return load(path)
    except (OSError, ValueError) as exc:
        log.warning("Ignoring unreadable %s %s (%s); rebuilding it", what, path, exc)
        return None


@contextmanager
def opened_npz(path: Path) -> Iterator[Any]:
    """``np.load(path)`` of an ``.npz`` file, with one cut short or of another kind (a missing array) raised
    as ValueError, as ``read_whole`` expects."""
    try:
        with np.load(path) as npz:
            yield npz
    except (zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise ValueError(f"{path} is not a whole file of its kind ({exc})") from exc
