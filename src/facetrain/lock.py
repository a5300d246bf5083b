"""One process at a time: on a run folder or a library (a second is refused, `held`), or on
work that processes started together would each begin (the others wait, `waited`).

An exclusive `flock` on a lock file beside what it guards: the operating system drops it
when its process ends in any way (kill -9 included), so a stale lock is simply taken over.
The file records who holds it (pid, host, command), so that a second process can say so.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from facetrain.errors import FacetrainError


class BusyError(FacetrainError):
    """What is asked for is in use by another process."""


@contextlib.contextmanager
def held(lock_file: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold `lock_file` for the block; BusyError naming the holder when another process
    holds it. `what`: how the guarded thing is named in the message."""
    path = Path(lock_file)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BusyError(
                f"{what} is in use by {_holder(path)}; wait for it to end or stop it (a lock "
                "of a process that died is taken over)"
            ) from None
        me = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def waited(folder: str | os.PathLike) -> Iterator[None]:
    """Hold `folder` for the block, waiting while another process holds it: for work that
    processes started together would each begin (a cache entry), which one does while the
    others wait and then find it done. The folder itself is locked: no file is left."""
    fd = os.open(Path(folder), os.O_RDONLY | os.O_DIRECTORY)
    try:
        with contextlib.suppress(OSError):  # a file system without locks: the work unguarded
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder(path: Path) -> str:
    try:
        h = json.loads(path.read_text())
        return f"process {h['pid']} on {h['host']} ({h['command'][:120]})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"
