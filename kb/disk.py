"""Free space on the disk a path is on, for messages that say why a write failed."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

_OUT_OF_SPACE = {errno.ENOSPC, errno.EDQUOT}


def free_mb(path: Path) -> float | None:
    """MB free on the disk under ``path`` (or its nearest existing parent: it may not be made yet); None
    when even that cannot be asked, so a message about a failed write never fails itself."""
    for folder in (path, *path.parents):
        try:
            if folder.exists():
                return shutil.disk_usage(folder).free / 2**20
        except OSError:
            return None
    return None


def free_text(path: Path) -> str:
    """``"12.3 MB free"`` for a message, or ``"free space unknown"``."""
    free = free_mb(path)
    return "free space unknown" if free is None else f"{free:.1f} MB free"


def out_of_space(exc: OSError) -> bool:
    """Whether ``exc`` is the disk (or the user's quota) being full."""
    return exc.errno in _OUT_OF_SPACE
