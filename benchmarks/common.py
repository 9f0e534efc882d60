"""Helpers shared by the benchmark scripts: a knowledge base in a temp folder, percentiles, memory."""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from kb.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SEED_DOC = ROOT / "kb" / "docs" / "llm-primer.md"


def temp_settings(**overrides: object) -> Settings:
    """Settings for a fresh knowledge base holding the seed document, in a temp folder."""
    base = Path(tempfile.mkdtemp(prefix="kbqa-bench-"))
    (base / "docs").mkdir()
    shutil.copy(SEED_DOC, base / "docs" / SEED_DOC.name)
    values: dict[str, object] = {"docs_dir": base / "docs", "data_dir": base / "data", "llm": "none"}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def mixed_questions() -> list[str]:
    """The seed gold set's answerable questions, Chinese and English alternating, as a mixed user base asks."""
    from eval.data.gold import load_gold

    gold = [q for q in load_gold().rows if q.answerable]
    zh = [q.question for q in gold if q.lang == "zh"]
    en = [q.question for q in gold if q.lang != "zh"]
    return [q for pair in zip(zh, en, strict=False) for q in pair]


def percentile(values: list[float], p: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"
