"""Look and behaviour of the chat UI that is not Python: theme, CSS and the page script.

The theme names system fonts only: Gradio's default theme loads its fonts from Google Fonts,
which a local-first app must not do. Chinese text needs a CJK font on the machine (Debian:
fonts-wqy-microhei or fonts-noto-cjk); the browser picks the first one it has.
"""

from __future__ import annotations

import gradio as gr

FONTS = (
    "system-ui", "-apple-system", "Segoe UI", "Roboto", "PingFang SC", "Hiragino Sans GB", "Microsoft YaHei",
    "Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Micro Hei", "sans-serif",
)
MONO_FONTS = ("ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "Noto Sans Mono CJK SC",
              "WenQuanYi Micro Hei Mono", "monospace")


def theme() -> gr.themes.Base:
    return gr.themes.Default(
        primary_hue="indigo", secondary_hue="slate", neutral_hue="slate", radius_size="md",
        font=list(FONTS), font_mono=list(MONO_FONTS),
    ).set(body_text_size="15px")


CSS = """
.gradio-container { max-width: 1360px !important; margin: 0 auto !important; }
#kbqa-header { padding: 4px 2px 0; }
#kbqa-header h1 { font-size: 1.45rem; font-weight: 700; margin: 0; letter-spacing: .01em; }
#kbqa-header p { margin: 2px 0 0; color: var(--body-text-color-subdued); font-size: .92rem; }
.kbqa-status { display: flex; flex-direction: column; gap: 4px; font-size: .84rem; line-height: 1.45;
  color: var(--body-text-color-subdued); padding: 8px 12px; border: 1px solid var(--border-color-primary);
  border-radius: var(--radius-lg); background: var(--block-background-fill); }
.kbqa-status-row { overflow-wrap: anywhere; }
.kbqa-pill { display: inline-block; border-radius: 999px; padding: 0 9px; margin-right: 4px; font-weight: 600;
  font-size: .78rem; line-height: 1.55rem; white-space: nowrap; }
.kbqa-pill.ok { background: #dcfce7; color: #166534; }
.kbqa-pill.info { background: #e0e7ff; color: #3730a3; }
.kbqa-pill.warn { background: #fef3c7; color: #92400e; }
.kbqa-pill.bad { background: #fee2e2; color: #991b1b; }

#kbqa-chat .message-content { line-height: 1.7; }
.kbqa-user { white-space: pre-wrap; overflow-wrap: anywhere; }
.kbqa-more-chars { color: var(--body-text-color-subdued); font-size: .85em; }
.kbqa-answer p { margin: 0 0 .45em; }
.kbqa-answer p:last-child { margin-bottom: 0; }
a.kbqa-cite, .kbqa-cite-sample { display: inline-block; min-width: 1.6em; padding: 0 .3em; margin: 0 .1em;
  border-radius: 5px; background: var(--color-accent-soft); color: var(--color-accent) !important;
  font-weight: 700; font-size: .82em; line-height: 1.5; text-align: center; text-decoration: none !important;
  cursor: pointer; vertical-align: baseline; }
a.kbqa-cite:hover, a.kbqa-cite:focus-visible { background: var(--color-accent); color: white !important; }
.kbqa-flag { text-decoration: underline wavy #d97706; text-decoration-thickness: 1.5px;
  text-underline-offset: 4px; text-decoration-skip-ink: none; cursor: help; }
.kbqa-flag-mark { color: #d97706; font-size: .72em; margin-left: 1px; }
.kbqa-flagged { margin-top: .6em; padding: .45em .7em; border-left: 3px solid #f59e0b; border-radius: 4px;
  background: rgba(245, 158, 11, .08); font-size: .88em; }
.kbqa-flagged ul { margin: .3em 0 0 1.1em; padding: 0; }
.kbqa-reason { color: var(--body-text-color-subdued); }
.kbqa-notice { margin-top: .5em; font-size: .84em; color: var(--body-text-color-subdued); overflow-wrap: anywhere; }
.kbqa-error { margin-top: .3em; padding: .45em .7em; font-size: .92em; border-left: 3px solid #dc2626; border-radius: 4px;
  background: rgba(220, 38, 38, .07); overflow-wrap: anywhere; }
.kbqa-refused { color: var(--body-text-color-subdued); }
.kbqa-footer { margin-top: .65em; padding-top: .4em; border-top: 1px dashed var(--border-color-primary);
  font-size: .76em; color: var(--body-text-color-subdued); }
.kbqa-footer a { color: var(--color-accent) !important; text-decoration: none !important; cursor: pointer;
  white-space: nowrap; }
.kbqa-pending { color: var(--body-text-color-subdued); font-size: .92em; }
.kbqa-dots::after { content: "●●●"; letter-spacing: 2px; animation: kbqa-pulse 1.2s infinite; }
.kbqa-caret::after { content: "▍"; color: var(--color-accent); animation: kbqa-pulse 1s infinite; }
@keyframes kbqa-pulse { 0%, 100% { opacity: .25; } 50% { opacity: 1; } }

#kbqa-sources-col { position: sticky; top: 8px; align-self: flex-start; }
#kbqa-sources { max-height: calc(100vh - 120px); overflow-y: auto; padding-right: 2px; }
.kbqa-sources-empty { color: var(--body-text-color-subdued); font-size: .9rem; padding: 6px 4px; }
.kbqa-sources-empty strong { color: var(--body-text-color); }
.kbqa-turn { border: 1px solid var(--border-color-primary); border-radius: var(--radius-lg);
  background: var(--block-background-fill); margin: 0 0 10px; padding: 6px 10px 8px; }
.kbqa-turn > summary { cursor: pointer; font-weight: 600; padding: 4px 0; overflow-wrap: anywhere; }
.kbqa-q { color: var(--color-accent); margin-right: 4px; }
.kbqa-source { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 8px 10px; margin: 8px 0;
  background: var(--background-fill-secondary); scroll-margin: 16px; transition: box-shadow .3s; }
.kbqa-source.kbqa-flash { box-shadow: 0 0 0 3px var(--color-accent); }
.kbqa-source-head { font-weight: 600; overflow-wrap: anywhere; }
.kbqa-n { color: var(--color-accent); margin-right: 2px; }
.kbqa-meta { font-size: .76rem; color: var(--body-text-color-subdued); margin: 2px 0 6px; }
.kbqa-context { font-size: .8rem; color: var(--body-text-color-subdued); white-space: pre-wrap; }
.kbqa-passage { white-space: pre-wrap; overflow-wrap: anywhere; font-size: .88rem; line-height: 1.65; }
.kbqa-passage mark, .kbqa-sources mark { background: #fde68a; color: inherit; padding: 1px 0; border-radius: 2px; }
.dark .kbqa-passage mark { background: #a16207; }
.kbqa-more > summary { cursor: pointer; font-size: .84rem; color: var(--body-text-color-subdued); margin-top: 6px; }
#kbqa-input textarea { font-size: 1rem; }
#kbqa-send, #kbqa-stop, #kbqa-clear { min-width: 96px !important; }
#kbqa-examples .gallery-item, #kbqa-examples button { font-size: .86rem; }
.kbqa-hidden { display: none !important; }
.kbqa-passage.kbqa-md { white-space: normal; }
.kbqa-md p, .kbqa-doc-md p { margin: 0 0 .5em; }
.kbqa-md table, .kbqa-doc-md table { border-collapse: collapse; margin: .3em 0; font-size: .86em; }
.kbqa-md th, .kbqa-md td, .kbqa-doc-md th, .kbqa-doc-md td { border: 1px solid var(--border-color-primary);
  padding: 2px 6px; vertical-align: top; }
.kbqa-md pre, .kbqa-doc-md pre { white-space: pre-wrap; background: var(--background-fill-primary);
  padding: 6px 8px; border-radius: 6px; font-size: .84em; overflow-x: auto; }
.kbqa-math { font-family: var(--font-mono); font-size: .92em; background: rgba(99, 102, 241, .08);
  border-radius: 3px; padding: 0 2px; }
a.kbqa-open { color: var(--color-accent) !important; text-decoration: none !important; cursor: pointer;
  white-space: nowrap; }
#kbqa-docview { margin-bottom: 10px; }
.kbqa-docview { border: 2px solid var(--color-accent-soft); border-radius: var(--radius-lg); padding: 8px 10px;
  max-height: 60vh; overflow-y: auto; background: var(--block-background-fill); }
.kbqa-docview-head { position: sticky; top: -8px; background: var(--block-background-fill); font-weight: 600;
  padding: 4px 0; border-bottom: 1px solid var(--border-color-primary); margin-bottom: 6px; overflow-wrap: anywhere; }
.kbqa-doc-plain { white-space: pre-wrap; overflow-wrap: anywhere; font-size: .88rem; line-height: 1.65; }
.kbqa-docview mark { background: #fde68a; color: inherit; }
.kbqa-doc-results { list-style: none; margin: 0; padding: 0; font-size: .9rem; }
.kbqa-doc-results li { margin: 2px 0; padding: 4px 8px; border-radius: 4px; overflow-wrap: anywhere; }
.kbqa-doc-ok { background: rgba(22, 163, 74, .08); }
.kbqa-doc-bad { background: rgba(220, 38, 38, .08); }
#kbqa-convs label { width: 100%; font-size: .86rem; }
.kbqa-toast { position: fixed; bottom: 24px; left: 50%; transform: translateX(-50%); z-index: 1000;
  background: #111827; color: #fff; padding: 6px 14px; border-radius: 8px; font-size: .85rem; opacity: .92; }
"""

