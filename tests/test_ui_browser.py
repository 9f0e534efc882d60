"""The chat UI in a real browser: Debian's Chromium driven by Playwright, the app on 127.0.0.1.

Screenshots go to tests/artifacts/. Run ``bash scripts/install-system-deps.sh`` first (Chromium and a
CJK font); without /usr/bin/chromium these tests are skipped. Never ``playwright install``.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from chat.assistant import Assistant
from chat.ui import build_app
from chat.ui.feedback import FeedbackLog
from kb.settings import Settings
from tests.conftest import ARTIFACTS

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed at /usr/bin/chromium "
                       "(run: bash scripts/install-system-deps.sh)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
expect = sync_api.expect
ANSWER_TIMEOUT_MS = 90_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not any(name in _fonts() for name in ("WenQuanYi", "Noto Sans CJK")):
        pytest.skip("no CJK font installed (fonts-wqy-microhei); run: bash scripts/install-system-deps.sh")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _fonts() -> str:
    if not shutil.which("fc-list"):
        return ""
    return subprocess.run(["fc-list"], capture_output=True, text=True, check=False).stdout


@contextmanager
def served(assistant: Assistant, settings: Settings, **kwargs: Any) -> Iterator[str]:
    app = build_app(assistant, settings, **kwargs)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()


class Page:
    """One browser tab on the app, recording every request that leaves 127.0.0.1."""

    def __init__(self, browser: Any, url: str) -> None:
        self.context = browser.new_context(viewport={"width": 1360, "height": 940}, locale="zh-CN",
                                           permissions=["clipboard-read", "clipboard-write"])
        self.page = self.context.new_page()
        self.external: list[str] = []
        self.page.on("request", self._record)
        self.page.goto(url)
        expect(self.page.locator("#kbqa-status .kbqa-pill").first).to_be_visible(timeout=60_000)

    def _record(self, request: Any) -> None:
        if not request.url.startswith(("http://127.0.0.1", "data:", "blob:")):
            self.external.append(request.url)

    @property
    def bot(self) -> Any:
        return self.page.locator('#kbqa-chat [data-testid="bot"]')

    def ask(self, question: str) -> Any:
        """Type the question, press Enter, wait for the finished answer; returns the last bot message."""
        done = self.bot.filter(has=self.page.locator(".kbqa-footer, .kbqa-error"))
        before = done.count()
        box = self.page.locator("#kbqa-input textarea")
        box.fill(question)
        box.press("Enter")
        expect(done).to_have_count(before + 1, timeout=ANSWER_TIMEOUT_MS)
        expect(box).to_be_editable()  # usable again
        return self.bot.last

    def open_citation(self, message: Any) -> tuple[Any, str]:
        """Click the first [n] in ``message``; returns the highlighted quote's locator and the link's target."""
        link = message.locator("a.kbqa-cite").first
        expect(link).to_have_text("[1]")
        target = link.get_attribute("href").lstrip("#")
        link.click()
        mark = self.page.locator(f"#{target} mark")
        expect(mark.first).to_be_visible()
        expect(mark.first).to_be_in_viewport()
        return mark, target

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / name
        self.page.wait_for_timeout(600)  # let the scroll and the highlight settle
        self.page.screenshot(path=str(path))
        return path

    def close(self) -> None:
        self.context.close()


def test_extractive_chat_with_citations(browser: Any, primer_bot: Assistant, primer_settings: Settings) -> None:
    feedback = FeedbackLog(primer_settings.data_dir)
    before = len(feedback.read())
    with served(primer_bot, primer_settings) as url:
        ui = Page(browser, url)
        status = ui.page.locator("#kbqa-status")
        expect(status).to_contain_text("抽取模式 / Extractive")
        expect(status).to_contain_text("30 个段落 chunks")

        for question, shot in (("KV Cache 的代价是什么？", "ui-extractive-zh.png"),
                               ("What is the difference between RAG and fine-tuning?", "ui-extractive-en.png")):
            message = ui.ask(question)
            expect(message.locator("a.kbqa-cite").first).to_have_text("[1]")
            mark, target = ui.open_citation(message)
            expected = primer_bot.ask(question).citations[0]
            # The passage is rendered as Markdown: the quote's words are highlighted, its markup is not shown.
            assert _plain("".join(mark.all_text_contents())) == _plain(expected.quote)
            section = ui.page.locator(f"#{target}")
            expect(section).to_contain_text(expected.section.split(" > ")[-1])
            expect(section).to_contain_text(f"{expected.start}–{expected.end}")
            ui.screenshot(shot)

        # Thumbs up on the English answer lands in feedback.jsonl with the question and citations.
        ui.page.locator('#kbqa-chat button[aria-label="赞"], #kbqa-chat button[aria-label="Like"]').last.click()
        rows = _wait_for_rows(feedback, before + 1, ui)
        assert rows[-1]["rating"] == "up" and rows[-1]["question"].startswith("What is the difference")
        assert rows[-1]["citations"] and rows[-1]["mode"] == "extractive"

        # Copy puts the answer and its sources on the clipboard.
        ui.bot.last.locator("a.kbqa-copy").click()
        expect(ui.page.locator(".kbqa-toast")).to_be_visible()
        copied = ui.page.evaluate("navigator.clipboard.readText()")
        assert "[1]" in copied and "来源 / Sources" in copied

        # Untrusted text stays text; an empty message gets a clear answer; the page stays usable.
        message = ui.ask('<img src=x onerror="window.__pwned=1">KV Cache 的代价是什么？')
        expect(ui.page.locator('#kbqa-chat [data-testid="user"]').last).to_contain_text('<img src=x onerror=')
        assert ui.page.evaluate("window.__pwned") is None
        assert ui.page.locator("#kbqa-chat img[src=x]").count() == 0
        message = ui.ask("")
        expect(message).to_contain_text("问题为空")
        assert ui.external == [], f"requests left 127.0.0.1: {ui.external}"
        ui.close()


def _plain(text: str) -> str:
    """Text without Markdown markup; a table's |---| row is markup too (it renders as nothing)."""
    from kb.markup import table_separator

    return re.sub(r"[\s*_`#|>\-]", "", table_separator().sub("", text))


