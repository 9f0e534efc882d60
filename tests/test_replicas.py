"""Client/server deployment: app replicas sharing one real Chroma server, and the server going away.

Every replica has its own data folder (no shared disk): Chroma is the source of truth and
each replica's BM25 index and chunk table must follow the manifest stored there. Real
``chroma run`` servers and the Ollama stand-in come from the fixtures; the documents are
small Chinese texts so that embedding them with the real model stays quick.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest

from chat import Assistant
from ingest.pipeline import run_ingest
from kb.index import KnowledgeBase, StoreUnavailable
from kb.settings import Settings
from tests.conftest import make_settings
from tests.fixtures_chroma import ChromaServer

STANDIN_MODEL = "smollm2:135m"
QUESTION = "星河缓存的默认容量是多少页？"
OLD_FACT, NEW_FACT, NEWER_FACT = "六十四页", "一百二十八页", "二百五十六页"

CACHE_DOC = """# 星河缓存手册

## 容量

星河缓存的默认容量是{fact}。每一页保存一个注意力头的键和值。

## 淘汰策略

星河缓存在容量用尽时淘汰最久未使用的页，被淘汰的页写回主存。
"""

ROUTER_DOC = """# 银河路由器说明

## 专家选择

银河路由器为每个词元挑选两个专家，其余专家在这一步保持空闲。

## 负载均衡

