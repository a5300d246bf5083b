"""List the samples of one or more datasets, streaming, in a deterministic order; and the
photos below a folder (`list_photos`: what the library scans, and what a folder given to
`compare`, `classify predict` or `library identify` stands for).

A dataset is a root folder holding one folder per identity (images may sit in nested
sub-folders), or a facetrain list file written by `prune`/`split`. Several roots can be
given at once (`a:b`, FaceNet's convention, or the flag repeated). The same identity name
in two roots stays two identities unless `merge_same_names` is set; names are compared in
Unicode NFC (`identity_of`).

Nothing here holds the whole dataset in memory: samples are yielded directory by
directory, and only one directory's entries are sorted at a time.
"""

from __future__ import annotations

import os
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from facetrain.data.images import is_image_name, is_utf8_name, paired_raws
from facetrain.errors import FacetrainError

LIST_HEADER = "# facetrain list v1: identity<TAB>path (relative to this file)"


@dataclass(frozen=True, slots=True)
class Sample:
    """One image of one identity.

    `name` is the image's path inside its identity folder without extension, made unique
    within that identity (it names derived files such as aligned faces).
    """

    path: str
    identity: str
    name: str


@dataclass
class Problems:
    """Things skipped or worth a look while listing, counted, with a few examples each."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    max_examples: int = 5

    def add(self, kind: str, path: str) -> None:
        self.counts[kind] += 1
        ex = self.examples.setdefault(kind, [])
        if len(ex) < self.max_examples:
            ex.append(path)


class DatasetError(FacetrainError):
    """A dataset argument that cannot be used at all (missing root, unreadable list)."""


def roots_said(specs: str | os.PathLike | Sequence) -> str:
    """Roots as a message names them: as given (`a:b`), or a list of them joined."""
    return str(specs) if isinstance(specs, str | os.PathLike) else ", ".join(map(str, specs))


def parse_roots(specs: str | Sequence[str], *, loose: bool = False) -> list[str]:
    """Split `a:b` specs (and repeated flags) into a list of existing roots; a folder of
    photos and no folders is refused as one person's folder, unless `loose` (unlabelled
    faces) lets photos stand in a root."""
    if isinstance(specs, str | os.PathLike):
        specs = [str(specs)]
    roots: list[str] = []
    for spec in specs:
        for part in str(spec).split(":"):
            if part:
                roots.append(os.path.expanduser(part))
    if not roots:
        raise DatasetError("no dataset given")
    for r in roots:
        if not os.path.exists(r):
            raise DatasetError(f"{r}: no such folder or list file")
        if not (os.path.isdir(r) or is_list_file(r)):
            raise DatasetError(f"{r}: neither a folder of identities nor a facetrain list file")
        if not loose and _one_persons_folder(r):
            parent = os.path.dirname(os.path.abspath(r))
            raise DatasetError(
                f"{r} holds photos and no identity folders: it looks like one identity's "
                f"folder; pass its parent ({parent}), or a folder of one folder per person"
            )
    return roots


def _one_persons_folder(root: str) -> bool:
    """A folder with photos in it and no folder (hidden ones aside): one person's photos
    given where a dataset of one folder per person was asked for."""
    if not os.path.isdir(root) or is_pack(root):
        return False
    photos = False
    with os.scandir(root) as entries:
        for e in entries:
            if e.name.startswith("."):
                continue
            try:
                if e.is_dir():
                    return False
            except OSError:  # a broken entry: the listing reports it
                continue
            photos = photos or is_image_name(e.name)
    return photos


def is_list_file(path: str | os.PathLike) -> bool:
    if not os.path.isfile(path):
        return False
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.readline().startswith("# facetrain list")


def root_labels(roots: Sequence[str]) -> list[str]:
    """Short distinct labels for roots, used to keep same-named identities apart."""
    names = [Path(os.path.abspath(r)).name or "root" for r in roots]
    names = [os.path.splitext(n)[0] if os.path.isfile(r) else n for n, r in zip(names, roots)]
    dup = Counter(names)
    return [f"{n}-{i}" if dup[n] > 1 else n for i, n in enumerate(names)]


UNLABELLED = "_unlabelled"  # the identity of faces that have none (loose=True)


def is_pack(folder: str | os.PathLike) -> bool:
    """A folder `facetrain pack` made (its index and meta.json; a dataset's own meta.json
    beside photos is not one)."""
    return all(os.path.isfile(os.path.join(folder, f)) for f in ("meta.json", "index.npy"))


def iter_samples(
    roots: str | Sequence[str],
    *,
    merge_same_names: bool = False,
    problems: Problems | None = None,
    loose: bool = False,
) -> Iterator[Sample]:
    """Yield every image sample of the given roots, in a deterministic order. With `loose`,
    images directly in a root (no identity folder: unlabelled faces) are samples too, of
    the identity UNLABELLED."""
    roots = parse_roots(roots, loose=loose)
    problems = problems if problems is not None else Problems()
    labels = root_labels(roots)
    several = len(roots) > 1
    for root, label in zip(roots, labels):
        if several and merge_same_names:
            prefix_id, prefix_name = "", f"{label}__"
        elif several:
            prefix_id, prefix_name = f"{label}__", ""
        else:
            prefix_id = prefix_name = ""
        if is_pack(root):  # its shards are no photos
            raise DatasetError(
                f"{root} is a pack: give the folders or list files it was packed from "
                "(train, embed, filter, eval-populations and stats read a pack itself)"
            )
        if os.path.isdir(root):
            it = _iter_folder(root, problems, loose)
        else:
            it = iter_list_file(root, problems)
        for s in it:
            yield Sample(s.path, prefix_id + s.identity, prefix_name + s.name)


def _sorted_entries(path: str, problems: Problems) -> list[os.DirEntry]:
    """A folder's entries by name; names that are not valid UTF-8 are reported and left
    out (no file written downstream — a CSV, JSON, the library — could hold them)."""
    try:
        with os.scandir(path) as it:
            entries = sorted(it, key=lambda e: e.name)
    except FileNotFoundError:
        problems.add("vanished", f"{path} (deleted while it was listed)")
        return []
    except OSError as e:
        problems.add("unreadable_folder", f"{path} ({e.strerror})")
        return []
    ok = []
    for e in entries:
        if is_utf8_name(e.path):
            ok.append(e)
            continue
        raw = e.path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        problems.add("name_not_utf8", f"{raw} (rename it to use it)")
    return ok


def _is_dir(entry: os.DirEntry, problems: Problems) -> bool:
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:
        gone = not os.path.lexists(entry.path)  # deleted while listed, not a broken link
        problems.add("vanished" if gone else "broken_link", entry.path)
        return False


def identity_of(folder_name: str) -> str:
    """A folder's identity: its name in Unicode NFC, so that "Zoë" made on a Mac (whose
    file names may be decomposed) and "Zoë" made elsewhere are one person — in a merge of
    roots, in pruning by count, and on one side of the identity-safe split."""
    return unicodedata.normalize("NFC", folder_name)


def _iter_folder(root: str, problems: Problems, loose: bool = False) -> Iterator[Sample]:
    spellings: dict[str, list[str]] = {}  # identity → the folder names that spell it
    for entry in _sorted_entries(root, problems):
        if entry.name.startswith("."):
            problems.add("hidden", entry.path)
        elif _is_dir(entry, problems):
            identity, n = identity_of(entry.name), 0
            seen = spellings.setdefault(identity, [])
            seen.append(entry.name)
            if len(seen) > 1:  # one person's second folder: its file names kept apart
                problems.add("identity_spelled_twice", f"{entry.path} (joined to {seen[0]})")
            prefix = f"spelling{len(seen)}__" if len(seen) > 1 else ""
            for s in _iter_identity(entry.path, identity, problems):
                n += 1
                yield Sample(s.path, s.identity, prefix + s.name)
            if n == 0 and os.path.isdir(entry.path):  # (a vanished one is reported so)
                problems.add("empty_identity", entry.path)
        elif is_image_name(entry.name) and loose:
            yield Sample(entry.path, UNLABELLED, os.path.splitext(entry.name)[0])
        elif is_image_name(entry.name):
            problems.add("outside_identity_folder", entry.path)
        else:
            problems.add("not_image", entry.path)


def _iter_identity(folder: str, identity: str, problems: Problems) -> Iterator[Sample]:
    visited: set[tuple[int, int]] = set()
    stack: list[tuple[str, str]] = [(folder, "")]
    while stack:
        path, prefix = stack.pop()
        try:
            st = os.stat(path)
        except OSError:
            gone = not os.path.lexists(path)  # deleted while listed, not a broken link
            problems.add("vanished" if gone else "broken_link", path)
            continue
        key = (st.st_dev, st.st_ino)
        if key in visited:
            problems.add("symlink_loop", path)
            continue
        visited.add(key)
        files, subdirs = [], []
        for e in _sorted_entries(path, problems):  # one pass: one stat per entry
            if e.name.startswith("."):
                problems.add("hidden", e.path)
            elif _is_dir(e, problems):
                subdirs.append(e)
            else:
                files.append(e)
        yield from _images_of(files, identity, prefix, problems)
        for e in reversed(subdirs):  # stack: reversed keeps sorted order
            stack.append((e.path, f"{prefix}{e.name}/"))


LINKED_FOLDER = "skipped: a link to a folder (links are not followed; give that folder itself)"
NOT_UTF8 = "skipped: the file name is not valid UTF-8 (rename the file to read it)"
UNLISTED = "skipped: the folder could not be listed ({})"


def list_photos(root: str | os.PathLike, skip=lambda path: False, notes: dict | None = None,
                unlisted: list | None = None, paired: list | None = None) -> list[str]:  # fmt: skip
    """Every image file below root (sorted; hidden files and folders skipped, and every
    path `skip` says is not the owner's photo — a library's own files). `notes` gets what
    was passed over and why: links to folders, names that are not UTF-8, folders that could
    not be listed (also added to `unlisted`: what is in them is unknown, not gone). A
    camera RAW beside a picture of the same name (IMG_0001.CR2 and IMG_0001.JPG: a camera
    set to RAW + JPEG) is that photo once more: it is left to the picture, into `paired`."""
    out, notes = [], {} if notes is None else notes
    unlisted = [] if unlisted is None else unlisted
    paired = [] if paired is None else paired

    def cannot_list(e: OSError) -> None:
        folder = os.fsdecode(e.filename) if e.filename is not None else os.fspath(root)
        unlisted.append(folder)  # not knowing which: none of it is gone
        notes[folder] = UNLISTED.format(e.strerror or e)

    for folder, dirs, files in os.walk(root, onerror=cannot_list):
        for d in dirs:
            if os.path.islink(os.path.join(folder, d)) and not d.startswith("."):
                notes[os.path.join(folder, d)] = LINKED_FOLDER
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and not skip(os.path.join(folder, d))
        )
        left_to_picture = paired_raws(files)
        for f in sorted(files):
            path = os.path.join(folder, f)
            if f.startswith(".") or not is_image_name(f) or skip(path):
                continue
            if f in left_to_picture:
                paired.append(path)
                continue
            if not is_utf8_name(path):
                notes[path] = NOT_UTF8
                continue
            out.append(path)
    return out


def photos_in(paths: Iterable[str | os.PathLike], empty_ok: bool = False,
              skipped: dict[str, str] | None = None) -> list[str]:  # fmt: skip
    """The photos the arguments name: a folder stands for every photo below it
    (`list_photos`), a file for itself. A folder that holds none is DatasetError, unless
    `empty_ok` (a folder that new photos arrive in, named each day, may hold none yet).
    `skipped` gets what was passed over below a folder, and why (a link to a folder, a
    folder that could not be listed), for the caller to say."""
    out, notes = [], {}
    for p in map(os.fspath, paths):
        if not os.path.isdir(p):
            out.append(p)
            continue
        found = list_photos(p, notes=notes)
        if not found and not empty_ok:
            raise DatasetError(f"{p}: no photo in this folder")
        out += found
    if skipped is not None:
        skipped.update((k, v.removeprefix("skipped: ")) for k, v in notes.items())
    return out


def _images_of(files: list[os.DirEntry], identity: str, prefix: str, problems: Problems):
    """The samples among one folder's files. Each is named by its stem, and by its extension
    too where two files share a stem (a.jpg, a.png)."""
    left_to_picture = paired_raws(e.name for e in files)
    stems = Counter(os.path.splitext(e.name)[0] for e in files
                    if is_image_name(e.name) and e.name not in left_to_picture)  # fmt: skip
    for e in files:
        if not is_image_name(e.name):
            problems.add("not_image", e.path)
        elif e.name in left_to_picture:
            problems.add("raw_left_to_picture", e.path)
        else:
            stem, ext = os.path.splitext(e.name)
            name = stem if stems[stem] == 1 else f"{stem}_{ext[1:]}"
            yield Sample(e.path, identity, prefix + name)


def iter_list_file(path: str, problems: Problems | None = None) -> Iterator[Sample]:
    """Read a list file written by `write_list`: `identity<TAB>path` lines."""
    problems = problems if problems is not None else Problems()
    base = os.path.dirname(os.path.abspath(path))
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) != 2:
                problems.add("bad_list_line", f"{path}:{lineno}")
                continue
            identity, rel = parts
            full = rel if os.path.isabs(rel) else os.path.normpath(os.path.join(base, rel))
            yield Sample(full, identity_of(identity), _name_from_path(full))


def _name_from_path(path: str) -> str:
    parent, file = os.path.split(path)
    stem, ext = os.path.splitext(file)
    return stem if ext.lower() in (".jpg", ".jpeg") else f"{stem}_{ext[1:]}"


def check_listable(s: Sample) -> Sample:
    """A sample whose identity and path can be written one per line (list files, a pack's
    identities.txt and paths.txt); DatasetError naming it otherwise."""
    if "\t" in s.identity or "\n" in s.identity or "\n" in s.path or "\r" in s.identity:
        raise DatasetError(f"{s.path!r}: a tab or newline in a name cannot be listed; rename it")
    return s


def write_list(path: str | os.PathLike, samples: Iterable[Sample]) -> int:
    """Write samples as a list file atomically (paths relative to the file). Returns count."""
    from facetrain.atomic import atomic_open

    path = Path(path)
    base = os.path.dirname(os.path.abspath(path))
    n = 0
    with atomic_open(path, "w") as f:
        f.write(LIST_HEADER + "\n")
        for s in map(check_listable, samples):
            f.write(f"{s.identity}\t{os.path.relpath(os.path.abspath(s.path), base)}\n")
            n += 1
    return n
