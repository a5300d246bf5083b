"""`library export --by-person OUT`: a folder per named person of links to the originals."""

from __future__ import annotations

import os
import re
from pathlib import Path

from facetrain.library import store


def safe_name(name: str) -> str:
    """A person's name as a folder name (no separators, no leading dots)."""
    return re.sub(r"[/\\\\\x00]", "_", name).lstrip(".") or "_"


def export_by_person(con, out: str | os.PathLike, include_unnamed: bool = False) -> dict[str, int]:
    """OUT/<person>/<photo> symbolic links (never copies, never moves); returns counts."""
    out = Path(out)
    rows = store.named_photos(con, include_unnamed)
    counts: dict[str, int] = {}
    for r in rows:
        folder = out / safe_name(r["name"] or f"stack-{r['id']}")
        folder.mkdir(parents=True, exist_ok=True)
        src = Path(r["path"])
        link = folder / src.name
        if link.is_symlink() and os.readlink(link) == str(src):
            counts[folder.name] = counts.get(folder.name, 0) + 1
            continue
        if link.exists() or link.is_symlink():
            link = folder / f"{r['photo']}_{src.name}"
            if link.is_symlink():
                link.unlink()
        link.symlink_to(src)
        counts[folder.name] = counts.get(folder.name, 0) + 1
    return counts
