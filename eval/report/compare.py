"""Two runs side by side: which questions got better or worse, and how each figure moved.

A question's score in one configuration is the mean of what applies to it: refusal right (1/0),
correct by the offline judge (1/0), faithfulness, citation precision. Better/worse = that score moved.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eval.metrics.registry import keys


def load_run(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"no results.json at {path}")
    return json.loads(path.read_text(encoding="utf-8"))


def question_score(row: dict[str, Any]) -> float:
    parts = [float(row["refusal_correct"])]
    if row.get("correctness", {}).get("offline") is not None:
        parts.append(float(row["correctness"]["offline"]))
    for value in (row.get("faithfulness", {}).get("offline"), row.get("citation_precision")):
        if value is not None:
            parts.append(float(value))
    return sum(parts) / len(parts)


def _what_changed(a: dict[str, Any], b: dict[str, Any]) -> str:
    changes = []
    if a["refused"] != b["refused"]:
        changes.append("now refuses" if b["refused"] else "now answers")
    if a["correctness"]["offline"] != b["correctness"]["offline"]:
        changes.append("now correct" if b["correctness"]["offline"] else "now wrong")
    fa, fb = a["faithfulness"]["offline"], b["faithfulness"]["offline"]
    if fa != fb:
        changes.append(f"faithfulness {_f(fa)}→{_f(fb)}")
    if a.get("citation_precision") != b.get("citation_precision"):
        changes.append(f"citation precision {_f(a.get('citation_precision'))}→{_f(b.get('citation_precision'))}")
    return ", ".join(changes) or "details changed"


def _f(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def compare(run_a: dict[str, Any], run_b: dict[str, Any]) -> dict[str, Any]:
    configs = [c for c in run_a.get("configs", {}) if c in run_b.get("configs", {})]
    a_questions = {q["id"]: q for q in run_a.get("questions", [])}
    out: dict[str, Any] = {"configs": {}, "retrieval": {}}
    for config in configs:
        better, worse, same = [], [], 0
        for q in run_b.get("questions", []):
            old = a_questions.get(q["id"], {}).get("configs", {}).get(config)
            new = q["configs"].get(config)
            if old is None or new is None:
                continue
            delta = question_score(new) - question_score(old)
            if abs(delta) < 1e-9:
                same += 1
                continue
            entry = {"id": q["id"], "question": q["question"], "delta": round(delta, 3),
                     "change": _what_changed(old, new)}
            (better if delta > 0 else worse).append(entry)
        summary_a = run_a["configs"][config].get("all", {})
        summary_b = run_b["configs"][config].get("all", {})
        metrics = {m: {"a": summary_a.get(m), "b": summary_b.get(m),
                       "delta": None if summary_a.get(m) is None or summary_b.get(m) is None
                       else summary_b[m] - summary_a[m]} for m in keys("compare")}
        out["configs"][config] = {"better": sorted(better, key=lambda e: -e["delta"]),
                                  "worse": sorted(worse, key=lambda e: e["delta"]), "same": same, "metrics": metrics}
    ra, rb = (run_a.get("retrieval") or {}).get("summary", {}), (run_b.get("retrieval") or {}).get("summary", {})
    for split in ("tune", "test"):
        for system in set(ra.get(split, {})) & set(rb.get(split, {})):
            a, b = ra[split][system]["all"], rb[split][system]["all"]
            out["retrieval"][f"{split}/{system}"] = {m: {"a": a[m], "b": b[m], "delta": b[m] - a[m]}
                                                     for m in keys("compare_retrieval")}
    return out


def format_compare(diff: dict[str, Any], label_a: str = "A", label_b: str = "B") -> str:
    lines: list[str] = []
    for config, c in diff["configs"].items():
        lines += [f"== {config}: {len(c['better'])} better, {len(c['worse'])} worse, {c['same']} unchanged "
                  f"({label_a} -> {label_b})", f"{'metric':24} {'A':>10} {'B':>10} {'delta':>10}"]
        for metric, v in c["metrics"].items():
            if v["a"] is None and v["b"] is None:
                continue
            delta = "" if v["delta"] is None else f"{v['delta']:+10.3f}"
            lines.append(f"{metric:24} {_cell(v['a'])} {_cell(v['b'])} {delta}")
        for title, entries in (("worse", c["worse"]), ("better", c["better"])):
            if entries:
                lines.append(f"-- {title}:")
                lines += [f"  {e['id']} {e['delta']:+.2f} {e['change']} | {e['question'][:60]}" for e in entries]
        lines.append("")
    if diff["retrieval"]:
        lines.append("== retrieval (split/system: hit@1, hit@5, MRR@10 deltas)")
        for key, metrics in sorted(diff["retrieval"].items()):
            lines.append(f"  {key:18} " + "  ".join(f"{m} {v['delta']:+.3f}" for m, v in metrics.items()))
    return "\n".join(lines) if lines else "Nothing to compare: the runs share no configuration."


def _cell(value: float | None) -> str:
    return f"{'–':>10}" if value is None else f"{value:10.3f}"
