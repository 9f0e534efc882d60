"""Reading files: formats by suffix, YAML front matter as metadata, clear reasons for unusable files."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ingest.chunking import chunk_text
from ingest.frontmatter import parse_front_matter
from ingest.reader import Candidate, Skipped, SourceDocument, discover, read_document

DEV_DOCS = Path(__file__).resolve().parents[1] / "eval" / "corpora" / "dev" / "docs"
MAX_BYTES = 20_000_000


def read(path: Path) -> SourceDocument | Skipped:
    return read_document(Candidate(path, path.name), MAX_BYTES)


def test_markdown_variants_and_rst_are_discovered_with_their_format(tmp_path: Path) -> None:
    for name in ("a.md", "b.markdown", "c.mdx", "d.rst", "e.txt"):
        (tmp_path / name).write_text("Title\n=====\n\nSome text here.\n", encoding="utf-8")
    (tmp_path / "f.xyz").write_text("nope", encoding="utf-8")
    found, skipped = discover([tmp_path])
    assert sorted(c.name for c in found) == ["a.md", "b.markdown", "c.mdx", "d.rst", "e.txt"]
    assert [s.path.name for s in skipped] == ["f.xyz"]
    formats = {c.name: read(c.path).format for c in found}  # type: ignore[union-attr]
    assert formats == {"a.md": "markdown", "b.markdown": "markdown", "c.mdx": "markdown", "d.rst": "rst",
                       "e.txt": "text"}


def test_front_matter_is_metadata_not_text(tmp_path: Path) -> None:
    path = tmp_path / "page.mdx"
    path.write_text(
        '---\ntitle: "Widget Guide"\nid: widgets\ntags: [a, b]\ndescription: How widgets work.\n---\n\n'
        "Widgets turn sprockets. Each widget has a spindle.\n\n## Setup\n\nInstall the widget first.\n",
        encoding="utf-8",
    )
    doc = read(path)
    assert isinstance(doc, SourceDocument)
    assert doc.metadata == {"title": "Widget Guide", "id": "widgets", "tags": "a, b",
                            "description": "How widgets work."}
    assert doc.title == "Widget Guide"
    chunks = chunk_text(doc.text, doc.name, doc.format, max_chars=60, min_chars=10, title=doc.title)
    assert chunks
    for c in chunks:
        assert doc.text[c.start : c.end] == c.text  # offsets still slice the file itself
        assert "id: widgets" not in c.text and "---" not in c.text
        assert c.section.startswith("Widget Guide")  # no "#" title: the front matter's title roots the path
    assert any(c.section == "Widget Guide > Setup" for c in chunks)


def test_front_matter_only_file_is_skipped_not_indexed(tmp_path: Path) -> None:
    path = tmp_path / "empty.md"
    path.write_text("---\ntitle: Nothing here\nauthor: me\n---\n\n", encoding="utf-8")
    result = read(path)
    assert isinstance(result, Skipped)
    assert "only YAML front matter" in result.reason
    # The chunker agrees on its own: no chunk of YAML.
    assert chunk_text(path.read_text(encoding="utf-8"), "empty.md", "markdown") == []


@pytest.mark.parametrize(
    "text",
    [
        "---\n\nA rule first, then text.\n\n---\n\nMore.\n",  # a rule, not a mapping
        "---\njust a sentence\n---\nbody\n",  # YAML, but a string: not front matter
        "--- not front matter\nbody\n",
    ],
)
def test_a_leading_rule_is_not_front_matter(text: str) -> None:
    assert parse_front_matter(text).end == 0
    chunks = chunk_text(text, "r.md", "markdown", max_chars=300, min_chars=10)
    assert chunks[0].start < 10


def test_dev_mdx_front_matter_becomes_metadata() -> None:
    path = DEV_DOCS / "en_haystack_retrievers.mdx"
    doc = read(path)
    assert isinstance(doc, SourceDocument)
    assert doc.format == "markdown" and doc.title
    front = parse_front_matter(doc.text)
    assert front.end > 0
    chunks = chunk_text(doc.text, doc.name, doc.format, title=doc.title)
    assert min(c.start for c in chunks) >= front.end


def test_a_text_file_named_pdf_gets_one_clear_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "report.pdf"
    path.write_text("This is plain text, not a PDF.\n", encoding="utf-8")
    with caplog.at_level(logging.DEBUG):
        result = read(path)
    assert isinstance(result, Skipped)
    line = str(result)
    assert "report.pdf" in line and "not a valid PDF" in line
    assert "\n" not in line and "RetryError" not in line
    assert not [r for r in caplog.records if r.name.startswith("pypdf")]


def test_a_damaged_pdf_is_reported_once_without_pypdf_noise(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<<>>\n%%EOF garbage")
    with caplog.at_level(logging.DEBUG):
        result = read(path)
    assert isinstance(result, Skipped)
    assert "broken.pdf" in str(result) and "PDF" in result.reason
    assert "RetryError" not in result.reason
    assert len([r for r in caplog.records if r.name.startswith("pypdf")]) <= 1


def test_rst_headings_become_the_outline(tmp_path: Path) -> None:
    path = tmp_path / "guide.rst"
    path.write_text(
        "=========\nThe Guide\n=========\n\nIntro text of the guide, long enough to matter here.\n\n"
        "Install\n-------\n\nRun the installer. It asks two questions.\n\n"
        ".. code-block:: bash\n\n   # not a heading\n   pip install thing\n\n"
        "安装说明\n~~~~\n\n中文小节的正文内容。\n\n"
        "Usage\n-------\n\nCall it with ``--help``::\n\n   thing --help\n   # still code\n\nDone.\n",
        encoding="utf-8",
    )
    doc = read(path)
    assert isinstance(doc, SourceDocument) and doc.format == "rst"
    chunks = chunk_text(doc.text, doc.name, doc.format, max_chars=120, min_chars=10)
    sections = {c.section for c in chunks}
    assert "The Guide > Install" in sections
    assert "The Guide > Install > 安装说明" in sections  # a short CJK underline still counts
    assert "The Guide > Usage" in sections
    assert not any("not a heading" in s or "still code" in s for s in sections)
    code = next(c for c in chunks if "pip install thing" in c.text)
    assert ".. code-block:: bash" in code.text and "# not a heading" in code.text
    for c in chunks:
        assert doc.text[c.start : c.end] == c.text


HTML_PAGE = """<!doctype html><html><head><meta charset="gb18030"><title>灯塔</title><style>p {}</style></head>
<body><nav><a href="/">首页</a> <a href="/docs">文档</a></nav>
<h1>Lighthouse guide</h1><p>The tower was built in 1893 from local granite.<br>It is twenty-one metres tall.</p>
<h2>Visiting</h2><ul><li>Open from May to September.</li><li>Bring a coat: <code>wind &gt; 8 Bft</code></li></ul>
<h2>Prices</h2><table><tr><th>Visitor</th><th>Price</th></tr><tr><td>Adult</td><td>4 EUR</td></tr>
<tr><td>Child</td><td>free</td></tr></table>
<pre><code># install
pip install lighthouse</code></pre>
<footer>Copyright 2026</footer><script>var tracking = 1;</script></body></html>"""


def test_an_html_page_is_read_as_markdown_with_its_outline(tmp_path: Path) -> None:
    """Flattened to text, a page's headings were lines like any other and its table one cell per line;
    as Markdown they are headings, a pipe table and a code block, and navigation, footer and scripts go."""
    path = tmp_path / "guide.html"
    path.write_bytes(HTML_PAGE.encode("gb18030"))
    doc = read(path)
    assert isinstance(doc, SourceDocument) and doc.format == "markdown"
    assert doc.text.startswith("# Lighthouse guide\n\nThe tower was built in 1893 from local granite.\n")
    assert "## Visiting\n\n- Open from May to September.\n- Bring a coat: `wind > 8 Bft`" in doc.text
    assert "| Visitor | Price |\n| --- | --- |\n| Adult | 4 EUR |\n| Child | free |" in doc.text
    assert "```\n# install\npip install lighthouse\n```" in doc.text
    assert not any(noise in doc.text for noise in ("首页", "Copyright", "tracking", "p {}"))
    chunks = chunk_text(doc.text, doc.name, doc.format, max_chars=120)
    assert "Lighthouse guide > Prices" in {c.section for c in chunks}


def test_a_word_document_is_read_as_markdown_with_its_headings_lists_and_tables(tmp_path: Path) -> None:
    docx = pytest.importorskip("docx")
    document = docx.Document()
    document.add_heading("Lighthouse", 0)
    document.add_heading("Visiting", 1)
    document.add_paragraph("Open from May to September.")
    document.add_paragraph("Bring a coat", style="List Bullet")
    table = document.add_table(rows=2, cols=2)
    for (r, c), text in {(0, 0): "Visitor", (0, 1): "Price", (1, 0): "Adult", (1, 1): "4 EUR"}.items():
        table.cell(r, c).text = text
    document.add_heading("History", 2)
    document.add_paragraph("Built in 1893.")
    path = tmp_path / "guide.docx"
    document.save(str(path))
    doc = read(path)
    assert isinstance(doc, SourceDocument) and doc.format == "markdown"
    assert doc.text == ("# Lighthouse\n\n# Visiting\n\nOpen from May to September.\n\n- Bring a coat\n\n"
                        "| Visitor | Price |\n| --- | --- |\n| Adult | 4 EUR |\n\n## History\n\nBuilt in 1893.")
    assert "Visiting > History" in {c.section for c in chunk_text(doc.text, doc.name, doc.format, max_chars=60)}


def test_html_pages_keep_their_content_in_forms_article_headers_and_spanned_columns(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text("<body><header><a href='/'>Site</a></header><form><article><header><h1>Release notes</h1>"
                    "</header><p>Fixed the lamp.</p></article></form><table><tr><th colspan='2'>Name</th>"
                    "<th>Size</th></tr><tr><td>Llama</td><td>3</td><td>8B</td></tr></table></body>", encoding="utf-8")
    doc = read(path)
    assert isinstance(doc, SourceDocument)
    assert doc.text.startswith("# Release notes\n\nFixed the lamp.") and "Site" not in doc.text
    assert "| Name | Name | Size |\n| --- | --- | --- |\n| Llama | 3 | 8B |" in doc.text


def test_an_html_pages_sidebar_menu_goes_and_a_prose_aside_stays(tmp_path: Path) -> None:
    """A documentation page's sidebar (an ``<aside>`` of links, or ``role="navigation"``) was read as its
    first paragraph, and that list of endpoint names ranked for every question; a callout ``<aside>`` is
    content."""
    path = tmp_path / "api.html"
    path.write_text(
        "<body><aside class='sidebar'><ul><li><a href='#auth'>鉴权</a></li><li><a href='#chat'>对话补全</a></li>"
        "<li><a href='#embed'>文本向量</a></li></ul></aside><div role='navigation'><a href='/'>首页</a> · "
        "<a href='/docs'>文档中心</a></div><main><h1>接口参考</h1><p>所有接口均使用 HTTPS。</p>"
        "<aside><p>注意：密钥只在创建时显示一次，请妥善保存。</p></aside></main></body>", encoding="utf-8")
    doc = read(path)
    assert isinstance(doc, SourceDocument)
    assert doc.text.startswith("# 接口参考\n\n所有接口均使用 HTTPS。")
    assert "密钥只在创建时显示一次" in doc.text
    assert not any(menu in doc.text for menu in ("鉴权", "对话补全", "首页", "文档中心"))


RST_TABLES = """任务队列
========