def _wait_for_rows(feedback: FeedbackLog, count: int, ui: Page) -> list[dict[str, Any]]:
    for _ in range(50):
        rows = feedback.read()
        if len(rows) >= count:
            return rows
        ui.page.wait_for_timeout(100)
    raise AssertionError(f"feedback.jsonl has {len(feedback.read())} rows, expected {count}")


def test_generative_chat_streams_and_survives_ollama_going_away(browser: Any, ollama: Any,
                                                                 primer_settings: Settings) -> None:
    settings = primer_settings.model_copy(update={
        "llm": "ollama", "ollama_host": ollama.url, "ollama_model": "smollm2:135m",
        "top_k": 2, "max_answer_tokens": 32,  # short prompts and answers: the stand-in runs on one core
    })
    with served(Assistant(settings), settings) as url:
        ui = Page(browser, url)
        expect(ui.page.locator("#kbqa-status")).to_contain_text("生成模式 / Generative")
        expect(ui.page.locator("#kbqa-status")).to_contain_text("smollm2:135m")

        # Tokens come 0.3 s apart: at the tiny model's own speed a whole answer can stream between
        # two of the browser's polls, and the partial answer would never be seen.
        ollama.set_fault("slow_stream", delay=0.3, times=1)
        box = ui.page.locator("#kbqa-input textarea")
        box.fill("KV Cache 的代价是什么？")
        box.press("Enter")
        expect(box).not_to_be_editable()  # no second question while this one is answered
        expect(ui.page.locator("#kbqa-stop")).to_be_visible()
        expect(ui.page.locator("#kbqa-chat .kbqa-streaming")).to_have_count(1, timeout=ANSWER_TIMEOUT_MS)
        expect(ui.page.locator("#kbqa-chat .kbqa-footer")).to_have_count(1, timeout=ANSWER_TIMEOUT_MS)
        message = ui.bot.last
        expect(message.locator(".kbqa-footer")).to_contain_text("smollm2:135m")
        expect(box).to_be_editable()
        # The tiny model rarely cites; the sources panel lists what was retrieved either way.
        if message.locator("a.kbqa-cite").count():
            ui.open_citation(message)
        turn = ui.page.locator("#kbqa-sources .kbqa-turn").first
        expect(turn).to_contain_text("KV Cache 的代价是什么？")
        assert turn.locator(".kbqa-source").count() == 2
        ui.screenshot("ui-generative-zh.png")

        # A slow model can be stopped; the question comes back into the box.
        ollama.set_fault("slow_first_token", delay=4, times=1)
        box.fill("RoPE 解决了什么问题？")
        box.press("Enter")
        ui.page.locator("#kbqa-stop").click()
        expect(ui.bot.last).to_contain_text("已停止 / Stopped")
        expect(box).to_be_editable()
        expect(box).to_have_value("RoPE 解决了什么问题？")

        # Ollama goes away after three tokens: the answer is marked incomplete and the page stays usable.
        ui.page.locator("#kbqa-clear").click()
        expect(ui.bot).to_have_count(0)
        ollama.set_fault("cut_stream", chunks=3, times=1)
        message = ui.ask("LoRA 为什么省显存？")
        expect(message.locator(".kbqa-error")).to_contain_text("回答未完成 / Answer incomplete")
        expect(box).to_be_editable()
        ui.screenshot("ui-generative-cut.png")
        assert ui.external == [], f"requests left 127.0.0.1: {ui.external}"
        ui.close()



