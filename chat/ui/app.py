"""The web UI: ``python -m chat`` serves a Gradio chat on http://127.0.0.1:7860.

- ``build_app(assistant, settings)`` makes the app; ``python -m chat`` serves it with the HTTP API (``chat.http.server``).
- Each browser session keeps its own conversation in ``gr.State``; settings chosen in the page (top-k,
  mode, model) are passed per call and never written into the shared ``Assistant`` instances.
- Conversations are saved in SQLite (``chat.conversations``) per user: the login name, or one local
  user on a loopback server without a login. A reload or restart finds them in the sidebar.
- The Documents tab lists, uploads, deletes and re-indexes documents through ``ingest.library``.
- Named endpoints for ``gradio_client`` (see ``API_ENDPOINTS``): ``/ask`` ``(question, top_k, docs)`` ->
  ``Answer.to_dict()``, the document actions and the conversation actions. ``/chat`` is the chat
  view's own streaming event.
"""

from __future__ import annotations

import os

# Before gradio is imported: it reads these at import time.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import json
import logging
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from chat.answer import Answer
from chat.assistant import Assistant
from chat.conversations import LOCAL_USER, ConversationStore
from chat.generation import GenerationError, OllamaBackend
from chat.questions import QuestionError
from chat.ui.assets import CSS, JS, theme
from chat.ui.documents import CONFLICT_MODES, TABLE_HEADERS, DocumentsController, render_results
from chat.ui.feedback import FeedbackLog
from chat.ui.render import (
    SOURCES_EMPTY,
    SourceTurn,
    render_answer,
    render_error,
    render_pending,
    render_sources,
    render_status,
    render_status_checking,
    render_stopped,
    render_streaming,
    render_user,
)
from ingest.library import Library
from kb.errors import KbqaError
from kb.index import KnowledgeBaseError
from kb.settings import Settings, get_settings

log = logging.getLogger(__name__)

EXAMPLES = (
    "KV Cache 的代价是什么？",
    "RoPE 解决了什么问题？",
    "LoRA 为什么省显存？",
    "What is the difference between RAG and fine-tuning?",
    "What problem does Mixture of Experts solve?",
)
TOP_K_MAX = 20
# Answers in flight at once (chat and /ask together). Retrieval holds the GIL and an embedding lock,
# and Ollama answers one request at a time by default, so more mostly adds waiting.
CONCURRENCY = 4
BUSY_TIMEOUT_SECONDS = 600.0
MODES = (("生成 · Ollama / Generative", "ollama"), ("抽取 / Extractive", "none"))
UPLOAD_TYPES = [".md", ".markdown", ".mdx", ".rst", ".txt", ".pdf", ".html", ".htm", ".docx"]
# The named endpoints a gradio_client script can call (README "API").
API_ENDPOINTS = ("ask", "chat", "upload", "list_documents", "delete_document", "reindex",
                 "list_conversations", "load_conversation", "export_conversation", "rename_conversation",
                 "delete_conversation")

AssistantFactory = Callable[[str, str | None], Assistant]


# --- assistants shared by all sessions ---------------------------------------------------------
class AssistantPool:
    """One ``Assistant`` per (mode, model), created on first use and shared by every session.

    Each holds loaded models and caches; per-session choices pick an instance or go into the call
    (``k=``), so one user's settings never change another's answers.
    """

    def __init__(self, settings: Settings, factory: AssistantFactory | None = None,
                 seed: Assistant | None = None, size: int = 4) -> None:
        self.settings = settings
        self.factory = factory or (lambda llm, model: Assistant(settings, llm=llm, model=model))  # type: ignore[arg-type]
        self.size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[str, str | None], Assistant] = OrderedDict()
        if seed is not None:
            model = seed.backend.model if seed.backend else None
            self._items[self.key(seed.llm_setting, model)] = seed

    @property
    def default_llm(self) -> str:
        return self.settings.llm

    def key(self, llm: str | None, model: str | None) -> tuple[str, str | None]:
        llm = llm if llm in ("ollama", "none") else self.default_llm
        if llm == "none":
            return ("none", None)
        return ("ollama", (model or "").strip() or self.settings.ollama_model)

    def get(self, llm: str | None = None, model: str | None = None) -> Assistant:
        key = self.key(llm, model)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            assistant = self.factory(*key)
            self._items[key] = assistant
            while len(self._items) > self.size:
                self._items.popitem(last=False)
            return assistant


# --- one browser session -------------------------------------------------------------------------
@dataclass
class Turn:
    id: int
    question: str
    message_index: int  # the assistant message in the chat view
    top_k: int
    llm: str
    answer: Answer | None = None
    error: str | None = None
    partial: str = ""


