"""What an Answer says in fields, and how each front end shows it: notices with a kind, the cut
in ``complete``/``error`` (never in the text), and the round trip through ``to_dict``, including
dicts stored by earlier versions. Built by hand: these are pure data and rendering."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path

from chat.__main__ import format_sources
from chat.answer import Answer, Citation, Notice, NoticeKind, SentenceCheck, Timings, incomplete_line
from chat.conversations import ConversationStore, answer_from_dict
from chat.generation import ENABLE_HINT, PULL_HINT
from chat.http.completions import Completion, kbqa_fields
from chat.passages import Passage
from chat.ui.render import render_answer, shown_notices

PASSAGE = Passage(id="c1", text="KV Cache 用显存换速度。", doc="primer.md", section="推理 > KV Cache",
                  start=10, end=24, score=0.5, found_by={"dense": 1}, scores={"dense": 0.9})
REACHABLE = "Ollama is not reachable at http://127.0.0.1:9 (ConnectError). Start it with `ollama serve`."


def _answer(**kw: object) -> Answer:
    fields: dict[str, object] = dict(
        question="KV Cache 的代价？", text="KV Cache 用显存换速度。[1]", mode="generative", model="m",
        citations=[Citation(1, PASSAGE, "KV Cache 用显存换速度。", 10, 24)], passages=[PASSAGE],
        sentences=[SentenceCheck("KV Cache 用显存换速度。", [1], 1.0, True)],
        notices=[Notice(REACHABLE, NoticeKind.EXTRACTIVE), Notice(ENABLE_HINT, NoticeKind.SETUP)],
        timings=Timings(1.0, 2.0, 3.0, 1.5),
    )
    fields.update(kw)
    return Answer(**fields)  # type: ignore[arg-type]


def test_a_notice_is_text_with_a_kind() -> None:
    n = Notice("cut to 400 characters", NoticeKind.QUESTION)
    assert n == "cut to 400 characters" and "400" in n and n.text == str(n) and n.kind is NoticeKind.QUESTION
    assert json.dumps([n]) == '["cut to 400 characters"]'  # code that stores notices as strings keeps working
    for twin in (copy.deepcopy(n), pickle.loads(pickle.dumps(n))):
        assert twin == n and twin.kind is NoticeKind.QUESTION
    assert Notice.from_dict(n.to_dict()).kind is NoticeKind.QUESTION
    assert Notice.from_dict("old plain string").kind is NoticeKind.INFO
    assert Notice.from_dict({"kind": "from-the-future", "text": "x"}).kind is NoticeKind.INFO
    assert Answer("q", "t", "extractive", notices=["plain"]).notices[0].kind is NoticeKind.INFO  # type: ignore[list-item]


def test_answer_round_trip_keeps_every_field() -> None:
    answer = _answer(complete=False, error="The connection to Ollama was cut.", standalone_question="KV?")
    data = json.loads(json.dumps(answer.to_dict(), ensure_ascii=False))
    assert data["notices"] == [{"kind": "extractive", "text": REACHABLE}, {"kind": "setup", "text": ENABLE_HINT}]
    rebuilt = Answer.from_dict(data)
    assert rebuilt.to_dict() == answer.to_dict()
    assert [n.kind for n in rebuilt.notices] == [NoticeKind.EXTRACTIVE, NoticeKind.SETUP]
    assert rebuilt.citations[0].passage is rebuilt.passages[0]  # citations point at the rebuilt passages
    assert answer_from_dict(data).to_dict() == answer.to_dict()


def test_an_answer_stored_by_an_earlier_version_loads_in_todays_form(tmp_path: Path) -> None:
    """Then the cut was a note in the text (checked as a sentence) and the how-to hint the tail of a notice."""
    cut = "The connection to Ollama was cut before the answer was complete."
    old = {
        "question": "KV Cache 的代价？", "text": f"KV Cache 用显存换速度。[1]\n\n⚠ 回答未完成 / Answer incomplete: {cut}",
        "mode": "generative", "model": "m", "refused": False, "complete": False, "error": cut,
        "standalone_question": None,
        "notices": [f"{REACHABLE} {PULL_HINT}", ENABLE_HINT, "The question was 900 characters long"],
        "citations": [{"n": 1, "doc": "primer.md", "section": "推理 > KV Cache", "quote": "KV Cache 用显存换速度。",
                       "start": 10, "end": 24, "passage_id": "c1"}],
        "sentences": [{"text": "KV Cache 用显存换速度。", "cites": [1], "support": 1.0, "supported": True},
                      {"text": f"⚠ 回答未完成 / Answer incomplete: {cut}", "cites": [], "support": 0.0,
                       "supported": False, "reason": "no citation"}],
        "passages": [PASSAGE.to_dict()], "timings": {"retrieval_ms": 1.0, "total_ms": 3.0},
    }
    answer = answer_from_dict(old)
    assert answer.text == "KV Cache 用显存换速度。[1]" and answer.error == cut and not answer.complete
    assert answer.unsupported == []  # the note is gone from the checked sentences too
    assert [(n.kind, n.text) for n in answer.notices] == [
        (NoticeKind.EXTRACTIVE, REACHABLE), (NoticeKind.SETUP, PULL_HINT), (NoticeKind.SETUP, ENABLE_HINT),
        (NoticeKind.INFO, "The question was 900 characters long")]
    assert answer.timings.first_token_ms is None and answer.timings.generation_ms == 0.0

    # Through the store, as a conversation saved before: the export says the cut once, as its own line.
    store = ConversationStore(tmp_path / "c.sqlite3")
    cid = store.create("local")
    store.add_turn(cid, "local", "KV Cache 的代价？", answer)
    markdown = store.export_markdown(cid, "local")
    assert markdown.count("Answer incomplete") == 1 and f"> ⚠ 回答未完成 / Answer incomplete: {cut}" in markdown


def test_the_text_is_only_the_answer_and_each_front_end_shows_the_cut_its_way() -> None:
    cut = "Ollama stopped with an error while answering: out of memory"
    answer = _answer(complete=False, error=cut)
    assert incomplete_line(answer) == f"⚠ 回答未完成 / Answer incomplete: {cut}"
    assert incomplete_line(_answer()) is None
    assert incomplete_line(_answer(complete=False)) is None  # the token limit: incomplete, not failed

    html = render_answer(answer, 1)  # the UI: a banner, the answer text once
    assert html.count("Answer incomplete") == 1 and 'class="kbqa-error"' in html
    assert format_sources(answer).splitlines()[0] == incomplete_line(answer)  # the CLI: a line under the text

    reply = Completion("kbqa").reply(answer)  # OpenAI clients show the content: it says so there too
    content = reply["choices"][0]["message"]["content"]
    assert content == f"{answer.text}\n\n{incomplete_line(answer)}"
    assert reply["choices"][0]["finish_reason"] == "length" and reply["complete"] is False and reply["error"] == cut
    events = [json.loads(e[len(b"data: "):]) for e in Completion("kbqa").stream(answer.text, iter([answer]))
              if e.startswith(b"data: {")]
    streamed = "".join(e["choices"][0]["delta"].get("content", "") for e in events)
    assert streamed == content and events[-1]["text"] == answer.text
    assert events[-1]["choices"][0]["finish_reason"] == "length"


def test_notices_by_kind_in_each_front_end() -> None:
    answer = _answer(mode="extractive", model=None)
    assert shown_notices(answer) == [REACHABLE]  # the UI's status line says how to turn generation on
    html = render_answer(answer, 1)
    assert "kbqa-notice-extractive" in html and "python -m chat pull" not in html
    assert kbqa_fields(answer)["notices"] == [REACHABLE, ENABLE_HINT]  # the API: its list of strings, all of them
    assert f"Note: {ENABLE_HINT}" in format_sources(answer)  # the CLI has no status line: it says everything
