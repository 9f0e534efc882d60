"""Uploads through the UI's API: time to the first cited answer, and answering while an upload embeds.

1. A 20 KB Chinese Markdown document (written here, numbers as facts) is uploaded to a running app
   (``/upload``, the endpoint the Documents tab uses) and asked about with the scope set to it
   (``/ask``), until the answer cites the new file. Compared with ``python -m ingest FILE`` on a
   fresh knowledge base (the whole command: start, model load, embed, commit). Target: <= 1.5x.
   Two uploads are timed: the first one loads the embedding model for the Library, the second is warm.
2. While a larger document (60 KB by default) is being embedded in one session, another session asks
   extractive questions about the seed document; their latency (p50/p95) is recorded. Target: p95 <= 1 s.

Run: python -m benchmarks.upload_bench [--big-kb 60] [--cli-runs 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, load_average, percentile, temp_settings
from ingest.pipeline import run_ingest

from benchmarks.serving import serving  # isort: skip
from gradio_client import Client, handle_file  # isort: skip

log = logging.getLogger("benchmarks.upload_bench")
OUT = ROOT / "benchmarks" / "out" / "upload_bench.json"
SEED_QUESTIONS = ("KV Cache 的代价是什么？", "RoPE 解决了什么问题？", "LoRA 为什么省显存？",
                  "What problem does Mixture of Experts solve?")


def synthetic_doc(title: str, target_bytes: int, seed: int) -> str:
    """Chinese Markdown of about ``target_bytes``: numbered stations, each with its own facts."""
    parts = [f"# {title}\n"]
    i = 0
    while len("\n".join(parts).encode()) < target_bytes:
        i += 1
        n = seed * 1000 + i
        parts.append(
            f"\n## 第{n}号观测站\n\n第{n}号观测站位于北纬{20 + i % 30}度的山谷中，海拔{800 + 7 * i}米，"
            f"建于{1950 + i % 70}年。站里有{3 + i % 9}名工作人员，每天记录{4 + i % 5}次气温和风速。"
            f"冬季最低气温为零下{5 + i % 25}度，夏季降水量约{100 + 3 * i}毫米。\n"
        )
    return "\n".join(parts)


def cli_ingest_seconds(doc: Path) -> float:
    """``python -m ingest FILE`` on a fresh knowledge base, as a user would run it."""
    base = Path(tempfile.mkdtemp(prefix="kbqa-bench-cli-"))
    env = {**os.environ, "KBQA_DOCS_DIR": str(base / "docs"), "KBQA_DATA_DIR": str(base / "data"),
           "PYTHONPATH": str(ROOT)}
    (base / "docs").mkdir()
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ingest", str(doc)], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def upload_to_answer(client: Client, doc: Path, question: str) -> dict[str, Any]:
    started = time.perf_counter()
    [result] = client.predict([handle_file(str(doc))], "error", api_name="/upload")
    uploaded = time.perf_counter()
    answer = client.predict(question, 3, [result["name"]], api_name="/ask")
    done = time.perf_counter()
    cited = any(c["doc"] == result["name"] for c in answer["citations"])
    return {"name": result["name"], "status": result["status"], "chunks": result["chunks"],
            "upload_s": round(uploaded - started, 2), "to_first_cited_answer_s": round(done - started, 2),
            "cited_the_upload": cited}


def answers_during_upload(url: str, big: Path) -> dict[str, Any]:
    uploader, asker = Client(url, verbose=False), Client(url, verbose=False)
    asker.predict(SEED_QUESTIONS[0], 3, [], api_name="/ask")  # warm
    done = threading.Event()
    upload_result: dict[str, Any] = {}

    def upload() -> None:
        t = time.perf_counter()
        [res] = uploader.predict([handle_file(str(big))], "error", api_name="/upload")
        upload_result.update(res, seconds=round(time.perf_counter() - t, 1))
        done.set()

    thread = threading.Thread(target=upload)
    thread.start()
    time.sleep(1.0)  # let the upload reach the embedding
    latencies: list[float] = []
    i = 0
    while not done.is_set():
        q = SEED_QUESTIONS[i % len(SEED_QUESTIONS)]
        t = time.perf_counter()
        answer = asker.predict(q, 3, [], api_name="/ask")
        if not done.is_set():  # only answers given while the upload was still running count
            latencies.append((time.perf_counter() - t) * 1000)
        assert answer["citations"] or answer["refused"], answer
        i += 1
    thread.join()
    return {"upload": upload_result, "questions": len(latencies),
            "p50_ms": round(percentile(latencies, 50), 1) if latencies else None,
            "p95_ms": round(percentile(latencies, 95), 1) if latencies else None,
            "max_ms": round(max(latencies), 1) if latencies else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.upload_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--big-kb", type=int, default=60, help="size of the document embedded during part 2")
    parser.add_argument("--cli-runs", type=int, default=2, help="runs of python -m ingest (the best one counts)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="kbqa-bench-docs-"))
    docs = []
    for i, title in enumerate(("高原观测站记录", "海岛观测站记录"), start=1):
        path = work / f"stations-{i}.md"
        path.write_text(synthetic_doc(title, 20_000, seed=i), encoding="utf-8")
        docs.append(path)
    big = work / "stations-big.md"
    big.write_text(synthetic_doc("山地观测站记录", args.big_kb * 1000, seed=9), encoding="utf-8")

    cli = [cli_ingest_seconds(docs[0]) for _ in range(args.cli_runs)]
    settings = temp_settings()
    run_ingest(settings)  # the seed document, so the app has something to answer about meanwhile
    with serving(settings) as url:
        client = Client(url, verbose=False)
        cold = upload_to_answer(client, docs[0], "第1005号观测站海拔多少米？")
        warm = upload_to_answer(client, docs[1], "第2005号观测站海拔多少米？")
        during = answers_during_upload(url, big)
    cli_best = min(cli)
    report = {
        "machine": load_average(),
        "document_bytes": docs[0].stat().st_size,
        "python_m_ingest_s": [round(x, 2) for x in cli],
        "upload_cold": cold, "upload_warm": warm,
        "ratio_cold": round(cold["to_first_cited_answer_s"] / cli_best, 2),
        "ratio_warm": round(warm["to_first_cited_answer_s"] / cli_best, 2),
        "answers_while_embedding": during,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    sys.stdout.write(json.dumps(report, ensure_ascii=False, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