@dataclass
class ChatSession:
    id: str = ""
    turns: list[Turn] = field(default_factory=list)
    messages: list[dict[str, str]] = field(default_factory=list)
    next_turn: int = 1
    busy_since: float | None = None
    conversation: str = ""  # its id in the ConversationStore, once the first turn is saved

    def start(self, question: str, top_k: int, llm: str) -> Turn:
        if not self.id:
            self.id = uuid.uuid4().hex[:12]
        shown = question if question.strip() else "（空消息 / empty message）"
        self.messages.append({"role": "user", "content": render_user(shown)})
        self.messages.append({"role": "assistant", "content": render_pending()})
        turn = Turn(self.next_turn, question, len(self.messages) - 1, top_k, llm)
        self.next_turn += 1
        self.turns.append(turn)
        self.busy_since = time.monotonic()
        return turn

    @property
    def busy(self) -> bool:
        return self.busy_since is not None and time.monotonic() - self.busy_since < BUSY_TIMEOUT_SECONDS

    def history(self) -> list[tuple[str, str]]:
        """Earlier answers that did not fail, for follow-up questions (one cut at the token limit still counts)."""
        return [(t.question, t.answer.text) for t in self.turns if t.answer is not None and t.answer.error is None]

    def show(self, turn: Turn, content: str) -> None:
        self.messages[turn.message_index] = {"role": "assistant", "content": content}

    def turn_at(self, message_index: int) -> Turn | None:
        for turn in self.turns:
            if turn.message_index == message_index or turn.message_index - 1 == message_index:
                return turn
        return None

    def pending(self) -> Turn | None:
        return next((t for t in reversed(self.turns) if t.answer is None and t.error is None), None)

    def sources_html(self, page_of: Callable[[str, int], int | None] | None = None) -> str:
        return render_sources([SourceTurn(t.id, t.question, t.answer, t.error) for t in self.turns], page_of)


def user_of(request: gr.Request | None) -> str:
    """Whose conversations: the login name, or the one local user when there is no login."""
    name = getattr(request, "username", None) if request is not None else None
    return str(name) if name else LOCAL_USER


def _clamp_k(top_k: Any, default: int) -> int:
    try:
        k = round(float(top_k))
    except (TypeError, ValueError):
        return default
    return max(1, min(TOP_K_MAX, k))


def _input_state(busy: bool, text: str | None = "") -> tuple[Any, Any, Any]:
    """(textbox, send, stop) while an answer is streaming, or when the page is ready again."""
    textbox = gr.Textbox(value=text, interactive=not busy) if text is not None else gr.Textbox(interactive=not busy)
    return textbox, gr.Button(visible=not busy), gr.Button(visible=busy)


