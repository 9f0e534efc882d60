"""Talking to Ollama: health, model pulls, and streamed chat through llama-index's ``Ollama``.

Time limits: the HTTP read timeout is the first-token timeout (Ollama sends nothing
until the first token, then a line per token), and the whole request is bounded by
``request_timeout``, checked between tokens.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import ollama
from llama_index.core.llms import ChatMessage, MessageRole
from llama_index.llms.ollama import Ollama

from kb.errors import KbqaError
from kb.settings import Settings

log = logging.getLogger(__name__)

HEALTH_TTL_SECONDS = 10.0
ENABLE_HINT = (
    "Extractive mode: answers are sentences quoted from the document. For generated answers, start Ollama "
    "(ollama serve) and run: python -m chat pull / 抽取模式：答案直接摘自文档。启动 Ollama 并运行 python -m chat pull 以启用生成。"
)
PULL_HINT = (
    "Extractive mode: answers are sentences quoted from the document. Ollama is running; for generated answers, "
    "pull the model: python -m chat pull / 抽取模式：答案直接摘自文档。Ollama 已在运行，拉取模型（python -m chat pull）即可启用生成。"
)


class GenerationError(KbqaError):
    """Generation failed; ``before_first_token`` tells whether anything was shown yet."""

    def __init__(self, message: str, *, before_first_token: bool) -> None:
        super().__init__(message)
        self.before_first_token = before_first_token


class AnswerCutOff(GenerationError):
    """Ollama stopped at the token limit (``done_reason: "length"``): the answer is not finished."""


def enable_hint(health: Health | None) -> str:
    """How to turn generation on, for what is wrong now: start Ollama, or only pull the model."""
    return PULL_HINT if health is not None and health.reachable and not health.model_present else ENABLE_HINT


@dataclass
class Health:
    reachable: bool
    model_present: bool
    models: list[str] = field(default_factory=list)
    message: str = ""
    checked_at: float = 0.0

    @property
    def ok(self) -> bool:
        return self.reachable and self.model_present


class OllamaBackend:
    def __init__(self, settings: Settings, model: str | None = None) -> None:
        self.settings = settings
        self.model = model or settings.ollama_model
        self.host = settings.ollama_host
        timeout = httpx.Timeout(connect=5.0, read=settings.first_token_timeout, write=30.0, pool=5.0)
        self.client = ollama.Client(host=self.host, timeout=timeout)
        self.llm = Ollama(
            model=self.model,
            base_url=self.host,
            client=self.client,
            temperature=settings.temperature,
            # Explicit, so Ollama never silently truncates a long prompt to its small default.
            context_window=settings.num_ctx,
            request_timeout=settings.request_timeout,
            keep_alive=settings.keep_alive,
            additional_kwargs={"seed": settings.seed, "num_predict": settings.max_answer_tokens},
        )
        self._health: Health | None = None

    # --- health -------------------------------------------------------------------
    def health(self, refresh: bool = False) -> Health:
        cached = self._health
        if cached and not refresh and time.monotonic() - cached.checked_at < HEALTH_TTL_SECONDS:
            return cached
        self._health = self._check()
        return self._health

    def _check(self) -> Health:
        now = time.monotonic()
        try:
            listed = ollama.Client(host=self.host, timeout=3.0).list()
        except Exception as exc:
            return Health(False, False, [], f"Ollama is not reachable at {self.host} ({_reason(exc)}). "
                          "Start it with `ollama serve`, or set OLLAMA_HOST.", now)
        models = sorted(m.model for m in listed.models if m.model)
        if not _has_model(models, self.model):
            return Health(True, False, models, f"Ollama at {self.host} does not have the model {self.model!r}. "
                          f"Pull it with: python -m chat pull (or: ollama pull {self.model})", now)
        return Health(True, True, models, f"Ollama {self.model} at {self.host}", now)

    def mark_down(self, message: str) -> None:
        self._health = Health(False, False, [], message, time.monotonic())

    # --- model pulls --------------------------------------------------------------
    def pull(self, progress: Callable[[str, int | None, int | None], None]) -> None:
        client = ollama.Client(host=self.host, timeout=httpx.Timeout(connect=5.0, read=600.0, write=30.0, pool=5.0))
        for update in client.pull(self.model, stream=True):
            progress(update.status or "", update.completed, update.total)
        self._health = None

    # --- generation ---------------------------------------------------------------
    def complete(self, prompt: str) -> str:
        """A short, non-streamed answer (question rewriting, translation)."""
        try:
            response = self.llm.chat([ChatMessage(role=MessageRole.USER, content=prompt)])
        except Exception as exc:
            raise GenerationError(self._explain(exc), before_first_token=True) from exc
        return (response.message.content or "").strip()

    def stream(self, system: str, user: str) -> Iterator[str]:
        """Yield text deltas; raise GenerationError if the stream fails or ends without Ollama's done."""
        messages = [ChatMessage(role=MessageRole.SYSTEM, content=system), ChatMessage(role=MessageRole.USER, content=user)]
        started = time.monotonic()
        got_token = False
        done = False
        done_reason = None
        try:
            for chunk in self.llm.stream_chat(messages):
                if chunk.delta:
                    got_token = True
                    yield chunk.delta
                if isinstance(chunk.raw, dict) and chunk.raw.get("done"):
                    done = True
                    done_reason = chunk.raw.get("done_reason")
                if time.monotonic() - started > self.settings.request_timeout:
                    raise GenerationError(
                        f"The answer took longer than {self.settings.request_timeout:.0f} s and was stopped.",
                        before_first_token=not got_token,
                    )
        except GenerationError:
            raise
        except Exception as exc:
            raise GenerationError(self._explain(exc), before_first_token=not got_token) from exc
        if not done:
            raise GenerationError(
                "The connection to Ollama ended before the answer was complete.", before_first_token=not got_token
            )
        if self._health is not None and self._health.ok:
            self._health.checked_at = time.monotonic()  # a finished answer is as good as a health check
        if done_reason == "length":
            raise AnswerCutOff(
                f"The answer was cut at the token limit ({self.settings.max_answer_tokens} tokens, "
                "KBQA_MAX_ANSWER_TOKENS); ask a narrower question or raise the limit.",
                before_first_token=not got_token,
            )

    def _explain(self, exc: BaseException) -> str:
        if isinstance(exc, ollama.ResponseError):
            if exc.status_code == 404:
                self.mark_down(f"Model {self.model!r} not found")
                return f"Ollama at {self.host} does not have the model {self.model!r}. Pull it with: python -m chat pull"
            if exc.status_code == -1:  # the client's code for an error line inside a streamed answer
                return f"Ollama stopped with an error while answering: {exc.error}"
            return f"Ollama answered with an error ({exc.status_code}): {exc.error}"
        if isinstance(exc, httpx.TimeoutException):
            return (f"Ollama sent no answer within {self.settings.first_token_timeout:.0f} s "
                    "(KBQA_FIRST_TOKEN_TIMEOUT). The model may still be loading; try again.")
        if isinstance(exc, (httpx.ConnectError, ConnectionError)):
            self.mark_down(f"Ollama is not reachable at {self.host}")
            return f"Ollama is not reachable at {self.host}. Start it with `ollama serve`, or set OLLAMA_HOST."
        if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
            return "The connection to Ollama was cut before the answer was complete."
        return f"Generation failed: {_reason(exc)}"


def _has_model(models: list[str], wanted: str) -> bool:
    names = set(models) | {m.removesuffix(":latest") for m in models}
    return wanted in names or f"{wanted}:latest" in names


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