辅助损失让每个专家处理的词元数量大致相同。
"""

# Enough sentences that embedding the changed document takes a few seconds: the window in which
# the serving replica must keep answering.
FILLER = "".join(f"第{i}条运维记录：星河缓存在第{i}号节点上运行正常，没有发生换页错误。\n" for i in range(1, 13))


def _unique_collection(prefix: str) -> str:
    # The session server is shared by every test: each test keeps to its own collections.
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def _replica(base: Path, server: ChromaServer, collection: str, **overrides: object) -> Settings:
    """Settings of one app replica: its own data folder, the shared Chroma server."""
    return make_settings(base, chroma_host=server.host, chroma_port=server.port, collection=collection, **overrides)


def _write_docs(settings: Settings, cache_fact: str, extra: str = "") -> None:
    (settings.docs_dir / "cache.md").write_text(CACHE_DOC.format(fact=cache_fact) + extra, encoding="utf-8")
    (settings.docs_dir / "router.md").write_text(ROUTER_DOC, encoding="utf-8")


def _texts(passages) -> str:
    return "\n".join(p.text for p in passages)


def _assert_store_matches_manifest(settings: Settings) -> set[str]:
    """Chroma holds exactly the chunks the manifest names: no leftovers of the old version, no duplicates."""
    kb = KnowledgeBase(settings)
    manifest = kb.read_manifest()
    assert manifest is not None
    live = manifest.live_ids()
    assert len(live) == len(set(live))
    assert kb.stored_ids() == set(live)
    assert kb.orphan_sentence_ids(set(live)) == []
    return set(live)


def test_two_replicas_ingest_ask_reingest_ask(tmp_path, chroma_server, ollama):
    generative = {"llm": "ollama", "ollama_host": ollama.url, "ollama_model": STANDIN_MODEL, "top_k": 2,
                  "max_answer_tokens": 32, "translate_queries": False, "first_token_timeout": 90.0,
                  "request_timeout": 180.0}
    collection = _unique_collection("replicas")
    first = _replica(tmp_path / "replica-a", chroma_server, collection, **generative)
    second = _replica(tmp_path / "replica-b", chroma_server, collection, **generative)
    assert first.data_dir != second.data_dir

    _write_docs(first, OLD_FACT)
    report = run_ingest(first)
    assert report.documents == 2 and sorted(report.added) == ["cache.md", "router.md"]
    assert not first.chroma_path.exists()  # nothing went to an embedded Chroma: the server holds it all

    bot_a = Assistant(first)
    answer = bot_a.ask(QUESTION)
    assert answer.mode == "generative" and answer.model == STANDIN_MODEL
    assert answer.text.strip()
    assert OLD_FACT in _texts(answer.passages)
    assert ollama.requests("/api/chat"), "the answer did not go through the Ollama server"

    # Another replica, with no local cache, changes one document through the same server.
    _write_docs(second, NEW_FACT)
    assert not second.cache_dir.exists()
    changed = run_ingest(second)
    assert changed.updated == ["cache.md"] and changed.unchanged == ["router.md"]
    assert changed.generation == report.generation + 1
    live = _assert_store_matches_manifest(second)

    bot_b = Assistant(second)
    for bot in (bot_a, bot_b):  # the replica that was serving and one started after the change
        passages = bot.retrieve(QUESTION, k=10)
        text = _texts(passages)
        assert NEW_FACT in text and OLD_FACT not in text
        ids = [p.id for p in passages]
        assert len(ids) == len(set(ids)) and set(ids) <= live
        assert len({(p.doc, p.start, p.end) for p in passages}) == len(passages)  # no chunk twice
        assert bot.status().index_detail == f"generation {changed.generation}"
    # Replica A had only the old generation on disk; it rebuilt the new one from Chroma.
    assert KnowledgeBase(first).view_cache_path(changed.generation).exists()

    again = bot_b.ask(QUESTION)
    assert again.mode == "generative" and again.text.strip()
    assert NEW_FACT in _texts(again.passages) and OLD_FACT not in _texts(again.passages)
    assert len(ollama.requests("/api/chat")) >= 2


def test_replica_keeps_serving_while_another_ingests(tmp_path, chroma_server):
    collection = _unique_collection("serving")
    writer = _replica(tmp_path / "writer", chroma_server, collection)
    reader = _replica(tmp_path / "reader", chroma_server, collection)
    kb = KnowledgeBase(writer)

    _write_docs(writer, OLD_FACT)
    run_ingest(writer)
    generations = {kb.read_manifest().generation: _assert_store_matches_manifest(writer)}

    bot = Assistant(reader)
    assert OLD_FACT in _texts(bot.retrieve(QUESTION, k=3))  # warm: model loaded, view built

    results: list[tuple[float, list]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                results.append((time.monotonic(), bot.retrieve(QUESTION, k=6)))
            except BaseException as exc:  # any failure at all is what this test looks for
                errors.append(exc)
                return

    def wait_for_answers(after: float, count: int = 2) -> None:
        # The second answer completed after ``after`` began after it: it has seen that commit.
        while not errors and thread.is_alive() and len([t for t, _ in results if t > after]) < count:
            time.sleep(0.05)

    ingesting: list[tuple[float, float]] = []
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        # Two changes in a row, each committed while the reader is mid-flight.
        for fact in (NEW_FACT, NEWER_FACT):
            _write_docs(writer, fact, FILLER)
            started = time.monotonic()
            report = run_ingest(writer)
            ingesting.append((started, time.monotonic()))
            assert report.updated == ["cache.md"]
            generations[report.generation] = set(KnowledgeBase(writer).read_manifest().live_ids())
            wait_for_answers(time.monotonic())
    finally:
        stop.set()
        thread.join(timeout=60)

    assert not errors, f"the serving replica failed during the ingest: {errors[0]!r}"
    during = [t for t, _ in results if any(start <= t <= end for start, end in ingesting)]
    assert len(during) >= 2, "the reader did not answer while the ingests ran"
    versions = (OLD_FACT, NEW_FACT, NEWER_FACT)
    seen = []
    for _, passages in results:
        ids = {p.id for p in passages}
        assert any(ids <= live for live in generations.values()), f"passages from no one generation: {sorted(ids)}"
        text = _texts(passages)
        facts = [fact for fact in versions if fact in text]
        assert len(facts) == 1, f"expected one version of the document in each answer, got {facts}"
        seen.append(versions.index(facts[0]))
    assert seen == sorted(seen), "the reader went back to an older version"
    assert sorted(set(seen)) == [0, 1, 2], "the reader did not follow each commit"

    final = bot.retrieve(QUESTION, k=3)
    assert NEWER_FACT in _texts(final) and OLD_FACT not in _texts(final) and NEW_FACT not in _texts(final)
    _assert_store_matches_manifest(writer)


def test_chroma_server_down_then_back(tmp_path, chroma_server_fresh):
    server = chroma_server_fresh
    settings = _replica(tmp_path / "app", server, "outage")
    _write_docs(settings, OLD_FACT)
    run_ingest(settings)
    bot = Assistant(settings)
    assert OLD_FACT in _texts(bot.retrieve(QUESTION, k=2))

    server.stop()
    for _ in range(2):  # the call that loses the connection, and the next one that cannot reconnect
        with pytest.raises(StoreUnavailable) as excinfo:
            bot.retrieve(QUESTION)
        message = str(excinfo.value)
        assert f"{server.host}:{server.port}" in message
        assert "chroma run" in message and "KBQA_CHROMA_HOST" in message
    status = bot.status()  # the UI's status line reports the outage rather than raising
    assert not status.index_ok and f"{server.host}:{server.port}" in status.index_detail
    with pytest.raises(StoreUnavailable):
        run_ingest(settings)

    server.restart()  # same port, same data folder
    passages = bot.retrieve(QUESTION, k=2)  # the same Assistant, not recreated
    assert OLD_FACT in _texts(passages)
    assert bot.status().index_ok
