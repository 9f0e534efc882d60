"""The web UI: ``python -m chat`` serves a Gradio chat on http://127.0.0.1:7860.

- ``build_app(assistant, settings)`` makes the app; ``launch(host, port, allow_unauthenticated)`` serves it.
- Each browser session keeps its own conversation in ``gr.State``; settings chosen in the page (top-k,
  mode, model) are passed per call and never written into the shared ``Assistant`` instances.
- ``/ask`` is the named endpoint for ``gradio_client``: ``(question, top_k)`` -> ``Answer.to_dict()``.
  ``/chat`` is the chat view's own streaming event.
"""

from __future__ import annotations

import os

# Before gradio is imported: it reads these at import time.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import ipaddress
import logging
import signal
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from chat.answer import Answer
from chat.assistant import Assistant
from chat.generation import GenerationError, OllamaBackend
from chat.questions import QuestionError
from chat.ui.assets import CSS, JS, theme
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
        """Earlier complete answers, for follow-up questions."""
        return [(t.question, t.answer.text) for t in self.turns if t.answer is not None and t.answer.complete]

    def show(self, turn: Turn, content: str) -> None:
        self.messages[turn.message_index] = {"role": "assistant", "content": content}

    def turn_at(self, message_index: int) -> Turn | None:
        for turn in self.turns:
            if turn.message_index == message_index or turn.message_index - 1 == message_index:
                return turn
        return None

    def pending(self) -> Turn | None:
        return next((t for t in reversed(self.turns) if t.answer is None and t.error is None), None)

    def sources_html(self) -> str:
        return render_sources([SourceTurn(t.id, t.question, t.answer, t.error) for t in self.turns])


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

    def __init__(self, pool: AssistantPool, feedback: FeedbackLog | None = None) -> None:
        self.pool = pool
        self.settings = pool.settings
        self.feedback = feedback or FeedbackLog(self.settings.data_dir)

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
                session: ChatSession | None) -> Iterator[tuple[Any, ...]]:
        """Outputs: chat messages, session, sources panel, textbox, send, stop, status line."""
        session = session if isinstance(session, ChatSession) else ChatSession()
        if session.busy:
            gr.Warning("上一个回答还在生成 / The previous answer is still being written.")
            yield (gr.skip(),) * 7
            return
        text = message if isinstance(message, str) else ""
        k = _clamp_k(top_k, self.settings.top_k)
        turn = session.start(text, k, self.pool.key(llm, model)[0])
        yield (list(session.messages), session, gr.skip(), *_input_state(True), gr.skip())

        title = ""
        parts: list[str] = []
        try:
            assistant = self.pool.get(llm, model)
            for item in assistant.stream(text, session.history(), k=k):
                if isinstance(item, Answer):
                    turn.answer = item
                    break
                parts.append(item)
                turn.partial = "".join(parts)
                session.show(turn, render_streaming(turn.partial))
                yield (list(session.messages), session, gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip())
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
        status, _ = self.status_html(llm, model)
        yield (list(session.messages), session, session.sources_html(), *_input_state(False, restore), status)

    def respond_example(self, data: gr.SelectData, top_k: float, llm: str, model: str | None,
                        session: ChatSession | None) -> Iterator[tuple[Any, ...]]:
        value = data.value
        text = value.get("text", "") if isinstance(value, dict) else str(value or "")
        yield from self.respond(text, top_k, llm, model, session)

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

    def api_ask(self, question: str, top_k: int | None = None) -> dict[str, Any]:
        """Answer a question about the knowledge base.

        Returns Answer.to_dict(): text, citations (n, doc, section, quote, start, end), mode, notices, ...
        """
        try:
            answer = self.pool.get().ask(question, k=_clamp_k(top_k, self.settings.top_k) if top_k else None)
        except (QuestionError, KnowledgeBaseError) as exc:
            raise gr.Error(str(exc), print_exception=False) from exc
        return answer.to_dict()


