"""`facetrain library scan`: every face of every photo, aligned and embedded, incrementally.

A re-scan looks at each file's size and modification time first and reads (hashes) only
what changed. A photo is known by its pixels, not its path or its file's bytes, so the
owner's names stay on it: found at another path (in any scanned folder) after leaving the
old one, it is *moved*; its file changed with the same faces in place (a caption, a date),
its faces' names are carried over; the same content or pixels at two live paths is a
*duplicate* (recorded, not scanned twice), and when one copy is deleted the other takes its
place. A photo gone from disk is removed from the library — unless the owner confirmed a
face on it: then it is kept as *missing* until it turns up again. Photos are only ever
read. Each photo is one transaction, so a kill -9 loses nothing already committed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import stat
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from facetrain.data.images import (
    UNSUPPORTED,
    ImageError,
    is_raw_name,
    load_rgb,
    open_checked,
    raw_date,
)
from facetrain.data.listing import list_photos
from facetrain.inference.processes import workers_for
from facetrain.library import store
from facetrain.library.store import transaction
from facetrain.library.turns import fitting, turn_face, turn_of

# a photo's status when its file could not be used (`data.images.ImageError`'s words)
UNUSABLE = ("unreadable", "too_large", "unsupported")


@dataclass(frozen=True)
class Quality:
    """The gate a face must pass to be clustered and recognised (the rest are kept, marked)."""

    min_size: float = 40.0  # shorter side of the detector box, in photo pixels
    min_score: float = 0.95  # detector probability
    min_sharpness: float = 15.0  # variance of the Laplacian of the aligned grey face

    def usable(self, size: float, score: float, sharpness: float) -> bool:
        return size >= self.min_size and score >= self.min_score and sharpness >= self.min_sharpness


@dataclass
class ScanReport:
    new: int = 0
    unchanged: int = 0
    changed: int = 0
    moved: int = 0
    duplicates: int = 0
    removed: int = 0
    missing: int = 0  # gone from disk, kept for the names on them until found again
    back: int = 0  # of those, found at their place again (also counted unchanged or changed)
    unusable: int = 0  # of the files counted above, those it cannot use (in `problems`)
    faces: int = 0
    usable_faces: int = 0
    joined_stacks: int = 0  # new faces placed in existing stacks (incremental clustering)
    new_stacks: int = 0
    to_stack: int = 0  # faces of a library never clustered, waiting for its first `cluster`
    searched_again: int = 0  # unchanged photos searched for the smaller faces a lower gate wants
    turned: int = 0  # changed photos a viewer turned or mirrored: their faces turned with them
    gate_changed: bool = False  # the library's quality gate changed with this scan
    regated: int = 0  # faces whose usable mark the changed gate changed
    empty: bool = False  # the folder listed no photo: left as it was (gone_if_empty=False)
    stopped: bool = False  # asked to stop midway: the rest waits for the next scan
    raw_pairs: int = 0  # camera RAWs left to the picture of the same name beside them
    problems: dict[str, str] = field(default_factory=dict)  # path -> reason


@dataclass
class _Left:
    """The recorded photos below the root that a scan did not list, found again by their
    content (moved) or, on a case-insensitive disk, by their path in one case and Unicode
    form (renamed in case only, and changed). What is not taken by the end of the scan is
    gone."""

    ids: dict[int, None]  # in the order recorded
    by_content: dict[str, int]
    by_name: dict[str, int]

    @classmethod
    def of(cls, rows: list) -> _Left:
        return cls(dict.fromkeys(r["id"] for r in rows), {r["sha256"]: r["id"] for r in rows},
                   {_folded(r["path"]): r["id"] for r in rows})  # fmt: skip

    def take(self, key: str, index: dict[str, int]) -> int | None:
        """The photo `index` holds under `key`, taken out of those gone (once)."""
        pid = index.get(key)
        if pid not in self.ids:
            return None
        del self.ids[pid]
        return pid


def _folded(path: str) -> str:
    """A path as a case-insensitive disk (macOS's, Windows') tells paths apart: `IMG_1.JPG`
    and `img_1.jpg` are one file there, and so are a name's composed and decomposed forms."""
    return unicodedata.normalize("NFC", path).casefold()


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def taken(path: str) -> str | None:
    """EXIF DateTimeOriginal (else DateTime), as written in the file — read without
    decoding a pixel: an image over the size limit is never opened for it, and a PNG's
    EXIF is taken only from what precedes its pixels (PIL decodes the whole image to look
    further); a RAW's from its TIFF directories (`raw_date`)."""
    value = raw_date(path) if is_raw_name(path) else _exif_date(path)
    if isinstance(value, bytes):  # some writers store the text as bytes
        value = value.decode("latin-1")
    return (str(value).strip("\x00 ") or None) if value else None


