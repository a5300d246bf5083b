"""Crash-safe file writes: a reader sees the old file or the new one, never half of one.

Every file facetrain produces goes through here, so that a `kill -9` at any moment leaves
no truncated output behind and a resumed job can trust whatever exists on disk.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from facetrain.errors import FacetrainError

# The mode a plain open() would give a new file. mkstemp makes its temporary 0600, which the
# rename would carry over: an exported model or a run folder unreadable to the user's group.
# Read once, at import, because os.umask can only be read by setting it.
_UMASK = os.umask(0o022)
os.umask(_UMASK)
NEW_FILE_MODE = 0o666 & ~_UMASK


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", *, fsync: bool = False) -> Iterator[IO]:
    """Open a temporary sibling of `path`; on success rename it over `path`, with the
    permissions a plain open() would have given it. A link is followed: the file it points
    at is written and the link kept. What is not a file (`/dev/stdout`, `/dev/null`, a
    named pipe) is written as it is: renaming over it had replaced a device with a file."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give the name of a file to write")
    if is_stream(path):  # appended to: `>` and `>>` keep what the command printed before it
        for printed in (sys.stdout, sys.stderr):
            printed.flush()  # what was printed first comes first
        with open(path, mode.replace("w", "a"), encoding=None if "b" in mode else "utf-8") as f:
            yield f
        return
    path = target(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        if no_room(e):  # no room, not no right: said as such
            raise
        raise OutputError(f"{path}: cannot write here ({e.strerror or e})") from None
    encoding = None if "b" in mode else "utf-8"
    try:
        with os.fdopen(fd, mode, encoding=encoding) as f:
            os.chmod(tmp, NEW_FILE_MODE)
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def target(path: str | os.PathLike) -> Path:
    """The file that writing `path` replaces: a link's own file (the link is kept)."""
    path = Path(path)
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def is_stream(path: str | os.PathLike) -> bool:
    """Whether `path` is (or links to) something written as a stream, not a file: a
    terminal, `/dev/null`, a named pipe, or an open descriptor (`/dev/stdout`), whatever
    it is open on: `--json /dev/stdout >> log.txt` had replaced log.txt."""
    if _descriptor(path):
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:  # not there (yet): a file to make
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


_DESCRIPTOR = re.compile(r"/dev/(stdout|stderr|fd/\d+)|/proc/[^/]+/fd/\d+")


def _descriptor(path: str | os.PathLike) -> bool:
    """Whether `path`, or a link on the way to what it names, is an open descriptor's name."""
    here = os.path.abspath(path)
    for _ in range(40):  # as many links as the system follows
        if _DESCRIPTOR.fullmatch(here):
            return True
        if not os.path.islink(here):
            return False
        here = os.path.normpath(os.path.join(os.path.dirname(here), os.readlink(here)))
    return False


def no_room(e: BaseException) -> bool:
    """The disk (or a quota) is full: an OSError of no space, or SQLite's "database or disk
    is full". Files are written whole or not at all, so the same command goes on once
    there is room: said so, and a long job's kept work stays for it."""
    import sqlite3

    if isinstance(e, sqlite3.Error):
        return getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)


class OutputError(FacetrainError):
    """An output that cannot be written where it was asked for."""


def output_folder(
    path: str | os.PathLike, *, inputs=(), own: tuple[str, ...] = (), kind: str = "output"
) -> Path:
    """Make (or keep) a command's output folder. Refused, with OutputError naming it: a
    file of that name; a folder that is one of the `inputs` or inside one (the outputs
    would mix with the data); an existing folder with other things in it and none of the
    `own` marker files (or glob patterns) of a folder of this kind (the user's folder,
    not ours)."""
    path = Path(path)
    here = path.resolve()
    for r in inputs:
        if _within(here, Path(r).resolve()):
            raise OutputError(f"{path}: inside the input {r}; the {kind} would mix with the "
                              "data — give a folder outside it")  # fmt: skip
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: is a file; the output here is a folder — give another name")
    if own and path.is_dir():
        entries = sorted(e.name for e in path.iterdir())
        if entries and not any(any(path.glob(m)) for m in own):
            raise OutputError(
                f"{path}: not empty and not {'an' if kind[0] in 'aeiou' else 'a'} {kind} "
                f"folder (it holds {', '.join(entries[:3])}"
                f"{', …' if len(entries) > 3 else ''}); give a new or empty folder"
            )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{path}: cannot make this folder ({e.strerror or e})") from None
    return path


def output_files(inputs=(), **outputs) -> None:
    """Refuse, with OutputError naming them, before any work: an output file that is one of
    the inputs (it would be overwritten) or lies inside an input folder (it would mix with
    the data), and two outputs that are one file. `inputs`: paths or `a:b` specs (those
    that do not exist are skipped); `outputs`: flag name -> path (None: not asked for)."""
    roots = [Path(p) for s in inputs for p in str(s).split(":") if p and os.path.exists(p)]
    seen: dict[Path, str] = {}
    for flag, given in outputs.items():
        if given is None:
            continue
        here = Path(given).resolve()
        if here in seen:
            raise OutputError(f"{seen[here]} and {flag} are the same file ({given}): give two")
        seen[here] = flag
        _writable(flag, Path(given))
        for r in roots:
            root = r.resolve()
            if here == root:
                raise OutputError(f"{flag} {given}: is the input {r}; it would be overwritten "
                                  "— give another file")  # fmt: skip
            if _within(here, root):
                raise OutputError(f"{flag} {given}: inside the input {r}; it would mix with "
                                  "the data — give one outside it")  # fmt: skip


def _within(here: Path, root: Path) -> bool:
    """`here` (resolved) is the folder `root` (resolved) or lies below it: an output there
    would mix with that input's data."""
    return root.is_dir() and (here == root or root in here.parents)


def _writable(flag: str, path: Path) -> None:
    """OutputError unless a file can be made where `path` will be (its nearest existing
    folder is tried with a file made and removed at once): before the work, not after it."""
    if is_stream(path):  # /dev/stdout, a pipe: written as it is
        if not os.access(path, os.W_OK):
            raise OutputError(f"{flag} {path}: cannot write here (permission denied)")
        return
    folder = path.resolve().parent
    while not folder.exists():
        folder = folder.parent
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".facetrain-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"{flag} {path}: cannot write here ({e.strerror or e})") from None


def write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = False) -> None:
    with atomic_open(path, "wb", fsync=fsync) as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str, *, fsync: bool = False) -> None:
    with atomic_open(path, "w", fsync=fsync) as f:
        f.write(text)


def remove_stale_temps(folder: str | os.PathLike) -> int:
    """Delete temporaries left by a killed writer directly inside `folder`."""
    n = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            if entry.name.startswith(".") and entry.name.endswith(".tmp") and entry.is_file():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    n += 1
    return n