def build_app(assistant: Assistant | AssistantFactory | None = None, settings: Settings | None = None) -> ChatApp:
    """The chat app over ``assistant`` (an ``Assistant``, or a factory ``(llm, model) -> Assistant``)."""
    if isinstance(assistant, Assistant):
        settings = settings or assistant.settings
        pool = AssistantPool(settings, seed=assistant)
    else:
        settings = settings or get_settings()
        pool = AssistantPool(settings, factory=assistant)
    ctl = ChatController(pool)
    default_k = settings.top_k

    # --- layout -------------------------------------------------------------------------------
    with ChatApp(title="知识库问答 / Knowledge base Q&A", analytics_enabled=False, fill_width=False) as app:
        session_state = gr.State(ChatSession())
        gr.HTML(
            '<h1>大模型知识库问答 <span style="font-weight:400;opacity:.7">· Knowledge base Q&amp;A</span></h1>'
            "<p>回答来自文档，每句都有可核查的引用。/ Answers come from the document, with citations you can check.</p>",
            elem_id="kbqa-header",
        )
        status = gr.HTML(render_status_checking(), elem_id="kbqa-status")
        with gr.Row(equal_height=False):
            with gr.Column(scale=7, min_width=360):
                chatbot = gr.Chatbot(
                    label="对话 / Conversation", elem_id="kbqa-chat", height=540, buttons=[],
                    feedback_options=("Like", "Dislike"), sanitize_html=True, render_markdown=True,
                    latex_delimiters=[{"left": "$$", "right": "$$", "display": True},
                                      {"left": "$", "right": "$", "display": False},
                                      {"left": "\\(", "right": "\\)", "display": False}],
                    placeholder="**问我关于文档的问题 / Ask about the document**<br>"
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
                        clear_btn = gr.Button("清空 / Clear", variant="secondary", size="sm", elem_id="kbqa-clear")
                gr.Examples(examples=[[q] for q in EXAMPLES], inputs=[textbox],
                            label="示例问题 / Example questions", elem_id="kbqa-examples")
                with gr.Accordion("设置 / Settings", open=False, elem_id="kbqa-settings"):
                    llm_radio = gr.Radio(choices=list(MODES), value=settings.llm,
                                         label="回答方式 / Answer mode", elem_id="kbqa-mode")
                    model_dd = gr.Dropdown(choices=[settings.ollama_model], value=settings.ollama_model,
                                           label="Ollama 模型 / model", allow_custom_value=True,
                                           interactive=settings.llm == "ollama", elem_id="kbqa-model")
                    top_k = gr.Slider(1, TOP_K_MAX, value=default_k, step=1, label="检索段落数 / Passages (top-k)",
                                      elem_id="kbqa-topk")
            with gr.Column(scale=5, min_width=320, elem_id="kbqa-sources-col"):
                sources = gr.HTML(SOURCES_EMPTY, elem_id="kbqa-sources", padding=False)

        outputs = [chatbot, session_state, sources, textbox, send, stop_btn, status]
        answer_events = [
            gr.on([textbox.submit, send.click], ctl.respond, inputs=[textbox, top_k, llm_radio, model_dd, session_state],
                  outputs=outputs, api_name="chat", trigger_mode="once", concurrency_limit=CONCURRENCY,
                  concurrency_id="answer", show_progress="hidden"),
            chatbot.example_select(ctl.respond_example, inputs=[top_k, llm_radio, model_dd, session_state],
                                   outputs=outputs, api_visibility="private", concurrency_limit=CONCURRENCY,
                                   concurrency_id="answer", show_progress="hidden"),
        ]
        stop_outputs = outputs[:6]
        stop_btn.click(ctl.stop, inputs=[session_state], outputs=stop_outputs, cancels=answer_events,
                       api_visibility="private", queue=False)
        clear_btn.click(ctl.clear, inputs=[session_state], outputs=stop_outputs, cancels=answer_events,
                        api_visibility="private", queue=False)
        chatbot.clear(ctl.clear, inputs=[session_state], outputs=stop_outputs, cancels=answer_events,
                      api_visibility="private", queue=False)
        chatbot.like(ctl.on_like, inputs=[session_state], outputs=None, api_visibility="private", queue=False)
        for control in (llm_radio, model_dd):
            control.input(ctl.on_load, inputs=[llm_radio, model_dd], outputs=[status, model_dd],
                           api_visibility="private", show_progress="hidden")
        app.load(ctl.on_load, inputs=[llm_radio, model_dd], outputs=[status, model_dd], api_visibility="private",
                 show_progress="hidden")
        gr.api(ctl.api_ask, api_name="ask", concurrency_limit=CONCURRENCY, concurrency_id="answer")
    app.queue(default_concurrency_limit=CONCURRENCY)
    return app


# --- serving -------------------------------------------------------------------------------------
def is_loopback(host: str) -> bool:
    if host.strip().lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def credentials(settings: Settings) -> tuple[str, str] | None:
    password = settings.ui_password.get_secret_value() if settings.ui_password else ""
    if settings.ui_username and password:
        return settings.ui_username, password
    return None


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def launch(host: str | None = None, port: int | None = None, allow_unauthenticated: bool = False, *,
           settings: Settings | None = None) -> int:
    """Serve the UI until interrupted; returns the process exit code (2: refused or could not start)."""
    settings = settings or get_settings()
    host = host or settings.ui_host
    port = port or settings.ui_port
    auth = credentials(settings)
    if bool(settings.ui_username) != bool(settings.ui_password and settings.ui_password.get_secret_value()):
        log.error("Set both KBQA_UI_USERNAME and KBQA_UI_PASSWORD, or neither.")
        return 2
    if not is_loopback(host) and auth is None:
        if not (allow_unauthenticated or settings.ui_allow_unauthenticated):
            log.error(
                "Refusing to serve the UI on %s without a login: anyone on the network could use it. "
                "Set KBQA_UI_USERNAME and KBQA_UI_PASSWORD, or pass --allow-unauthenticated "
                "(KBQA_UI_ALLOW_UNAUTHENTICATED=true) if the network is trusted. The default, 127.0.0.1, "
                "is reachable from this machine only.", host)
            return 2
        log.warning("Serving the UI on %s WITHOUT a login (--allow-unauthenticated).", host)

    assistant = Assistant(settings)
    try:  # also loads the embedding model now rather than on the first question
        st = assistant.status()
        log.info("Mode: %s (%s)", st.mode, st.mode_detail)
        log.info("Index: %s", f"{st.documents} documents, {st.chunks} chunks, {st.embedding}" if st.index_ok
                 else st.index_detail)
    except Exception as exc:
        log.warning("Status check failed: %s", exc)
    app = build_app(assistant, settings)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)  # `docker stop` closes the server like Ctrl+C does
    log.info("Chat UI on http://%s:%d%s", host if ":" not in host else f"[{host}]", port,
             " (login required)" if auth else "")
    try:
        app.launch(server_name=host, server_port=port, auth=auth, auth_message="请登录 / Please log in",
                   show_error=True, quiet=True)
    except OSError as exc:
        log.error("Could not start the UI on %s:%d: %s", host, port, exc)
        return 2
    except KeyboardInterrupt:
        pass
    finally:
        app.close()
    return 0
