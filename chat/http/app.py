"""The one web app: the OpenAI-compatible API under ``/v1``, its docs at ``/docs``, the Gradio UI at ``/``.

Everything answers through the same ``Assistant`` (and its pool) that the UI uses; the documents
routes call ``ingest.library.Library``, the code behind the UI's Documents tab.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, File, Form, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.routing import Mount

from chat.assistant import Assistant
from chat.generation import OllamaBackend
from chat.http import errors
from chat.http.auth import Guard, LoginWall, api_keys, credentials
from chat.http.completions import Completion, question_of
from chat.http.errors import ApiError
from chat.http.limits import BodyLimit
from chat.http.models import OLLAMA_PREFIX, AssistantPool, choice_for, model_ids
from chat.http.schemas import ChatCompletion, ChatCompletionRequest, ErrorResponse, ModelList
from kb.settings import Settings, get_settings

log = logging.getLogger(__name__)

MB = 1024 * 1024
DESCRIPTION = """OpenAI-compatible chat over the knowledge base, with checkable citations.

Point any OpenAI client at `<server>/v1`. Each answer carries `citations` (n, doc, section, start,
end, quote, page: `quote == document[start:end]`), `refused`, `mode`, `unsupported`, `complete` and
`timings` besides the usual fields; a stream ends with a chunk carrying them, then `data: [DONE]`.
"""
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": what}
    for status, what in ((400, "Malformed or empty request"), (401, "Missing or invalid API key"),
                         (404, "Unknown model or document"), (413, "Request too large"),
                         (503, "The index is missing or unavailable (the message says what to run)"))
}


def create_app(settings: Settings | None = None, assistant: Assistant | None = None, *, mount_ui: bool = True,
               host: str = "127.0.0.1", port: int = 7860) -> FastAPI:
    """The API (and, with ``mount_ui``, the Gradio UI at ``/``) over ``assistant``."""
    settings = settings or (assistant.settings if assistant else get_settings())
    assistant = assistant or Assistant(settings)

    login = credentials(settings)
    guard = Guard(api_keys(settings), login is not None)
    pool = AssistantPool(settings, seed=assistant)

    app = FastAPI(title="kbqa", version="1", description=DESCRIPTION, docs_url=None, redoc_url=None,
                  openapi_url=None)
    errors.install(app)
    app.add_middleware(BodyLimit, limit_for=_limits(settings))
    app.add_middleware(LoginWall, guard=guard)  # added last, so it runs first
    app.state.guard = guard
    app.state.pool = pool

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(guard.docs)])
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=[Depends(guard.docs)])
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="kbqa API")

    app.include_router(_api(settings, pool, guard), prefix="/v1")

    if mount_ui:
        _mount_ui(app, assistant, settings, login, guard, host, port)
    return app


def _limits(settings: Settings):  # type: ignore[no-untyped-def]
    request_limit = int(settings.api_max_request_mb * MB)
    upload_limit = int(settings.max_doc_mb * MB) + MB  # form overhead; the Library checks the file itself

    def limit_for(path: str) -> tuple[int, str] | None:
        if path.rstrip("/") == "/v1/documents":
            return upload_limit, f"The upload is larger than KBQA_MAX_DOC_MB ({settings.max_doc_mb:g} MB)."
        if path.startswith("/v1/"):
            return request_limit, (f"The request is larger than KBQA_API_MAX_REQUEST_MB "
                                   f"({settings.api_max_request_mb:g} MB).")
        return None

    return limit_for


def _api(settings: Settings, pool: AssistantPool, guard: Guard) -> APIRouter:
    router = APIRouter(dependencies=[Depends(guard.api)], responses=ERRORS)
    ollama = OllamaBackend(settings)  # one, so its cached health spares Ollama a request per listing

    @router.get("/models", response_model=ModelList, summary="Model ids: one per answer mode")
    def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": i, "object": "model", "created": 0, "owned_by": "kbqa"}
                                           for i in model_ids(ollama)]}

    @router.get("/models/{model_id:path}", summary="One model id")
    def get_model(model_id: str) -> dict[str, Any]:
        if model_id not in model_ids(ollama):
            choice_for(model_id, settings, None, None)  # 404 with the usual message for an unknown id
            raise ApiError(404, f"Ollama has no model {model_id.removeprefix(OLLAMA_PREFIX)!r}; GET /v1/models "
                           "lists the ones it has.", code="model_not_found", param="model")
        return {"id": model_id, "object": "model", "created": 0, "owned_by": "kbqa"}

    @router.post("/chat/completions", summary="Answer the last user message, with citations",
                 responses={200: {"model": ChatCompletion,
                                  "content": {"text/event-stream": {}},
                                  "description": "JSON, or with stream=true Server-Sent Events"}})
    async def chat_completions(body: ChatCompletionRequest) -> Any:
        choice = choice_for(body.model, settings, body.temperature, body.max_completion_tokens or body.max_tokens)
        bot = await run_in_threadpool(pool.get, choice)
        question = question_of(body, bot)
        completion = Completion(body.model, document_texts().page_of)
        if not body.stream:
            answer = await run_in_threadpool(bot.ask, question.text, question.history or None, **question.kwargs)
            return JSONResponse(completion.reply(answer))
        items = bot.stream(question.text, question.history or None, **question.kwargs)
        # Taken before the response starts, so a bad question or a missing index still gets its status.
        first = await run_in_threadpool(_first, items)
        return StreamingResponse(completion.stream(first, items), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    library: list[Any] = []  # made on first use: listing models or answering needs no Library

    def docs_library() -> Any:
        if not library:
            from ingest.library import DocumentTexts, Library

            library.append(Library(settings))
            library.append(DocumentTexts(library[0]))
        return library[0]

    def document_texts() -> Any:
        docs_library()
        return library[1]

    @router.get("/documents", summary="Documents in the knowledge base, and files skipped with the reason")
    def list_documents() -> dict[str, Any]:
        return {"object": "list", "data": [d.to_dict() for d in docs_library().list()]}

    @router.post("/documents", status_code=201, summary="Upload a document and index it")
    def upload_document(file: UploadFile = File(...),  # noqa: B008 (FastAPI's way of declaring a form file)
                        on_conflict: Literal["error", "replace", "keep_both"] = Form("error")) -> dict[str, Any]:
        return docs_library().add(file.filename or "", file.file, on_conflict=on_conflict).to_dict()

    @router.delete("/documents/{name:path}", summary="Remove a document and its chunks")
    def delete_document(name: str) -> dict[str, Any]:
        docs_library().delete(name)
        return {"object": "document", "name": name, "deleted": True}

    return router


def _first(items: Any) -> Any:
    try:
        return next(items)
    except StopIteration:  # never crosses a thread boundary as StopIteration
        raise RuntimeError("the answer ended without a result") from None


def _mount_ui(app: FastAPI, assistant: Assistant, settings: Settings, login: tuple[str, str] | None, guard: Guard,
              host: str, port: int) -> None:
    import gradio as gr

    from chat.ui import build_app
    from chat.ui.assets import CSS, JS, theme

    blocks = build_app(assistant, settings)
    # What ChatApp.launch passes when the UI serves itself; mounting needs them given here.
    gr.mount_gradio_app(app, blocks, path="/", server_name=host, server_port=port, footer_links=["api", "settings"],
                        auth=login, auth_message="请登录 / Please log in", show_error=True, ssr_mode=False,
                        theme=theme(), css=CSS, js=JS)
    guard.gradio_app = next(r.app for r in app.routes if isinstance(r, Mount) and r.path == "")
    app.state.blocks = blocks
