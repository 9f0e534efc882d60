"""Answer latency: extractive end to end, and generative through the Ollama stand-in.

Run: python -m benchmarks.answer_bench
Targets: extractive p95 < 200 ms; generative overhead (everything but waiting for the model) p95 < 100 ms.
"""

from __future__ import annotations

import logging
import sys

from benchmarks.common import load_average, percentile, temp_settings
from chat import Assistant
from eval.data.gold import load_gold
from ingest.pipeline import run_ingest
from tests.ollama_standin import OllamaStandIn

STANDIN_MODEL = "smollm2:135m"


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    settings = temp_settings()
    run_ingest(settings)
    questions = [q.question for q in load_gold().rows]
    lines = []

    bot = Assistant(settings)
    for question in questions[:10]:
        bot.ask(question)
    totals = [bot.ask(q).timings.total_ms for q in questions]
    lines.append(f"extractive, {len(totals)} questions: p50 {percentile(totals, 50):.1f} ms, "
                 f"p95 {percentile(totals, 95):.1f} ms (target p95 < 200 ms)")

    with OllamaStandIn(model_names=(STANDIN_MODEL,)) as standin:
        gen = Assistant(settings.model_copy(update={
            "llm": "ollama", "ollama_host": standin.url, "ollama_model": STANDIN_MODEL, "top_k": 3,
            "max_answer_tokens": 64, "translate_queries": False,
        }))
        sample = questions[:20]
        gen.ask(sample[0])
        answers = [gen.ask(q) for q in sample]
        overhead = [a.timings.overhead_ms for a in answers]
        ttft = [a.timings.first_token_ms or 0.0 for a in answers]
        lines.append(f"generative (stand-in {STANDIN_MODEL}), {len(answers)} questions: "
                     f"overhead p50 {percentile(overhead, 50):.1f} ms, p95 {percentile(overhead, 95):.1f} ms "
                     "(target p95 < 100 ms)")
        lines.append(f"  time to first token p50 {percentile(ttft, 50):.0f} ms, p95 {percentile(ttft, 95):.0f} ms")
        lines.append(f"  model speed: {_tokens_per_second(standin)}")
    lines.append(load_average())
    sys.stdout.write("\n".join(lines) + "\n")


def _tokens_per_second(standin: OllamaStandIn) -> str:
    import ollama

    final = None
    for part in ollama.Client(host=standin.url).chat(
        model=STANDIN_MODEL, messages=[{"role": "user", "content": "Explain KV cache in one paragraph."}],
        stream=True, options={"num_predict": 64},
    ):
        final = part
    if not final or not final.eval_duration:
        return "unknown"
    return f"{final.eval_count / (final.eval_duration / 1e9):.1f} tokens/s generated"


if __name__ == "__main__":
    main()
