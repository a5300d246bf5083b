"""Atomic writes: all or nothing, and the same permissions a plain open() gives."""

import stat

import pytest

from facetrain import atomic


def test_written_file_gets_the_umask_mode_not_mkstemps_0600(tmp_path):
    atomic.write_text(tmp_path / "atomic.txt", "x")
    (tmp_path / "reference.txt").write_text("x")
    mode = stat.S_IMODE((tmp_path / "atomic.txt").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "reference.txt").stat().st_mode)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "data.bin"
    atomic.write_bytes(path, b"old")
    with pytest.raises(RuntimeError), atomic.atomic_open(path) as f:
        f.write(b"half of the new")
        raise RuntimeError("killed mid-write")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]
