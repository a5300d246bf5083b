"""`library export`: a folder per named person of links to the originals (`--by-person`),
and XMP sidecars holding the owner's names as MWG face regions (`--xmp`)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from facetrain.library import store
from facetrain.library.store import LibraryError


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
    folders = {pid: _folder_for(out, name, pid) for pid, name in folder_names(rows).items()}
    _remove_stale(out, {f.name for f in folders.values()})
    wanted: dict[int, dict[str, str]] = {}
    for r in rows:  # link name -> photo, per person
        _add_link(wanted.setdefault(r["id"], {}), r["photo"], r["path"])
    counts = {}
    for pid, links in wanted.items():
        folder = folders[pid]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MARK).write_text(f"{pid}\n")
        _link(folder, str(pid), links)
        counts[folder.name] = len(links)
    return counts


def _folder_for(out: Path, name: str, pid: int) -> Path:
    """OUT/name, unless something there is not a folder an export made (the owner's own
    folder of that name, with links of their own in it): then OUT/name (stack id), which
    leaves theirs untouched."""
    folder = out / name
    if folder.is_symlink():
        free = False
    elif not folder.exists():
        free = True
    else:  # an export's own folder, or an empty one
        free = folder.is_dir() and ((folder / MARK).is_file() or not any(folder.iterdir()))
    return folder if free else out / f"{name} ({pid})"


ALBUM = ".facetrain-album"  # in a folder `link_album` made: it may fill it again


def link_album(folder: str | os.PathLike, photos: list[dict]) -> int:
    """FOLDER/<photo> symbolic links to these photos (`id`, `path`): an album of them that
    moves or copies nothing. A folder that holds anything but an album made so is refused:
    filling it again removes the links no longer wanted. The number of links."""
    folder = Path(folder)
    if folder.is_dir() and any(folder.iterdir()) and not (folder / ALBUM).is_file():
        raise LibraryError(f"{folder}: not empty and not an album facetrain made: name a new "
                           "folder (nothing in this one was touched)")  # fmt: skip
    links: dict[str, str] = {}
    for p in photos:
        _add_link(links, p["id"], p["path"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ALBUM).write_text("links made by `facetrain library photos --link-to`\n")
    _link(folder, "album", links)
    return len(links)


def _add_link(links: dict[str, str], photo_id: int, path: str) -> None:
    """A link named like its photo; a name two photos share takes the photo's id before it."""
    name = Path(path).name
    links[name if name not in links else f"{photo_id}_{name}"] = str(path)


def _link(folder: Path, prefix: str, links: dict[str, str]) -> None:
    """folder holds exactly these links (and whatever else the owner put there; a link
    whose name a file of the owner's has takes `prefix` before it)."""
    owners = {f.name for f in folder.iterdir() if not f.is_symlink()}
    links = {(f"{prefix}_{n}" if n in owners else n): src for n, src in links.items()}
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


def export_xmp(con, out: str | os.PathLike) -> dict:
    """OUT/<photo's path below the library's common folder>.xmp for every photo with a face
    the owner named (digiKam's and Immich's `IMG_1.jpg.xmp`), and for each other copy of it
    the library found, so the names are there beside whichever copy another program opens;
    the photos are not touched. A sidecar another program wrote (or rewrote since an
    export: darktable's edits, digiKam's tags) is never overwritten, and one an earlier
    export wrote for a photo with no name now goes. Returns {"written": how many, "kept":
    the sidecars of other programs left as they were}."""
    from itertools import groupby

    from facetrain.data.images import exif_orientation
    from facetrain.library.xmp import sidecar

    groups = [list(g) for _, g in groupby(store.named_faces(con), key=lambda r: r["photo"])]
    copies = store.duplicate_paths(con)
    paths = {g[0]["photo"]: [g[0]["path"], *copies.get(g[0]["photo"], [])] for g in groups}
    top = _common_folder(store.all_paths(con))
    written, kept = set(), []
    for group in groups:
        first = group[0]
        faces = [(r["name"], (r["x1"], r["y1"], r["x2"], r["y2"])) for r in group]
        text = sidecar(first["width"], first["height"], faces, exif_orientation(first["path"]))
        for path in paths[first["photo"]]:
            dest = Path(out) / (os.path.relpath(path, top) + ".xmp")
            if _theirs(dest):
                kept.append(dest)
            else:
                written.add(_write(dest, text))
    _remove_stale_sidecars(Path(out), written)
    return {"written": len(written), "kept": kept}


def _theirs(dest: Path) -> bool:
    """Something at `dest` that no export wrote: another program's sidecar, a link, a
    folder, a FIFO."""
    return (dest.exists() or dest.is_symlink()) and not _ours(dest)


def _ours(path: Path) -> bool:
    """A sidecar an export wrote and no other program rewrote since (`xmp.written_by_us`).
    Links are not followed, only regular files are read (a FIFO would block)."""
    from facetrain.library.xmp import written_by_us

    return not path.is_symlink() and path.is_file() and written_by_us(path)


def _common_folder(paths) -> str:
    """The folder every path lies below: the library's, not only the named photos', so a
    photo's sidecar keeps its place in OUT when names come and go."""
    top = None
    for path in paths:
        folder = os.path.dirname(path)
        if top is None or not (folder == top or folder.startswith(top.rstrip(os.sep) + os.sep)):
            top = folder if top is None else os.path.commonpath([top, folder])
    return top or ""


def _write(dest: Path, text: str) -> Path:
    from facetrain.atomic import atomic_open

    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(dest, "wb") as f:
        f.write(text.encode("utf-8"))
    return dest


def _remove_stale_sidecars(out: Path, keep: set[Path]) -> None:
    """Sidecars below OUT that an earlier export wrote (`_ours`) and this one did not: their
    photo has no name now, or lies elsewhere below the common folder. Every other file
    stays."""
    for folder, _, files in os.walk(out):
        for f in files:
            p = Path(folder) / f
            if f.endswith(".xmp") and p not in keep and _ours(p):
                p.unlink()
