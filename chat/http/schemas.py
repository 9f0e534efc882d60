"""The OpenAI request and reply shapes the API speaks, plus the project's extra fields.

Requests ignore fields they do not know (``extra="ignore"``), as OpenAI clients send many
(``top_p``, ``user``, ``stream_options``, ...). Replies are built as plain dicts in
``chat.http.completions``; the reply models here document them in ``/docs``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str = "text"
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Role
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        """The message's text; image and other non-text parts are left out."""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text for p in self.content or () if p.type == "text" and p.text)


class KbqaOptions(BaseModel):
    """The project's own request options, under ``"kbqa"``."""

    model_config = ConfigDict(extra="ignore")
    docs: list[str] | None = Field(None, description="Answer only from these documents (names as in /v1/documents).")
    top_k: int | None = Field(None, ge=1, le=50, description="Passages to retrieve (default KBQA_TOP_K).")


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str = Field(description="kbqa, kbqa-extractive or kbqa:<ollama-model> (see GET /v1/models).")
    messages: list[ChatMessage] = Field(min_length=1, description="Earlier turns are the history; the last "
                                        "user message is the question. System messages are not used.")
    stream: bool = False
    temperature: float | None = Field(None, ge=0, le=2, description="Generative models only.")
    max_tokens: int | None = Field(None, ge=1, description="Generative models only (Ollama num_predict).")
    max_completion_tokens: int | None = Field(None, ge=1, description="Newer name of max_tokens.")
    kbqa: KbqaOptions | None = None


# --- replies (documentation of the JSON the routes return) ------------------------------------
class CitationOut(BaseModel):
    n: int = Field(description="The [n] mark in the answer text.")
    doc: str
    section: str
    start: int = Field(description="Character offset into the document: quote == document[start:end].")
    end: int
    quote: str
    page: int | None = None


class Timings(BaseModel):
    retrieval_ms: float
    first_token_ms: float | None
    total_ms: float
    generation_ms: float


class KbqaFields(BaseModel):
    citations: list[CitationOut]
    refused: bool
    mode: Literal["generative", "extractive"]
    unsupported: list[str] = Field(description="Answer sentences not clearly supported by the passages they cite.")
    complete: bool = Field(description="False when generation stopped early (stream cut, timeout, limit).")
    timings: Timings
    notices: list[str]
    error: str | None
    answer_model: str | None = Field(description="The Ollama model that wrote the answer (None: extractive).")
    standalone_question: str | None = Field(description="The question as rewritten from the history, if it was.")


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]


class ChatCompletion(KbqaFields):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    error: ErrorDetail