def _exif_date(path: str):
    """`taken`'s value of an image PIL opens, as PIL reads it; None for none."""
    from PIL import Image

    try:
        with open_checked(path) as im:
            if im.format == "PNG":
                exif = Image.Exif()
                exif.load(im.info.get("exif", b""))
            else:
                exif = im.getexif()
            return exif.get_ifd(0x8769).get(36867) or exif.get(306)
    except Exception:  # EXIF is a bonus: any problem means "no date"
        return None


class Scanner:
    """The library's view of a photo: the one `FaceEmbedder`'s faces, each with the
    library's quality decision (`usable`), as the rows the store keeps."""

    def __init__(self, model, quality: Quality = Quality(), device: str = "cpu"):
        from facetrain.inference.embedder import FaceEmbedder

        self.quality, self.device = quality, device
        self.embedder = FaceEmbedder(model, device)

    @property
    def model(self):
        return self.embedder.model

    def faces_of(self, img: np.ndarray) -> list[dict]:
        """Detected, aligned, quality-checked and embedded faces of one photo. Faces far
        below the gate's size are not searched for (`MTCNN.detect`); those a little below
        it are still found, and kept marked."""
        found = self.embedder.faces(img, smallest=self.quality.min_size)
        return [self._row(f) for f in self._finite(found)]

    def faces_at(self, img: np.ndarray, rows) -> list[dict | None]:
        """Recorded faces (store rows) embedded again at their places, not detected: a face
        the owner named stays when a new model or gate no longer finds it (None: no crop)."""
        places = [([r["x1"], r["y1"], r["x2"], r["y2"]], json.loads(r["landmarks"]),
                   r["score"]) for r in rows]  # fmt: skip
        found = self.embedder.faces_at(img, places)
        self._finite([f for f in found if f is not None])
        return [None if f is None else self._row(f) for f in found]

    def _finite(self, found: list) -> list:
        if found and not np.isfinite(np.stack([f.embedding for f in found])).all():
            raise store.LibraryError(  # never into a library: clustering would break on it
                f"the model {self.model.source} gives non-finite embeddings (NaN or inf); "
                "it cannot be used (was it trained to the end?)"
            )
        return found

    def _row(self, f) -> dict:
        """A face as the store keeps it, with the gate's decision."""
        return dict(
            box=[float(v) for v in f.box],
            landmarks=np.asarray(f.landmarks).round(2).tolist(),
            score=float(f.score),
            size=f.size,
            sharpness=f.sharpness,
            usable=self.quality.usable(f.size, f.score, f.sharpness),
            embedding=f.embedding,
        )


def scan(
    con,
    root: str | os.PathLike,
    scanner: Scanner,
    *,
    progress: bool | None = None,
    workers: int = 1,
    skip=lambda path: False,
    on_progress: Callable[[int, int], None] | None = None,
    gone_if_empty: bool = True,
    stop: Callable[[], bool] = lambda: False,
) -> ScanReport:
    """Bring the library up to date with the photos below root. What needs analysing
    (new or changed photos) is analysed by `workers` processes; the library is written by
    this one, a photo a transaction, in listing order. `on_progress(done, total)` after each
    photo. `gone_if_empty=False`: a folder that lists no photo while the library holds some
    from it (a drive not mounted) is left as it was, `rep.empty` saying so. `stop()` true:
    the scan ends after the photo being recorded (`rep.stopped`), the photos not listed
    left as they were; the next scan goes on from there."""
    from facetrain.progress import progress_bar

    root = os.path.abspath(root)
    rep = ScanReport()
    unlisted: list[str] = []
    paired: list[str] = []
    files = list_photos(root, skip, rep.problems, unlisted, paired)
    for folder in unlisted:
        rep.problems[folder] += "; the photos recorded in it are kept"
    rep.raw_pairs = len(paired)
    seen = set(files)
    known = store.photos_under(con, root)
    if not files and known and not gone_if_empty:
        rep.empty = True
        return rep
    left = _Left.of([r for p, r in known.items() if p not in seen and not _below(p, unlisted)])
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(progress_bar(disable=None if progress is None else not progress))
        advance = _advancer(bar, len(files), on_progress)
        todo, later, pending, pool = [], [], set(), None
        smallest = scanner.quality.min_size
        for k, path in enumerate(files):
            job = _scan_one(con, path, known.get(path), left, rep, smallest)
            if job is not None and job[2] in pending:  # a second copy of a new photo:
                later.append(path)  # a duplicate, once the first is recorded
            elif job is not None:
                todo.append(job)
                pending.add(job[2])
                if pool is None:  # they load while the rest is listed
                    n = workers_for(workers, scanner.device, len(todo), len(files) - k - 1)
                    pool = stack.enter_context(worker_pool(scanner, n)) if n > 1 else None
            else:
                advance()
        rep.stopped = not _record_all(con, todo, scanner, pool, rep, advance, stop)
        for path in [] if rep.stopped else later:
            _scan_one(con, path, known.get(path), left, rep, smallest)
            advance()
    for pid in [] if rep.stopped else left.ids:
        _vanished(con, pid, rep)
    return rep


