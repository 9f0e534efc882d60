"""The Documents service (ingest.library): real files, real ingest, real Chroma and BM25."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ingest.library import DocumentError, Library, sanitize_filename
from ingest.pipeline import ingest_lock
from kb.chunk import page_at, page_text
from kb.index import KnowledgeBase
from kb.settings import Settings
from tests.conftest import fill_disk, make_settings

CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")

# Written for these tests (not from the dev corpus): facts no other document holds.
ROVER_MD = """# 火星车档案

## 祝融号

祝融号火星车于二〇二一年五月着陆在乌托邦平原南部。它的设计寿命是九十个火星日，实际工作超过一年。

## 能源

祝融号依靠四块太阳能电池板供电，并用正十一烷相变材料在夜间保温。
"""

PDF_PAGES = [
    "第一章 灯塔\n\n石塘灯塔建于一八九三年，塔高二十一米，用花岗岩砌成。",
    "第二章 守灯人\n\n最后一位守灯人姓林，他在一九九八年灯塔自动化之后离开了小岛。",
]


def make_pdf(path: Path, pages: list[str]) -> Path:
    """A real PDF with Chinese text on several pages (fpdf2 with a CJK font)."""
    fpdf = pytest.importorskip("fpdf")
    if not CJK_FONT.exists():
        pytest.skip(f"CJK font {CJK_FONT} is not installed (Debian: fonts-wqy-microhei)")
    pdf = fpdf.FPDF()
    pdf.add_font("wqy", fname=str(CJK_FONT))
    pdf.set_font("wqy", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    pdf.output(str(path))
    return path


@pytest.fixture(scope="module")
def lib_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(tmp_path_factory.mktemp("library"), max_doc_mb=0.05)


@pytest.fixture(scope="module")
def library(lib_settings: Settings) -> Library:
    return Library(lib_settings, busy_wait=1.0)


def folder_files(settings: Settings) -> list[str]:
    return sorted(p.name for p in settings.docs_dir.iterdir())


def indexed_ids(settings: Settings, name: str) -> tuple[set[str], set[str], set[str]]:
    """(ids in the manifest, ids in BM25, ids stored in Chroma) of one document."""
    kb = KnowledgeBase(settings)
    manifest = kb.read_manifest()
    entry = manifest.docs.get(name) if manifest else None
    ids = set(entry.chunk_ids()) if entry else set()
    view = kb.view()
    bm25_ids = {cid for cid in view.bm25.ids if view.chunks[cid].doc == name}
    stored = {cid for cid in kb.stored_ids() if cid in ids}
    return ids, bm25_ids, stored


def test_sanitize_filename() -> None:
    assert sanitize_filename("../../etc/passwd") == "passwd"
    assert sanitize_filename("..\\..\\win.ini") == "win.ini"
    assert sanitize_filename("报告 📄 final.MD") == "报告_final.md"
    assert sanitize_filename("a\x00b.md") == "ab.md"
    assert sanitize_filename(".hidden.md") == "hidden.md"  # hidden files are never ingested
    assert sanitize_filename("🚀.md") == "document.md"
    long = sanitize_filename("长" * 300 + ".pdf")
    assert long.endswith(".pdf") and len(long) <= 120


def test_add_lists_and_indexes(library: Library, lib_settings: Settings) -> None:
    steps: list[tuple[float, str]] = []
    result = library.add("火星车.md", ROVER_MD.encode(), progress=lambda f, m: steps.append((f, m)))
    assert result.status == "added" and result.chunks >= 1, result
    assert any("Embedding" in m for _, m in steps) and steps[-1][0] == 1.0
    assert max(f for f, _ in steps) == 1.0 and all(0 <= f <= 1 for f, _ in steps)
    info = library.get("火星车.md")
    assert (info.kind, info.size, info.chunks, info.skipped) == ("md", len(ROVER_MD.encode()), result.chunks, None)
    assert info.indexed_at is not None
    ids, bm25_ids, stored = indexed_ids(lib_settings, "火星车.md")
    assert ids and ids == bm25_ids == stored

    from chat import Assistant

    passages = Assistant(lib_settings, llm="none").retrieve("祝融号靠什么供电？", k=3)
    assert passages[0].doc == "火星车.md" and "太阳能" in passages[0].text


def test_same_file_twice_is_unchanged(library: Library, lib_settings: Settings) -> None:
    library.add("twice.md", "# 两次\n\n同一个文件上传两次，不会产生重复的段落。".encode())
    generation = KnowledgeBase(lib_settings).read_manifest().generation
    again = library.add("twice.md", "# 两次\n\n同一个文件上传两次，不会产生重复的段落。".encode())
    assert again.status == "unchanged" and "already" in again.message
    assert KnowledgeBase(lib_settings).read_manifest().generation == generation


def test_name_clash_is_a_choice(library: Library, lib_settings: Settings) -> None:
    library.add("clash.md", "# 版本一\n\n第一版的内容讲的是潮汐发电站。".encode())
    old_ids, _, _ = indexed_ids(lib_settings, "clash.md")
    with pytest.raises(DocumentError) as err:
        library.add("clash.md", "# 版本二\n\n第二版的内容讲的是风力发电机。".encode())
    assert err.value.status == 409 and "replace" in str(err.value) and "keep both" in str(err.value)
    assert "潮汐" in (lib_settings.docs_dir / "clash.md").read_text(encoding="utf-8")  # not overwritten

    both = library.add("clash.md", "# 版本二\n\n第二版的内容讲的是风力发电机。".encode(), on_conflict="keep_both")
    assert both.status == "kept_both" and both.name == "clash (2).md"
    assert "潮汐" in (lib_settings.docs_dir / "clash.md").read_text(encoding="utf-8")

    replaced = library.add("clash.md", "# 版本三\n\n第三版讲的是地热能。".encode(), on_conflict="replace")
    assert replaced.status == "replaced"
    new_ids, bm25_ids, stored = indexed_ids(lib_settings, "clash.md")
    assert new_ids and not (new_ids & old_ids) and new_ids == bm25_ids == stored
    assert not (old_ids & KnowledgeBase(lib_settings).stored_ids())  # the old version's chunks are gone


@pytest.mark.parametrize(
    ("filename", "data", "status", "words"),
    [
        ("empty.md", b"", 400, "empty"),
        ("program.md", b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00" * 50, 400, "binary"),
        ("big.md", ("大" * 20000).encode(), 413, "limit"),
        ("fake.pdf", b"<html>not a pdf</html>", 400, "not a PDF"),
        ("tool.exe", b"MZ\x90\x00", 400, "not supported"),
        ("../../etc/passwd", b"root:x:0:0", 400, "not supported"),
    ],
)
def test_bad_input_is_refused_before_writing(library: Library, lib_settings: Settings, filename: str, data: bytes,
                                             status: int, words: str) -> None:
    before = folder_files(lib_settings)
    with pytest.raises(DocumentError) as err:
        library.add(filename, data)
    assert err.value.status == status and words in str(err.value)
    assert folder_files(lib_settings) == before  # nothing written, not even a temporary file


def test_hostile_names_stay_in_the_folder(library: Library, lib_settings: Settings) -> None:
    result = library.add("../../etc/passwd.md", "# 路径\n\n这个文件的名字想逃出文件夹，但不会成功。".encode())
    assert result.name == "passwd.md" and (lib_settings.docs_dir / "passwd.md").is_file()
    emoji = library.add("🌋 火山 notes.md", "# 火山\n\n冰岛的火山在冬天也会喷发，形成冰下湖。".encode())
    assert emoji.name == "火山_notes.md" and library.get("火山_notes.md").chunks >= 1
    with pytest.raises(DocumentError) as err:
        library.delete("../../etc/passwd")
    assert err.value.status == 404


def test_delete_removes_file_and_chunks(library: Library, lib_settings: Settings) -> None:
    library.add("gone.md", "# 将被删除\n\n这份文档讲的是一座已经拆除的木桥。".encode())
    ids, _, _ = indexed_ids(lib_settings, "gone.md")
    assert ids
    library.delete("gone.md")
    assert "gone.md" not in folder_files(lib_settings)
    assert "gone.md" not in [d.name for d in library.list()]
    view = KnowledgeBase(lib_settings).view()
    assert not (ids & set(view.bm25.ids)) and not any(c.doc == "gone.md" for c in view.chunks.values())
    assert not (ids & KnowledgeBase(lib_settings).stored_ids())
    with pytest.raises(DocumentError) as err:
        library.delete("gone.md")
    assert err.value.status == 404


def test_busy_ingest_loses_nothing(library: Library, lib_settings: Settings) -> None:
    library.add("keep.md", "# 保留\n\n忙的时候替换文件，原来的内容必须还在。".encode())
    before = folder_files(lib_settings)
    with ingest_lock(lib_settings):  # another ingest (e.g. python -m ingest) holds the lock
        with pytest.raises(DocumentError) as err:
            library.add("new-while-busy.md", "# 新\n\n等待中的上传。".encode())
        assert err.value.status == 409 and "try again" in str(err.value).lower()
        with pytest.raises(DocumentError):
            library.add("keep.md", "# 覆盖\n\n新的内容。".encode(), on_conflict="replace")
        with pytest.raises(DocumentError):
            library.delete("keep.md")
    assert folder_files(lib_settings) == before
    assert "原来的内容" in (lib_settings.docs_dir / "keep.md").read_text(encoding="utf-8")
    assert library.get("keep.md").chunks >= 1


def test_concurrent_uploads_both_land(library: Library, lib_settings: Settings) -> None:
    other = Library(lib_settings, busy_wait=60.0)  # a second session's Library: same lock, waits
    errors: list[BaseException] = []

    def upload(lib: Library, name: str, text: str) -> None:
        try:
            lib.add(name, text.encode())
        except BaseException as exc:  # collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=(library, "one.md", "# 一\n\n第一份并发上传的文档，讲海豚。")),
               threading.Thread(target=upload, args=(other, "two.md", "# 二\n\n第二份并发上传的文档，讲鲸鱼。"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    names = {d.name: d for d in library.list()}
    assert names["one.md"].chunks >= 1 and names["two.md"].chunks >= 1


def test_pdf_keeps_pages(library: Library, lib_settings: Settings, tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "灯塔.pdf", PDF_PAGES)
    result = library.add("灯塔.pdf", pdf.read_bytes())
    assert result.chunks >= 1
    from ingest.reader import Candidate, read_document

    doc = read_document(Candidate(library.path_of("灯塔.pdf"), "灯塔.pdf"), 10**7)
    offset = doc.text.index("守灯人姓林")
    assert page_at(doc.text, offset) == 2 and page_at(doc.text, doc.text.index("花岗岩")) == 1
    lo, hi = page_text(doc.text, 2)
    assert "守灯人姓林" in doc.text[lo:hi] and "花岗岩" not in doc.text[lo:hi]
    view = KnowledgeBase(lib_settings).view()
    chunks = [c for c in view.chunks.values() if c.doc == "灯塔.pdf"]
    chunk = next(c for c in chunks if "守灯人姓林" in c.text)
    assert doc.text[chunk.start:chunk.end] == chunk.text  # chunk offsets point into the paged text
    assert page_at(doc.text, chunk.start + chunk.text.index("守灯人姓林")) == 2


def test_reindex_picks_up_hand_copied_files(library: Library, lib_settings: Settings) -> None:
    (lib_settings.docs_dir / "copied.md").write_text("# 手动复制\n\n这个文件是直接复制进文件夹的。", encoding="utf-8")
    (lib_settings.docs_dir / "notes.xyz").write_text("unsupported", encoding="utf-8")
    listed = {d.name: d for d in library.list()}
    assert listed["copied.md"].chunks == 0 and "not indexed" in (listed["copied.md"].skipped or "")
    assert "unsupported" in (listed["notes.xyz"].skipped or "")
    one = library.reindex("copied.md")
    assert "Re-indexed" in one.message
    assert library.get("copied.md").chunks >= 1
    assert "up to date" in library.reindex("copied.md").message
    with pytest.raises(DocumentError):
        library.reindex("nope.md")
    (lib_settings.docs_dir / "notes.xyz").unlink()


def test_uploads_folder_setting(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, uploads_dir=tmp_path / "docs" / "uploads")
    result = Library(settings).add("上传.md", "# 上传\n\n上传的文件放在单独的文件夹里。".encode())
    assert result.name == "uploads/上传.md"
    assert (tmp_path / "docs" / "uploads" / "上传.md").is_file()
    assert [d.name for d in Library(settings).list()] == ["uploads/上传.md"]


def test_kept_documents_keep_their_text(tmp_path: Path) -> None:
    # The Chroma document is the cleaned index text; kept chunks must come back as exact source slices.
    settings = make_settings(tmp_path)
    library = Library(settings)
    library.add("first.md", "# 第一\n\n## 小节\n\n第一份文档的正文，有一个 **加粗** 的词。".encode())
    library.add("second.md", "# 第二\n\n第二份文档的正文。".encode())  # a second ingest keeps first.md
    view = KnowledgeBase(settings).view()
    source = (settings.docs_dir / "first.md").read_text(encoding="utf-8")
    for chunk in (c for c in view.chunks.values() if c.doc == "first.md"):
        assert chunk.text == source[chunk.start:chunk.end]


def test_an_upload_onto_a_full_disk_says_so_and_changes_nothing(small_disk) -> None:
    disk = small_disk(8)
    settings = make_settings(disk / "kb")
    library = Library(settings)
    library.add("first.md", "# 第一\n\n第一份文档的正文。".encode())
    before = [(d.name, d.chunks) for d in library.list()]
    fill_disk(disk, leave_kb=64)
    big = ("# 大文件\n\n" + "这一行是正文，用来把磁盘写满。\n" * 20000).encode()  # ~0.9 MB, more than is free
    with pytest.raises(DocumentError, match=r"Could not save 'big.md'.*the disk is full \(\d+\.\d MB free\)\. Nothing was changed") as caught:
        library.add("big.md", big)
    assert caught.value.status == 507
    with pytest.raises(DocumentError, match="the disk is full") as caught:  # replacing: the old file stays
        library.add("first.md", big, on_conflict="replace")
    assert caught.value.status == 507
    assert "第一份文档" in (settings.docs_dir / "first.md").read_text(encoding="utf-8")
    assert [p.name for p in settings.docs_dir.iterdir()] == ["first.md"]  # no half-written file
    assert [(d.name, d.chunks) for d in Library(settings).list()] == before
