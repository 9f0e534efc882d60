"""The HTTP API's cost over calling the Assistant in-process, and 10 concurrent streaming clients.

1. Latency: for each gold question (Chinese and English alternating), ``Assistant.ask`` in this process and
   ``POST /v1/chat/completions`` (model ``kbqa-extractive``, non-streamed) against ``python -m chat`` in a
   separate process, interleaved so both see the same machine load. Target: API p95 <= 1.2x in-process
   p95 + 10 ms.
2. Concurrency: ``--clients`` streaming clients at once, each asking its own question; every stream must
   end with a final chunk (``complete: true``) and ``data: [DONE]``, with no error.

Run: python -m benchmarks.api_bench [--questions 20] [--rounds 3] [--clients 10] [--data-dir DIR --docs-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import ROOT, load_average, mixed_questions, percentile, temp_settings
from chat import Assistant
from ingest.pipeline import run_ingest
from kb.settings import Settings
from tests.fixtures_chroma import free_port

OUT = ROOT / "benchmarks" / "out" / "api_bench.json"
MODEL = "kbqa-extractive"


@contextmanager
def server_process(settings: Settings) -> Iterator[str]:
    """``python -m chat`` on 127.0.0.1 and a free port, on the same knowledge base."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KBQA_DATA_DIR": str(settings.data_dir),
           "KBQA_DOCS_DIR": str(settings.docs_dir), "KBQA_LLM": "none", "KBQA_EMBED_RUNTIME": settings.embed_runtime,
           "KBQA_SETTINGS_FILE": "/nonexistent/kbqa.toml", "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("KBQA_API_KEYS", None)
    proc = subprocess.Popen([sys.executable, "-m", "chat", "--port", str(port)], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited: {proc.stderr.read() if proc.stderr else ''}")
            try:
                if httpx.get(f"{url}/v1/models", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start within 300 s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def ask_api(client: httpx.Client, question: str) -> dict[str, Any]:
    response = client.post("/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user",
                                                                                       "content": question}]})
    response.raise_for_status()
    return response.json()


def latency(bot: Assistant, url: str, questions: list[str], rounds: int) -> dict[str, Any]:
    in_process: list[float] = []
    api: list[float] = []
    mismatches = 0
    with httpx.Client(base_url=url, timeout=300) as client:
        for q in questions:  # warm both sides (caches of sentence vectors, connections) before the clock
            bot.ask(q)
            ask_api(client, q)
        for _ in range(rounds):
            for q in questions:
                started = time.perf_counter()
                expected = bot.ask(q).text
                in_process.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                got = ask_api(client, q)["choices"][0]["message"]["content"]
                api.append((time.perf_counter() - started) * 1000)
                mismatches += got != expected
    p95_in, p95_api = percentile(in_process, 95), percentile(api, 95)
    target = 1.2 * p95_in + 10
    return {"requests": len(api), "in_process_p50_ms": round(percentile(in_process, 50), 1),
            "in_process_p95_ms": round(p95_in, 1), "api_p50_ms": round(percentile(api, 50), 1),
            "api_p95_ms": round(p95_api, 1), "target_p95_ms": round(target, 1), "met": p95_api <= target,
            "answers_differing": mismatches}


def stream_one(url: str, question: str, out: dict[str, Any]) -> None:
    started = time.perf_counter()
    body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": question}]}
    try:
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=600) as response:
            response.raise_for_status()
            first = None
            events = []
            for line in response.iter_lines():
                if line.startswith("data: "):
                    first = first or time.perf_counter()
                    events.append(line[len("data: "):])
        final = json.loads(events[-2])
        ok = events[-1] == "[DONE]" and final.get("complete") is True and final.get("error") is None
        out.update(ok=ok, first_event_ms=(first - started) * 1000 if first else None,
                   total_ms=(time.perf_counter() - started) * 1000, citations=len(final.get("citations", [])))
    except Exception as exc:  # counted, not raised: the figure is how many failed
        out.update(ok=False, error=f"{type(exc).__name__}: {exc}", total_ms=(time.perf_counter() - started) * 1000)


def concurrent_streams(url: str, questions: list[str]) -> dict[str, Any]:
    results: list[dict[str, Any]] = [{} for _ in questions]
    threads = [threading.Thread(target=stream_one, args=(url, q, r)) for q, r in zip(questions, results, strict=True)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = (time.perf_counter() - started) * 1000
    totals = [r["total_ms"] for r in results]
    return {"clients": len(questions), "errors": sum(not r.get("ok") for r in results), "wall_ms": round(wall, 1),
            "p50_ms": round(percentile(totals, 50), 1), "max_ms": round(max(totals), 1),
            "failures": [r.get("error") for r in results if not r.get("ok")]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.api_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--data-dir", type=Path, help="an ingested knowledge base to use instead of a fresh one")
    parser.add_argument("--docs-dir", type=Path, help="its documents folder (with --data-dir)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    if args.data_dir:
        settings = Settings(data_dir=args.data_dir, docs_dir=args.docs_dir or args.data_dir / "docs", llm="none")
    else:
        settings = temp_settings()
        run_ingest(settings)
    mixed = mixed_questions()

    bot = Assistant(settings)
    bot.status()  # the embedding model loaded before the clock starts, as in the server
    with server_process(settings) as url:
        lat = latency(bot, url, mixed[: args.questions], args.rounds)
        conc = concurrent_streams(url, mixed[: args.clients])
    report = {"latency": lat, "concurrent_streams": conc, "load": load_average()}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    sys.stdout.write(
        f"extractive, {lat['requests']} requests: in-process p50 {lat['in_process_p50_ms']} ms, p95 "
        f"{lat['in_process_p95_ms']} ms; API p50 {lat['api_p50_ms']} ms, p95 {lat['api_p95_ms']} ms "
        f"(target <= {lat['target_p95_ms']} ms: {'met' if lat['met'] else 'NOT met'}); "
        f"{lat['answers_differing']} answers differing\n"
        f"{conc['clients']} concurrent streaming clients: {conc['errors']} errors, wall {conc['wall_ms']} ms, "
        f"p50 {conc['p50_ms']} ms, slowest {conc['max_ms']} ms\n{report['load']}\n(written to {OUT.relative_to(ROOT)})\n")
    return 0 if lat["met"] and conc["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