.. list-table:: 任务参数
   :header-rows: 1
   :widths: 20 10 10 60

   * - 参数
     - 类型
     - 默认值
     - 说明
   * - ``priority``
     - int
     - 5
     - 从 0（最低）到 9（最高），
       数值越大越先执行。
   * - ``timeout``
     - int
     - 300
     - 超时秒数

.. csv-table:: Limits
   :header: "Plan", "Requests per minute"

   Free, 60
   "Team, annual", 600

.. list-table:: Broken

   * - a
     - b
   * - c

After the tables.
"""


def test_rst_list_and_csv_tables_are_read_as_pipe_tables(tmp_path: Path) -> None:
    """A list-table's rows are nested bullets, which were read as one-word list items ("- int", "- 5": the
    default dropped as saying nothing) without their column names; as a pipe table each row is answered
    with its header, also in a later chunk of a long table (a grid table, padded to its widest cell, was
    cut as code and lost its header). A table whose rows do not line up is left as it was."""
    from chat.extractive import compose, select
    from tests.test_extractive import _one_passage

    path = tmp_path / "queue.rst"
    path.write_text(RST_TABLES, encoding="utf-8")
    doc = read(path)
    assert isinstance(doc, SourceDocument) and doc.format == "rst"
    assert "任务参数\n\n| 参数 | 类型 | 默认值 | 说明 |\n| --- | --- | --- | --- |\n" in doc.text
    assert "| ``priority`` | int | 5 | 从 0（最低）到 9（最高），数值越大越先执行。 |" in doc.text
    assert ".. list-table:: 任务参数" not in doc.text and "| Team, annual | 600 |" in doc.text
    assert ".. list-table:: Broken\n\n   * - a\n     - b\n   * - c\n\nAfter the tables." in doc.text
    chunk = next(c for c in chunk_text(doc.text, doc.name, doc.format) if "priority" in c.text)
    passage, bm25 = _one_passage(chunk.text, chunk.section)
    assert compose(select("priority 的默认值是多少？", [passage], bm25)).startswith(
        "``priority`` — 类型：int，默认值：5")
    later = [c for c in chunk_text(doc.text, doc.name, doc.format, max_chars=120) if "``timeout``" in c.text]
    assert later and later[0].context.startswith("| 参数 | 类型 | 默认值 | 说明 |")


def test_an_html_callout_aside_with_a_link_stays(tmp_path: Path) -> None:
    path = tmp_path / "ops.html"
    path.write_text("<body><h1>Deploying</h1><p>Run two replicas.</p><aside><p>Warning: <a href='/tls'>TLS must be "
                    "enabled in production deployments</a>.</p></aside><nav role='navigation'><h2>Checklist</h2>"
                    "<p>Back up the database first.</p></nav></body>", encoding="utf-8")
    doc = read(path)
    assert isinstance(doc, SourceDocument)
    assert "TLS must be enabled in production deployments" in doc.text


# Written for this test, in the markup Sphinx (alabaster) generates.
SPHINX_PAGE = """<html><body>
<div class="related" role="navigation"><h3>Navigation</h3><ul><li><a href="genindex.html">index</a></li><li><a href="next.html">next</a> |</li></ul></div>
<div class="document"><div class="body" role="main">
<section id="tidepool-cache"><h1>tidepool.cache — Caching utilities<a class="headerlink" href="#tidepool-cache" title="Link">¶</a></h1>
<p>Tidepool caches function results in memory or in Redis.</p>
<div class="admonition note"><p class="admonition-title">Note</p><p>Values are serialized with pickle.</p></div>
<section id="api"><h2>API reference<a class="headerlink" href="#api">¶</a></h2>
<dl class="py function"><dt class="sig sig-object py" id="tidepool.cache.memoize"><span>tidepool.cache.</span><span>memoize</span>(<em>ttl=300</em>, <em>maxsize=128</em>)<a class="headerlink" href="#tidepool.cache.memoize">¶</a></dt>
<dd><p>Cache the results of a function.</p><dl class="field-list"><dt class="field-odd">Parameters</dt><dd><ul><li><p><strong>ttl</strong> (<em>int</em>) – Seconds to keep a result. Defaults to 300.</p></li><li><p><strong>maxsize</strong> (<em>int</em>) – Entries kept. Defaults to 128.</p></li></ul></dd></dl></dd></dl>
<dl class="py class"><dt class="sig sig-object py" id="tidepool.cache.RedisBackend"><em>class</em> tidepool.cache.RedisBackend(<em>url</em>, <em>socket_timeout=2.0</em>)</dt>
<dd><p>A Redis-backed store.</p>
<dl class="py method"><dt class="sig sig-object py" id="tidepool.cache.RedisBackend.invalidate">invalidate(<em>pattern</em>)</dt><dd><p>Remove matching keys.</p><p>Returns: The number of entries removed.</p></dd></dl>
</dd></dl>
</section></section></div></div>
<div class="sphinxsidebar" role="navigation"><h3>Table of contents</h3><ul><li><a href="#">tidepool.cache</a></li><li><a href="#api">API</a></li><li><a href="x">More</a></li></ul></div>
<div class="footer">&copy; 2024 Tidepool. Created using Sphinx.</div>
</body></html>
"""


def test_a_sphinx_page_is_read_without_its_chrome_and_with_its_api_entries_as_sections(tmp_path: Path) -> None:
    """A Sphinx page (written for this test, in the markup Sphinx generates): its "Navigation" bar (a
    role=navigation block with a heading), sidebar and footer were content, every heading ended in "¶",
    "Note" stood as a sentence of its own, and all API entries ran together under "API reference"."""
    from chat.extractive import compose, select
    from tests.test_extractive import _one_passage

    path = tmp_path / "cache.html"
    path.write_text(SPHINX_PAGE, encoding="utf-8")
    doc = read(path)
    assert isinstance(doc, SourceDocument)
    assert doc.text.startswith("# tidepool.cache — Caching utilities\n\nTidepool caches")
    assert "¶" not in doc.text and "Created using Sphinx" not in doc.text and "genindex" not in doc.text
    assert "Table of contents" not in doc.text and "Navigation" not in doc.text
    assert "Note: Values are serialized with pickle." in doc.text
    assert "### tidepool.cache.memoize\n\ntidepool.cache.memoize(ttl=300, maxsize=128)" in doc.text
    assert "#### tidepool.cache.RedisBackend.invalidate" in doc.text
    chunks = chunk_text(doc.text, doc.name, doc.format, max_chars=300)
    sections = {c.section for c in chunks}
    assert "tidepool.cache — Caching utilities > API reference > tidepool.cache.memoize" in sections
    assert any(s.endswith("tidepool.cache.RedisBackend > tidepool.cache.RedisBackend.invalidate") for s in sections)
    chunk = next(c for c in chunks if "Returns:" in c.text)
    passage, bm25 = _one_passage(chunk.text, chunk.section)
    assert "number of entries removed" in compose(select("What does invalidate return?", [passage], bm25))
