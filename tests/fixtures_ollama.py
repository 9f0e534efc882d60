"""Pytest plugin: the Ollama stand-in (see ``tests/ollama_standin.py``) as fixtures.

Register from ``tests/conftest.py`` with ``pytest_plugins = ["tests.fixtures_ollama"]``.

- ``ollama_standin`` (session): one stand-in process on 127.0.0.1 and a free port, shared by all tests.
  It serves ``smollm2:135m``; ``smollm2:360m`` is not installed but can be pulled (tests of pulling).
- ``ollama`` (function): the same stand-in, restarted if a test killed it, and reset first: no fault,
  an empty request log, only the initially installed models. Use this one in tests.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.ollama_standin import OllamaStandIn


@pytest.fixture(scope="session")
def ollama_standin() -> Iterator[OllamaStandIn]:
    with OllamaStandIn(host="127.0.0.1", port=0, pullable_names=("smollm2:360m",)) as standin:
        yield standin


@pytest.fixture
def ollama(ollama_standin: OllamaStandIn) -> OllamaStandIn:
    if not ollama_standin.alive:
        logging.getLogger(__name__).warning("the Ollama stand-in had died; restarting it. Its log ends:\n%s",
                                            ollama_standin.log_tail())
        ollama_standin.start()  # same port, so URLs captured earlier stay valid
    ollama_standin.reset()
    return ollama_standin