def _record_all(con, todo: list, scanner: Scanner, pool, rep: ScanReport, advance,
                stop: Callable[[], bool]) -> bool:  # fmt: skip
    """The photos to analyse, analysed and recorded in listing order; False when `stop()`
    said to stop before the last."""
    pixels = [_known_pixels(row, digest, scanner.quality.min_size) for _, row, digest, _ in todo]
    for k, (job, result) in enumerate(zip(todo, analysed([j[0] for j in todo], scanner, pool,
                                                          pixels))):  # fmt: skip
        _record_photo(con, *job, result, rep, scanner)
        advance()
        if k + 1 < len(todo) and stop():
            return False
    return True


def _advancer(bar, total: int, on_progress) -> Callable[[], None]:
    """One more photo done: on the progress bar, and told to `on_progress(done, total)`."""
    task, done = bar.add_task("scan", total=total), iter(range(1, total + 1))

    def advance() -> None:
        bar.advance(task)
        if on_progress is not None:
            on_progress(next(done), total)

    return advance


def within(path: str, folder: str) -> bool:
    """`path` is `folder` or below it, by whole names (`my_pics` is not below `my`)."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _below(path: str, folders: list[str]) -> bool:
    return any(within(path, f) for f in folders)


def _vanished(con, pid: int, rep: ScanReport) -> None:
    """A photo gone from its path: a copy still on disk takes its place (faces and names
    kept); a photo the owner confirmed faces on is kept as missing (it comes back when
    found in any scanned folder, by its content or its pixels); any other is removed."""
    path = store.photo_path(con, pid)
    if path is None or os.path.isfile(path):  # found again during this scan (its pixels)
        return
    live = [d for d in store.duplicates_of(con, pid) if os.path.isfile(d["path"])]
    with transaction(con):
        if live:
            store.promote_duplicate(con, pid, live[0])
            rep.moved += 1
        elif store.has_confirmed_faces(con, pid):
            store.set_status(con, pid, "missing")
            rep.missing += 1
        else:
            store.delete_photo(con, pid, with_duplicates=True)
            rep.removed += 1


def _gone(row) -> bool:
    """A recorded photo whose file is no longer at its path."""
    return row["status"] == "missing" or not os.path.isfile(row["path"])


def _scan_one(con, path: str, row, left: _Left, rep: ScanReport, smallest: float):
    """One photo: unchanged, touched, moved or a duplicate (recorded here), or to analyse:
    then (path, row, digest, stat) is returned — also for an unchanged photo last searched
    for faces larger than `smallest` (the gate was lowered), and with the record of a photo
    this one is in all but the case of its name (renamed so, and changed). What is not a
    readable regular file now (a FIFO, a dangling link, a file that vanished during the
    scan) is listed with its reason and left alone."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            rep.problems[path] = "skipped: not a regular file (a FIFO, device or socket)"
            return None
        digest = sha256(path) if row is None or (row["size"], row["mtime"]) != (
            st.st_size, st.st_mtime) else None  # fmt: skip
    except OSError as e:
        rep.problems[path] = f"unreadable: {e.strerror or e} (gone, or a dangling link)"
        return None
    if row is not None and row["status"] == "missing":  # back at the place it left
        with transaction(con):
            store.set_status(con, row["id"], "ok")
        rep.back += 1
        row = store.photo(con, row["id"])
    same = row is not None and (digest is None or row["sha256"] == digest)
    if same and (_searched_above(row, smallest) or _readable_now(row, path)):
        return path, row, row["sha256"], st  # the same photo, searched for smaller faces
    if digest is None:  # same size and time as when it was scanned
        _unchanged(row, path, rep)
        return None
    if row is not None and row["sha256"] == digest:  # touched, same content
        store.touch_photo(con, row["id"], st.st_mtime)
        _unchanged(row, path, rep)
        return None
    if row is None:
        return _new_path(con, path, digest, st, left, rep)
    if _record_duplicate(con, path, row, digest, st, rep):
        return None
    return path, row, digest, st


