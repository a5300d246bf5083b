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


def test_a_link_is_followed_and_kept_and_a_stream_is_written_as_it_is(tmp_path):
    """Renaming over the output replaced what was there: a link (`--json latest.json`, a
    link to the real file) became a file, and `--json /dev/stdout` (or /dev/null, run as
    root) replaced the device with a file. A link's file is written now, and a stream is
    written through."""
    import os
    import threading

    real, link = tmp_path / "real.json", tmp_path / "latest.json"
    real.write_text("old")
    link.symlink_to(real.name)
    atomic.write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.json", "real.json"]

    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(pipe.read_bytes()))
    reader.start()
    assert atomic.is_stream(pipe) and not atomic.is_stream(real)
    atomic.write_bytes(pipe, b"through")
    reader.join(10)
    assert got == [b"through"] and stat.S_ISFIFO(pipe.stat().st_mode)

    read_end, write_end = os.pipe()  # what /dev/stdout is to a command piped into another
    stdout = tmp_path / "stdout"
    stdout.symlink_to(f"/proc/self/fd/{write_end}")
    atomic.output_files(json=stdout)  # writable as it is: no file made beside it
    atomic.write_text(stdout, "{}\n")
    os.close(write_end)
    assert os.read(read_end, 100) == b"{}\n" and stdout.is_symlink()
    os.close(read_end)

    log = tmp_path / "log.txt"  # `--json /dev/stdout >> log.txt`: what was printed is kept
    with log.open("a") as shell:
        shell.write("printed first\n")
        shell.flush()
        atomic.write_text(f"/proc/self/fd/{shell.fileno()}", "{}\n")
        shell.write("printed last\n")
    assert log.read_text() == "printed first\n{}\nprinted last\n"


def test_work_towards_a_stream_is_kept_in_the_cache_not_beside_it(tmp_path, monkeypatch):
    """`classify predict --json /dev/stdout` kept its faces in `/dev/stdout.partial/`: a
    folder made in /dev (as root), or refused there. A stream has no folder of its own."""
    import os

    from facetrain.cli.common import work_towards

    monkeypatch.setenv("FACETRAIN_CACHE", str(tmp_path / "cache"))
    os.mkfifo(tmp_path / "pipe")
    with work_towards(tmp_path / "pipe", "classify-predict", "clf.npz") as parts:
        assert parts.parent == tmp_path / "cache" / "work"
    with work_towards(tmp_path / "out.json", "classify-predict", "clf.npz") as parts:
        assert parts == tmp_path / "out.json.partial"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "pipe"]  # work gone
