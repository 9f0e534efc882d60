"""``Record``: a dataclass whose plain form is its fields, for JSON replies and stored rows."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any


class Record:
    """Mixed into a ``@dataclass``: ``to_dict()`` is ``dataclasses.asdict`` (nested records included)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]