# --- the app -------------------------------------------------------------------------------------
class ChatApp(gr.Blocks):
    """``gr.Blocks`` whose ``launch`` brings the theme, CSS and script along and never shares.

    Gradio 6 takes theme/css/js in ``launch()``; keeping them here means ``build_app(...).launch()``
    looks the same wherever it is started (tests, benchmark, ``python -m chat``).
    """

    def launch(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs.setdefault("theme", theme())
        kwargs.setdefault("css", CSS)
        kwargs.setdefault("js", JS)
        kwargs.setdefault("footer_links", ["api", "settings"])
        kwargs.setdefault("ssr_mode", False)
        kwargs["share"] = False
        return super().launch(*args, **kwargs)


class ChatController:
    """What the page does, without the page: each method is one event handler.

    Kept apart from the layout so tests can drive a real conversation (and the feedback it
    leaves) without a browser.
    """

    def __init__(self, pool: AssistantPool, feedback: FeedbackLog | None = None,
                 store: ConversationStore | None = None, library: Library | None = None) -> None:
        self.pool = pool
        self.settings = pool.settings
        self.feedback = feedback or FeedbackLog(self.settings.data_dir)
        self.store = store or ConversationStore.for_settings(self.settings)
        self.docs = DocumentsController(library or Library(self.settings))

    def status_html(self, llm: str | None, model: str | None) -> tuple[str, tuple[str, ...]]:
        try:
            st = self.pool.get(llm, model).status()
        except Exception as exc:  # a status line reports problems, it does not raise them
            log.exception("Status check failed")
            return render_error(str(exc), title="状态检查失败 / Status check failed"), ()
        html = render_status(requested_llm=self.pool.key(llm, model)[0], mode=st.mode, mode_detail=st.mode_detail,
                             index_ok=st.index_ok, index_detail=st.index_detail, documents=st.documents,
                             chunks=st.chunks, embedding=st.embedding)
        return html, st.models

    def model_choices(self, llm: str | None, model: str | None, listed: tuple[str, ...]) -> Any:
        current = self.pool.key("ollama", model)[1] or self.settings.ollama_model
        if self.pool.key(llm, model)[0] != "ollama":
            return gr.Dropdown(interactive=False)
        if not listed:  # Ollama is asked only once generation is chosen
            listed = tuple(OllamaBackend(self.settings, current).health().models)
        return gr.Dropdown(choices=list(dict.fromkeys([*listed, current])), value=current, interactive=True)

    def on_load(self, llm: str, model: str | None) -> tuple[Any, Any]:
        html, listed = self.status_html(llm, model)
        return html, self.model_choices(llm, model, listed)

    def respond(self, message: str, top_k: float, llm: str, model: str | None,
                session: ChatSession | None, scope: list[str] | None = None,
                request: gr.Request = None) -> Iterator[tuple[Any, ...]]:  # type: ignore[assignment]
        """Outputs: chat messages, session, sources panel, textbox, send, stop, status line, conversations."""
        session = session if isinstance(session, ChatSession) else ChatSession()
        if session.busy:
            gr.Warning("上一个回答还在生成 / The previous answer is still being written.")
            yield (gr.skip(),) * 8
            return
        text = message if isinstance(message, str) else ""
        k = _clamp_k(top_k, self.settings.top_k)
        docs = [d for d in (scope or []) if d] or None
        turn = session.start(text, k, self.pool.key(llm, model)[0])
        yield (list(session.messages), session, gr.skip(), *_input_state(True), gr.skip(), gr.skip())

        title = ""
        parts: list[str] = []
        try:
            assistant = self.pool.get(llm, model)
            for item in assistant.stream(text, session.history(), k=k, docs=docs):
                if isinstance(item, Answer):
                    turn.answer = item
                    break
                parts.append(item)
                turn.partial = "".join(parts)
                session.show(turn, render_streaming(turn.partial))
                yield (list(session.messages), session, *(gr.skip(),) * 6)
        except QuestionError as exc:
            turn.error, title = str(exc), "问题无效 / Invalid question"
        except KnowledgeBaseError as exc:
            turn.error, title = str(exc), "知识库不可用 / Knowledge base unavailable"
        except GenerationError as exc:
            turn.error, title = str(exc), "生成失败 / Generation failed"
        except Exception as exc:  # the page must stay usable whatever went wrong
            log.exception("Answering %r failed", text[:80])
            turn.error, title = f"{type(exc).__name__}: {exc}", "内部错误 / Internal error"
        finally:
            session.busy_since = None
        restore: str | None = ""
        if turn.answer is not None:
            session.show(turn, render_answer(turn.answer, turn.id))
        else:
            turn.error = turn.error or "没有得到回答 / No answer was produced."
            session.show(turn, render_error(turn.error, title=title or "出错了 / Something went wrong"))
            restore = text  # give the question back, to fix or retry
        user = user_of(request)
        self.save_turn(session, turn, user)
        status, _ = self.status_html(llm, model)
        yield (list(session.messages), session, session.sources_html(self.docs.texts.page_of),
               *_input_state(False, restore), status, self.conversation_choices(user, session))

    # --- conversations -----------------------------------------------------------------
    def save_turn(self, session: ChatSession, turn: Turn, user: str) -> None:
        """Store the finished turn; a failure to save is logged and shown, never loses the answer on screen."""
        try:
            if not session.conversation:
                session.conversation = self.store.create(user)
            self.store.add_turn(session.conversation, user, turn.question, turn.answer, turn.error)
        except Exception as exc:  # the answer is on screen either way
            log.exception("Could not save the conversation")
            gr.Warning(f"对话未保存 / The conversation was not saved: {exc}")

    def conversation_choices(self, user: str, session: ChatSession | None = None) -> Any:
        items = self.store.list(user)
        choices = [(f"{c.title} · {time.strftime('%m-%d %H:%M', time.localtime(c.updated))}", c.id) for c in items]
        current = session.conversation if isinstance(session, ChatSession) and session.conversation else None
        return gr.Radio(choices=choices, value=current if current in {c.id for c in items} else None)

    def session_from(self, conversation: str, user: str) -> ChatSession:
        """A chat session rebuilt from a stored conversation, to go on with it."""
        conv = self.store.get(conversation, user)
        session = ChatSession(id=uuid.uuid4().hex[:12], conversation=conv.id)
        for stored in conv.turns:
            answer = stored.to_answer()
            turn = session.start(stored.question, self.settings.top_k, answer.mode if answer else "")
            turn.answer, turn.error = answer, stored.error
            if answer is not None:
                session.show(turn, render_answer(answer, turn.id))
            else:
                session.show(turn, render_error(stored.error or "没有得到回答 / No answer was produced."))
        session.busy_since = None
        return session

    def load_conversation(self, conversation: str | None, session: ChatSession | None,
                          request: gr.Request = None) -> tuple[Any, ...]:  # type: ignore[assignment]
        """Outputs: chat messages, session, sources panel, title box."""
        if isinstance(session, ChatSession) and session.busy:
            gr.Warning("上一个回答还在生成 / The previous answer is still being written.")
            return (gr.skip(),) * 4
        if not conversation:
            return (gr.skip(),) * 4
        try:
            fresh = self.session_from(conversation, user_of(request))
        except KbqaError as exc:
            gr.Warning(str(exc))
            return (gr.skip(),) * 4
        title = self.store.get(conversation, user_of(request)).title
        return (list(fresh.messages), fresh, fresh.sources_html(self.docs.texts.page_of), title)

    def new_conversation(self, session: ChatSession | None, request: gr.Request = None) -> tuple[Any, ...]:  # type: ignore[assignment]
        """Outputs: chat messages, session, sources, textbox, send, stop, conversations, title box."""
        cleared = self.clear(session)
        return (*cleared, self.conversation_choices(user_of(request)), "")

    def rename_conversation(self, title: str, session: ChatSession | None,
                            request: gr.Request = None) -> Any:  # type: ignore[assignment]
        user = user_of(request)
        if not isinstance(session, ChatSession) or not session.conversation:
            gr.Warning("还没有保存的对话 / No saved conversation yet: ask a question first.")
            return gr.skip()
        try:
            self.store.rename(session.conversation, user, title)
        except KbqaError as exc:
            gr.Warning(str(exc))
            return gr.skip()
        return self.conversation_choices(user, session)

    def delete_conversation(self, session: ChatSession | None, request: gr.Request = None) -> tuple[Any, ...]:  # type: ignore[assignment]
        user = user_of(request)
        if isinstance(session, ChatSession) and session.conversation:
            try:
                self.store.delete(session.conversation, user)
            except KbqaError as exc:
                gr.Warning(str(exc))
        return self.new_conversation(None, request)

    def export_files(self, session: ChatSession | None, request: gr.Request = None) -> Any:  # type: ignore[assignment]
        if not isinstance(session, ChatSession) or not session.conversation:
            gr.Warning("还没有保存的对话 / No saved conversation yet: ask a question first.")
            return None
        return list(self.write_exports(session.conversation, user_of(request)))

    def write_exports(self, conversation: str, user: str) -> tuple[str, str]:
        """The conversation as a Markdown and a JSON file in a fresh temporary folder."""
        folder = Path(tempfile.mkdtemp(prefix="kbqa-export-"))
        md = folder / f"conversation-{conversation}.md"
        md.write_text(self.store.export_markdown(conversation, user, self.docs.texts.page_of), encoding="utf-8")
        js = folder / f"conversation-{conversation}.json"
        js.write_text(json.dumps(self.store.export_json(conversation, user), ensure_ascii=False, indent=1),
                      encoding="utf-8")
        return str(md), str(js)

    # --- documents ------------------------------------------------------------------
    def documents_view(self) -> tuple[Any, Any, Any]:
        """Outputs: documents table, document chooser, scope chooser."""
        indexed = self.docs.indexed_names()
        return (self.docs.rows(), gr.Dropdown(choices=self.docs.all_names(), value=None),
                gr.Dropdown(choices=indexed))

    def upload(self, files: list[str] | None, on_conflict: str,
               progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008 (Gradio's idiom)
        """Outputs: message, table, document chooser, scope chooser, the upload box (emptied)."""
        lines, _ = self.docs.upload(files, on_conflict or "error", lambda f, m: progress(f, desc=m))
        return (render_results(lines), *self.documents_view(), None)

    def delete_document(self, name: str | None) -> tuple[Any, ...]:
        return (render_results(self.docs.delete(name)), *self.documents_view())

    def reindex_document(self, name: str | None, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008
        if not name:
            return (render_results(self.docs.delete(None)), *self.documents_view())
        return (render_results(self.docs.reindex(name, lambda f, m: progress(f, desc=m))), *self.documents_view())

    def reindex_all(self, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008
        return (render_results(self.docs.reindex(None, lambda f, m: progress(f, desc=m))), *self.documents_view())

    def open_document(self, request_json: str) -> Any:
        """The document view for ``{"doc", "start", "end"}`` sent by the page's "open in document" link."""
        try:
            req = json.loads(request_json or "{}")
            return gr.HTML(self.docs.document_view(str(req["doc"]), int(req["start"]), int(req["end"])),
                           visible=True)
        except (ValueError, KeyError, TypeError) as exc:
            return gr.HTML(render_error(f"Bad request: {exc}"), visible=True)

    def respond_example(self, data: gr.SelectData, top_k: float, llm: str, model: str | None,
                        session: ChatSession | None, scope: list[str] | None = None,
                        request: gr.Request = None) -> Iterator[tuple[Any, ...]]:  # type: ignore[assignment]
        value = data.value
        text = value.get("text", "") if isinstance(value, dict) else str(value or "")
        yield from self.respond(text, top_k, llm, model, session, scope, request)

    def stop(self, session: ChatSession | None) -> tuple[Any, ...]:
        session = session if isinstance(session, ChatSession) else ChatSession()
        turn = session.pending()
        question = None
        if turn is not None:
            turn.error = "stopped"
            session.show(turn, render_stopped(turn.partial))
            question = turn.question  # back in the box, to edit or ask again
        session.busy_since = None
        return (list(session.messages), session, session.sources_html(), *_input_state(False, question))

    def clear(self, session: ChatSession | None) -> tuple[Any, ...]:
        fresh = ChatSession(id=uuid.uuid4().hex[:12])
        if isinstance(session, ChatSession):
            fresh.next_turn = session.next_turn  # new anchors never point at an old turn's sources
        return ([], fresh, SOURCES_EMPTY, *_input_state(False, ""))

    def on_like(self, data: gr.LikeData, session: ChatSession | None) -> None:
        self.record_like(data, session)

    def record_like(self, data: gr.LikeData, session: ChatSession | None) -> dict[str, Any] | None:
        """Append the rated turn to feedback.jsonl; returns the entry written (None: nothing to rate)."""
        if not isinstance(session, ChatSession):
            return None
        index = data.index if isinstance(data.index, int) else data.index[0]
        turn = session.turn_at(index)
        if turn is None:
            return None
        liked = data.liked
        rating = "up" if liked is True else "down" if liked is False else str(liked or "none")
        entry = self.feedback.record(rating=rating, question=turn.question, answer=turn.answer, error=turn.error,
                                     session=session.id, turn=turn.id, top_k=turn.top_k)
        gr.Info("谢谢反馈 / Thanks for the feedback")
        return entry

    # --- named API endpoints (gradio_client) ---------------------------------------------
    def api_ask(self, question: str, top_k: int | None = None, docs: list[str] | None = None) -> dict[str, Any]:
        """Answer a question about the knowledge base, optionally searching only some documents.

        docs: document names as /list_documents gives them (empty = all). Returns Answer.to_dict():
        text, citations (n, doc, section, quote, start, end), mode, complete, error, notices ({kind, text}), ...
        """
        try:
            answer = self.pool.get().ask(question, k=_clamp_k(top_k, self.settings.top_k) if top_k else None,
                                         docs=[d for d in (docs or []) if d] or None)
        except KbqaError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc
        data = answer.to_dict()
        for c in data["citations"]:
            c["page"] = self.docs.texts.page_of(c["doc"], c["start"])
        return data

    def api_list_documents(self) -> list[dict[str, Any]]:
        """Every document: name, kind, size, chunks, indexed_at, and for a skipped file the reason."""
        return [d.to_dict() for d in self.docs.library.list()]

    def api_upload(self, files: list[str] | None, on_conflict: str | None = "error") -> list[dict[str, Any]]:
        """Upload files (gradio_client.handle_file) and index them; on_conflict: error | replace | keep_both."""
        out: list[dict[str, Any]] = []
        for path in files or []:
            name = Path(path).name
            try:
                with open(path, "rb") as fh:
                    out.append(self.docs.library.add(name, fh, on_conflict=on_conflict or "error").to_dict())
            except KbqaError as exc:
                out.append({"name": name, "status": "error", "chunks": 0, "message": str(exc),
                            "http_status": getattr(exc, "status", 400)})
        return out

    def api_delete_document(self, name: str) -> dict[str, Any]:
        """Delete a document: its file and its chunks."""
        try:
            self.docs.library.delete(name)
        except KbqaError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc
        return {"name": name, "deleted": True}

    def api_reindex(self, name: str | None = None) -> dict[str, Any]:
        """Re-index one document (by name) or, with no name, bring the whole folder up to date."""
        try:
            return self.docs.library.reindex(name or None).to_dict()
        except KbqaError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc

    def api_list_conversations(self, request: gr.Request = None) -> list[dict[str, Any]]:  # type: ignore[assignment]
        """The caller's conversations, newest first: id, title, created, updated, turns."""
        return [c.to_dict() for c in self.store.list(user_of(request))]

    def api_load_conversation(self, conversation: str, request: gr.Request = None) -> dict[str, Any]:  # type: ignore[assignment]
        """One conversation with every turn (question, answer as Answer.to_dict(), error)."""
        try:
            return self.store.get(conversation, user_of(request)).to_dict()
        except KbqaError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc

    def api_export_conversation(self, conversation: str, format: str = "markdown",
                                request: gr.Request = None) -> str:  # type: ignore[assignment]
        """A conversation as Markdown (answers, citations, quotes) or as JSON text (format="json")."""
        user = user_of(request)
        try:
            if format == "json":
                return json.dumps(self.store.export_json(conversation, user), ensure_ascii=False)
            return self.store.export_markdown(conversation, user, self.docs.texts.page_of)
        except KbqaError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc

    def api_rename_conversation(self, conversation: str, title: str,
                                request: gr.Request = None) -> dict[str, Any]:  # type: ignore[assignment]
        """Give a conversation a new title."""
        try:
            self.store.rename(conversation, user_of(request), title)
        except KbqaError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc
        return {"id": conversation, "title": self.store.get(conversation, user_of(request)).title}

    def api_delete_conversation(self, conversation: str, request: gr.Request = None) -> dict[str, Any]:  # type: ignore[assignment]
        """Delete a conversation."""
        try:
            self.store.delete(conversation, user_of(request))
        except KbqaError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc
        return {"id": conversation, "deleted": True}


def build_app(assistant: Assistant | AssistantFactory | None = None, settings: Settings | None = None, *,
              library: Library | None = None, store: ConversationStore | None = None) -> ChatApp:
    """The chat app over ``assistant`` (an ``Assistant``, or a factory ``(llm, model) -> Assistant``).

    ``library`` and ``store`` default to the settings' documents and conversations.
    """
    if isinstance(assistant, Assistant):
        settings = settings or assistant.settings
        pool = AssistantPool(settings, seed=assistant)
    else:
        settings = settings or get_settings()
        pool = AssistantPool(settings, factory=assistant)
    ctl = ChatController(pool, store=store, library=library)
    default_k = settings.top_k

    # --- layout -------------------------------------------------------------------------------
    with ChatApp(title="知识库问答 / Knowledge base Q&A", analytics_enabled=False, fill_width=False) as app:
        session_state = gr.State(ChatSession())
        gr.HTML(
            '<h1>大模型知识库问答 <span style="font-weight:400;opacity:.7">· Knowledge base Q&amp;A</span></h1>'
            "<p>回答来自文档，每句都有可核查的引用。/ Answers come from the documents, with citations you can check.</p>",
            elem_id="kbqa-header",
        )
        status = gr.HTML(render_status_checking(), elem_id="kbqa-status")
        with gr.Tabs(elem_id="kbqa-tabs"):
            with gr.Tab("对话 / Chat", id="chat", elem_id="kbqa-tab-chat"), gr.Row(equal_height=False):
                with gr.Column(scale=2, min_width=200, elem_id="kbqa-sidebar"):
                    new_btn = gr.Button("＋ 新对话 / New", variant="secondary", size="sm", elem_id="kbqa-new")
                    conv_list = gr.Radio(choices=[], value=None, label="对话记录 / Conversations",
                                         elem_id="kbqa-convs", interactive=True)
                    with gr.Accordion("管理 / Manage", open=False, elem_id="kbqa-conv-manage"):
                        title_box = gr.Textbox(label="标题 / Title", lines=1, max_lines=1,
                                               elem_id="kbqa-conv-title")
                        rename_btn = gr.Button("重命名 / Rename", size="sm", elem_id="kbqa-conv-rename")
                        export_btn = gr.Button("导出 / Export (Markdown, JSON)", size="sm",
                                               elem_id="kbqa-conv-export")
                        export_files = gr.File(label="导出文件 / Exported files", file_count="multiple",
                                               interactive=False, elem_id="kbqa-conv-files")
                        delete_conv_btn = gr.Button("删除对话 / Delete", variant="stop", size="sm",
                                                    elem_id="kbqa-conv-delete")
                with gr.Column(scale=7, min_width=360):
                    chatbot = gr.Chatbot(
                        label="对话 / Conversation", elem_id="kbqa-chat", height=540, buttons=[],
                        feedback_options=("Like", "Dislike"), sanitize_html=True, render_markdown=True,
                        latex_delimiters=[{"left": "$$", "right": "$$", "display": True},
                                          {"left": "$", "right": "$", "display": False},
                                          {"left": "\\(", "right": "\\)", "display": False}],
                        placeholder="**问我关于文档的问题 / Ask about the documents**<br>"
                                    "中文或英文都可以。Chinese or English.",
                        examples=[{"text": q} for q in EXAMPLES[:4]],
                    )
                    with gr.Row(equal_height=True):
                        textbox = gr.Textbox(
                            label="提问 / Ask", placeholder="输入问题，按 Enter 发送 / Type a question and press Enter",
                            lines=1, max_lines=6, scale=8, elem_id="kbqa-input", autofocus=True,
                        )
                        with gr.Column(scale=1, min_width=130):
                            send = gr.Button("发送 / Send", variant="primary", elem_id="kbqa-send")
                            stop_btn = gr.Button("■ 停止 / Stop", variant="stop", visible=False, elem_id="kbqa-stop")
                            clear_btn = gr.Button("清空 / Clear", variant="secondary", size="sm",
                                                  elem_id="kbqa-clear")
                    scope = gr.Dropdown(choices=[], value=[], multiselect=True, elem_id="kbqa-scope",
                                        label="搜索范围 / Search in (空 = 全部文档 / empty = all documents)")
                    gr.Examples(examples=[[q] for q in EXAMPLES], inputs=[textbox],
                                label="示例问题 / Example questions", elem_id="kbqa-examples")
                    with gr.Accordion("设置 / Settings", open=False, elem_id="kbqa-settings"):
                        llm_radio = gr.Radio(choices=list(MODES), value=settings.llm,
                                             label="回答方式 / Answer mode", elem_id="kbqa-mode")
                        model_dd = gr.Dropdown(choices=[settings.ollama_model], value=settings.ollama_model,
                                               label="Ollama 模型 / model", allow_custom_value=True,
                                               interactive=settings.llm == "ollama", elem_id="kbqa-model")
                        top_k = gr.Slider(1, TOP_K_MAX, value=default_k, step=1,
                                          label="检索段落数 / Passages (top-k)", elem_id="kbqa-topk")
                with gr.Column(scale=5, min_width=320, elem_id="kbqa-sources-col"):
                    docview = gr.HTML("", visible=False, elem_id="kbqa-docview", padding=False)
                    sources = gr.HTML(SOURCES_EMPTY, elem_id="kbqa-sources", padding=False)
                    # The page script fills these when an "open in document" link is clicked.
                    open_req = gr.Textbox(elem_id="kbqa-open-req", elem_classes=["kbqa-hidden"], show_label=False,
                                          container=False)
                    open_btn = gr.Button("open", elem_id="kbqa-open-btn", elem_classes=["kbqa-hidden"])
            with gr.Tab("文档 / Documents", id="documents", elem_id="kbqa-tab-docs"), gr.Row(equal_height=False):
                    with gr.Column(scale=4, min_width=300):
                        upload_box = gr.File(label="拖放文件到这里 / Drop files here", file_count="multiple",
                                             file_types=UPLOAD_TYPES, type="filepath", elem_id="kbqa-upload")
                        conflict = gr.Radio(choices=list(CONFLICT_MODES), value="error",
                                            label="同名文件 / If the name exists", elem_id="kbqa-conflict")
                        upload_btn = gr.Button("上传并索引 / Upload and index", variant="primary",
                                               elem_id="kbqa-upload-btn")
                        gr.Markdown(f"支持 / Types: {' '.join(UPLOAD_TYPES)} · 上限 / limit "
                                    f"{settings.max_doc_mb:g} MB", elem_id="kbqa-upload-help")
                    with gr.Column(scale=6, min_width=360):
                        doc_msg = gr.HTML("", elem_id="kbqa-doc-msg")
                        doc_table = gr.Dataframe(headers=TABLE_HEADERS, value=[], interactive=False, wrap=True,
                                                 elem_id="kbqa-doc-table", label="文档 / Documents")
                        with gr.Row():
                            doc_choice = gr.Dropdown(choices=[], value=None, label="选择文档 / Document",
                                                     elem_id="kbqa-doc-choice", scale=3)
                            reindex_btn = gr.Button("重新索引 / Re-index", size="sm", elem_id="kbqa-reindex", scale=1)
                            delete_btn = gr.Button("删除 / Delete", variant="stop", size="sm",
                                                   elem_id="kbqa-doc-delete", scale=1)
                        reindex_all_btn = gr.Button("全部重新索引 / Re-index all", size="sm",
                                                    elem_id="kbqa-reindex-all")
        # Inputs and output of the /upload endpoint (the page's own upload has its own event).
        api_files = gr.File(file_count="multiple", type="filepath", visible=False)
        api_conflict = gr.Textbox(value="error", visible=False)
        api_result = gr.JSON(visible=False)
        api_upload_btn = gr.Button(visible=False)

        # --- events ---------------------------------------------------------------------------
        outputs = [chatbot, session_state, sources, textbox, send, stop_btn, status, conv_list]
        answer_events = [
            gr.on([textbox.submit, send.click], ctl.respond,
                  inputs=[textbox, top_k, llm_radio, model_dd, session_state, scope],
                  outputs=outputs, api_name="chat", trigger_mode="once", concurrency_limit=CONCURRENCY,
                  concurrency_id="answer", show_progress="hidden"),
            chatbot.example_select(ctl.respond_example, inputs=[top_k, llm_radio, model_dd, session_state, scope],
                                   outputs=outputs, api_visibility="private", concurrency_limit=CONCURRENCY,
                                   concurrency_id="answer", show_progress="hidden"),
        ]
        stop_outputs = outputs[:6]
        private = {"api_visibility": "private", "queue": False}
        stop_btn.click(ctl.stop, inputs=[session_state], outputs=stop_outputs, cancels=answer_events, **private)
        clear_btn.click(ctl.clear, inputs=[session_state], outputs=stop_outputs, cancels=answer_events, **private)
        chatbot.clear(ctl.clear, inputs=[session_state], outputs=stop_outputs, cancels=answer_events, **private)
        chatbot.like(ctl.on_like, inputs=[session_state], outputs=None, **private)
        for control in (llm_radio, model_dd):
            control.input(ctl.on_load, inputs=[llm_radio, model_dd], outputs=[status, model_dd],
                          api_visibility="private", show_progress="hidden")

        # Conversations.
        conv_list.input(ctl.load_conversation, api_name="page_load_conversation", inputs=[conv_list, session_state],
                        outputs=[chatbot, session_state, sources, title_box], **private)
        new_btn.click(ctl.new_conversation, inputs=[session_state], outputs=[*stop_outputs, conv_list, title_box],
                      cancels=answer_events, **private)
        rename_btn.click(ctl.rename_conversation, api_name="page_rename_conversation", inputs=[title_box, session_state], outputs=[conv_list], **private)
        delete_conv_btn.click(ctl.delete_conversation, api_name="page_delete_conversation", inputs=[session_state],
                              outputs=[*stop_outputs, conv_list, title_box], **private)
        export_btn.click(ctl.export_files, inputs=[session_state], outputs=[export_files], **private)
        open_btn.click(ctl.open_document, inputs=[open_req], outputs=[docview], **private).then(
            None, None, None, js="() => window.__kbqaShowDocMark && window.__kbqaShowDocMark()")

        # Documents: uploads and re-indexing share a small pool; the Library serialises them.
        docs_outputs = [doc_msg, doc_table, doc_choice, scope]
        docs_kw = {"api_visibility": "private", "concurrency_limit": 2, "concurrency_id": "documents"}
        upload_btn.click(ctl.upload, api_name="page_upload", inputs=[upload_box, conflict], outputs=[*docs_outputs, upload_box],
                         show_progress="full", **docs_kw)
        delete_btn.click(ctl.delete_document, api_name="page_delete_document", inputs=[doc_choice], outputs=docs_outputs, **docs_kw)
        reindex_btn.click(ctl.reindex_document, inputs=[doc_choice], outputs=docs_outputs, show_progress="full",
                          **docs_kw)
        reindex_all_btn.click(ctl.reindex_all, inputs=None, outputs=docs_outputs, show_progress="full", **docs_kw)

        def on_page_load(llm: str, model: str | None, request: gr.Request = None) -> tuple[Any, ...]:  # type: ignore[assignment]
            html, dd = ctl.on_load(llm, model)
            return (html, dd, ctl.conversation_choices(user_of(request)), *ctl.documents_view())

        app.load(on_page_load, inputs=[llm_radio, model_dd],
                 outputs=[status, model_dd, conv_list, doc_table, doc_choice, scope],
                 api_visibility="private", show_progress="hidden")

        # Named endpoints for gradio_client.
        gr.api(ctl.api_ask, api_name="ask", concurrency_limit=CONCURRENCY, concurrency_id="answer")
        api_upload_btn.click(ctl.api_upload, inputs=[api_files, api_conflict], outputs=[api_result],
                             api_name="upload", concurrency_limit=2, concurrency_id="documents")
        gr.api(ctl.api_list_documents, api_name="list_documents")
        gr.api(ctl.api_delete_document, api_name="delete_document", concurrency_limit=2, concurrency_id="documents")
        gr.api(ctl.api_reindex, api_name="reindex", concurrency_limit=2, concurrency_id="documents")
        gr.api(ctl.api_list_conversations, api_name="list_conversations")
        gr.api(ctl.api_load_conversation, api_name="load_conversation")
        gr.api(ctl.api_export_conversation, api_name="export_conversation")
        gr.api(ctl.api_rename_conversation, api_name="rename_conversation")
        gr.api(ctl.api_delete_conversation, api_name="delete_conversation")
    app.queue(default_concurrency_limit=CONCURRENCY)
    return app
