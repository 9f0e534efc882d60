"""YAML front matter: the ``---``-fenced block at the top of Markdown/MDX files is metadata, not text."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import yaml

log = logging.getLogger(__name__)

_OPEN_RE = re.compile(r"\A(?:\ufeff)?---[ \t]*(?:\r\n|\r|\n)")
_CLOSE_RE = re.compile(r"^(?:---|\.\.\.)[ \t]*(?:\r\n|\r|\n|\Z)", re.MULTILINE)
_MAX_FRONT_MATTER = 64 * 1024  # a "---" rule far down the file is a rule, not the end of front matter


@dataclass(frozen=True)
class FrontMatter:
    fields: dict[str, str] = field(default_factory=dict)
    end: int = 0  # offset where the body starts (0: no front matter)

    @property
    def title(self) -> str:
        return self.fields.get("title", "").strip()


def parse_front_matter(text: str) -> FrontMatter:
    """The front matter at the start of ``text`` (fields as strings) and where the body begins.

    A block that is not a YAML mapping is not front matter (a document may open with a ``---``
    rule); it stays text.
    """
    opening = _OPEN_RE.match(text)
    if not opening:
        return FrontMatter()
    closing = _CLOSE_RE.search(text, opening.end(), min(len(text), opening.end() + _MAX_FRONT_MATTER))
    if not closing:
        return FrontMatter()
    try:
        data = yaml.safe_load(text[opening.end() : closing.start()])
    except yaml.YAMLError as exc:
        log.debug("Leading ---block is not YAML (%s); treating it as text", exc)
        return FrontMatter()
    if not isinstance(data, dict):
        return FrontMatter()
    fields = {str(k): _as_text(v) for k, v in data.items() if v is not None}
    return FrontMatter(fields, closing.end())


def _as_text(value: object) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(_as_text(v) for v in value)
    return str(value)
