"""`library export`: a folder per named person of links to the originals (`--by-person`),
and XMP sidecars holding the owner's names as MWG face regions (`--xmp`)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from facetrain.library import store


def safe_name(name: str) -> str:
    """A person's name as a folder name: no separators, no leading dots, at most 200 bytes
    (file systems allow 255; the stack id may be added)."""
    name = re.sub(r"[/\\\\\x00]", "_", name).lstrip(".") or "_"
    return name.encode("utf-8")[:200].decode("utf-8", "ignore")


MARK = ".facetrain-person"  # in each folder export made: the stack id it holds


def folder_names(rows) -> dict[int, str]:
    """A folder name per person, distinct even when names are not (`.` and `..` both read
    `_`, say): the second and later take their stack id too."""
    out: dict[int, str] = {}
    used: set[str] = set()
    for r in sorted(rows, key=lambda r: r["id"]):
        if r["id"] in out:
            continue
        name = safe_name(r["name"] or f"stack-{r['id']}")
        if name.lower() in used:
            name = f"{name} ({r['id']})"
        used.add(name.lower())
        out[r["id"]] = name
    return out


def export_by_person(con, out: str | os.PathLike, include_unnamed: bool = False) -> dict[str, int]:
    """OUT/<person>/<photo> symbolic links (never copies, never moves); returns counts.
    Each export brings its folders up to date: a link to a photo no longer that person's (a
    face moved, rejected or forgotten since) goes, and folders an earlier export made for a
    name no longer in use lose their links. Anything else in OUT is left alone."""
    out = Path(out)
    rows = store.named_photos(con, include_unnamed)
    names = folder_names(rows)
    _remove_stale(out, set(names.values()))
    wanted: dict[int, dict[str, str]] = {}
    for r in rows:  # link name -> photo, per person; a name two photos share takes the id
        links, src = wanted.setdefault(r["id"], {}), Path(r["path"])
        links[src.name if src.name not in links else f"{r['photo']}_{src.name}"] = str(src)
    for pid, links in wanted.items():
        _link(out / names[pid], pid, links)
    return {names[pid]: len(links) for pid, links in wanted.items()}


def _link(folder: Path, person_id: int, links: dict[str, str]) -> None:
    """folder holds exactly these links (and whatever else the owner put there; a link
    whose name a file of the owner's has takes the person's id before it)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARK).write_text(f"{person_id}\n")
    owners = {f.name for f in folder.iterdir() if not f.is_symlink()}
    links = {(f"{person_id}_{n}" if n in owners else n): src for n, src in links.items()}
    for f in folder.iterdir():
        if f.is_symlink() and links.get(f.name) != os.readlink(f):
            f.unlink()
    for name, src in links.items():
        if not (folder / name).is_symlink():
            (folder / name).symlink_to(src)


def _remove_stale(out: Path, keep: set[str]) -> None:
    """Folders export made (they hold MARK) that no current person uses: their links and
    mark go, the folder too when nothing else is in it."""
    if not out.is_dir():
        return
    for folder in out.iterdir():
        if folder.name in keep or folder.is_symlink() or not (folder / MARK).is_file():
            continue
        for f in folder.iterdir():
            if f.is_symlink():
                f.unlink()
        (folder / MARK).unlink()
        if not any(folder.iterdir()):
            folder.rmdir()


def export_xmp(con, out: str | os.PathLike) -> int:
    """OUT/<photo's path below the photos' common folder>.xmp for every photo with a face
    the owner named (digiKam's and Immich's `IMG_1.jpg.xmp`); the photos are not touched.
    A sidecar an earlier export wrote for a photo with no name now goes, unless another
    program has rewritten it since. Returns the number of sidecars written."""
    from itertools import groupby

    from facetrain.atomic import atomic_open
    from facetrain.data.images import exif_orientation
    from facetrain.library.xmp import sidecar

    rows = store.named_faces(con)
    top = os.path.commonpath([os.path.dirname(r["path"]) for r in rows]) if rows else ""
    written = set()
    for _, group in groupby(rows, key=lambda r: r["photo"]):
        group = list(group)
        first = group[0]
        dest = Path(out) / (os.path.relpath(first["path"], top) + ".xmp")
        dest.parent.mkdir(parents=True, exist_ok=True)
        faces = [(r["name"], (r["x1"], r["y1"], r["x2"], r["y2"])) for r in group]
        with atomic_open(dest, "wb") as f:
            text = sidecar(first["width"], first["height"], faces, exif_orientation(first["path"]))
            f.write(text.encode("utf-8"))
        written.add(dest)
    _remove_stale_sidecars(Path(out), written)
    return len(written)


def _remove_stale_sidecars(out: Path, keep: set[Path]) -> None:
    """Sidecars below OUT that an earlier export wrote (`xmp.written_by_us`) and this one
    did not: their photo has no name now, or lies elsewhere below the common folder. Links
    are not followed, only regular files are read (a FIFO would block); every other file
    stays."""
    from facetrain.library.xmp import written_by_us

    for folder, _, files in os.walk(out):
        for f in files:
            p = Path(folder) / f
            if (f.endswith(".xmp") and p not in keep and not p.is_symlink() and p.is_file()
                    and written_by_us(p)):  # fmt: skip
                p.unlink()
