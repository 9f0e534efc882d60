"""How long the evaluation takes: the full run in extractive mode, and per question with the Ollama stand-in.

Run: python -m benchmarks.eval_time [--questions 3]

1. ``python -m eval`` as the CI machine runs it without Ollama: all 141 gold questions in extractive mode,
   the retrieval comparison (hybrid, BM25, dense, naive llama-index), both judges' accuracy sets and the
   report with plots; then the answering + scoring share per question.
2. The generative configuration and the LLM judge through the stand-in (SmolLM2-135M on llama.cpp, one
   thread): seconds per question for a few questions. A real Ollama model is slower per token; the
   figures show the eval's own overhead around the model, not the model's speed.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from benchmarks.common import ROOT, load_average, percentile, temp_settings
from chat import Assistant
from eval.runner import RunOptions, run_eval
from ingest.pipeline import run_ingest
from tests.ollama_standin import OllamaStandIn

STANDIN_MODEL = "smollm2:135m"
OUT = ROOT / "benchmarks" / "out"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=3, help="questions answered through the stand-in")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    settings = temp_settings()
    started = time.perf_counter()
    run_ingest(settings)
    ingest_s = time.perf_counter() - started
    figures: dict[str, object] = {"ingest_s": round(ingest_s, 1)}
    out = Path(settings.data_dir).parent / "runs"

    bot = Assistant(settings)
    started = time.perf_counter()
    _, full = run_eval(settings, RunOptions(configs=["extractive"], progress=False, out=out / "full"), bot)
    figures["full_extractive_s"] = round(time.perf_counter() - started, 1)
    rows = [q["configs"]["extractive"] for q in full["questions"]]
    answer_ms = [r["timings"]["total_ms"] for r in rows]
    figures["questions"] = len(rows)
    figures["answer_ms_p50"] = round(percentile(answer_ms, 50), 1)
    figures["answer_ms_p95"] = round(percentile(answer_ms, 95), 1)

    started = time.perf_counter()
    run_eval(settings, RunOptions(configs=["extractive"], progress=False, out=out / "answers", retrieval_systems=(),
                                  judge_claims=False, write_report=False), bot)
    answers_s = time.perf_counter() - started
    figures["answer_and_score_s"] = round(answers_s, 1)
    figures["answer_and_score_ms_per_question"] = round(answers_s * 1000 / len(rows), 1)

    with OllamaStandIn(model_names=(STANDIN_MODEL,)) as standin:
        generative = settings.model_copy(update={
            "llm": "ollama", "ollama_host": standin.url, "ollama_model": STANDIN_MODEL, "max_answer_tokens": 64,
            "translate_queries": False})
        n = args.questions
        Assistant(generative).ask("warm-up: 什么是 KV Cache？")
        started = time.perf_counter()
        _, gen = run_eval(generative, RunOptions(configs=["generative"], limit=n, progress=False, out=out / "gen",
                                                 retrieval_systems=(), judge_claims=False, write_report=False), bot)
        figures["generative_s_per_question"] = round((time.perf_counter() - started) / n, 1)
        first = [q["configs"]["generative"]["timings"]["first_token_ms"] or 0.0 for q in gen["questions"]]
        figures["generative_first_token_ms_p50"] = round(percentile(first, 50), 0)
        started = time.perf_counter()
        _, judged = run_eval(generative, RunOptions(configs=["extractive"], limit=n, progress=False, out=out / "judge",
                                                    judge_model=STANDIN_MODEL, judge_max_tokens=64,
                                                    retrieval_systems=(), judge_claims=False, write_report=False),
                             bot)
        figures["llm_judge_s_per_question"] = round((time.perf_counter() - started) / n, 1)
        figures["llm_judge_calls"] = judged["llm_judge_stats"]["calls"]
        figures["llm_judge_unparseable"] = judged["llm_judge_stats"]["unparseable"]
    figures["load"] = load_average()

    OUT.mkdir(exist_ok=True)
    (OUT / "eval_time.json").write_text(json.dumps(figures, indent=1), encoding="utf-8")
    print(f"ingest of the primer: {figures['ingest_s']} s")
    print(f"full eval, extractive mode ({figures['questions']} questions, retrieval comparison of 4 systems, "
          f"judge accuracy on 121 claims, report + plots): {figures['full_extractive_s']} s")
    print(f"  answering + scoring alone: {figures['answer_and_score_s']} s "
          f"({figures['answer_and_score_ms_per_question']} ms per question; "
          f"answer p50 {figures['answer_ms_p50']} ms, p95 {figures['answer_ms_p95']} ms)")
    print(f"generative through the stand-in ({STANDIN_MODEL}, {args.questions} questions, 64 tokens max): "
          f"{figures['generative_s_per_question']} s per question answered and scored "
          f"(first token p50 {figures['generative_first_token_ms_p50']:.0f} ms)")
    print(f"LLM judge through the stand-in: {figures['llm_judge_s_per_question']} s per question "
          f"({figures['llm_judge_calls']} calls, {figures['llm_judge_unparseable']} unparseable judgements)")
    print(figures["load"])


if __name__ == "__main__":
    main()