def _unchanged(row, path: str, rep: ScanReport) -> None:
    """An unchanged photo, counted. One that could not be used when it was scanned is listed
    again with its reason, at every scan until it is mended or removed: after a look from
    the web page (which says that `library scan` lists such files), a scan found it
    unchanged and said nothing of it."""
    rep.unchanged += 1
    if row["status"] in UNUSABLE:
        rep.unusable += 1
        rep.problems[path] = f"{row['status']}: {row['error']} (unchanged since the last scan)"


def _new_path(con, path: str, digest: str, st, left: _Left, rep: ScanReport):
    """A path the library has no photo at: a recorded photo moved here (by its content),
    a duplicate of a live one (recorded), or one renamed in case only and changed (on a
    case-insensitive disk); else a new photo. What is left to analyse is returned as
    `_scan_one` returns it."""
    pid = left.take(digest, left.by_content)
    if pid is None:
        twin = store.twin_of(con, digest, path)
        pid = twin["id"] if twin is not None and _gone(twin) else None  # from another folder
    if pid is not None:
        with transaction(con):
            store.move_photo(con, pid, path, st.st_size, st.st_mtime)
            if store.photo(con, pid)["status"] == "missing":
                store.set_status(con, pid, "ok")
        rep.moved += 1
        return _if_waiting(con, pid, path, digest, st)
    if _record_duplicate(con, path, None, digest, st, rep):
        return None
    return path, _renamed_in_case(con, path, left), digest, st


def _renamed_in_case(con, path: str, left: _Left):
    """The recorded photo this new path is to the disk itself: its name in another case
    (`IMG_1.JPG` now `img_1.jpg`, one file to macOS's and Windows' disks, which still open
    it by the old name), gone from the listing under the name recorded. A case-sensitive
    disk holds two files there, and a rename with an edit is a new photo, as elsewhere."""
    pid = left.by_name.get(_folded(path))
    if pid not in left.ids:
        return None
    old = store.photo(con, pid)
    try:
        if not os.path.samefile(old["path"], path):
            return None
    except OSError:  # the old name opens nothing: two names, two files
        return None
    left.take(_folded(path), left.by_name)
    return old


def _readable_now(row, path: str) -> bool:
    """A photo recorded in a format not read then that this version reads (camera RAW)."""
    return row["status"] == "unsupported" and os.path.splitext(path)[1].lower() not in UNSUPPORTED


def _searched_above(row, smallest: float) -> bool:
    """A recorded photo whose faces were searched for down to a larger size than now
    wanted (a library made before this was recorded: the default gate's), or whose faces
    wait for the library's model to read it (`store.WAITING`)."""
    searched = row["searched"] if row["searched"] is not None else Quality().min_size
    return searched == store.WAITING or row["status"] in ("ok", "no_face") and smallest < searched


def _if_waiting(con, pid: int, path: str, digest: str, st):
    """A photo just found at a new path: to analyse when its faces wait for the library's
    model (`_scan_one`'s job), else nothing more to do."""
    row = store.photo(con, pid)
    return (path, row, digest, st) if row["searched"] == store.WAITING else None


def _record_duplicate(con, path: str, row, digest: str, st, rep: ScanReport) -> bool:
    twin = store.twin_of(con, digest, path)
    if twin is None:
        return False
    with transaction(con):
        if row is not None:
            store.delete_photo(con, row["id"])
        store.add_duplicate(con, path, digest, st.st_size, st.st_mtime, twin["id"])
    rep.duplicates += 1
    rep.problems[path] = f"duplicate of {twin['path']}"
    return True


def analysed(paths: list[str], scanner: Scanner, pool=None, known: list | None = None):
    """`_analyse` of each path, in order: here, or by the processes of `worker_pool`.
    `known`: for each path, the pixels its recorded faces were found on (or None)."""
    jobs = zip(paths, known or [None] * len(paths))
    if pool is None:
        from facetrain.devices import keep_freed_memory

        keep_freed_memory()
        yield from (_analyse(p, scanner, k) for p, k in jobs)
    else:
        yield from pool.imap(_analyse_in_worker, jobs)


@contextlib.contextmanager
def worker_pool(scanner: Scanner, workers: int):
    """`workers` processes, each with its own Scanner like this one (`model_pool`); None
    for one worker: `analysed` works here."""
    from facetrain.inference.processes import model_pool

    with model_pool(scanner.model, scanner.device, workers, Scanner, scanner.quality,
                    scanner.device) as pool:  # fmt: skip
        yield pool