# --- documents, scope, document view, conversations ------------------------------------------------
def _file(name: str, data: bytes, mime: str = "text/markdown") -> dict[str, Any]:
    return {"name": name, "mimeType": mime, "buffer": data}


def _upload(ui: Page, files: list[dict[str, Any]] | list[str], conflict: str | None = None) -> Any:
    """Drop files on the Documents tab's upload box and start the upload; returns the message box."""
    page = ui.page
    page.get_by_role("tab", name="文档 / Documents").click()
    page.locator("#kbqa-upload input[type=file]").set_input_files(files)
    if conflict:
        page.locator("#kbqa-conflict").get_by_text(conflict).click()
    _wait_uploaded(page, len(files))
    page.locator("#kbqa-upload-btn").click()
    return page.locator("#kbqa-doc-msg")


def _wait_uploaded(page: Any, count: int) -> None:
    """Until the browser has sent the files to the server (one row per file in the upload box)."""
    expect(page.locator("#kbqa-upload").get_by_role("row")).to_have_count(count, timeout=30_000)


def _choose(ui: Page, elem_id: str, option: str) -> None:
    box = ui.page.locator(f"#{elem_id} input")
    box.click()
    ui.page.get_by_role("option", name=option, exact=True).click()
    ui.page.keyboard.press("Escape")


