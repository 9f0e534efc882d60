"""Files replaced whole: written under a temporary name and renamed over the old one.

Caches beside the index (BM25, the chunk table, the exact search's vectors) are read by other processes
while an ingest writes them; a rename is atomic, so a reader sees the old file or the new one, never half.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


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
