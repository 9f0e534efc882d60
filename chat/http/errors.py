"""OpenAI-shaped error objects: ``{"error": {"message", "type", "param", "code"}}`` with the right status.

OpenAI SDKs turn these into typed exceptions (``BadRequestError``, ``AuthenticationError``, ...), so a
client sees our message, which says what to do, rather than a bare status.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from chat.generation import GenerationError
from chat.questions import QuestionError
from kb.errors import ActionError, KbqaError
from kb.index import DiskFull, KnowledgeBaseError

log = logging.getLogger(__name__)

# OpenAI's error types, by status.
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 409: "conflict_error", 413: "invalid_request_error",
               422: "invalid_request_error", 429: "rate_limit_error", 502: "api_error", 503: "service_unavailable",
               507: "api_error"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, code=self.code, param=self.param)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def error_body(status: int, message: str, *, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": ERROR_TYPES.get(status, "api_error"), "param": param,
                      "code": code}}


def from_exception(exc: BaseException) -> ApiError:
    """The status and message for an error raised while answering or managing documents."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, QuestionError):
        return ApiError(400, str(exc), code="invalid_question", param="messages")
    if isinstance(exc, DiskFull):  # the store is there, it has no room: retrying later will not help
        return ApiError(507, str(exc), code="insufficient_storage")
    if isinstance(exc, KnowledgeBaseError):
        return ApiError(503, str(exc), code="knowledge_base_unavailable")
    if isinstance(exc, GenerationError):
        return ApiError(502, str(exc), code="generation_failed")
    if isinstance(exc, ActionError):  # a document or conversation action: it carries its status (400/404/409/413)
        return ApiError(exc.status, str(exc), code="document_error")
    if isinstance(exc, KbqaError):
        return ApiError(400, str(exc))
    log.error("Unexpected error in the API", exc_info=exc)
    return ApiError(500, f"Internal error: {type(exc).__name__}: {exc}", code="internal_error")


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{where or 'body'}: {err.get('msg', 'invalid')}")
    return "Malformed request: " + "; ".join(parts)


def install(app: FastAPI) -> None:
    """Every error the API returns becomes an OpenAI error object."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return ApiError(400, _validation_message(exc), code="invalid_request").response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return ApiError(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None)).response()

    @app.exception_handler(KbqaError)
    async def _kbqa(_: Request, exc: KbqaError) -> JSONResponse:
        return from_exception(exc).response()
