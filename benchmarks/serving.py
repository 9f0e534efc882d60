"""The chat app served on a free loopback port, as after `python -m chat`, for the UI benchmarks."""

from __future__ import annotations

import contextlib
import io
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import benchmarks.common  # noqa: F401  (sets the environment gradio reads at import time)
from chat import Assistant
from kb.settings import Settings

from chat.ui import build_app  # isort: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    assistant = Assistant(settings)
    assistant.status()  # load the embedding model before the clock starts, as `python -m chat` does
    app = build_app(assistant, settings)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        with contextlib.redirect_stdout(io.StringIO()):  # Gradio prints "Closing server…"
            app.close()
