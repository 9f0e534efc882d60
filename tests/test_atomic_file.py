"""kb.atomic_file: a cache file is replaced whole or not at all."""

from __future__ import annotations

import pytest

from kb.atomic_file import replaced_atomically


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
