"""Logging for the command-line entry points: concise, on stderr, quiet third parties."""

from __future__ import annotations

import logging
import os

NOISY_LOGGERS = ("httpx", "chromadb", "sentence_transformers", "urllib3", "jieba", "gradio", "matplotlib")


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # Nothing leaves the machine unless the user configured it to.
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
