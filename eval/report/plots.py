"""The report's plots (PNG, matplotlib's Agg backend): metrics by question type and language, latency."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib import font_manager

from eval.metrics.registry import shown_in

log = logging.getLogger(__name__)

CJK_FONTS = ("WenQuanYi Micro Hei", "Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC")
BAR_METRICS = tuple((m.key, m.column("plots")) for m in shown_in("plots"))
COLORS = {"extractive": "#2b6cb0", "generative": "#2f855a", "naive": "#c05621",
          "hybrid": "#2b6cb0", "bm25": "#805ad5", "dense": "#2f855a"}


def cjk_font() -> str | None:
    """A CJK-capable font family if one is installed (fonts-wqy-microhei), else None: labels stay ASCII."""
    installed = {f.name for f in font_manager.fontManager.ttflist}
    return next((name for name in CJK_FONTS if name in installed), None)


def _setup() -> None:
    family = cjk_font()
    if family:
        plt.rcParams["font.sans-serif"] = [family, "DejaVu Sans"]
    plt.rcParams["axes.unicode_minus"] = False


def _label(text: str) -> str:
    return text if cjk_font() or text.isascii() else text.encode("ascii", "replace").decode()


def _grouped_bars(path: Path, configs: dict[str, dict[str, dict[str, Any]]], prefix: str, title: str) -> Path | None:
    groups = sorted({g for summary in configs.values() for g in summary if g.startswith(prefix)})
    if not groups:
        return None
    names = [g.removeprefix(prefix) for g in groups]
    fig, axes = plt.subplots(1, len(BAR_METRICS), figsize=(4.2 * len(BAR_METRICS), 3.8), sharey=True)
    width = 0.8 / max(1, len(configs))
    for ax, (metric, label) in zip(axes, BAR_METRICS, strict=True):
        for i, (config, summary) in enumerate(configs.items()):
            values = [summary.get(g, {}).get(metric) for g in groups]
            xs = [x + i * width - 0.4 + width / 2 for x in range(len(groups))]
            ax.bar(xs, [v if v is not None else 0 for v in values], width, label=config,
                   color=COLORS.get(config), hatch=None)
            for x, v in zip(xs, values, strict=True):
                if v is None:
                    ax.text(x, 0.02, "n/a", ha="center", va="bottom", fontsize=6, rotation=90)
        ax.set_title(label)
        ax.set_xticks(range(len(groups)), [_label(n) for n in names], rotation=30, ha="right")
        ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower left")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def latency_plot(path: Path, latencies: dict[str, dict[str, Sequence[float]]]) -> Path | None:
    """Distribution of total and first-token time (ms, log scale) per configuration."""
    series = [(f"{config}\n{kind}", values) for config, kinds in latencies.items()
              for kind, values in kinds.items() if values]
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(series)), 4))
    ax.boxplot([v for _, v in series], showfliers=True)
    ax.set_xticks(range(1, len(series) + 1), [name for name, _ in series], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("milliseconds (log scale)")
    ax.set_title("Latency per question")
    ax.grid(axis="y", alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def retrieval_plot(path: Path, summary: dict[str, dict[str, dict[str, dict[str, float]]]], split: str,
                   title: str = "") -> Path | None:
    systems = summary.get(split)
    if not systems:
        return None
    groups = sorted({g for by_group in systems.values() for g in by_group if g.startswith(("type:", "lang:"))})
    groups = ["all", *groups]
    fig, ax = plt.subplots(figsize=(max(7, 0.8 * len(groups) * len(systems) / 2), 4))
    width = 0.8 / len(systems)
    for i, (system, by_group) in enumerate(systems.items()):
        values = [by_group.get(g, {}).get("mrr@10", 0.0) for g in groups]
        ax.bar([x + i * width - 0.4 + width / 2 for x in range(len(groups))], values, width, label=system,
               color=COLORS.get(system))
    ax.set_xticks(range(len(groups)), [_label(g) for g in groups], rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("MRR@10")
    ax.set_title(f"{title}Retrieval MRR@10 by question type and language ({split} split)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def make_plots(out: Path, results: dict[str, Any]) -> list[Path]:
    _setup()
    configs = results.get("configs") or {}
    made = [
        _grouped_bars(out / "metrics_by_type.png", configs, "type:", "Answer quality by question type"),
        _grouped_bars(out / "metrics_by_language.png", configs, "lang:", "Answer quality by question language"),
    ]
    latencies: dict[str, dict[str, list[float]]] = {}
    for q in results.get("questions", []):
        for config, row in q["configs"].items():
            t = row["timings"]
            kinds = latencies.setdefault(config, {"total": [], "first token": []})
            if t.get("total_ms") is not None and not row["error"]:
                kinds["total"].append(t["total_ms"])
            if t.get("first_token_ms") is not None:
                kinds["first token"].append(t["first_token_ms"])
    made.append(latency_plot(out / "latency.png", latencies))
    if results.get("retrieval"):
        split = "test" if "test" in results["retrieval"]["summary"] else "all"
        made.append(retrieval_plot(out / "retrieval_by_type.png", results["retrieval"]["summary"], split))
    for name, section in (results.get("sets") or {}).items():
        if section.get("retrieval"):
            summary = section["retrieval"]["summary"]
            split = "test" if "test" in summary else "all"
            made.append(retrieval_plot(out / f"retrieval_by_type_{name}.png", summary, split, f"{name} set: "))
    return [p for p in made if p is not None]
