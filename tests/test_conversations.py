"""Conversations in SQLite: real answers from a real knowledge base, stored, listed, exported."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from chat.conversations import ConversationError, ConversationStore, answer_from_dict, title_from


@pytest.fixture(scope="module")
def answer(primer_bot):
    return primer_bot.ask("KV Cache 的代价是什么？")


def test_turns_survive_a_new_store_and_rebuild_answers(tmp_path: Path, answer) -> None:
    store = ConversationStore(tmp_path / "c.sqlite3")
    cid = store.create("local")
    assert store.list("local") == []  # empty conversations are not listed
    store.add_turn(cid, "local", "KV Cache 的代价是什么？", answer)
    store.add_turn(cid, "local", "再说一遍", None, error="问题无效")

    reopened = ConversationStore(tmp_path / "c.sqlite3")  # a restart: a new connection to the same file
    [summary] = reopened.list("local")
    assert summary.title == "KV Cache 的代价是什么？" and summary.turns == 2
    conv = reopened.get(cid, "local")
    first, second = conv.turns
    rebuilt = first.to_answer()
    assert rebuilt is not None and second.to_answer() is None and second.error == "问题无效"
    assert rebuilt.to_dict() == answer.to_dict()  # every field, citations and passages included
    assert answer.citations and rebuilt.citations[0].passage.text == answer.citations[0].passage.text


def test_newest_first_rename_delete_and_owners(tmp_path: Path, answer) -> None:
    store = ConversationStore(tmp_path / "c.sqlite3")
    a = store.create("alice")
    store.add_turn(a, "alice", "第一个问题", answer)
    time.sleep(0.01)
    b = store.create("alice")
    store.add_turn(b, "alice", "第二个问题" * 20, answer)
    assert [c.id for c in store.list("alice")] == [b, a]
    assert store.list("alice")[0].title.endswith("…") and len(store.list("alice")[0].title) == 60
    time.sleep(0.01)
    store.add_turn(a, "alice", "追问", answer)
    assert [c.id for c in store.list("alice")] == [a, b]  # the one used last comes first

    store.rename(a, "alice", "  我的 笔记 ")
    assert store.get(a, "alice").title == "我的 笔记"
    with pytest.raises(ConversationError) as err:
        store.rename(a, "alice", "   ")
    assert err.value.status == 400

    # Another user sees nothing of alice's and cannot touch it.
    assert store.list("bob") == []
    for action in (lambda: store.get(a, "bob"), lambda: store.delete(a, "bob"),
                   lambda: store.add_turn(a, "bob", "q", None), lambda: store.export_markdown(a, "bob")):
        with pytest.raises(ConversationError) as err:
            action()
        assert err.value.status == 404
    store.delete(a, "alice")
    assert [c.id for c in store.list("alice")] == [b]
    with pytest.raises(ConversationError):
        store.get(a, "alice")


def test_export_markdown_and_json(tmp_path: Path, answer) -> None:
    store = ConversationStore(tmp_path / "c.sqlite3")
    cid = store.create("local")
    store.add_turn(cid, "local", "KV Cache 的代价是什么？", answer)
    md = store.export_markdown(cid, "local", page_of=lambda doc, offset: 3)
    assert md.startswith("# KV Cache 的代价是什么？\n")
    assert "## KV Cache 的代价是什么？" in md and answer.text.strip() in md
    c = answer.citations[0]
    assert f"{c.n}. {c.doc}" in md and ", p. 3" in md and f"   > {' '.join(c.quote.split())}" in md
    data = json.loads(json.dumps(store.export_json(cid, "local"), ensure_ascii=False))
    assert data["format"] == "kbqa-conversation/1"
    assert answer_from_dict(data["turns"][0]["answer"]).citations[0].quote == c.quote


def test_title_from() -> None:
    assert title_from("  多行\n问题  ") == "多行 问题"
    assert title_from("") == "（空 / empty）"


def test_conversation_and_document_errors_carry_their_status_one_way() -> None:
    from chat.http.errors import from_exception
    from ingest.library import DocumentError
    from kb.errors import ActionError, KbqaError

    assert ConversationError("no such conversation").status == 404  # the usual one of each kind
    assert DocumentError("bad name").status == 400
    assert DocumentError("exists", status=409).status == 409 and ConversationError("empty", status=400).status == 400
    for exc in (ConversationError("gone"), DocumentError("too big", status=413)):
        assert isinstance(exc, ActionError) and isinstance(exc, KbqaError)
        api = from_exception(exc)
        assert (api.status, api.message, api.code) == (exc.status, str(exc), "document_error")
    plain = from_exception(KbqaError("something a user can fix"))
    assert (plain.status, plain.code) == (400, None)
