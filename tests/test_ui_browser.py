"""The chat UI in a real browser: Debian's Chromium driven by Playwright, the app on 127.0.0.1.

Screenshots go to tests/artifacts/. Run ``bash scripts/install-system-deps.sh`` first (Chromium and a
CJK font); without /usr/bin/chromium these tests are skipped. Never ``playwright install``.
"""

from __future__ import annotations

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
def served(assistant: Assistant, settings: Settings) -> Iterator[str]:
    app = build_app(assistant, settings)
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
        expect(mark).to_be_visible()
        expect(mark).to_be_in_viewport()
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
            assert mark.text_content() == expected.quote
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

