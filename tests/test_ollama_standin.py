"""The Ollama stand-in, driven through the real clients the app uses: ``ollama.Client`` and llama-index.

These pin down what the app will see from Ollama, including how each failure surfaces in each client.
They assert behaviour (shapes, counts, errors), never what the model says.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time

import httpx
import pytest
from llama_index.core.llms import ChatMessage
from llama_index.llms.ollama import Ollama
from ollama import Client, ResponseError

from tests.ollama_standin import DEFAULT_MODEL, OllamaStandIn

QUICK = {"num_predict": 8, "temperature": 0}  # greedy: the same few tokens every run
HELLO = [{"role": "user", "content": "Say hello."}]


@pytest.fixture
def client(ollama: OllamaStandIn) -> Client:
    return Client(host=ollama.url, timeout=60)


def llama_index_llm(url: str, timeout: float = 60.0, **kwargs: object) -> Ollama:
    return Ollama(model=DEFAULT_MODEL, base_url=url, request_timeout=timeout, context_window=4096,
                  temperature=0.0, additional_kwargs={"num_predict": 8}, **kwargs)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


# -- the API, happy paths ---------------------------------------------------------------------------

def test_root_version_and_tags(ollama: OllamaStandIn, client: Client) -> None:
    assert httpx.get(ollama.url).text == "Ollama is running"
    assert httpx.get(f"{ollama.url}/api/version").json()["version"]
    [model] = client.list().models
    assert model.model == DEFAULT_MODEL
    assert model.size and len(model.digest) == 64 and model.details.format == "gguf"


def test_chat_streams_deltas_then_one_done_line(client: Client) -> None:
    parts = list(client.chat(model=DEFAULT_MODEL, messages=HELLO, stream=True, options=QUICK))
    *deltas, last = parts
    assert deltas and all(not p.done and p.message.role == "assistant" and p.message.content for p in deltas)
    assert last.done and last.done_reason in {"stop", "length"} and last.message.content == ""
    assert 0 < last.eval_count <= 8 and last.prompt_eval_count > 0 and last.total_duration > 0
    assert last.eval_duration > 0 and last.prompt_eval_duration >= 0


def test_chat_whole_response(client: Client) -> None:
    response = client.chat(model=DEFAULT_MODEL, messages=HELLO, stream=False, options={"num_predict": 3})
    assert response.done and response.message.role == "assistant" and response.message.content
    assert response.eval_count <= 3


def test_options_are_passed_on_and_seed_makes_output_repeatable(ollama: OllamaStandIn,
                                                                client: Client) -> None:
    options = {"num_predict": 12, "seed": 7, "temperature": 1.0, "num_ctx": 2048}
    first = client.chat(model=DEFAULT_MODEL, messages=HELLO, options=options, keep_alive="10m")
    second = client.chat(model=DEFAULT_MODEL, messages=HELLO, options=options, keep_alive="10m")
    assert first.message.content == second.message.content
    [logged, _] = ollama.requests("/api/chat")
    assert logged["body"]["options"] == options and logged["body"]["keep_alive"] == "10m"
    assert logged["body"]["messages"] == HELLO and logged["body"]["stream"] is False


def test_num_ctx_is_honoured_the_way_ollama_truncates(client: Client) -> None:
    history = []
    for i in range(4):
        history += [{"role": "user", "content": f"Question {i}: tell me about topic number {i} in detail."},
                    {"role": "assistant", "content": f"Topic {i} is interesting for many reasons. " * 2}]
    messages = [{"role": "system", "content": "Be brief."}, *history, *HELLO]
    wide = client.chat(model=DEFAULT_MODEL, messages=messages, options={"num_predict": 1, "num_ctx": 4096})
    narrow = client.chat(model=DEFAULT_MODEL, messages=messages, options={"num_predict": 1, "num_ctx": 100})
    assert wide.prompt_eval_count > 150
    assert 20 < narrow.prompt_eval_count <= 100  # oldest turns dropped; system and last question kept
    long_question = [{"role": "user", "content": "Tell me more. " * 100}]
    cut = client.chat(model=DEFAULT_MODEL, messages=long_question, options={"num_predict": 1, "num_ctx": 64})
    assert cut.prompt_eval_count == 64  # one message too long: the prompt tokens themselves are cut


def test_generate_streamed_and_whole(client: Client) -> None:
    parts = list(client.generate(model=DEFAULT_MODEL, prompt="Why is the sky blue?", stream=True, options=QUICK))
    assert parts[-1].done and all(p.response for p in parts[:-1])
    whole = client.generate(model=DEFAULT_MODEL, prompt="Why?", system="Be brief.", options=QUICK)
    assert whole.done and whole.response and whole.eval_count <= 8
    assert client.generate(model=DEFAULT_MODEL, prompt="").done_reason == "load"


def test_json_format_is_enforced(client: Client) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"],
              "additionalProperties": False}
    response = client.chat(model=DEFAULT_MODEL, messages=HELLO, format=schema, options={"num_predict": 24})
    assert response.message.content.lstrip().startswith("{")


def test_show_reports_context_length_for_llama_index(ollama: OllamaStandIn, client: Client) -> None:
    shown = client.show(DEFAULT_MODEL)
    assert shown.modelinfo["llama.context_length"] == 8192
    assert shown.capabilities == ["completion"] and shown.details.family == "llama" and shown.template
    assert Ollama(model=DEFAULT_MODEL, base_url=ollama.url).metadata.context_window == 8192


def test_pull_streams_progress_then_the_model_is_listed(client: Client) -> None:
    with pytest.raises(ResponseError) as missing:
        client.chat(model="smollm2:360m", messages=HELLO)
    assert missing.value.status_code == 404
    progress = list(client.pull("smollm2:360m", stream=True))
    assert progress[0].status == "pulling manifest" and progress[-1].status == "success"
    sized = [p for p in progress if p.total]
    assert len(sized) >= 3 and sized[-1].completed == sized[-1].total and sized[0].digest
    assert {m.model for m in client.list().models} == {DEFAULT_MODEL, "smollm2:360m"}
    assert client.chat(model="smollm2:360m", messages=HELLO, options=QUICK).done
    assert client.pull(DEFAULT_MODEL).status == "success"
    with pytest.raises(ResponseError) as unknown:
        client.pull("no-such-model:1b")
    assert unknown.value.status_code == 500 and "file does not exist" in unknown.value.error


def test_a_standin_of_its_own_with_other_names_and_a_startup_fault() -> None:
    with OllamaStandIn(model_names=("qwen2.5:7b",), fault="error500", fault_options={"times": 1}) as standin:
        client = Client(host=standin.url)
        assert [m.model for m in client.list().models] == ["qwen2.5:7b"]
        with pytest.raises(ResponseError) as error:
            client.chat(model="qwen2.5:7b", messages=HELLO, options=QUICK)
        assert error.value.status_code == 500
        assert client.chat(model="qwen2.5:7b", messages=HELLO, options=QUICK).done
        with pytest.raises(ResponseError):
            client.chat(model=DEFAULT_MODEL, messages=HELLO)
    with pytest.raises(ConnectionError):  # stop() really stops it
        client.list()


def test_embed_gives_deterministic_normalised_vectors(client: Client) -> None:
    one = client.embed(model=DEFAULT_MODEL, input="大语言模型")
    many = client.embed(model=DEFAULT_MODEL, input=["大语言模型", "a cat"])
    assert len(one.embeddings) == 1 and len(many.embeddings) == 2
    assert len(one.embeddings[0]) == 576
    assert one.embeddings[0] == pytest.approx(many.embeddings[0], abs=1e-5)
    assert many.embeddings[0] != pytest.approx(many.embeddings[1], abs=1e-3)
    assert sum(x * x for x in many.embeddings[1]) == pytest.approx(1.0, abs=1e-4)
    assert len(client.embed(model=DEFAULT_MODEL, input="x", dimensions=64).embeddings[0]) == 64


def test_ps_lists_the_model_after_use(client: Client) -> None:
    client.chat(model=DEFAULT_MODEL, messages=HELLO, options={"num_predict": 1}, keep_alive="5m")
    assert [m.model for m in client.ps().models] == [DEFAULT_MODEL]
    client.generate(model=DEFAULT_MODEL, prompt="", keep_alive=0)
    assert client.ps().models == []


def test_unknown_model_is_404_everywhere(client: Client) -> None:
    calls = [lambda: client.chat(model="nope:1b", messages=HELLO),
             lambda: client.generate(model="nope:1b", prompt="hi"),
             lambda: client.show("nope:1b"),
             lambda: client.embed(model="nope:1b", input="hi")]
    for call in calls:
        with pytest.raises(ResponseError) as error:
            call()
        assert error.value.status_code == 404
        assert error.value.error == 'model "nope:1b" not found, try pulling it first'


def test_llama_index_chat_stream_and_complete(ollama: OllamaStandIn) -> None:
    llm = llama_index_llm(ollama.url)
    messages = [ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="Hi")]
    reply = llm.chat(messages)
    assert reply.message.content and reply.raw["done"] is True
    chunks = list(llm.stream_chat(messages))
    assert chunks[-1].raw["done"] is True and chunks[-1].message.content == "".join(c.delta for c in chunks)
    assert llm.complete("Hello").text
    sent = ollama.requests("/api/chat")[0]["body"]
    assert sent["options"]["num_ctx"] == 4096 and sent["options"]["num_predict"] == 8
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]


def test_requests_are_served_one_at_a_time_but_all_complete(client: Client) -> None:
    results: list[bool] = []

    def ask() -> None:
        results.append(client.chat(model=DEFAULT_MODEL, messages=HELLO, options=QUICK).done)

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == [True, True, True]


# -- faults, as each client sees them ------------------------------------------------------------------

def test_connection_refused() -> None:
    client = Client(host=closed_port_url())
    with pytest.raises(ConnectionError):  # the ollama client turns httpx.ConnectError into this builtin
        client.chat(model=DEFAULT_MODEL, messages=HELLO)
    with pytest.raises(httpx.ConnectError):  # ...but not when streaming: the raw httpx error escapes
        next(iter(client.chat(model=DEFAULT_MODEL, messages=HELLO, stream=True)))
    llm = llama_index_llm(closed_port_url())
    with pytest.raises(ConnectionError):
        llm.chat([ChatMessage(role="user", content="Hi")])
    with pytest.raises(httpx.ConnectError):
        next(iter(llm.stream_chat([ChatMessage(role="user", content="Hi")])))


def test_not_found_fault(ollama: OllamaStandIn, client: Client) -> None:
    ollama.set_fault("not_found")
    assert client.list().models == []
    with pytest.raises(ResponseError) as error:
        next(iter(client.chat(model=DEFAULT_MODEL, messages=HELLO, stream=True)))
    assert error.value.status_code == 404
    with pytest.raises(ResponseError) as error:
        llama_index_llm(ollama.url).chat([ChatMessage(role="user", content="Hi")])
    assert error.value.status_code == 404


def test_error500_fault(ollama: OllamaStandIn, client: Client) -> None:
    ollama.set_fault("error500", message="out of memory")
    with pytest.raises(ResponseError) as error:
        client.chat(model=DEFAULT_MODEL, messages=HELLO)
    assert (error.value.status_code, error.value.error) == (500, "out of memory")
    with pytest.raises(ResponseError) as error:
        list(llama_index_llm(ollama.url).stream_chat([ChatMessage(role="user", content="Hi")]))
    assert error.value.status_code == 500


def test_fault_can_hit_only_the_next_requests(ollama: OllamaStandIn, client: Client) -> None:
    ollama.set_fault("error500", times=1)
    with pytest.raises(ResponseError):
        client.generate(model=DEFAULT_MODEL, prompt="hi", options=QUICK)
    assert client.generate(model=DEFAULT_MODEL, prompt="hi", options=QUICK).done
    ollama.set_fault("not_found", times=2)
    for _ in range(2):
        with pytest.raises(ResponseError):
            client.show(DEFAULT_MODEL)
    assert client.show(DEFAULT_MODEL).details


def test_slow_first_token_trips_the_client_timeout(ollama: OllamaStandIn) -> None:
    ollama.set_fault("slow_first_token", delay=1.5)
    impatient = Client(host=ollama.url, timeout=0.5)
    with pytest.raises(httpx.ReadTimeout):
        next(iter(impatient.chat(model=DEFAULT_MODEL, messages=HELLO, stream=True, options=QUICK)))
    with pytest.raises(httpx.ReadTimeout):
        llama_index_llm(ollama.url, timeout=0.5).chat([ChatMessage(role="user", content="Hi")])
    started = time.monotonic()
    patient = Client(host=ollama.url, timeout=30)
    assert patient.chat(model=DEFAULT_MODEL, messages=HELLO, options=QUICK).done
    assert time.monotonic() - started >= 1.5


def test_slow_stream_spaces_out_every_content_line(ollama: OllamaStandIn, client: Client) -> None:
    ollama.set_fault("slow_stream", delay=0.3, times=1)
    arrivals = []
    for part in client.chat(model=DEFAULT_MODEL, messages=HELLO, stream=True, options=QUICK):
        if part.message.content:
            arrivals.append(time.monotonic())
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert len(arrivals) >= 2 and min(gaps) >= 0.25


def test_cut_stream_raises_after_some_content(ollama: OllamaStandIn, client: Client) -> None:
    ollama.set_fault("cut_stream", chunks=2)
    received = []
    with pytest.raises(httpx.RemoteProtocolError):  # "peer closed connection ... incomplete chunked read"
        for part in client.chat(model=DEFAULT_MODEL, messages=HELLO, stream=True, options=QUICK):
            received.append(part)
    assert len(received) == 2 and not any(p.done for p in received)
    with pytest.raises(httpx.RemoteProtocolError):  # not streamed: "Server disconnected without ..."
        client.chat(model=DEFAULT_MODEL, messages=HELLO, options=QUICK)
    deltas = []
    with pytest.raises(httpx.RemoteProtocolError):
        for chunk in llama_index_llm(ollama.url).stream_chat([ChatMessage(role="user", content="Hi")]):
            deltas.append(chunk.delta)
    assert len(deltas) == 2


def test_clean_cut_stream_just_ends_without_done(ollama: OllamaStandIn, client: Client) -> None:
    ollama.set_fault("cut_stream", chunks=2, clean=True)
    parts = list(client.chat(model=DEFAULT_MODEL, messages=HELLO, stream=True, options=QUICK))
    assert len(parts) == 2 and not any(p.done for p in parts)  # no exception: the app must check `done`
    chunks = list(llama_index_llm(ollama.url).stream_chat([ChatMessage(role="user", content="Hi")]))
    assert len(chunks) == 2 and chunks[-1].raw["done"] is False


def test_error_mid_stream(ollama: OllamaStandIn, client: Client) -> None:
    ollama.set_fault("error_mid_stream", chunks=2, message="llama runner process has terminated")
    received = []
    with pytest.raises(ResponseError) as error:
        for part in client.chat(model=DEFAULT_MODEL, messages=HELLO, stream=True, options=QUICK):
            received.append(part)
    assert len(received) == 2 and error.value.status_code == -1  # HTTP said 200; the error came in-band
    assert error.value.error == "llama runner process has terminated"


def test_fault_control(ollama: OllamaStandIn, client: Client) -> None:
    with pytest.raises(ValueError, match="unknown fault mode"):
        ollama.set_fault("meltdown")
    with pytest.raises(ValueError, match="unexpected keyword"):
        ollama.set_fault("error500", dealy=3)
    ollama.set_fault("not_found")
    ollama.reset()
    assert [m.model for m in client.list().models] == [DEFAULT_MODEL]
    assert ollama.requests() == [{"method": "GET", "path": "/api/tags", "body": {}}]
