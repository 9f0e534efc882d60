"""HTML for the chat UI: answers with clickable citations, the sources panel, the status line.

Everything that comes from the document or the model is untrusted text. Answers go through
markdown-it with raw HTML, links and images switched off (so every ``<`` is escaped and nothing
is fetched from the network); everything else is escaped with ``html.escape``. Only the tags
written in this module reach the page. Gradio's chatbot sanitizer strips ``data-*`` attributes,
so citation links carry their target in ``href`` (``#kbqa-src-<turn>-<n>``).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markdown_it import MarkdownIt

from chat.answer import Answer, Citation, Notice, NoticeKind, SentenceCheck
from chat.passages import Passage
from kb.chunk import PAGE_BREAK, page_at, page_text
from kb.sentences import PLAIN_MARK, split_sentences, strip_citations

USER_PREVIEW_CHARS = 600
PageOf = Callable[[str, int], "int | None"]  # (document, offset) -> 1-based page, None without pages

_md = (
    MarkdownIt("commonmark", {"html": False, "breaks": True, "linkify": False, "typographer": False})
    .enable("table")
    .enable("strikethrough")
    .disable(["link", "image", "autolink", "reference"])
)

# Private-use characters mark flagged sentences in the text before markdown rendering.
_FLAG_START = "\ue000"
_FLAG_END = "\ue001"
_FLAG_ID_BASE = 0xE100
_PRIVATE = re.compile("[\ue000-\ue1ff]")
_TAG = re.compile(r"(<[^>]*>)")
_BLOCK_PREFIX = re.compile(r"^(?:#{1,6}\s+|>\s*|[-*+]\s+|\d+[.)]\s+)+")


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _one_line(markup: str) -> str:
    """Gradio's chatbot runs its own markdown over the content: an HTML block without blank lines
    passes through untouched. Newlines become character references (still newlines inside <pre>)."""
    return markup.replace("\r", "").replace("\n", "&#10;")


# --- user messages -----------------------------------------------------------------------
def render_user(text: str) -> str:
    text = _PRIVATE.sub("", text)
    shown = text if len(text) <= USER_PREVIEW_CHARS else text[:USER_PREVIEW_CHARS]
    more = ""
    if len(text) > USER_PREVIEW_CHARS:
        more = (f'<span class="kbqa-more-chars"> … （共 {len(text)} 字符 / {len(text)} characters）</span>')
    return _one_line(f'<div class="kbqa-user">{esc(shown)}{more}</div>')


# --- answers -----------------------------------------------------------------------------
def render_pending(label: str = "检索中… / Searching…") -> str:
    return f'<div class="kbqa-pending"><span class="kbqa-dots"></span> {esc(label)}</div>'


def render_streaming(text: str) -> str:
    body = _md.render(_PRIVATE.sub("", text))
    return _one_line(f'<div class="kbqa-answer kbqa-streaming">{body}<span class="kbqa-caret"></span></div>')


def render_error(message: str, *, title: str = "出错了 / Something went wrong") -> str:
    return _one_line(
        f'<div class="kbqa-error" role="alert"><strong>⚠ {esc(title)}</strong><div>{esc(message)}</div></div>'
    )


def render_stopped(partial: str) -> str:
    body = _md.render(_PRIVATE.sub("", partial)) if partial.strip() else ""
    return _one_line(f'<div class="kbqa-answer">{body}</div>'
                     '<div class="kbqa-notice">■ 已停止 / Stopped. 可以继续提问 / You can ask again.</div>')


def shown_notices(answer: Answer) -> list[Notice]:
    """Notices worth repeating under an answer; how to turn generation on is on the status line."""
    return [n for n in answer.notices if n.kind is not NoticeKind.SETUP and n.strip()]


@dataclass
class _Flag:
    start: int
    end: int
    check: SentenceCheck


def flagged_spans(text: str, sentences: Sequence[SentenceCheck]) -> list[_Flag]:
    """Where in ``text`` the flagged sentences are.

    ``Answer.sentences`` were made by splitting the same text, in order, with citation marks
    stripped; pair them with the spans again by text, in order.
    """
    pending = list(sentences)
    flags: list[_Flag] = []
    for span in split_sentences(text):
        if not pending:
            break
        if strip_citations(span.text) != pending[0].text:
            continue
        check = pending.pop(0)
        if check.supported or span.is_table_row:
            continue  # a marker inside a table row would break the table; it is listed below instead
        prefix = _BLOCK_PREFIX.match(span.text)
        start = span.start + (prefix.end() if prefix else 0)
        if start < span.end:
            flags.append(_Flag(start, span.end, check))
    return flags


def _cite_link(turn: int, n: int, citation: Citation | None) -> str:
    title = f"[{n}]"
    if citation is not None:
        quote = citation.quote if len(citation.quote) <= 120 else citation.quote[:120] + "…"
        title = f"{citation.section.replace(' > ', ' › ')}：{quote}"
    return (f'<a class="kbqa-cite" href="#kbqa-src-{turn}-{n}" title="{esc(title)}" '
            f'aria-label="来源 / source {n}">[{n}]</a>')


def _decorate(rendered: str, turn: int, citations: dict[int, Citation], flags: list[_Flag]) -> str:
    """Turn ``[n]`` into links and wrap flagged stretches, in text only (never inside tags)."""
    out: list[str] = []
    flag: _Flag | None = None
    in_code = 0
    pieces = _TAG.split(rendered)
    for i, piece in enumerate(pieces):
        if i % 2:  # a tag written by markdown-it: keep flagged stretches well nested by closing around it
            name = piece.strip("</>").split()[0].lower() if piece.strip("</>") else ""
            if name in ("code", "pre"):
                in_code += -1 if piece.startswith("</") else 1
            out.append(f"</span>{piece}{_flag_open(flag)}" if flag else piece)
            continue
        for part in re.split(f"([{_FLAG_START}{_FLAG_END}][\ue100-\ue1ff]?)", piece):
            if part.startswith(_FLAG_START):
                flag = flags[ord(part[1]) - _FLAG_ID_BASE] if len(part) > 1 else None
                out.append(_flag_open(flag))
            elif part.startswith(_FLAG_END):
                if flag:
                    out.append('<sup class="kbqa-flag-mark" aria-hidden="true">⚠</sup></span>')
                flag = None
            elif part:
                if not in_code:
                    part = PLAIN_MARK.sub(
                        lambda m: _cite_link(turn, int(m.group(1)), citations.get(int(m.group(1))))
                        if int(m.group(1)) in citations else m.group(0),
                        part,
                    )
                out.append(part)
    if flag:
        out.append("</span>")
    return "".join(out)


def _inline(text: str) -> str:
    """A sentence on its own line: list or heading markers dropped, inline markdown kept."""
    text = _PRIVATE.sub("", text)
    prefix = _BLOCK_PREFIX.match(text)
    return _md.renderInline(text[prefix.end():] if prefix else text).replace("\n", " ")


def _flag_open(flag: _Flag | None) -> str:
    if flag is None:
        return ""
    reason = flag.check.reason or "未被引用段落支持 / not supported by the cited passages"
    return f'<span class="kbqa-flag" title="{esc(reason)}">'


def render_answer(answer: Answer, turn: int) -> str:
    text = _PRIVATE.sub("", answer.text)
    flags = flagged_spans(text, answer.sentences) if not answer.refused else []
    marked = text
    for i, flag in reversed(list(enumerate(flags[:255]))):
        marked = (marked[: flag.start] + _FLAG_START + chr(_FLAG_ID_BASE + i) + marked[flag.start: flag.end]
                  + _FLAG_END + marked[flag.end:])
    citations = {c.n: c for c in answer.citations}
    body = _decorate(_md.render(marked), turn, citations, flags)
    parts = [f'<div class="kbqa-answer{" kbqa-refused" if answer.refused else ""}">{body}</div>']

    if answer.error:
        parts.append(
            '<div class="kbqa-error" role="alert"><strong>⚠ 回答未完成 / Answer incomplete</strong>'
            f"<div>{esc(answer.error)}</div><div>可以再问一次 / You can ask again.</div></div>"
        )
    flagged = answer.unsupported
    if flagged and not answer.refused:
        items = "".join(
            f'<li><span class="kbqa-flag-text">{_inline(s.text)}</span> <span class="kbqa-reason">— {esc(s.reason)}'
            f" (support {s.support:.2f})</span></li>"
            for s in flagged
        )
        parts.append(
            '<div class="kbqa-flagged"><strong>⚠ 以下句子未被引用段落明确支持 / Not clearly supported by the cited '
            f"passages:</strong><ul>{items}</ul></div>"
        )
    for notice in shown_notices(answer):
        parts.append(f'<div class="kbqa-notice kbqa-notice-{notice.kind.value}">ℹ {esc(notice)}</div>')
    if answer.standalone_question:
        parts.append(f'<div class="kbqa-notice">↻ 结合上文理解为 / Understood as: {esc(answer.standalone_question)}</div>')
    parts.append(_footer(answer, turn))
    return _one_line("".join(parts))


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    # Saved answers keep their timings to two decimals (Timings.to_dict): rounded the same way first, a
    # resumed conversation shows what was shown live (63.4951 ms would read 63 live and 64 resumed).
    value = round(value, 2)
    return f"{value / 1000:.1f} s" if value >= 1000 else f"{value:.0f} ms"


def _footer(answer: Answer, turn: int) -> str:
    t = answer.timings
    mode = "抽取 / extractive" if answer.mode != "generative" else f"生成 / generative · {answer.model or 'Ollama'}"
    bits = [esc(mode), f"检索 retrieval {_ms(t.retrieval_ms)}"]
    if answer.mode == "generative":
        bits.append(f"首字 first token {_ms(t.first_token_ms)}")
    bits.append(f"总计 total {_ms(t.total_ms)}")
    if answer.citations:
        bits.append(f'<a class="kbqa-sources-link" href="#kbqa-turn-{turn}">来源 / Sources ({len(answer.citations)})</a>')
    bits.append(f'<a class="kbqa-copy" href="#kbqa-copy-{turn}" title="复制回答和来源 / Copy the answer and its sources">'
                "复制 / Copy</a>")
    return f'<div class="kbqa-footer">{" · ".join(bits)}</div>'


def copy_text(answer: Answer) -> str:
    """What the copy link puts on the clipboard: the answer, then its sources."""
    lines = [answer.text.strip()]
    if answer.citations:
        lines += ["", "来源 / Sources:"]
        for c in answer.citations:
            lines.append(f"[{c.n}] {c.doc} › {c.section.replace(' > ', ' › ')} ({c.start}–{c.end}): “{c.quote}”")
    return "\n".join(lines)


# --- sources panel -----------------------------------------------------------------------
@dataclass
class SourceTurn:
    """What the sources panel needs from one turn of the conversation."""

    id: int
    question: str
    answer: Answer | None = None
    error: str | None = None


SOURCES_EMPTY = (
    '<div class="kbqa-sources-empty"><p><strong>来源 / Sources</strong></p>'
    "<p>回答中的 <span class=\"kbqa-cite-sample\">[1]</span> 可以点击：这里会显示对应的原文段落，"
    "引用的句子以高亮标出。</p><p>Click a <span class=\"kbqa-cite-sample\">[1]</span> in an answer to see the "
    "passage it cites here, with the quoted words highlighted.</p></div>"
)


def render_sources(turns: Sequence[SourceTurn], page_of: PageOf | None = None) -> str:
    shown = [t for t in turns if t.answer is not None]
    if not shown:
        return SOURCES_EMPTY
    blocks = []
    for i, turn in enumerate(reversed(shown)):
        assert turn.answer is not None
        blocks.append(_turn_sources(turn.id, turn.question, turn.answer, open_=i == 0, page_of=page_of))
    return '<div class="kbqa-sources-list">' + "".join(blocks) + "</div>"


def _turn_sources(turn: int, question: str, answer: Answer, *, open_: bool, page_of: PageOf | None = None) -> str:
    q = question.strip().replace("\n", " ")
    q = q if len(q) <= 80 else q[:80] + "…"
    cited_ids = set()
    items = []
    for c in answer.citations:
        cited_ids.add(c.passage.id)
        items.append(_passage_html(c.passage, f"kbqa-src-{turn}-{c.n}", f"[{c.n}]", c, page_of))
    if not items:
        items.append('<p class="kbqa-notice">此回答没有引用段落 / This answer cites no passages.</p>')
    others = [p for p in answer.passages if p.id not in cited_ids]
    more = ""
    if others:
        inner = "".join(_passage_html(p, f"kbqa-ret-{turn}-{j}", f"#{answer.passages.index(p) + 1}", None, page_of)
                        for j, p in enumerate(others))
        more = (f'<details class="kbqa-more"{"" if answer.citations else " open"}><summary>其他检索到的段落 / Other retrieved passages ({len(others)})'
                f"</summary>{inner}</details>")
    copy = f'<pre class="kbqa-copytext" id="kbqa-copy-{turn}" hidden>{esc(copy_text(answer))}</pre>'
    return (f'<details class="kbqa-turn" id="kbqa-turn-{turn}"{" open" if open_ else ""}>'
            f'<summary><span class="kbqa-q">问 / Q{turn}</span> {esc(q)}</summary>{"".join(items)}{more}{copy}</details>')


def _passage_html(p: Passage, anchor: str, label: str, citation: Citation | None,
                  page_of: PageOf | None = None) -> str:
    text = p.display_text  # a continued table's header row in front, so the table renders as a table
    shift = len(p.context) + 1 if p.context else 0
    lo = hi = -1
    quote_info = ""
    if citation is not None:
        lo, hi = citation.start - p.start, citation.end - p.start
        if not (0 <= lo < hi <= len(p.text) and p.text[lo:hi] == citation.quote):
            found = p.text.find(citation.quote)
            lo, hi = (found, found + len(citation.quote)) if found >= 0 and citation.quote else (-1, -1)
        if lo >= 0:
            lo, hi = lo + shift, hi + shift
        quote_info = f" · 引文 / quote {citation.start}–{citation.end}"
    body = render_markdown(text, lo, hi)
    section = esc(p.section.replace(" > ", " › ")) or "（无标题 / no heading）"
    at = citation.start if citation is not None else p.start
    page = page_of(p.doc, at) if page_of else None
    page_info = f" · p. {page}" if page else ""
    open_link = (f'<a class="kbqa-open" href="#kbqa-open" data-doc="{esc(p.doc)}" data-start="{at}" '
                 f'data-end="{citation.end if citation is not None else p.end}">在文档中打开 / Open in document</a>')
    return (
        f'<section class="kbqa-source" id="{anchor}">'
        f'<div class="kbqa-source-head"><span class="kbqa-n">{esc(label)}</span> <span class="kbqa-section">{section}'
        f"</span></div>"
        f'<div class="kbqa-meta">{esc(p.doc)}{page_info} · 段落 / passage {p.start}–{p.end}{quote_info} · {open_link}</div>'
        f'<div class="kbqa-passage kbqa-md">{body}</div></section>'
    )


# --- Markdown with a highlighted span ------------------------------------------------------
# Private-use characters mark the span and stand in for formulas while markdown-it runs.
_MARK_START = "\ue010"
_MARK_END = "\ue011"
_MATH_SLOT = "\ue012"
_MATH_ID_BASE = 0xE200
_MATH = re.compile(r"\$\$(?:.|\n)+?\$\$|\$(?=\S)[^$\n]+?(?<=\S)\$|\\\((?:.|\n)+?\\\)|\\\[(?:.|\n)+?\\\]")
_LINE_PREFIX = re.compile(r"[ \t]*(?:#{1,6}\s+|>\s*|[-*+]\s+|\d+[.)]\s+|\|\s*)*")
_MARKERS = re.compile(f"[{_MARK_START}{_MARK_END}]")


def render_markdown(text: str, lo: int = -1, hi: int = -1) -> str:
    """Document text rendered as Markdown (tables, code, lists), ``text[lo:hi]`` in ``<mark>``.

    Raw HTML stays escaped; formulas (``$…$``, ``$$…$$``, ``\\(…\\)``) are kept verbatim in a
    monospace span rather than mangled by emphasis rules.
    """
    # Same-length replacements only, so ``lo``/``hi`` still point at the same characters.
    text = _PRIVATE.sub("\ufffd", text).replace("\f", " ")
    if 0 <= lo < hi <= len(text):
        line_start = text.rfind("\n", 0, lo) + 1
        prefix = _LINE_PREFIX.match(text, line_start)
        if prefix and line_start <= lo < prefix.end():  # a marker before "|" or "#" would break the block
            lo = min(prefix.end(), hi)
        # ... and one after a table row's closing "|" would be read as a cell of its own and lost,
        # leaving the highlight open to the end of the document: end it inside the last cell.
        end = hi
        while end > lo and text[end - 1] in " \t":
            end -= 1
        row_start = text.rfind("\n", 0, end) + 1
        if end > lo and text[end - 1] == "|" and text[row_start:end].lstrip().startswith("|"):
            hi = end - 1
            while hi > lo and text[hi - 1] in " \t":
                hi -= 1
        text = text[:lo] + _MARK_START + text[lo:hi] + _MARK_END + text[hi:]
    formulas: list[str] = []

    def hold(match: re.Match[str]) -> str:
        if len(formulas) >= 256:  # one private character per formula; more stay as plain text
            return match.group(0)
        formulas.append(match.group(0))
        return _MATH_SLOT + chr(_MATH_ID_BASE + len(formulas) - 1)

    held = _MATH.sub(hold, text)
    rendered = _md.render(held)
    rendered = re.sub(
        f"{_MATH_SLOT}([\ue200-\ue2ff])",
        lambda m: f'<span class="kbqa-math">{esc(formulas[ord(m.group(1)) - _MATH_ID_BASE])}</span>',
        rendered,
    )
    return _highlight(rendered)


def _highlight(rendered: str) -> str:
    """Turn the span markers into ``<mark>`` around text only, so the HTML stays well nested."""
    out: list[str] = []
    inside = False
    first = True
    for i, piece in enumerate(_TAG.split(rendered)):
        if i % 2:
            out.append(piece)
            continue
        for part in re.split(f"([{_MARK_START}{_MARK_END}])", piece):
            if part == _MARK_START:
                inside = True
            elif part == _MARK_END:
                inside = False
            elif part:
                if inside and part.strip():
                    anchor = ' class="kbqa-first-mark"' if first else ""
                    first = False
                    out.append(f"<mark{anchor}>{part}</mark>")
                else:
                    out.append(part)
    return _MARKERS.sub("", "".join(out))


def render_document(name: str, text: str, start: int, end: int, *, paged: bool) -> str:
    """The whole document (for a PDF: the cited page) with ``text[start:end]`` highlighted."""
    head = esc(name)
    if paged:
        page = page_at(text, start) or 1
        pages = text.count(PAGE_BREAK) + 1
        lo, hi = page_text(text, page)
        body_text = text[lo:hi]
        s, e = max(start - lo, 0), min(end - lo, len(body_text))
        body = (f"{esc(body_text[:s])}<mark class=\"kbqa-first-mark\">{esc(body_text[s:e])}</mark>{esc(body_text[e:])}"
                if 0 <= s < e else esc(body_text))
        head += f" · p. {page} / {pages}"
        inner = f'<div class="kbqa-doc-plain">{body}</div>'
    elif name.lower().endswith((".md", ".markdown", ".mdx")):
        inner = f'<div class="kbqa-doc-md">{render_markdown(text, start, end)}</div>'
    else:
        s, e = max(start, 0), min(end, len(text))
        body = (f"{esc(text[:s])}<mark class=\"kbqa-first-mark\">{esc(text[s:e])}</mark>{esc(text[e:])}"
                if s < e else esc(text))
        inner = f'<div class="kbqa-doc-plain">{body}</div>'
    return (f'<div class="kbqa-docview" data-doc="{esc(name)}"><div class="kbqa-docview-head">📄 {head} · '
            f"{start}–{end}</div>{inner}</div>")


# --- status line -------------------------------------------------------------------------
def render_status(*, requested_llm: str, mode: str, mode_detail: str, index_ok: bool, index_detail: str,
                  documents: int = 0, chunks: int = 0, embedding: str = "") -> str:
    if mode == "generative":
        mode_html = f'<span class="kbqa-pill ok">生成模式 / Generative</span> {esc(mode_detail)}'
    elif requested_llm == "ollama":
        mode_html = (f'<span class="kbqa-pill warn">Ollama 不可用 / unavailable → 抽取模式 / extractive</span> '
                     f"{esc(mode_detail)}")
    else:
        mode_html = f'<span class="kbqa-pill info">抽取模式 / Extractive</span> {esc(mode_detail)}'
    if index_ok:
        index_html = (f'<span class="kbqa-pill ok">索引 / Index</span> {documents} 个文档 documents · {chunks} 个段落 '
                      f"chunks · {esc(embedding)}")
    else:
        hint = "" if "python -m ingest" in index_detail else " 运行 / Run: python -m ingest"
        index_html = f'<span class="kbqa-pill bad">索引不可用 / No index</span> {esc(index_detail)}{esc(hint)}'
    return (f'<div class="kbqa-status"><div class="kbqa-status-row">{mode_html}</div>'
            f'<div class="kbqa-status-row">{index_html}</div></div>')


def render_status_checking() -> str:
    return '<div class="kbqa-status"><div class="kbqa-status-row">正在检查 / Checking…</div></div>'
