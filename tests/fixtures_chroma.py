"""A real Chroma server for tests: ``chroma run`` from this venv, on a free loopback port.

Registered as a pytest plugin (``pytest_plugins = ["tests.fixtures_chroma"]`` in conftest.py,
or ``-p tests.fixtures_chroma``). Fixtures:

- ``chroma_server``: one server for the whole session (fast; tests share it, so they should
  use their own collection names);
- ``chroma_server_fresh``: a server of its own for one test, on an empty folder (~2 s);
  use it for tests that stop or restart the server.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

log = logging.getLogger(__name__)

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (another process could still take it before we do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def chroma_executable() -> Path:
    # The script next to this interpreter, so the server is the version the client library expects.
    return Path(sys.executable).parent / "chroma"


class ChromaServerError(RuntimeError):
    pass


_live: set[ChromaServer] = set()


@atexit.register
def _stop_leftovers() -> None:
    # A crashed or interrupted run must not leave servers holding ports in the background.
    for server in list(_live):
        server.stop(timeout=3)


class ChromaServer:
    """``chroma run --path DIR --host 127.0.0.1 --port N`` as a child process."""

    host = "127.0.0.1"

    def __init__(self, path: Path | str, port: int | None = None, log_path: Path | str | None = None) -> None:
        self.path = Path(path)
        self.port = port if port is not None else free_port()
        self.log_path = Path(log_path) if log_path else self.path.parent / f"chroma-{self.port}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def heartbeat_ok(self, timeout: float = 1.0) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/heartbeat", timeout=timeout) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def start(self, timeout: float = START_TIMEOUT) -> ChromaServer:
        if self.running:
            return self
        exe = chroma_executable()
        if not exe.exists():
            raise ChromaServerError(f"{exe} not found; install chromadb in this environment")
        self.path.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "ANONYMIZED_TELEMETRY": "False", "NO_COLOR": "1"}
        cmd = [str(exe), "run", "--path", str(self.path), "--host", self.host, "--port", str(self.port)]
        with open(self.log_path, "ab") as log_file:
            log_file.write(f"\n=== {time.strftime('%H:%M:%S')} {' '.join(cmd)}\n".encode())
            log_file.flush()
            # A session of its own, so stop() can end the server and anything it spawned, and
            # Ctrl-C in the terminal reaches pytest rather than the server first.
            self._proc = subprocess.Popen(
                cmd, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True,
            )
        _live.add(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                _live.discard(self)
                raise ChromaServerError(
                    f"chroma run exited with code {code} before answering on port {self.port}:\n{self.log_tail()}"
                )
            if self.heartbeat_ok(timeout=0.5):
                log.info("Chroma server up at %s (data in %s)", self.url, self.path)
                return self
            time.sleep(0.1)
        self.stop()
        raise ChromaServerError(f"Chroma did not answer on {self.url} within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        proc, self._proc = self._proc, None
        _live.discard(self)
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
        # The port is free only once nothing answers there any more.
        deadline = time.monotonic() + timeout
        while self.heartbeat_ok(timeout=0.2) and time.monotonic() < deadline:
            time.sleep(0.1)

    def restart(self, timeout: float = START_TIMEOUT) -> ChromaServer:
        """Stop and start again on the same folder and port, as after a crash or redeploy."""
        self.stop()
        return self.start(timeout=timeout)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> ChromaServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"ChromaServer({self.url}, path={self.path}, {state})"


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    """One Chroma server for the session. Do not stop it; use ``chroma_server_fresh`` for that."""
    root = tmp_path_factory.mktemp("chroma-session")
    with ChromaServer(root / "db", log_path=root / "chroma.log") as server:
        yield server


@pytest.fixture
def chroma_server_fresh(tmp_path: Path) -> Iterator[ChromaServer]:
    """A Chroma server of this test's own, on an empty folder; stopped afterwards."""
    with ChromaServer(tmp_path / "chroma-db", log_path=tmp_path / "chroma.log") as server:
        yield server