def _analyse_in_worker(job: tuple[str, str | None]):
    from facetrain.inference.processes import worker

    return _analyse(job[0], worker(), job[1])


def pixel_digest(img: np.ndarray) -> str:
    """What a photo is known by: its upright pixels, not its path or its file's bytes (an
    edited caption or date changes the bytes, not the photo)."""
    h = hashlib.sha256(f"{img.shape}".encode())
    h.update(np.ascontiguousarray(img).data)  # no copy of a contiguous photo
    return h.hexdigest()


def _analyse(path: str, scanner: Scanner, known: str | None = None) -> tuple:
    """(status, error, faces, (width, height), pixel digest, turn) of one photo; faces
    None, not searched, when its pixels are `known` (those its recorded faces were found
    on); `turn`: how a viewer turned the known pixels into these (`turns.turn_of`), or None."""
    try:
        img = load_rgb(path)
        pixels, size = pixel_digest(img), (img.shape[1], img.shape[0])
        if pixels == known:
            return None, None, None, size, pixels, None
        turn = turn_of(img, known, pixel_digest) if known else None
        faces = scanner.faces_of(img)
        status, error = ("ok", None) if faces else ("no_face", "no face found")
        return status, error, faces, size, pixels, turn
    except ImageError as e:
        return e.status, e.reason, [], (None, None), None, None
    except OSError as e:
        return "unreadable", str(e), [], (None, None), None, None


def _record_photo(con, path: str, row, digest: str, st, result, rep: ScanReport,
                  scanner: Scanner) -> None:  # fmt: skip
    """An analysed photo written. The same photo read again — its file changed (a metadata
    edit), or its pixels found at a new path after it left the old one — keeps its record,
    its faces' names carried to the faces at the same places; the same pixels at a second
    live path are a duplicate."""
    status, error, faces, (w, h), pixels, turn = result
    if error and status != "no_face":
        rep.problems[path] = f"{status}: {error}"
    rep.unusable += status in UNUSABLE
    if row is not None and pixels is None:
        return _unreadable_now(con, path, row, digest, st, result, rep)
    if faces is None:
        return _same_pixels(con, path, row, digest, st, rep)
    same = row if row is not None or pixels is None else _twin(con, path, digest, st, pixels, rep)
    if same is False:
        return
    with transaction(con):
        if same is None:
            pid = store.add_photo(con, path, digest, st.st_size, st.st_mtime, w, h, taken(path),
                                  status, error, pixels)  # fmt: skip
            store.insert_faces(con, pid, faces)
        else:
            pid = same["id"]
            store.update_photo(con, pid, path, digest, st.st_size, st.st_mtime, w, h,
                               taken(path), status, error, pixels)  # fmt: skip
            _read_again(con, path, same, row, result, rep, scanner)
        store.set_searched(con, pid, scanner.quality.min_size)
    _count(rep, row, digest, same, faces)


def _twin(con, path: str, digest: str, st, pixels: str, rep: ScanReport):
    """A new path's photo by its pixels: the recorded photo it is (moved here after it left
    its old path), None (a new photo), or False — a duplicate of a live one, recorded."""
    twin = store.twin_of(con, pixels, path, "pixels")
    if twin is None or _gone(twin):
        return twin
    with transaction(con):
        store.add_duplicate(con, path, digest, st.st_size, st.st_mtime, twin["id"])
    rep.duplicates += 1
    rep.problems[path] = f"duplicate of {twin['path']} (the same pixels)"
    return False


def _read_again(con, path: str, same, row, result, rep: ScanReport, scanner: Scanner) -> None:
    """A recorded photo (`same`; `row` when found at its own path) read again: its faces
    replaced by those found, each old face's labels carried to the same face (a viewer's
    turn undone first), a named face no longer found embedded again at its place — on the
    pixels it was found on, or on changed pixels when it is still the same face there."""
    status, faces, pixels, turn = result[0], result[2], result[4], result[5]
    recorded = pixels if row is None else row["pixels"]  # a twin has these pixels
    load = functools.cache(lambda: load_rgb(path))
    check = None if pixels == recorded else _same_face(scanner)
    if turn is not None:  # the recorded pixels exactly, turned
        recorded, check = pixels, None
    elif check is not None and row is not None:  # turned and saved again, perhaps
        turn = _turn_by_faces(scanner, load, store.faces_of_photo(con, row["id"]), row, check)
    if turn is not None:
        _turn_faces(con, same["id"], turn, row["width"], row["height"])
        rep.turned += 1
    again = _at_places(scanner, load, recorded, check)
    lost = _replace_faces(con, same["id"], faces, again, check)[1]
    if lost:
        rep.problems[path] = (f"its pixels changed: {lost} named faces are not in it now "
                              "(another face, or none, at their place)")  # fmt: skip
    if status == "no_face":  # faces the owner named may be kept at their place
        store.settle_found(con, same["id"])


