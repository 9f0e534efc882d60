"""``POST /v1/chat/completions``: an OpenAI request in, the ``Assistant``'s answer out, as JSON or SSE.

The answer text keeps its ``[n]`` marks; the project's fields (citations with exact offsets,
refused, mode, unsupported, complete, timings, ...) ride along in the same object, and, when
streaming, in the last chunk before ``data: [DONE]``.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from chat.answer import Answer, incomplete_line
from chat.assistant import Assistant
from chat.http.errors import ApiError, from_exception
from chat.http.schemas import ChatCompletionRequest

log = logging.getLogger(__name__)

HISTORY_ROLES = ("user", "assistant")


@dataclass
class Question:
    text: str
    history: list[dict[str, str]]
    kwargs: dict[str, Any]


def _accepts_docs(assistant: Assistant) -> bool:
    return "docs" in inspect.signature(assistant.stream).parameters


def question_of(request: ChatCompletionRequest, assistant: Assistant) -> Question:
    """The last user message is the question; the user/assistant turns before it are the history."""
    last_user = next((i for i in range(len(request.messages) - 1, -1, -1) if request.messages[i].role == "user"), None)
    if last_user is None:
        raise ApiError(400, "The request has no user message: send the question as the last message with "
                       "role 'user' (system messages are not used).", code="no_user_message", param="messages")
    history = [{"role": m.role, "content": m.text()} for m in request.messages[:last_user] if m.role in HISTORY_ROLES]
    kwargs: dict[str, Any] = {}
    options = request.kbqa
    if options is not None and options.top_k is not None:
        kwargs["k"] = options.top_k
    if options is not None and options.docs is not None:
        if not _accepts_docs(assistant):
            raise ApiError(400, "Scoping a question to documents (kbqa.docs) is not supported by this version.",
                           code="unsupported_option", param="kbqa.docs")
        kwargs["docs"] = options.docs
    return Question(request.messages[last_user].text(), history, kwargs)


PageOf = Callable[[str, int], int | None]


def kbqa_fields(answer: Answer, page_of: PageOf | None = None) -> dict[str, Any]:
    """The project's fields of a reply, from the same ``Answer.to_dict()`` that ``/ask`` returns.

    ``page_of(doc, offset)`` gives a citation's PDF page (``ingest.library.DocumentTexts.page_of``).
    """
    d = answer.to_dict()
    return {
        "citations": [{"n": c["n"], "doc": c["doc"], "section": c["section"], "start": c["start"], "end": c["end"],
                       "quote": c["quote"], "page": page_of(c["doc"], c["start"]) if page_of else c.get("page")}
                      for c in d["citations"]],
        "refused": d["refused"], "mode": d["mode"], "unsupported": d["unsupported"], "complete": d["complete"],
        "timings": d["timings"], "error": d["error"], "answer_model": d["model"],
        "notices": [str(n) for n in answer.notices],  # each as its text: the reply's documented list of strings
        "standalone_question": d["standalone_question"],
    }


def finish_reason(answer: Answer) -> str:
    return "stop" if answer.complete else "length"


def content_tail(answer: Answer) -> str:
    """What the chat content gets after the answer when it stopped early: most OpenAI clients show
    only the content, so the cut is said there too (``text``, ``complete`` and ``error`` keep it typed)."""
    cut = incomplete_line(answer)
    return f"\n\n{cut}" if cut else ""


class Completion:
    """One reply's identity, shared by its JSON form and each of its stream chunks."""

    def __init__(self, model: str, page_of: PageOf | None = None) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model
        self.page_of = page_of

    def _head(self, obj: str) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    def reply(self, answer: Answer) -> dict[str, Any]:
        return {
            **self._head("chat.completion"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text + content_tail(answer)},
                         "finish_reason": finish_reason(answer)}],
            "usage": None,
            **kbqa_fields(answer, self.page_of),
        }

    def chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        payload = {**self._head("chat.completion.chunk"),
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return sse(payload)

    def stream(self, first: str | Answer, rest: Iterator[str | Answer]) -> Iterator[bytes]:
        """SSE events: the role, each text delta, a last chunk with the project's fields, ``[DONE]``.

        The last chunk also carries ``text``, the answer after citation checks (marks that point at
        no passage removed): a client that shows citations should show that text.
        """
        yield self.chunk({"role": "assistant", "content": ""})
        try:
            item = first
            while not isinstance(item, Answer):
                if item:
                    yield self.chunk({"content": item})
                item = next(rest)
            if tail := content_tail(item):
                yield self.chunk({"content": tail})
            yield self.chunk({}, finish_reason(item), text=item.text, **kbqa_fields(item, self.page_of))
        except StopIteration:
            yield sse(from_exception(RuntimeError("the answer ended without a result")).body())
        except Exception as exc:  # headers are sent: the error goes in the stream, as OpenAI does
            yield sse(from_exception(exc).body())
        finally:
            close = getattr(rest, "close", None)
            if close is not None:
                close()  # a client that went away stops the generation too
        yield b"data: [DONE]\n\n"


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n\n"