# Runs once when the page loads. Citation and copy links are handled by one delegated listener,
# because Gradio re-renders chat messages and strips inline handlers.
JS = r"""
() => {
  if (window.__kbqaReady) return;
  window.__kbqaReady = true;
  document.documentElement.lang = "zh-CN";
  const toast = (text) => {
    const el = document.createElement("div");
    el.className = "kbqa-toast"; el.textContent = text; document.body.appendChild(el);
    setTimeout(() => el.remove(), 1600);
  };
  const reveal = (id) => {
    const target = document.getElementById(id);
    if (!target) { toast("来源尚未加载 / Sources not loaded yet"); return; }
    for (let el = target.parentElement; el; el = el.parentElement) {
      if (el.tagName === "DETAILS") el.open = true;
    }
    const mark = target.querySelector("mark");
    (mark || target).scrollIntoView({ behavior: "smooth", block: "nearest" });
    target.classList.add("kbqa-flash");
    setTimeout(() => target.classList.remove("kbqa-flash"), 1800);
  };
  const copy = async (text) => {
    try {
      await navigator.clipboard.writeText(text);
    } catch (err) {
      const area = document.createElement("textarea");
      area.value = text; area.style.position = "fixed"; area.style.left = "-9999px";
      document.body.appendChild(area); area.select(); document.execCommand("copy"); area.remove();
    }
    toast("已复制 / Copied");
  };
  // "Open in document": hand the cited place to Python through a hidden textbox and button.
  window.__kbqaShowDocMark = () => {
    const mark = document.querySelector("#kbqa-docview .kbqa-first-mark") || document.querySelector("#kbqa-docview mark");
    const view = document.querySelector("#kbqa-docview");
    if (view) view.scrollIntoView({ behavior: "instant", block: "nearest" });
    if (mark) mark.scrollIntoView({ behavior: "instant", block: "center" });
  };
  document.addEventListener("click", (ev) => {
    const open = ev.target.closest && ev.target.closest("a.kbqa-open");
    if (!open) return;
    ev.preventDefault();
    ev.stopPropagation();
    const box = document.querySelector("#kbqa-open-req textarea, #kbqa-open-req input");
    const button = document.querySelector("#kbqa-open-btn");
    if (!box || !button) return;
    box.value = JSON.stringify({ doc: open.dataset.doc, start: Number(open.dataset.start),
                                 end: Number(open.dataset.end) });
    box.dispatchEvent(new Event("input", { bubbles: true }));
    setTimeout(() => button.click(), 30);
  }, true);
  document.addEventListener("click", (ev) => {
    const link = ev.target.closest && ev.target.closest("a.kbqa-cite, a.kbqa-copy, a.kbqa-sources-link");
    if (!link) return;
    ev.preventDefault();
    ev.stopPropagation();
    const id = (link.getAttribute("href") || "").slice(1);
    if (link.classList.contains("kbqa-copy")) {
      const source = document.getElementById(id);
      if (source) copy(source.textContent);
    } else {
      reveal(id);
    }
  }, true);
}
"""
