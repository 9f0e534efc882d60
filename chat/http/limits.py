"""Refuse oversized request bodies (413) before they are read into memory.

Applies to the API's own paths only; Gradio enforces its own upload limit.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from chat.http.errors import error_body

Scope = dict[str, Any]
LimitFor = Callable[[str], tuple[int, str] | None]  # path -> (bytes, what to say) or None: no limit


class BodyLimit:
    """Pure ASGI middleware: Content-Length checked up front; a body without one is counted as read."""

    def __init__(self, app: Any, limit_for: LimitFor) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        limit = self.limit_for(scope["path"]) if scope["type"] == "http" else None
        if limit is None:
            await self.app(scope, receive, send)
            return
        max_bytes, message = limit
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None:
            if length.isdigit() and int(length) > max_bytes:
                await _too_large(send, message)
                return
            await self.app(scope, receive, send)
            return
        # No length (chunked): read up to the limit, then hand the body on as if just received.
        chunks: list[bytes] = []
        total = 0
        while True:
            message_in = await receive()
            if message_in["type"] != "http.request":
                return  # the client went away
            body = message_in.get("body", b"")
            total += len(body)
            if total > max_bytes:
                await _too_large(send, message)
                return
            chunks.append(body)
            if not message_in.get("more_body"):
                break
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _too_large(send: Callable, message: str) -> None:
    body = json.dumps(error_body(413, message, code="request_too_large"), ensure_ascii=False).encode("utf-8")
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
