"""kb.cache_files: a cache file is replaced whole or not at all, and read whole or as missing."""

from __future__ import annotations

import pytest

from kb.cache_files import replaced_atomically


def test_a_file_is_replaced_whole_and_a_failed_write_leaves_the_old_one(tmp_path):
    path = tmp_path / "cache" / "view.npz"
    with replaced_atomically(path) as fh:
        fh.write(b"first")
    assert path.read_bytes() == b"first"
    with pytest.raises(RuntimeError), replaced_atomically(path) as fh:
        fh.write(b"half of the sec")
        raise RuntimeError("disk full")
    assert path.read_bytes() == b"first"
    assert [p.name for p in path.parent.iterdir()] == ["view.npz"], "no temporary file left behind"


def test_a_file_cut_short_is_read_as_missing_with_a_warning(tmp_path, caplog):
    import numpy as np

    from kb.cache_files import opened_npz, read_whole

    def load(path):
        with opened_npz(path) as npz:
            return npz["rows"].tolist()

    path = tmp_path / "rows.npz"
    assert read_whole(path, load, "row cache") is None and not caplog.text  # missing: nothing to say
    with replaced_atomically(path) as fh:
        np.savez(fh, rows=np.arange(1000))
    assert read_whole(path, load, "row cache") == list(range(1000))
    path.write_bytes(path.read_bytes()[:500])
    assert read_whole(path, load, "row cache") is None
    assert "Ignoring unreadable row cache" in caplog.text