def _turn_by_faces(scanner: Scanner, load, rows, photo, same) -> tuple | None:
    """The turn given to a photo whose pixels changed (turned by a viewer and saved again,
    so no digest tells it), told by its named faces: the turn under which more of them are
    the same faces — embedded again at their turned landmarks — than as it stands; None
    when there is none."""
    named = [r for r in rows if r["confirmed"] and r["embedding"] is not None]
    try:
        img = load() if named else None
    except (ImageError, OSError):
        return None
    turns = [] if img is None else fitting(photo["width"], photo["height"], *img.shape[1::-1])
    if not turns:
        return None

    def found(turn) -> int:
        moved = [_turned_row(r, turn, photo["width"], photo["height"]) for r in named]
        at = scanner.faces_at(img, moved)
        return sum(f is not None and same(r, _stored(f)) for r, f in zip(moved, at))

    as_is = found((0, False))
    if as_is == len(named):  # an edit in place: nothing to look for
        return None
    score = {t: found(t) for t in turns}
    best = max(turns, key=score.__getitem__)
    return best if score[best] > as_is else None


def _turned_row(row, turn, width: int, height: int) -> dict:
    """A recorded face (a store row) where a turn of its `width` × `height` photo puts it."""
    box, points = turn_face([row["x1"], row["y1"], row["x2"], row["y2"]],
                            json.loads(row["landmarks"]), turn, width, height)  # fmt: skip
    return dict(row) | dict(zip(("x1", "y1", "x2", "y2"), box)) | {"landmarks": json.dumps(points)}


def _stored(face: dict) -> dict:
    """A face as `Scanner` gives it, compared as the store keeps one (`_same_face`)."""
    return face | {"embedding": face["embedding"].tobytes(),
                   "landmarks": json.dumps(face["landmarks"])}  # fmt: skip


def _count(rep: ScanReport, row, digest: str, same, faces: list) -> None:
    research = row is not None and row["sha256"] == digest  # searched for smaller faces
    rep.searched_again += research
    rep.changed += row is not None and not research
    rep.moved += row is None and same is not None
    rep.new += same is None
    rep.faces += len(faces)
    rep.usable_faces += sum(f["usable"] for f in faces)


def _turn_faces(con, photo_id: int, turn, width: int, height: int) -> None:
    """A photo's recorded faces moved to where a viewer's turn put them."""
    for f in store.faces_of_photo(con, photo_id):
        moved = _turned_row(f, turn, width, height)
        store.place_face(con, f["id"], [moved[k] for k in ("x1", "y1", "x2", "y2")],
                         json.loads(moved["landmarks"]))  # fmt: skip


def _known_pixels(row, digest: str, smallest: float) -> str | None:
    """The pixels a changed file's recorded faces were found on, when those faces stand if
    the pixels are still those — not for a photo searched again for smaller faces or
    waiting for the library's model."""
    if row is None or row["sha256"] == digest or _searched_above(row, smallest):
        return None
    return row["pixels"]


def _same_pixels(con, path: str, row, digest: str, st, rep: ScanReport) -> None:
    """A photo whose file changed but not its pixels (a caption or date edited, tags
    written into it by another program): the file's new state recorded, its faces kept as
    they are — their ids, so the undo log and thumbnails still find them, and labels."""
    with transaction(con):
        store.refile_photo(con, row["id"], path, digest, st.st_size, st.st_mtime, taken(path))
        store.settle_found(con, row["id"])  # one unreadable before reads again
    rep.changed += 1


def _unreadable_now(con, path: str, row, digest: str, st, result, rep: ScanReport) -> None:
    """A recorded photo whose file no longer reads (cut short by a sync, say): its new
    state is recorded, and its faces and their names are kept as they were, for when the
    file is whole again (its pixels are still known: they are read again then)."""
    status, error = result[:2]
    with transaction(con):
        store.refile_photo(con, row["id"], path, digest, st.st_size, st.st_mtime, row["taken"],
                           status, error)  # fmt: skip
    if store.has_confirmed_faces(con, row["id"]):
        rep.problems[path] += "; the names on its faces are kept until it reads again"
    if row["sha256"] == digest:  # the same bytes tried again (its faces wait): no change
        rep.unchanged += 1
    else:
        rep.changed += 1


