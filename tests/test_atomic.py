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


def test_a_disk_with_no_room_for_a_new_file_is_a_full_disk_not_a_refusal(tmp_path, monkeypatch):
    """A disk out of room (or of inodes) when the temporary file is made is the full disk it
    is, which commands say how to get over and long jobs keep their work for; a folder
    that may not be written is refused, naming it."""
    import errno
    import tempfile

    def no_room(*a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", no_room)
    with pytest.raises(OSError) as e:
        atomic.write_text(tmp_path / "a.txt", "x")
    assert e.value.errno == errno.ENOSPC and not isinstance(e.value, atomic.OutputError)

    def no_right(*a, **kw):
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", no_right)
    with pytest.raises(atomic.OutputError, match="a.txt: cannot write here"):
        atomic.write_text(tmp_path / "a.txt", "x")
