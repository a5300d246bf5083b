"""The cache folder: what facetrain makes once and keeps for every later run — pretrained
weights converted to facetrain's format, the graphs ONNX Runtime runs, `find`'s embeddings
of a folder, the work of a long job that has no output folder to keep it in until it ends.
Never beside the user's photos; deleting it costs only the time to remake it.

Each use of an entry marks it used (its modification time); making a new entry removes its
neighbours unused for `STALE_DAYS` — the graphs and weights an older facetrain left (about
50 MB a version), the tables of folders no longer searched — so the folder does not grow
with every upgrade, while two installed versions used in turn keep theirs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

STALE_DAYS = 90


def cache_dir() -> Path:
    """`$FACETRAIN_CACHE`, else `$XDG_CACHE_HOME/facetrain`, else `~/.cache/facetrain`."""
    env = os.environ.get("FACETRAIN_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "facetrain"


def used(entry: Path) -> Path:
    """`entry` (a file or folder of the cache) marked as used now; returned."""
    with contextlib.suppress(OSError):  # a read-only cache: it is not pruned either
        os.utime(entry)
    return entry


def prune(folder: Path, keep: Path, days: float = STALE_DAYS) -> list[Path]:
    """The entries of `folder` (`runtime/`, `pretrained/`, `find/`, `work/`) other than `keep` that
    were not used for `days`, removed (links too, never what they point at); returns them.
    Called when a new entry is made, which is rare: a first use, an upgrade."""
    cutoff, removed = time.time() - days * 86400, []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        try:
            if entry == keep or entry.lstat().st_mtime >= cutoff:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
        except OSError:
            continue  # another process's, or not ours to remove: left
    return removed