def _iou(a, b) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def migrate(
    con,
    scanner: Scanner,
    source: str,
    digest: str,
    *,
    progress: bool | None = None,
    workers: int = 1,
    before: Scanner | None = None,
) -> dict:
    """Re-detect and re-embed every photo with a new model, carrying each face's labels
    (person, confirmed, hidden, rejections) to the new face at the same place (box IoU ≥
    0.5). A photo whose pixels changed since it was scanned carries them only to the same
    faces, as a scan would (`_same_face`), told by the library's model `before` (when it
    can be opened; else by place alone). The photos are analysed by `workers` processes,
    as a scan's are. Resumable: photos done are remembered until the whole library is
    done, and the library refuses other work meanwhile."""
    from dataclasses import asdict

    from facetrain.progress import progress_bar

    target = json.dumps(asdict(scanner.model.pre), sort_keys=True)
    current = store.get_meta(con, "migrating_to")
    if current is not None and current != target:
        raise store.LibraryError("another migration is unfinished; finish it with its model first")
    todo = store.photos_to_migrate(con)
    if current is None:
        _try_model(scanner, todo)  # before anything changes
    store.set_meta(con, "migrating_to", target)
    earlier = store.migrated_so_far(con)[0]
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(progress_bar(disable=None if progress is None else not progress))
        task = bar.add_task("migrate", total=len(todo))
        n = workers_for(workers, scanner.device, len(todo))
        pool = stack.enter_context(worker_pool(scanner, n))
        for row, result in zip(todo, analysed([r["path"] for r in todo], scanner, pool)):
            _migrate_one(con, scanner, row, result, before)
            bar.advance(task)
    with transaction(con):
        store.set_meta(con, "model", target)
        store.set_meta(con, "model_source", source)
        store.set_meta(con, "model_hash", digest)
        store.del_meta(con, "migrating_to")
        photos, kept, lost = store.migrated_so_far(con)  # with those of a stopped run
        waiting = store.end_migration(con)
    return {"photos": photos, "photos_before": earlier, "confirmed_faces_kept": kept,
            "confirmed_faces_lost": lost, "confirmed_faces_waiting": waiting}  # fmt: skip


def _migrate_one(con, scanner: Scanner, row, result: tuple,
                 before: Scanner | None = None) -> None:  # fmt: skip
    """One photo's faces replaced by those the new model found (`_analyse`'s result), in
    one transaction, which records it migrated with the confirmed faces it kept and lost.
    A photo unreadable now is left as it is: a resumed migration tries it again, and at the
    end its faces wait for a scan (`store.end_migration`)."""
    faces, pixels = result[2], result[4]
    if pixels is None:
        return
    load = functools.cache(lambda: load_rgb(row["path"]))  # read here once, if at all
    with transaction(con):
        recorded, same = _since_scan(con, row, pixels, before, load)
        again = _at_places(scanner, load, recorded)
        kept, lost = _replace_faces(con, row["id"], faces, again, same)
        store.set_searched(con, row["id"], scanner.quality.min_size)
        store.settle_found(con, row["id"])  # the new model may find more, or none
        store.mark_migrated(con, row["id"], kept, lost)


def _since_scan(con, row, pixels: str, before: Scanner | None,
                load) -> tuple[str | None, object]:  # fmt: skip
    """A migrated photo as it is now against its last scan: (the pixels its recorded faces
    stand on, the check a face found must pass to take a recorded face's labels). Pixels
    a viewer turned: its faces are moved with the turn (`_turn_faces`) and stand on these.
    Pixels otherwise changed: only the same faces, told by the library's model `before`.
    `load()`: the photo as it is now."""
    recorded = row["pixels"]
    if recorded is None or pixels == recorded:
        return recorded, None
    try:
        turn = turn_of(load(), recorded, pixel_digest)
    except (ImageError, OSError):
        turn = None
    if turn is None:
        return recorded, _same_face_before(before, load)
    _turn_faces(con, row["id"], turn, row["width"], row["height"])
    return pixels, None


def _at_places(scanner: Scanner, load, recorded: str | None, same=None):
    """`Scanner.faces_at` on a photo (`load()`, read only when asked) where its pixels are
    those its recorded faces were found on (digest `recorded`); where they changed, only
    the faces still the same there by `same` (`_same_face`), else Nones."""

    def again(rows) -> list:
        try:
            img = load()
        except (ImageError, OSError):
            return [None] * len(rows)
        if recorded is not None and pixel_digest(img) == recorded:
            return scanner.faces_at(img, rows)
        if same is None:
            return [None] * len(rows)
        found = scanner.faces_at(img, rows)  # a face with no embedding cannot vouch here
        return [f if f is not None and r["embedding"] is not None and same(r, _stored(f))
                else None for r, f in zip(rows, found)]  # fmt: skip

    return again


