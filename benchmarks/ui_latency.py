"""Chat UI latency, measured the way a browser sees it: through Gradio's queue and the /chat streaming event.

For each question a fresh session submits to /chat (gradio_client ``Client.submit``) and iterates the
streamed outputs: "first text" is the first update whose answer bubble holds answer text, "complete" is
the end of the event. Then ten sessions ask at once, each on its own Client, for throughput.
Extractive mode on a fresh knowledge base in a temp folder, then generative with the Ollama stand-in
(SmolLM2-135M on one core; its figures measure our overhead and the stand-in's speed, not a real model).

Run: python -m benchmarks.ui_latency [--questions 20] [--sessions 10] [--standin-questions 8] [--no-standin]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, load_average, mixed_questions, percentile, temp_settings
from ingest.pipeline import run_ingest
from kb.settings import Settings
from tests.ollama_standin import OllamaStandIn

# gradio and gradio_client (through huggingface_hub) read their environment at import time, so they are
# imported after benchmarks.common and chat.ui have set it.
from benchmarks.serving import serving  # isort: skip
from gradio_client import Client  # isort: skip

STANDIN_MODEL = "smollm2:135m"
OUT = ROOT / "benchmarks" / "out" / "ui_latency.json"
TEXT_MARKERS = ("kbqa-streaming", "kbqa-answer", "kbqa-error")


@dataclass
class Timing:
    question: str
    first_text_ms: float
    complete_ms: float
    ok: bool


def _bot_text(messages: Any) -> str:
    if not isinstance(messages, list) or not messages:
        return ""
    content = messages[-1].get("content")
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content or "")


def ask(client: Client, question: str, llm: str, model: str | None, top_k: int) -> Timing:
    client.reset_session()  # a fresh conversation: no history, as a new visitor
    started = time.perf_counter()
    job = client.submit(question, top_k, llm, model, api_name="/chat")
    first = None
    last: Any = None
    for output in job:
        last = output
        if first is None and any(m in _bot_text(output[0]) for m in TEXT_MARKERS):
            first = time.perf_counter()
    job.result()
    done = time.perf_counter()
    final = _bot_text(last[0]) if last else ""
    ok = "kbqa-footer" in final
    return Timing(question, ((first or done) - started) * 1000, (done - started) * 1000, ok)


def sequential(url: str, questions: list[str], llm: str, model: str | None, top_k: int) -> list[Timing]:
    client = Client(url, verbose=False)
    ask(client, questions[0], llm, model, top_k)  # warm-up, not counted
    return [ask(client, q, llm, model, top_k) for q in questions]


def concurrent(url: str, questions: list[str], sessions: int, per_session: int, llm: str, model: str | None,
               top_k: int) -> tuple[list[Timing], float]:
    clients = [Client(url, verbose=False) for _ in range(sessions)]
    barrier = threading.Barrier(sessions)
    results: list[list[Timing]] = [[] for _ in range(sessions)]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            for j in range(per_session):
                question = questions[(i * per_session + j) % len(questions)]
                results[i].append(ask(clients[i], question, llm, model, top_k))
        except BaseException as exc:  # reported, so a failed session is not silently a fast one
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(sessions)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} session(s) failed: {errors[0]!r}")
    return [t for r in results for t in r], wall


def summarize(label: str, timings: list[Timing]) -> dict[str, Any]:
    first = [t.first_text_ms for t in timings]
    complete = [t.complete_ms for t in timings]
    return {
        "run": label, "answers": len(timings), "failed": sum(not t.ok for t in timings),
        "first_p50_ms": percentile(first, 50), "first_p95_ms": percentile(first, 95),
        "complete_p50_ms": percentile(complete, 50), "complete_p95_ms": percentile(complete, 95),
    }


def table(rows: list[dict[str, Any]]) -> str:
    w = max(len(r["run"]) for r in rows)
    head = (f"{'run':<{w}} {'n':>3} {'fail':>4} {'first p50':>10} {'first p95':>10} {'done p50':>10} "
            f"{'done p95':>10} {'answers/s':>9}")
    lines = [head, "-" * len(head)]
    for r in rows:
        rate = f"{r['answers_per_s']:.2f}" if "answers_per_s" in r else ""
        lines.append(f"{r['run']:<{w}} {r['answers']:>3} {r['failed']:>4} {_ms(r['first_p50_ms']):>10} "
                     f"{_ms(r['first_p95_ms']):>10} {_ms(r['complete_p50_ms']):>10} {_ms(r['complete_p95_ms']):>10} "
                     f"{rate:>9}")
    return "\n".join(lines)


def _ms(value: float) -> str:
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def bench(label: str, url: str, questions: list[str], sessions: int, per_session: int, llm: str,
          model: str | None, top_k: int) -> list[dict[str, Any]]:
    logging.getLogger(__name__).warning("%s: %d questions one after another…", label, len(questions))
    seq = summarize(f"{label}, one session", sequential(url, questions, llm, model, top_k))
    logging.getLogger(__name__).warning("%s: %d sessions at once…", label, sessions)
    timings, wall = concurrent(url, questions, sessions, per_session, llm, model, top_k)
    conc = summarize(f"{label}, {sessions} sessions at once", timings)
    conc["answers_per_s"] = len(timings) / wall
    conc["wall_s"] = wall
    return [seq, conc]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ui_latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=20, help="extractive questions, one session")
    parser.add_argument("--sessions", type=int, default=10, help="concurrent sessions")
    parser.add_argument("--per-session", type=int, default=2, help="extractive questions per concurrent session")
    parser.add_argument("--standin-questions", type=int, default=8, help="generative questions, one session")
    parser.add_argument("--no-standin", action="store_true", help="skip the generative runs")
    parser.add_argument("--data-dir", type=Path, help="use this ingested knowledge base instead of a fresh one")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    if args.data_dir:
        settings = Settings(data_dir=args.data_dir, llm="none")
    else:
        settings = temp_settings()
        run_ingest(settings)
    mixed = mixed_questions()

    rows: list[dict[str, Any]] = []
    top_k = settings.top_k
    with serving(settings) as url:
        rows += bench(f"extractive, top_k {top_k}", url, mixed[: args.questions], args.sessions, args.per_session,
                      "none", None, top_k)

    if not args.no_standin:
        gen_k = 3
        gen = settings.model_copy(update={"max_answer_tokens": 64})
        with OllamaStandIn(model_names=(STANDIN_MODEL,)) as standin:
            gen = gen.model_copy(update={"llm": "ollama", "ollama_host": standin.url, "ollama_model": STANDIN_MODEL})
            with serving(gen) as url:
                rows += bench(f"stand-in {STANDIN_MODEL}, top_k {gen_k}, <=64 tokens", url,
                              mixed[: args.standin_questions], args.sessions, 1, "ollama", STANDIN_MODEL, gen_k)

    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"rows": rows, "load": load_average()}, indent=2), encoding="utf-8")
    sys.stdout.write(table(rows) + "\n" + load_average() + f"\n(written to {OUT.relative_to(ROOT)})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
