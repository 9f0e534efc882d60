"""Model ids of the API and the ``Assistant`` that serves each.

- ``kbqa``: the configured mode (``KBQA_LLM``, ``KBQA_OLLAMA_MODEL``); falls back to extractive
  answers, with a notice, when Ollama cannot answer, as the UI does.
- ``kbqa-extractive``: sentences quoted from the documents, no LLM.
- ``kbqa:<model>``: generative with that Ollama model.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from chat.assistant import Assistant
from chat.generation import OllamaBackend
from chat.http.errors import ApiError
from kb.settings import LlmBackend, Settings

DEFAULT_ID = "kbqa"
EXTRACTIVE_ID = "kbqa-extractive"
OLLAMA_PREFIX = "kbqa:"
MIN_ANSWER_TOKENS, MAX_ANSWER_TOKENS = 16, 8192  # Settings.max_answer_tokens' bounds


@dataclass(frozen=True)
class Choice:
    """What one request asks for; requests with equal choices share one ``Assistant``."""

    llm: LlmBackend
    model: str | None
    temperature: float | None
    max_tokens: int | None


def model_ids(ollama: OllamaBackend) -> list[str]:
    """The fixed ids, then one per model Ollama has (its health check is cached for a few seconds)."""
    health = ollama.health()  # lists the models even when the configured one is missing
    return [DEFAULT_ID, EXTRACTIVE_ID, *(OLLAMA_PREFIX + name for name in health.models)]


def choice_for(model_id: str, settings: Settings, temperature: float | None, max_tokens: int | None) -> Choice:
    model_id = model_id.strip()
    if model_id == EXTRACTIVE_ID:
        return Choice("none", None, None, None)
    if model_id == DEFAULT_ID:
        llm, model = settings.llm, settings.ollama_model
    elif model_id.startswith(OLLAMA_PREFIX) and model_id[len(OLLAMA_PREFIX):].strip():
        llm, model = "ollama", model_id[len(OLLAMA_PREFIX):].strip()
    else:
        raise ApiError(404, f"The model {model_id!r} does not exist. Use {DEFAULT_ID}, {EXTRACTIVE_ID} or "
                       f"{OLLAMA_PREFIX}<ollama model>; GET /v1/models lists them.", code="model_not_found",
                       param="model")
    if llm == "none":
        return Choice("none", None, None, None)
    # Same values as the settings mean the same Assistant; sampling options only matter with an LLM.
    if temperature is not None and temperature == settings.temperature:
        temperature = None
    if max_tokens is not None:
        max_tokens = max(MIN_ANSWER_TOKENS, min(MAX_ANSWER_TOKENS, max_tokens))
        if max_tokens == settings.max_answer_tokens:
            max_tokens = None
    return Choice("ollama", model, temperature, max_tokens)


class AssistantPool:
    """One ``Assistant`` per ``Choice``, created on first use, least recently used dropped beyond ``size``.

    The UI's pool keys on (mode, model) only; the API also honours ``temperature`` and ``max_tokens``,
    which are fixed when an Assistant's Ollama client is made, so they are part of the key here.
    The embedding model is shared process-wide either way (kb.embeddings.shared_embedding).
    """

    def __init__(self, settings: Settings, seed: Assistant | None = None, size: int = 6) -> None:
        self.settings = settings
        self.size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[Choice, Assistant] = OrderedDict()
        if seed is not None:
            model = seed.backend.model if seed.backend else None
            self._items[Choice(seed.llm_setting, model, None, None)] = seed

    def get(self, choice: Choice) -> Assistant:
        with self._lock:
            if choice in self._items:
                self._items.move_to_end(choice)
                return self._items[choice]
            updates: dict[str, object] = {}
            if choice.temperature is not None:
                updates["temperature"] = choice.temperature
            if choice.max_tokens is not None:
                updates["max_answer_tokens"] = choice.max_tokens
            settings = self.settings.model_copy(update=updates) if updates else self.settings
            assistant = Assistant(settings, llm=choice.llm, model=choice.model)
            self._items[choice] = assistant
            while len(self._items) > self.size:
                self._items.popitem(last=False)
            return assistant
