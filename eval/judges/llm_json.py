"""Reading JSON out of what a model wrote: code fences, text around it, single quotes, Python literals."""

from __future__ import annotations

import ast
import json
import re
from typing import Any

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)
_PY_LITERALS = {"true": "True", "false": "False", "null": "None"}


def parse_json(text: str) -> Any | None:
    """The first JSON object or array in ``text``, or None when there is none that parses."""
    if not text:
        return None
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for candidate in candidates:
        for start in (i for i, ch in enumerate(candidate) if ch in "{["):
            found = _decode_at(candidate, start)
            if found is not None:
                return found
    return None


def _decode_at(text: str, start: int) -> Any | None:
    try:
        value, _ = json.JSONDecoder().raw_decode(text, start)  # trailing text is ignored
        return value
    except json.JSONDecodeError:
        pass
    end = _matching_bracket(text, start)
    if end is None:
        return None
    snippet = text[start : end + 1]
    python = re.sub(r"\b(true|false|null)\b", lambda m: _PY_LITERALS[m.group(1)], snippet)
    try:  # {'supported': true} and other near-JSON that models write
        value = ast.literal_eval(python)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, dict | list) else None


def _matching_bracket(text: str, start: int) -> int | None:
    pairs = {"{": "}", "[": "]"}
    stack: list[str] = []
    quote: str | None = None
    escaped = False
    for i in range(start, len(text)):
        ch = text[i]
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
            continue
        if ch in "\"'":
            quote = ch
        elif ch in pairs:
            stack.append(pairs[ch])
        elif stack and ch == stack[-1]:
            stack.pop()
            if not stack:
                return i
    return None


def as_bool(value: Any) -> bool | None:
    """true/false, "yes"/"no", "supported"/"not supported" -> bool; anything else -> None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in {"true", "yes", "supported", "correct", "是", "支持", "正确"}:
            return True
        if word in {"false", "no", "unsupported", "not supported", "incorrect", "否", "不支持", "错误"}:
            return False
    return None