def test_documents_scope_document_view_and_conversations(browser: Any, tmp_path: Path) -> None:
    from ingest.library import Library
    from ingest.pipeline import ingest_lock
    from tests.conftest import make_settings
    from tests.test_library import PDF_PAGES, ROVER_MD, indexed_ids, make_pdf

    settings = make_settings(tmp_path / "kb", max_doc_mb=0.05)
    pdf = make_pdf(tmp_path / "灯塔.pdf", PDF_PAGES)
    md = tmp_path / "火星车.md"
    md.write_text(ROVER_MD, encoding="utf-8")
    library = Library(settings, busy_wait=1.0)

    with served(Assistant(settings), settings, library=library) as url:
        ui = Page(browser, url)
        msg = _upload(ui, [str(pdf), str(md)])
        # Progress is shown in the page while the files are read and embedded.
        expect(msg.get_by_text(re.compile(r"\((1|2)/2\): "))).to_be_visible(timeout=60_000)
        expect(msg).to_contain_text("Added 火星车.md", timeout=120_000)
        expect(msg).to_contain_text("Added 灯塔.pdf")
        table = ui.page.locator("#kbqa-doc-table")
        expect(table).to_contain_text("火星车.md")
        expect(table).to_contain_text("灯塔.pdf")
        ui.screenshot("ui-documents.png")

        # Ask first: later uploads must not change what these answers cite.
        # A question scoped to the PDF: its citation shows the page; the document view opens there.
        ui.page.get_by_role("tab", name="对话 / Chat").click()
        _choose(ui, "kbqa-scope", "灯塔.pdf")
        question = "最后一位守灯人姓什么？"
        message = ui.ask(question)
        _, target = ui.open_citation(message)
        source = ui.page.locator(f"#{target}")
        expect(source).to_contain_text("灯塔.pdf · p. 2")
        source.locator("a.kbqa-open").click()
        view = ui.page.locator("#kbqa-docview")
        expect(view).to_contain_text("p. 2 / 2")
        expect(view.locator("mark").first).to_be_in_viewport()
        expect(view.locator("mark").first).to_contain_text("守灯人")
        assert "花岗岩" not in view.inner_text()  # the cited page only
        ui.screenshot("ui-docview-pdf.png")

        # A Markdown document opens whole, rendered, scrolled to the span.
        _choose(ui, "kbqa-scope", "火星车.md")  # now both documents are searched
        ui.page.locator("#kbqa-new").click()  # a new conversation: no follow-up rewriting
        expect(ui.bot).to_have_count(0)
        message = ui.ask("祝融号靠什么供电？")
        _, target = ui.open_citation(message)
        ui.page.locator(f"#{target} a.kbqa-open").click()
        expect(view.locator("h2").first).to_be_visible()
        expect(view.locator("mark").first).to_be_in_viewport()
        expect(view.locator("mark").first).to_contain_text("太阳能")

        # Bad input: each file gets a clear line; nothing is written for them.
        msg = _upload(ui, [_file("empty.md", b""), _file("program.md", b"\x7fELF\x02\x01\x01\x00" * 64),
                           _file("big.md", ("大" * 20000).encode()), _file("🌋火山.md", "# 火山\n\n冰岛的火山。".encode()),
                           _file("../../etc/passwd.md", "# 路径\n\n想逃出文件夹的名字。".encode()),
                           _file("火星车.md", md.read_bytes())])
        expect(msg).to_contain_text("empty (0 bytes)", timeout=60_000)
        expect(msg).to_contain_text("binary")
        expect(msg).to_contain_text("over the 0.05 MB limit")
        expect(msg).to_contain_text("Added 火山.md")
        expect(msg).to_contain_text("Added passwd.md")
        expect(msg).to_contain_text("火星车.md is already in the library")
        assert sorted(p.name for p in settings.docs_dir.iterdir()) == ["passwd.md", "火山.md", "火星车.md", "灯塔.pdf"]

        # Another ingest holds the lock: a clear "try again", and the file is not left half-added.
        with ingest_lock(settings):
            msg = _upload(ui, [_file("busy.md", "# 忙\n\n等待的时候上传。".encode())])
            expect(msg).to_contain_text("Try again", timeout=60_000)
        assert not (settings.docs_dir / "busy.md").exists()

        # Two sessions upload at once: both files land.
        other = Page(browser, url)
        for page, name in ((ui, "a1.md"), (other, "b2.md")):
            page.page.get_by_role("tab", name="文档 / Documents").click()
            page.page.locator("#kbqa-upload input[type=file]").set_input_files(
                [_file(name, f"# {name}\n\n并发上传的文档 {name}，内容互不相同。".encode())])
            _wait_uploaded(page.page, 1)
        ui.page.locator("#kbqa-upload-btn").click()
        other.page.locator("#kbqa-upload-btn").click()
        expect(ui.page.locator("#kbqa-doc-msg")).to_contain_text("Added a1.md", timeout=120_000)
        expect(other.page.locator("#kbqa-doc-msg")).to_contain_text("Added b2.md", timeout=120_000)
        other.close()

        # Reload: the conversation is in the sidebar and comes back when chosen.
        ui.page.reload()
        convs = ui.page.locator("#kbqa-convs")
        expect(convs).to_contain_text(question, timeout=30_000)
        expect(convs).to_contain_text("祝融号靠什么供电？")  # newest first, both listed
        assert convs.inner_text().index("祝融号") < convs.inner_text().index(question)
        convs.get_by_text(question).click()
        expect(ui.bot).to_have_count(1)
        expect(ui.bot.first.locator("a.kbqa-cite").first).to_have_text("[1]")
        ui.close()

    # Restart the app on the same data: the conversation is still there; export it.
    with served(Assistant(settings), settings, library=Library(settings)) as url:
        ui = Page(browser, url)
        convs = ui.page.locator("#kbqa-convs")
        expect(convs).to_contain_text(question, timeout=30_000)
        convs.get_by_text(question).click()
        expect(ui.bot).to_have_count(1)
        ui.page.locator("#kbqa-conv-manage").get_by_text("管理 / Manage").click()
        ui.page.locator("#kbqa-conv-export").click()
        link = ui.page.locator('#kbqa-conv-files a[href$=".md"]').first
        expect(link).to_be_visible(timeout=30_000)
        exported = ui.page.request.get(link.get_attribute("href")).text()
        assert exported.startswith(f"# {question}") and "灯塔.pdf" in exported and ", p. 2" in exported
        assert "守灯人" in exported and "\n   > " in exported and "祝融号" not in exported  # just this one

        # Delete the PDF from the Documents tab: its file and chunks (Chroma and BM25) are gone.
        ids, bm25_ids, stored = indexed_ids(settings, "灯塔.pdf")
        assert ids and ids == bm25_ids == stored
        ui.page.get_by_role("tab", name="文档 / Documents").click()
        _choose(ui, "kbqa-doc-choice", "灯塔.pdf")
        ui.page.locator("#kbqa-doc-delete").click()
        expect(ui.page.locator("#kbqa-doc-msg")).to_contain_text("Deleted 灯塔.pdf", timeout=60_000)
        expect(ui.page.locator("#kbqa-doc-table")).not_to_contain_text("灯塔.pdf")
        assert not (settings.docs_dir / "灯塔.pdf").exists()
        from kb.index import KnowledgeBase

        kb = KnowledgeBase(settings)
        view = kb.view()
        assert not (ids & set(view.bm25.ids)) and not (ids & kb.stored_ids())
        assert ui.external == [], f"requests left 127.0.0.1: {ui.external}"
        ui.close()
