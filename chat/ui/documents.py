"""The Documents tab: what the page does with ``ingest.library.Library``, without the layout.

Every handler returns plain values (HTML, table rows, choices) so tests can call it directly;
``app.build_app`` wires them to components and to named API endpoints.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ingest.library import PAGED_SUFFIXES, DocumentError, DocumentTexts, Library, UploadResult
from kb.errors import KbqaError

log = logging.getLogger(__name__)

TABLE_HEADERS = ["文档 / Document", "类型 / Type", "大小 / Size", "段落 / Chunks", "索引时间 / Indexed", "状态 / Status"]
CONFLICT_MODES = (("不覆盖，提示我 / Ask (do not overwrite)", "error"), ("替换 / Replace", "replace"),
                  ("保留两者 / Keep both", "keep_both"))
Progress = Callable[[float, str], None]


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def human_size(size: int) -> str:
    if size < 1000:
        return f"{size} B"
    if size < 1_000_000:
        return f"{size / 1000:.1f} KB"
    return f"{size / 1e6:.1f} MB"


def _result_line(ok: bool, text: str) -> str:
    icon, cls = ("✓", "kbqa-doc-ok") if ok else ("⚠", "kbqa-doc-bad")
    return f'<li class="{cls}">{icon} {_esc(text)}</li>'


def render_results(lines: Sequence[str]) -> str:
    return f'<ul class="kbqa-doc-results" role="status">{"".join(lines)}</ul>' if lines else ""


class DocumentsController:
    def __init__(self, library: Library) -> None:
        self.library = library
        self.texts = DocumentTexts(library)

    # --- views ----------------------------------------------------------------------
    def rows(self) -> list[list[Any]]:
        rows = []
        for d in self.library.list():
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(d.indexed_at)) if d.indexed_at else "–"
            status = f"⚠ {d.skipped}" if d.skipped else "✓ 已索引 / indexed"
            rows.append([d.name, d.kind, human_size(d.size), d.chunks, when, status])
        return rows

    def indexed_names(self) -> list[str]:
        return sorted(self.library.manifest().docs)

    def all_names(self) -> list[str]:
        return [d.name for d in self.library.list()]

    # --- actions (each returns the lines of its message) ----------------------------
    def upload(self, paths: Sequence[str | Path] | None, on_conflict: str,
               progress: Progress | None = None) -> tuple[list[str], list[UploadResult]]:
        files = [Path(p) for p in (paths or []) if p]
        if not files:
            return [_result_line(False, "没有选择文件 / No file chosen.")], []
        lines, results = [], []
        for i, path in enumerate(files):
            name = path.name

            def step(fraction: float, message: str, i: int = i, name: str = name) -> None:
                if progress is not None:
                    progress((i + fraction) / len(files), f"{name} ({i + 1}/{len(files)}): {message}")

            try:
                with open(path, "rb") as fh:
                    result = self.library.add(name, fh, on_conflict=on_conflict, progress=step)
            except DocumentError as exc:
                lines.append(_result_line(False, str(exc)))
                continue
            except KbqaError as exc:
                lines.append(_result_line(False, f"{name}: {exc}"))
                continue
            except OSError as exc:
                lines.append(_result_line(False, f"{name}: cannot be read ({exc.strerror or exc})"))
                continue
            results.append(result)
            lines.append(_result_line(result.chunks > 0 or result.status == "unchanged", result.message))
        return lines, results

    def delete(self, name: str | None) -> list[str]:
        if not name:
            return [_result_line(False, "先选择一个文档 / Choose a document first.")]
        try:
            self.library.delete(name)
        except KbqaError as exc:
            return [_result_line(False, str(exc))]
        return [_result_line(True, f"已删除 / Deleted {name} (file and chunks).")]

    def reindex(self, name: str | None, progress: Progress | None = None) -> list[str]:
        try:
            result = self.library.reindex(name or None, progress=progress)
        except KbqaError as exc:
            return [_result_line(False, str(exc))]
        return [_result_line(True, result.message)]

    def document_view(self, name: str, start: int, end: int) -> str:
        from chat.ui.render import render_document, render_error

        try:
            text = self.texts.text(name)
        except KbqaError as exc:
            return render_error(str(exc), title="无法打开文档 / Cannot open the document")
        start = max(0, min(int(start), len(text)))
        end = max(start, min(int(end), len(text)))
        return render_document(name, text, start, end, paged=name.lower().endswith(PAGED_SUFFIXES))
