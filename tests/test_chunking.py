"""Structure-aware chunking, checked on the real document and on small synthetic cases."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ingest.chunking import FAQ_TITLE, PREAMBLE_TITLE, chunk_markdown, chunk_plain_text, chunk_text
from ingest.frontmatter import parse_front_matter
from kb.chunk import HEADING_SEPARATOR, Chunk

DOC_PATH = Path(__file__).resolve().parents[1] / "kb" / "docs" / "llm-primer.md"
SOURCE = DOC_PATH.read_text(encoding="utf-8")
DOC = "llm-primer.md"
SIZES = (300, 600, 900, 2000)
SENTENCE_ENDS = tuple("。！？；.!?")

NUMBERED_SUBSECTIONS = (
    "Embedding：语义的向量空间映射",
    "Transformer 的词向量生成",
    "Transformer —— Encoder （编码器）",
    "Transformer —— Decoder（解码器）",
    "现代 LLM 核心技术",
)


@pytest.fixture(scope="module", params=SIZES, ids=lambda n: f"max{n}")
def sized(request: pytest.FixtureRequest) -> tuple[int, list[Chunk]]:
    return request.param, chunk_markdown(SOURCE, DOC, max_chars=request.param)


@pytest.fixture(scope="module")
def chunks() -> list[Chunk]:
    return chunk_markdown(SOURCE, DOC)


def path_elements(chunks: list[Chunk]) -> set[str]:
    return {part for c in chunks for part in c.section.split(HEADING_SEPARATOR) if part}


def chunk_at(chunks: list[Chunk], needle: str, source: str = SOURCE) -> Chunk:
    pos = source.index(needle)
    found = [c for c in chunks if c.start <= pos and pos + len(needle) <= c.end]
    assert len(found) == 1, f"{needle!r} is not inside exactly one chunk"
    return found[0]


def assert_well_formed(source: str, chunks: list[Chunk], max_chars: int) -> None:
    """Exact slices, trimmed, ordered, non-overlapping, within size, covering every non-space char."""
    assert [c.index for c in chunks] == list(range(len(chunks)))
    previous_end = 0
    covered = [False] * len(source)
    for c in chunks:
        assert source[c.start : c.end] == c.text
        assert c.text.strip(), "empty chunk"
        assert c.text == c.text.strip(), "whitespace should be trimmed by moving the offsets"
        assert len(c.text) <= max_chars
        assert c.start >= previous_end, "chunks overlap or are out of order"
        previous_end = c.end
        covered[c.start : c.end] = [True] * (c.end - c.start)
    lost = [i for i, ch in enumerate(source) if not ch.isspace() and ch != "\ufeff" and not covered[i]]
    assert not lost, f"characters outside every chunk, first at {lost[0]}: {source[lost[0] : lost[0] + 30]!r}"


def markdown_tables(source: str) -> list[list[tuple[int, int]]]:
    """Every table as a list of (start, end) offsets of its stripped rows."""
    tables: list[list[tuple[int, int]]] = []
    pos = 0
    current: list[tuple[int, int]] = []
    for line in source.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        stripped = body.strip()
        if stripped.startswith("|"):
            start = pos + len(body) - len(body.lstrip())
            current.append((start, start + len(stripped)))
        elif current:
            tables.append(current)
            current = []
        pos += len(line)
    if current:
        tables.append(current)
    return tables


# --- the real document ------------------------------------------------------------------------


def test_real_document_is_well_formed_at_every_size(sized: tuple[int, list[Chunk]]) -> None:
    max_chars, chunks = sized
    assert_well_formed(SOURCE, chunks, max_chars)
    assert all(c.doc == DOC for c in chunks)


def test_every_heading_is_in_some_heading_path(chunks: list[Chunk]) -> None:
    headings = re.findall(r"^#{1,6}[ \t]+(.+?)[ \t]*$", SOURCE, flags=re.M)
    assert len(headings) >= 15
    elements = path_elements(chunks)
    for heading in headings:
        title = re.sub(r"^\d+\.\s+", "", heading.replace("**", "")).rstrip("：")
        assert title in elements, title


def test_numbered_items_of_the_architecture_part_are_sub_sections(chunks: list[Chunk]) -> None:
    for title in NUMBERED_SUBSECTIONS:
        assert re.search(rf"^\d\. {re.escape(title)}$", SOURCE, flags=re.M), title
        assert any(c.section.startswith(f"大模型架构与核心技术 > {title}") for c in chunks), title


def test_bold_topics_have_their_own_heading_path(chunks: list[Chunk]) -> None:
    base = "大模型架构与核心技术 > 现代 LLM 核心技术 > "
    assert chunk_at(chunks, "显存占用 = $2 \\times 序列长度").section == base + "KV Cache"
    assert chunk_at(chunks, "旋转后的夹角就固定").section == base + "RoPE (旋转位置编码)"
    assert chunk_at(chunks, "路由根据输入的 Token 决定调用哪 1-2 个专家").section == base + "MoE (混合专家架构)"
    # Each of the three gets a chunk of its own: they are not lumped together.
    kv, rope, moe = (chunk_at(chunks, n) for n in ("KV Cache 是大模型", "RoPE 是目前", "MoE 架构（如"))
    assert len({kv.index, rope.index, moe.index}) == 3


def test_numbered_lists_that_are_not_sub_sections_stay_content(chunks: list[Chunk]) -> None:
    elements = path_elements(chunks)
    # The workflow list before the first heading, the numbered paragraphs of the first part and
    # the indented run-flow steps of the decoder are content, not headings.
    for prose in ("使用 Gemini 3 Pro", "我们利用 Generative AI", "大模型区别于常规模型的核心特征", "接收信号"):
        assert not any(e.startswith(prose) for e in elements), prose
    assert chunk_at(chunks, "需要绘图解释的部分").section == PREAMBLE_TITLE
    assert chunk_at(chunks, "涌现能力 (Emergent Abilities)。").section == "大模型基本概念与发展脉络"
    assert chunk_at(chunks, "**接收信号：**").section.startswith("大模型架构与核心技术 > Transformer —— Decoder")


def test_the_faq_after_the_rule_has_a_path(chunks: list[Chunk]) -> None:
    question = chunk_at(chunks, "这里的微调和我们在业务落地中常听说的")
    assert question.section.startswith(f"{FAQ_TITLE}{HEADING_SEPARATOR}大模型在后训练阶段")
    assert chunk_at(chunks, "则选择 **LoRA 微调**").section == question.section
    assert chunk_at(chunks, "核心。\n\n---").section == "总结与展望"  # the rule closes the part before it


def test_every_table_row_is_inside_one_chunk_with_its_header(sized: tuple[int, list[Chunk]]) -> None:
    _, chunks = sized
    tables = markdown_tables(SOURCE)
    assert len(tables) == 9
    for rows in tables:
        header = SOURCE[rows[0][0] : rows[0][1]]
        for start, end in rows:
            holder = [c for c in chunks if c.start <= start and end <= c.end]
            assert len(holder) == 1, f"row split across chunks: {SOURCE[start:end][:40]!r}"
            assert header in holder[0].text or header in holder[0].context
            assert header in holder[0].index_text()


def test_long_table_is_split_between_rows_with_header_in_context(chunks: list[Chunk]) -> None:
    first = chunk_at(chunks, "| **参数规模**")
    last = chunk_at(chunks, "| **算力需求**")
    assert first.index != last.index, "the 1300-character table cannot fit one 900-character chunk"
    assert last.context.startswith("| 维度           | 常规模型 (Traditional Models)")
    assert "| :------------- |" in last.context
    assert "常规模型 (Traditional Models)" not in last.text


@pytest.mark.parametrize("max_chars", [600, 900])
@pytest.mark.parametrize(
    ("intro", "header"),
    [
        ("以下是常规模型与大模型的对比表格：", "| 维度           | 常规模型 (Traditional Models)"),
        ("以下是 One-Hot 与 Embedding 的对比表格：", "| 维度         | One-Hot (独热编码)"),
        ("以下是 NLP 架构演进阶段的对比表格：", "| 阶段                 | 核心架构"),
        ("- **全参数微调 vs. LoRA：**", "| 维度 | Full Fine-tuning (全量) | LoRA (参数高效) |"),
        ("- **对比选型：**", "| 维度 | RAG (检索增强) | Fine-tuning (微调) |"),
        ("我们可以将其类比为“社会化教育”与“职业技能培训”的区别：", "| 维度         | 后训练中的 SFT"),
    ],
)
def test_table_intro_is_in_the_chunk_with_its_table(max_chars: int, intro: str, header: str) -> None:
    chunks = chunk_markdown(SOURCE, DOC, max_chars=max_chars)
    holder = chunk_at(chunks, intro)
    assert header in holder.text


def test_kv_cache_formula_is_findable(chunks: list[Chunk]) -> None:
    # The question a retriever must answer from one chunk: "KV Cache 的显存占用公式".
    holder = chunk_at(chunks, "显存占用 =")
    assert "KV Cache" in holder.text and "显存占用" in holder.index_text()
    assert holder.index_text().startswith("大模型架构与核心技术 > 现代 LLM 核心技术 > KV Cache\n")


def test_each_training_and_metrics_subsection_is_its_own_chunk(chunks: list[Chunk]) -> None:
    for heading in re.findall(r"^### (.+)$", SOURCE, flags=re.M):
        owners = [c for c in chunks if f"### {heading}" in c.text]
        assert len(owners) == 1
        title = re.sub(r"^\d+\.\s+", "", heading)
        # Labelled by the ### heading itself, not by a bullet inside it (e.g. "全参数微调 vs. LoRA").
        assert owners[0].section.split(HEADING_SEPARATOR)[1:] == [title]
        # No other ### heading shares the chunk.
        assert owners[0].text.count("\n### ") + owners[0].text.startswith("### ") == 1


def test_chunk_count_and_sizes_are_sensible(chunks: list[Chunk]) -> None:
    assert 25 <= len(chunks) <= 60
    assert min(len(c.text) for c in chunks) >= 120  # no near-empty chunks on this document


def test_chunking_is_deterministic() -> None:
    assert chunk_markdown(SOURCE, DOC) == chunk_markdown(SOURCE, DOC)


def test_crlf_and_cr_line_endings_keep_exact_offsets(chunks: list[Chunk]) -> None:
    for newline in ("\r\n", "\r"):
        source = SOURCE.replace("\n", newline)
        converted = chunk_markdown(source, DOC)
        assert_well_formed(source, converted, 900)
        # \r adds to chunk lengths, so cuts may move a little, but the outline found is the same.
        assert {c.section for c in converted} == {c.section for c in chunks}


# --- synthetic cases --------------------------------------------------------------------------


def long_paragraph() -> str:
    sentences = []
    for i in range(60):
        filler = "模型参数与数据规模共同决定能力" * (1 + i % 4)
        ender = "。！？；"[i % 4]
        if i % 5 == 0:
            sentences.append(f"Version 3.5 of model {i} beats e.g. GPT vs. Llama on {filler} tests. ")
        else:
            sentences.append(f"第{i}句讲到{filler}，并且成本为 1,000 元{ender}")
    return "".join(sentences)


@pytest.mark.parametrize("chunker", [chunk_markdown, chunk_plain_text])
@pytest.mark.parametrize("max_chars", [120, 200, 500])
def test_long_paragraph_is_split_only_at_sentence_ends(chunker, max_chars: int) -> None:
    text = long_paragraph()
    chunks = chunker(text, "p.md", max_chars=max_chars, min_chars=40)
    assert len(chunks) > 1
    assert_well_formed(text, chunks, max_chars)
    for c in chunks[:-1]:
        assert c.text.endswith(SENTENCE_ENDS), c.text[-20:]
        assert not c.text.endswith(("vs.", "e.g.")), "abbreviations are not sentence ends"
        assert not (c.text.endswith(".") and text[c.end : c.end + 1].isdigit()), "3.5 is not a sentence end"


def test_punctuation_inside_code_math_and_links_does_not_end_a_sentence() -> None:
    sentence = "先调用 `client. connect()` 再看 $a. b$ 和 [图. 1](http://x.org/a. b) 的说明，" + "内容" * 30 + "。"
    text = "## 用法\n\n" + sentence * 8
    # Each sentence is longer than max_chars, so it must be cut: at its comma, not inside the spans.
    chunks = chunk_markdown(text, "c.md", max_chars=100, min_chars=20)
    assert_well_formed(text, chunks, 100)
    assert all(c.text.endswith(("，", "。")) for c in chunks)


def test_an_over_long_sentence_is_cut_at_commas_then_anywhere() -> None:
    sentence = "，".join(f"第{i}个从句没有句号" for i in range(80)) + "。"
    chunks = chunk_markdown(sentence, "s.md", max_chars=100, min_chars=20)
    assert_well_formed(sentence, chunks, 100)
    assert all(c.text.endswith(("，", "。")) for c in chunks)

    unbroken = "字" * 1050
    chunks = chunk_markdown(unbroken, "u.md", max_chars=100)
    assert_well_formed(unbroken, chunks, 100)
    assert len(chunks) == 11


def big_table(rows: int = 40) -> str:
    lines = ["| 编号 | 名称 | 说明 |", "| :--- | :--- | :--- |"]
    lines += [f"| {i} | 条目{i} | 这是第 {i} 行的说明文字，用来把表格撑大 |" for i in range(rows)]
    return "\n".join(lines)


def test_table_larger_than_max_chars_is_split_with_header_in_context() -> None:
    text = "## 表格\n\n下面是一张很长的表：\n\n" + big_table() + "\n\n表后还有一句话。\n"
    chunks = chunk_markdown(text, "t.md", max_chars=300, min_chars=50)
    assert_well_formed(text, chunks, 300)
    header, separator = "| 编号 | 名称 | 说明 |", "| :--- | :--- | :--- |"
    first = chunk_at(chunks, "下面是一张很长的表", text)
    assert header in first.text and first.context == ""
    continued = [c for c in chunks if c.text.startswith("| ") and header not in c.text]
    assert len(continued) >= 3
    for c in continued:
        assert c.context == f"{header}\n{separator}"
        assert c.section == "表格"
    for rows in markdown_tables(text):
        for start, end in rows:
            holder = chunk_at(chunks, text[start:end], text)
            assert header in holder.text or header in holder.context


@pytest.mark.parametrize(
    "table",
    [
        "| a | b |\n| 1 | 2 | 3 |\n| only one |\n|\n| x | y |",  # no separator, ragged rows
        "| a | b |\n|---|\n| 1 |",  # separator with the wrong cell count
        "|||\n|-|-|-|-|\n| \\| escaped | pipe |",
        "| 半张表 \n继续 | 没有竖线开头\n",
        "a | b\n--|--\n1 | 2\n3 | 4",  # GFM table without outer pipes
    ],
)
def test_broken_tables_do_not_crash(table: str) -> None:
    text = f"# 标题\n\n介绍：\n\n{table}\n\n结尾。"
    for max_chars in (20, 60, 900):
        chunks = chunk_markdown(text, "b.md", max_chars=max_chars, min_chars=10)
        assert_well_formed(text, chunks, max_chars)


def test_empty_and_blank_text_give_no_chunks() -> None:
    for text in ("", "   ", "\n\n\r\n\t\u3000\n"):
        assert chunk_markdown(text, "e.md") == []
        assert chunk_plain_text(text, "e.md") == []


def test_markdown_without_headings() -> None:
    text = "第一段有一些内容。\n\n第二段也有内容，而且稍微长一点。\n\n- 列表项一\n- 列表项二\n"
    chunks = chunk_markdown(text, "n.md")
    assert_well_formed(text, chunks, 900)
    assert len(chunks) == 1 and chunks[0].section == ""


def test_heading_paths_nest_and_strip_markup() -> None:
    text = (
        "# 文档标题\n\n开头的说明文字比较长，" + "内容" * 60 + "。\n\n"
        "## **第一部分**：\n\n" + "正文。" * 50 + "\n\n"
        "### 1. 小节 A ###\n\n" + "小节内容。" * 30 + "\n\n"
        "## 第二部分\n\n" + "更多正文。" * 30 + "\n"
    )
    chunks = chunk_markdown(text, "h.md", max_chars=200, min_chars=40)
    assert_well_formed(text, chunks, 200)
    sections = [c.section for c in chunks]
    assert sections[0] == "文档标题"
    assert "文档标题 > 第一部分" in sections
    assert "文档标题 > 第一部分 > 小节 A" in sections
    assert sections[-1] == "文档标题 > 第二部分"


def test_a_details_block_is_a_section_titled_by_its_summary() -> None:
    # GitHub shows <details><summary>…</summary> as a titled, collapsible section: its text (and the
    # ATX sub-headings inside it) belong under that title, and </details> returns to the heading it is in.
    text = (
        "## 安装\n\n" + "通用的安装说明。" * 12 + "\n\n"
        "<details><summary>Windows <b>用户指南</b></summary>\n\n"
        "#### 安装依赖\n\n" + "在 Windows 上安装依赖的说明。" * 10 + "\n\n"
        "</details>\n\n"
        "<details>\n<summary>昇腾 NPU 用户指南</summary>\n"
        + "在昇腾 NPU 上请使用专用的环境变量来指定运算设备。" * 6 + "\n</details>\n\n"
        + "安装完成后的检查步骤，适用于所有平台。" * 8 + "\n\n"
        "## 使用\n\n" + "使用说明。" * 30 + "\n"
    )
    chunks = chunk_markdown(text, "d.md", max_chars=300, min_chars=60)
    assert_well_formed(text, chunks, 300)
    by_phrase = {phrase: chunk_at(chunks, phrase, text).section
                 for phrase in ("通用的安装说明", "在 Windows 上安装依赖", "专用的环境变量", "安装完成后的检查步骤", "使用说明")}
    assert by_phrase == {
        "通用的安装说明": "安装",
        "在 Windows 上安装依赖": "安装 > Windows 用户指南 > 安装依赖",
        "专用的环境变量": "安装 > 昇腾 NPU 用户指南",
        "安装完成后的检查步骤": "安装",
        "使用说明": "使用",
    }


def test_sections_under_different_top_level_headings_keep_their_paths() -> None:
    # Merged, two top-level sections of a README without a title would share a chunk labelled by no
    # heading at all; siblings under one parent still merge under it.
    body = "这一节的正文说明了一个独立的主题，内容足够长，可以单独成为一个检索块。" * 4
    text = f"## 许可\n\n{body}\n\n## 致谢\n\n{body}\n\n## 安装\n\n### 依赖\n\n{body}\n\n### 构建\n\n{body}\n"
    chunks = chunk_markdown(text, "r.md", max_chars=900, min_chars=120)
    assert_well_formed(text, chunks, 900)
    assert [c.section for c in chunks] == ["许可", "致谢", "安装"]


def test_numbered_items_become_sections_only_with_a_real_body() -> None:
    body = "   这一项下面有缩进的正文，长度足够成为一个小节的内容。" * 3
    text = (
        "## 总览\n\n"
        "1. 普通的一句话。\n2. 另一句话。\n\n"
        f"1. 第一主题\n{body}\n\n   - 子项目一\n   - 子项目二\n\n"
        f"2. 第二主题：副标题\n{body}\n\n"
        "3. 没有正文的标题\n\n"
        "结尾段落回到总览。\n"
    )
    chunks = chunk_markdown(text, "n.md", max_chars=200, min_chars=20)
    assert_well_formed(text, chunks, 200)
    assert chunk_at(chunks, "普通的一句话", text).section.startswith("总览")  # may join its first sub-section
    assert chunk_at(chunks, "子项目二", text).section == "总览 > 第一主题"
    assert chunk_at(chunks, "2. 第二主题", text).section == "总览 > 第二主题：副标题"
    assert chunk_at(chunks, "结尾段落", text).section.startswith("总览")
    assert "没有正文的标题" not in path_elements(chunks)


def bold_topics_section(n: int = 3) -> str:
    topics = "".join(
        f"- **主题{i}：副标题**\n  " + f"主题{i}的正文说明了一件具体的事情。" * 8 + "\n\n" for i in range(n)
    )
    return f"## 技术\n\n下面介绍几项技术。\n\n{topics}"


def test_bold_topics_of_a_big_section_get_chunks_of_their_own() -> None:
    text = bold_topics_section()
    assert 450 < len(text) < 900  # bigger than half a chunk, yet it would fit in one
    chunks = chunk_markdown(text, "t.md", max_chars=900, min_chars=60)
    assert_well_formed(text, chunks, 900)
    assert [c.section for c in chunks] == [f"技术 > 主题{i}" for i in range(3)]
    # The section intro is too small to stand alone and joins the first topic.
    assert chunks[0].text.startswith("## 技术")


def test_a_section_that_fits_comfortably_stays_whole() -> None:
    text = bold_topics_section()
    chunks = chunk_markdown(text, "t.md", max_chars=2000, min_chars=60)
    assert [c.section for c in chunks] == ["技术"]


def test_hash_lines_inside_code_fences_are_not_headings() -> None:
    text = "## 代码\n\n示例：\n\n```python\n# 不是标题\nx = 3.5. \nprint(x)\n```\n\n说明文字。\n"
    chunks = chunk_markdown(text, "c.md", max_chars=900)
    assert_well_formed(text, chunks, 900)
    assert all(c.section == "代码" for c in chunks)


def test_plain_text_uses_paragraphs_and_the_given_title() -> None:
    paragraphs = [f"这是第{i}段。它讲了一些事情，" + "内容" * 40 + "。" for i in range(8)]
    text = "\n\n".join(paragraphs)
    chunks = chunk_plain_text(text, "x.txt", max_chars=300, min_chars=50, title="报告")
    assert_well_formed(text, chunks, 300)
    assert all(c.section == "报告" for c in chunks)
    # Paragraph boundaries are preferred: no paragraph is split when each fits.
    for p in paragraphs:
        assert chunk_at(chunks, p, text)
    assert chunk_plain_text(text, "x.txt")[0].section == ""
    # Markdown syntax means nothing in plain text.
    assert chunk_plain_text("# 不是标题\n\n正文。", "y.txt")[0].section == ""


def test_hard_wrapped_plain_text_is_not_cut_at_line_breaks() -> None:
    text = (
        "Retrieval works best when a chunk holds whole sentences. This paragraph is\n"
        "hard-wrapped like text extracted from a PDF, so most line breaks fall in the\n"
        "middle of a sentence. A good splitter ignores them. It cuts where a sentence\n"
        "ends, which keeps every piece readable on its own.\n"
    ) * 3
    chunks = chunk_plain_text(text, "w.txt", max_chars=160, min_chars=40)
    assert_well_formed(text, chunks, 160)
    assert all(c.text.endswith(".") for c in chunks)


def test_invalid_sizes_are_rejected() -> None:
    with pytest.raises(ValueError, match="max_chars"):
        chunk_markdown("正文。", "v.md", max_chars=0)
    with pytest.raises(ValueError, match="min_chars"):
        chunk_markdown("正文。", "v.md", min_chars=-1)
    # A minimum above the maximum cannot be honoured, but is not an error.
    assert chunk_markdown("正文。", "v.md", max_chars=200, min_chars=500)[0].text == "正文。"


# --- every document of the development corpus (and the seed), whatever its shape --------------

DEV_DIR = Path(__file__).resolve().parents[1] / "eval" / "corpora" / "dev" / "docs"
CORPUS = [*sorted(DEV_DIR.iterdir()), DOC_PATH]
FORMATS = {".md": "markdown", ".mdx": "markdown", ".rst": "rst"}
_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})")
_LINK_OR_IMAGE = re.compile(r"!?\[[^\]\n]*\]\([^)\n]*\)|https?://\S+|<[^>\n]+>|[A-Za-z0-9+/]{80,}=*")


def corpus_chunks(path: Path, max_chars: int = 900) -> tuple[str, list[Chunk]]:
    text = path.read_text(encoding="utf-8")
    fmt = FORMATS[path.suffix]
    return text, chunk_text(text, path.name, fmt, max_chars=max_chars, min_chars=120,
                            title=parse_front_matter(text).title)


def fenced_blocks(source: str) -> list[tuple[int, int]]:
    """(start, end) of every fenced code block, fences included (Markdown; reStructuredText has none)."""
    blocks, pos, opened, marker = [], 0, None, ""
    if re.search(r"^\.\. ", source, flags=re.M):
        return []
    for line in source.splitlines(keepends=True):
        fence = _FENCE.match(line)
        if opened is None and fence:
            opened, marker = pos + len(line) - len(line.lstrip()), fence.group(1)
        elif opened is not None and line.strip().startswith(marker) and not line.strip().strip(marker[0]):
            blocks.append((opened, pos + len(line.rstrip())))
            opened = None
        pos += len(line)
    return blocks


def outside(blocks: list[tuple[int, int]], start: int) -> bool:
    return not any(s <= start < e for s, e in blocks)


@pytest.fixture(scope="module", params=CORPUS, ids=lambda p: p.name)
def corpus_doc(request: pytest.FixtureRequest) -> tuple[Path, str, list[Chunk]]:
    text, chunks = corpus_chunks(request.param)
    return request.param, text, chunks


def test_dev_corpus_is_shipped_with_every_shape() -> None:
    suffixes = {p.suffix for p in CORPUS}
    assert len(CORPUS) == 10 and suffixes == {".md", ".mdx", ".rst"}


def test_corpus_chunks_slice_the_source_within_size(corpus_doc: tuple[Path, str, list[Chunk]]) -> None:
    _, text, chunks = corpus_doc
    assert chunks
    body = parse_front_matter(text).end
    assert_well_formed(text[:body].replace(text[:body], " " * body) + text[body:], chunks, 900)


def test_corpus_code_blocks_below_the_limit_stay_whole(corpus_doc: tuple[Path, str, list[Chunk]]) -> None:
    _, text, chunks = corpus_doc
    for start, end in fenced_blocks(text):
        if end - start <= 900:
            holders = [c for c in chunks if c.start <= start and end <= c.end]
            assert len(holders) == 1, f"code block split: {text[start : start + 60]!r}"


def test_corpus_code_comments_are_never_headings(corpus_doc: tuple[Path, str, list[Chunk]]) -> None:
    _, text, chunks = corpus_doc
    elements = path_elements(chunks)
    for start, end in fenced_blocks(text):
        for line in text[start:end].splitlines()[1:]:
            if line.strip().startswith("#"):
                assert line.strip().lstrip("#").strip() not in elements or re.search(
                    rf"^ {{0,3}}#+ +{re.escape(line.strip().lstrip('#').strip())}\s*$", text, flags=re.M
                ), line


def test_corpus_table_rows_travel_with_their_header(corpus_doc: tuple[Path, str, list[Chunk]]) -> None:
    _, text, chunks = corpus_doc
    code = fenced_blocks(text)
    for rows in markdown_tables(text):
        if not outside(code, rows[0][0]) or len(rows) < 2 or not re.match(r"^\|?\s*:?-", text[rows[1][0]:rows[1][1]]):
            continue  # a diagram or a pipe inside code, or a row without a separator: not a table
        header = text[rows[0][0] : rows[0][1]]
        for start, end in rows:
            holder = [c for c in chunks if c.start <= start and end <= c.end]
            if end - start > 900:
                continue  # a single row over the limit must be cut
            assert len(holder) == 1, f"row split across chunks: {text[start:end][:40]!r}"
            assert header in holder[0].text or header in holder[0].context


def test_corpus_link_lists_are_not_candidates(corpus_doc: tuple[Path, str, list[Chunk]]) -> None:
    _, _, chunks = corpus_doc
    for c in chunks:
        own = _LINK_OR_IMAGE.sub(" ", c.text)
        own = re.sub(r"^#+ .*$", " ", own, flags=re.M)
        words = re.findall(r"[\u4e00-\u9fff]|[A-Za-z0-9]+", own)
        if c.searchable:
            assert len(words) >= 2, f"a searchable chunk with no words of its own: {c.text[:80]!r}"
        else:
            assert len(words) < 8, f"prose marked unsearchable: {c.text[:80]!r}"


def test_corpus_index_text_has_no_markup_noise(corpus_doc: tuple[Path, str, list[Chunk]]) -> None:
    _, _, chunks = corpus_doc
    for c in chunks:
        indexed = c.index_text()
        assert not re.search(r"</?(details|summary|img|p|div|a|br)\b", indexed), indexed[:200]
        assert "[![" not in indexed and "](http" not in indexed and "img.shields.io" not in indexed
        assert not re.search(r"[A-Za-z0-9+/]{80,}", indexed), "base64 blob in the indexed text"
        assert not re.search(r"^\s*(:::|!!! |> \[!)", indexed, flags=re.M), "admonition marker indexed"


def test_badges_and_table_of_contents_are_kept_but_not_searchable() -> None:
    text, chunks = corpus_chunks(DEV_DIR / "zh_llamafactory_readme.md")
    first = chunks[0]
    assert "img.shields.io" in first.text and not first.searchable  # kept, for citations
    toc = chunk_at(chunks, "- [项目特色](#项目特色)", text)
    assert not toc.searchable
    assert all(c.searchable for c in chunks if "## 项目特色" in c.text)


def test_faq_questions_merge_yet_each_answer_stays_with_its_question() -> None:
    text, chunks = corpus_chunks(DEV_DIR / "zh_ms_swift_faq.md")
    questions = [m.start() for m in re.finditer(r"^### Q\d+", text, flags=re.M)]
    assert len(questions) > 100
    assert len(chunks) < len(questions), "sibling questions should share chunks"
    assert any(c.text.count("### Q") >= 2 for c in chunks)
    bounds = [m.start() for m in re.finditer(r"^#{1,3} ", text, flags=re.M)] + [len(text)]
    for start in questions:
        end = next(b for b in bounds if b > start)
        section = text[start:end].rstrip()
        if len(section) <= 900:
            holder = chunk_at(chunks, section, text)
            # Merged questions are labelled by their common parent, never by one sibling.
            if holder.text.count("### Q") >= 2:
                assert "Q" not in holder.section.split(HEADING_SEPARATOR)[-1][:2]


def test_api_reference_request_and_response_headings_merge() -> None:
    _, chunks = corpus_chunks(DEV_DIR / "en_ollama_api.md")
    pairs = [c for c in chunks if "##### Request" in c.text and "##### Response" in c.text]
    assert pairs, "no small request/response pair shares a chunk"
    for c in pairs:  # labelled by the example both belong to, not by "Request"
        assert not c.section.endswith(("> Request", "> Response"))


def test_chunker_version_is_derived_from_its_parameters() -> None:
    import ingest.chunking as chunking

    assert re.fullmatch(r"[0-9a-f]{16}", chunking.CHUNKER_VERSION)
    params = chunking._parameters()
    assert "chunking._PER_CHUNK" in params and "markup.MIN_PROSE_WORDS" in params
    assert "chunk.MIN_UNIT_CHARS" in params  # which sentences get a vector: matched to them by order
    changed = dict(params, **{"chunking._PER_CHUNK": params["chunking._PER_CHUNK"] + 1})
    assert chunking._version_of(changed) != chunking.CHUNKER_VERSION
    assert chunking._version_of(params) == chunking.CHUNKER_VERSION


def test_chinese_numbering_is_the_outline_of_plain_text() -> None:
    body = "这一部分的正文有好几句话。每一句都在讲具体的事情，" + "内容" * 40 + "。"
    text = f"一、项目背景\n\n{body}\n\n（一）现状分析\n\n{body}\n\n二、实施方案\n\n{body}\n\n一、不是标题的句子。\n"
    chunks = chunk_plain_text(text, "r.txt", max_chars=200, min_chars=40, title="报告")
    assert_well_formed(text, chunks, 200)
    sections = {c.section for c in chunks}
    assert {"报告 > 项目背景", "报告 > 项目背景 > 现状分析", "报告 > 实施方案"} <= sections
    assert "不是标题的句子" not in path_elements(chunks)  # it ends like a sentence: prose


@pytest.mark.parametrize(
    ("opener", "closer"),
    [(":::info[Hybrid search]", ":::"), ('!!! note "Hybrid search"', ""), ("> [!NOTE]", "")],
)
def test_an_admonition_stays_with_its_title_and_is_not_indexed_as_markup(opener: str, closer: str) -> None:
    prose = "Some stores combine keyword and vector search on their side. " * 3
    body = ("    " if opener.startswith("!!!") else "> " if opener.startswith(">") else "") + prose
    text = f"## Search\n\n{prose * 2}\n\n{opener}\n\n{body}\n\n{closer}\n\nAfter the note, more text follows here.\n"
    chunks = chunk_markdown(text, "a.md", max_chars=300, min_chars=40)
    assert_well_formed(text, chunks, 300)
    holder = chunk_at(chunks, opener, text)
    assert body.strip()[:40] in holder.text, "the admonition's marker was cut off from its body"
    assert not re.search(r"^\s*(:::|!!! |> \[!)", holder.index_text(), flags=re.M)


def test_sentence_splitter_shares_the_chunkers_abbreviations() -> None:
    from kb.sentences import split_sentences

    text = "Use e.g. LoRA vs. full tuning. Version 3.5 works, a.k.a. the fast path. 然后停止。Done."
    assert [s.text for s in split_sentences(text)] == [
        "Use e.g. LoRA vs. full tuning.", "Version 3.5 works, a.k.a. the fast path.", "然后停止。", "Done."
    ]


def _html_table_readme(rows: int) -> str:
    body = "\n".join(f"  <tr>\n    <td><a href=\"https://example.org/m{i}\">Model-{i}</a></td>\n    <td>{i}B</td>\n"
                     f"    <td>tmpl{i}</td>\n  </tr>" for i in range(rows))
    return ("# Readme\n\nIntro.\n\n## Models\n\nThe supported models:\n\n<table>\n  <thead>\n"
            f"  <tr><th>Model</th><th>Size</th><th>Template</th></tr>\n  </thead>\n{body}\n</table>\n\n## Next\n\nMore.\n")


def test_an_html_table_is_split_between_its_rows_with_its_header_in_context() -> None:
    """READMEs write wide tables in HTML, a row over several lines: a chunk never ends inside a row, and one
    that starts inside the table carries the header row, as for a Markdown table."""
    text = _html_table_readme(40)
    chunks = chunk_markdown(text, "r.md")
    table = [c for c in chunks if "<td>" in c.text]
    assert len(table) > 1
    header = "<tr><th>Model</th><th>Size</th><th>Template</th></tr>"
    assert header in table[0].text and "The supported models:" in table[0].text  # the intro stays with it
    for chunk in table:
        assert text[chunk.start : chunk.end] == chunk.text
        assert chunk.text.count("<tr>") == chunk.text.count("</tr>"), "a row cut in two"
        assert chunk is table[0] or chunk.context == header
    assert table[-1].text.endswith("</table>")


def test_an_unclosed_html_table_ends_at_the_next_heading() -> None:
    text = "# A\n\n<table>\n<tr><td>x</td></tr>\n\n## B\n\nProse b.\n\n## C\n\nProse c.\n\n<table><tr><td>y</td></tr></table>\n"
    assert [c.section for c in chunk_markdown(text, "d.md", max_chars=40)] == ["A", "A > B", "A > C", "A > C"]


def test_a_bare_heading_joins_what_it_heads_not_the_intro_before_it():
    """A short intro followed by "## Install on Linux" and directly "### Requirements": the intro's chunk
    ended with the heading (so the dev corpus's API reference had a chunk ending in "### Examples") and
    the requirements chunk started without it."""
    text = ("# Guide\n\nThis guide explains how to install and configure the tool on every platform we support "
            "today.\n\n## Install on Linux\n\n### Requirements\n\nYou need Python 3.10 or newer, a C compiler and "
            "about 2 GB of free disk space for the model files.\nInstall the system packages first with your "
            "distribution's package manager before going on.\n\n### Steps\n\nRun the installer script, then open a "
            "new shell so that the PATH change takes effect in it.\nCheck the installation with the version command, "
            "which prints the installed version and exits.\n")
    chunks = chunk_markdown(text, "g.md", max_chars=900, min_chars=120)
    assert_well_formed(text, chunks, 900)
    for chunk in chunks:
        assert not chunk.text.rstrip().splitlines()[-1].startswith("#"), chunk.text
    holder = next(c for c in chunks if "## Install on Linux" in c.text)
    assert "### Requirements" in holder.text


def test_an_html_heading_line_in_markdown_is_a_heading():
    """READMEs centre their title in HTML ('<div align="center"> … <h1>灵犀-VL</h1> … </div>'); read as a
    paragraph, the title rooted no path (the preamble's placeholder did) and '<h2>快速开始</h2>' headed nothing."""
    from kb.sentences import split_sentences

    text = ('<div align="center">\n<img src="logo.png" width="200">\n<h1 align="center">灵犀-VL</h1>\n</div>\n\n'
            "灵犀-VL 是一个支持图文理解的多模态模型，提供 7B 与 14B 两种规模，可在单卡上部署推理。\n\n<h2>快速开始</h2>\n\n"
            "安装依赖后运行 demo.py 即可体验，支持命令行与网页两种方式，首次运行会自动下载权重文件。\n")
    chunks = chunk_markdown(text, "r.md", max_chars=200, min_chars=40)
    assert_well_formed(text, chunks, 200)
    assert {c.section for c in chunks} == {"灵犀-VL", "灵犀-VL > 快速开始"}
    assert [s.text for s in split_sentences(text) if s.is_heading] == ['<h1 align="center">灵犀-VL</h1>',
                                                                       "<h2>快速开始</h2>"]
