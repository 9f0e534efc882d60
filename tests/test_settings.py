"""The one settings object: environment (KBQA_ prefix, OLLAMA_HOST), a TOML file, validation."""

from __future__ import annotations

import pydantic
import pytest

from kb.settings import Settings


def test_environment_and_settings_file(tmp_path, monkeypatch):
    toml = tmp_path / "kbqa.toml"
    toml.write_text('top_k = 7\nollama_model = "qwen2.5:3b"\nchroma_host = "chroma.internal"\n', encoding="utf-8")
    monkeypatch.setenv("KBQA_SETTINGS_FILE", str(toml))
    monkeypatch.setenv("KBQA_TOP_K", "9")  # the environment wins over the file
    monkeypatch.setenv("OLLAMA_HOST", "http://gpu-box:11434")
    settings = Settings()
    assert settings.top_k == 9
    assert settings.ollama_model == "qwen2.5:3b"
    assert settings.uses_chroma_server and settings.chroma_host == "chroma.internal"
    assert settings.ollama_host == "http://gpu-box:11434"
    assert settings.chroma_path == settings.data_dir / "chroma"


def test_defaults_are_local_and_private(monkeypatch):
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    settings = Settings()
    assert settings.ui_host == "127.0.0.1" and not settings.uses_chroma_server
    assert settings.ollama_host.startswith("http://127.0.0.1")
    assert not settings.ui_allow_unauthenticated


@pytest.mark.parametrize(("name", "value"), [("collection", "知识库"), ("top_k", "0"), ("embed_runtime", "tensorflow")])
def test_invalid_values_are_rejected_with_the_setting_named(monkeypatch, name, value):
    monkeypatch.setenv(f"KBQA_{name.upper()}", value)
    with pytest.raises(pydantic.ValidationError, match=name):
        Settings()