def _try_model(scanner: Scanner, photos) -> None:
    """The new model on the first readable photo with a face: a model that cannot embed
    (non-finite output, say) is refused before the library changes."""
    for row in photos:
        try:
            if scanner.faces_of(load_rgb(row["path"])):
                return
        except (ImageError, OSError):
            continue


def _replace_faces(con, photo_id: int, new: list[dict], again=None,
                   same=None) -> tuple[int, int]:  # fmt: skip
    """A photo's faces replaced by `new`. An old face found again at its place — and, where
    the pixels changed, found to be that face by `same(old, new)` — is the new face under
    the old id, with its labels; (confirmed faces kept, confirmed faces lost). A confirmed
    face `new` has nothing at is embedded again where it was by `again` (`Scanner.faces_at`
    on the same pixels; None where the pixels changed): the owner's word outlives a new
    gate or model."""
    old = store.faces_of_photo(con, photo_id)
    rej = {o["id"]: store.rejections_of(con, o["id"]) for o in old}
    added = set(store.insert_faces(con, photo_id, new))  # first: no old id is reused
    free = [f for f in store.faces_of_photo(con, photo_id) if f["id"] in added]
    store.delete_faces(con, [o["id"] for o in old])
    kept, unmatched = 0, []
    labelled_first = sorted(old, key=lambda o: o["person_id"] is None and not o["hidden"])
    for o in labelled_first:
        box = [o["x1"], o["y1"], o["x2"], o["y2"]]
        best = max(free, key=lambda f: _iou(box, list(f)[1:5]), default=None)
        if best is None or _iou(box, list(best)[1:5]) < 0.5 or same and not same(o, best):
            unmatched += [o] if o["confirmed"] else []
            continue
        free.remove(best)
        _keep(con, best["id"], o, rej[o["id"]])
        kept += o["confirmed"]
    redone = again(unmatched) if again is not None and unmatched else [None] * len(unmatched)
    for o, face in zip(unmatched, redone):
        if face is not None:
            _keep(con, store.insert_faces(con, photo_id, [face])[0], o, rej[o["id"]])
            kept += 1
    return kept, sum(face is None for face in redone)


def _keep(con, face_id: int, old, rejected: list[int]) -> None:
    """A face found again: under its old id, with its labels."""
    store.renumber_face(con, face_id, old["id"])
    _carry(con, old["id"], old, rejected)


# a face of a changed photo is the face that was at its place when their embeddings are
# within this fraction of the model's threshold and their five landmarks within this
# fraction of the face's size on average (bench/changed_photos.py)
SAME_FACE = 0.2
SAME_PLACE = 0.1


def _same_face(scanner: Scanner):
    """For a photo whose pixels changed (an edit, or another photo under its name): whether
    the face found at an old face's place is that face — an edit keeps its embedding and
    landmarks, another person at the same place does not (`SAME_FACE`, `SAME_PLACE`);
    None — the place alone decides — for a model with no calibrated threshold. A face with
    no embedding (waiting since a migration) has only its place to go by."""
    from facetrain.distances import pair_distances

    pre = scanner.model.pre
    if pre.threshold is None:
        return None

    def same(old, new) -> bool:
        if old["embedding"] is None:
            return True
        a, b = (np.frombuffer(f["embedding"], np.float32)[None] for f in (old, new))
        if float(pair_distances(a, b, pre.distance)[0]) > SAME_FACE * pre.threshold:
            return False
        a, b = (np.asarray(json.loads(f["landmarks"]), float).reshape(-1, 2) for f in (old, new))
        return float(np.linalg.norm(a - b, axis=1).mean()) <= SAME_PLACE * old["size"]

    return same


def _same_face_before(before: Scanner | None, load):
    """`_same_face` for a migration, where the faces found (by the new model) and those
    recorded (by the library's model `before`) are compared in `before`'s embedding: the
    new faces are embedded again by it at their landmarks on the photo (`load()`). None —
    by place alone — without that model or its threshold."""
    same = _same_face(before) if before is not None else None
    if same is None:
        return None

    def check(old, new) -> bool:
        face = before.faces_at(load(), [new])[0]
        return face is not None and same(old, _stored(face) | {"landmarks": new["landmarks"]})

    return check


def _carry(con, face_id: int, old, rejected: list[int]) -> None:
    """An old face's labels (person, confirmed, hidden, rejections) on a new face."""
    store.set_face(con, face_id, old["person_id"], old["confirmed"], old["hidden"])
    store.reject(con, face_id, rejected)
