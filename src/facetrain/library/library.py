"""`Library`: a photo library — one SQLite file — and everything that can be done with it.

The command line (`facetrain library …`) and the local web page are adapters over these
methods: they parse, call and show. The work is in `scan`, `cluster`, `curate`, `export`
and `evaluate`; every SQL statement is in `store`.

    with Library("faces.db", create=True) as lib:
        lib.scan("~/Pictures", lib.model())     # the default pretrained model for a new one
        lib.cluster()
        lib.name("3", "Mom")
        lib.identify(["new.jpg"])
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np

from facetrain import neighbours
from facetrain.distances import threshold_problem
from facetrain.library import curate, dates, store
from facetrain.library.files import LibraryFiles
from facetrain.library.store import LibraryError
from facetrain.open_set import MARGIN

_THUMBNAIL = re.compile(r"(\d+)-([0-9a-f]{16})-\d+\.jpg")  # face id, photo content, size
COMPANIONS = 12  # the people a stack's page offers to see its photos with
# "same person?" looks this many thresholds far: on every population, whole or drawn as
# small libraries, the stacks of one person lay within 1.72 thresholds (1.16 in the whole
# sets), and past 2 lay up to 37% of the suggestions, all wrong (bench/suggestions.py)
SUGGEST_WITHIN = 2.0
CLUSTER_BAR_FROM = 20_000  # faces: a cluster run of fewer takes seconds (100,000: 23 s)
CLUSTER_PHASES = {"index": "indexing the faces", "nearest": "spacing", "pairs": "near pairs",
                  "groups": "stacks"}  # fmt: skip


class Library:
    """`lock` (default): this process alone changes the library while it is open (a second
    one is told which process holds it); readers pass lock=False (SQLite's WAL lets them
    read alongside)."""

    def __init__(
        self, path: str | os.PathLike, *, create: bool = False, migrating_ok=False, lock=True
    ):
        from facetrain.lock import held

        self.path = Path(path)
        self.files = LibraryFiles.of(self.path)
        self._held = contextlib.ExitStack()
        if create:
            try:  # a new library in a folder not made yet: made, as other outputs' are
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise LibraryError(f"{self.path}: its folder cannot be made ({e.strerror}: "
                                   f"{e.filename})") from None  # fmt: skip
        made_lock = not self.files.lock.exists()
        if lock and self.path.is_file() and not store.is_writable(self.path):
            raise LibraryError(store.read_only(self.path))
        if lock and (create or self.path.is_file()):
            self._held.enter_context(held(self.files.lock, f"library {self.path}"))
        try:
            self.con = store.connect(self.path, create=create, write=lock)
        except BaseException:
            self._held.close()
            if made_lock:  # refused: nothing of ours is left beside what is not ours
                self.files.lock.unlink(missing_ok=True)
            raise
        curate.names_in_normal_form(self.con)
        if not migrating_ok and store.get_meta(self.con, "migrating_to") is not None:
            self.close()
            raise LibraryError(
                f"{self.path}: a model migration is unfinished; run `facetrain library "
                "migrate` again"
            )

    def close(self) -> None:
        self.con.close()
        self._held.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- the model ---------------------------------------------------------------------

    def model(self, model: str | None = None, device: str = "cpu", spec: dict | None = None,
              prefetch: bool = True):  # fmt: skip
        """The library's model: the one given (which must be the one it was made with, by
        content — a moved model is remembered at its new place), the one it was made with,
        or — for a new library — the default pretrained model. `prefetch=False`: not loaded
        until it embeds (a scan's workers load their own)."""
        from facetrain.inference.compiled import model_hash, open_for_use
        from facetrain.inference.pretrained import DEFAULT
        from facetrain.inference.record import EMBEDDING_FIELDS, ModelFileError

        stored = store.get_meta(self.con, "model_source")
        try:
            fm = open_for_use(model or stored or DEFAULT, device, "auto", spec, prefetch)
        except ModelFileError as e:
            if model is not None or stored is None:
                raise
            raise LibraryError(
                f"the library's model is not usable any more ({e}); if it moved, give its new "
                f"place with --model (it is recognised by its content); to use another model, "
                f"`facetrain library migrate --db {self.path} --model OTHER`"
            ) from None
        store.check_model(self.con, asdict(fm.pre), fm.source, str(self.path), model_hash(fm),
                          (*EMBEDDING_FIELDS, "distance"))  # fmt: skip
        return fm

    def _model_before(self, device: str):
        """The library's own model, not loaded until it embeds, for a migration to tell a
        changed photo's faces by (`scan.migrate`); None when it cannot be opened now."""
        from facetrain.inference.record import ModelFileError

        if store.get_meta(self.con, "model_source") is None:
            return None
        try:
            return self.model(device=device, prefetch=False)
        except (LibraryError, ModelFileError):
            return None

    def threshold(self, given: float | None = None) -> tuple[float, str]:
        """The threshold in use and the distance it is measured in (always the library
        model's distance, also for a given threshold)."""
        value, distance, _ = self.threshold_and_why(given)
        return value, distance

    def threshold_and_why(self, given: float | None = None, named=None,
                          plain: bool = False) -> tuple[float, str, str]:  # fmt: skip
        """(threshold, distance, why): the one given; else the model's calibrated one — the
        ceiling of every pair's limit, which the library's own spacing tightens where the
        model crowds people (library/cluster.py) — unless the owner's named people show it
        wrong (`curate.fitted_threshold`), their faces seen through the owner's adapter
        when one is on (`plain`: as the plain model sees them, for names). `named`: the
        named faces (embeddings, rows) when the caller has read them already."""
        rec = store.model_record(self.con) or {}
        distance = rec.get("distance", "squared_l2")
        if given is not None:
            if problem := threshold_problem(given, distance):
                raise LibraryError(f"--threshold {given}: {problem}")
            return given, distance, "given"
        model_thr = self.model_threshold()
        emb, rows = named or self._faces("named", None if plain else False)
        fitted = curate.fitted_threshold(model_thr, distance, emb, rows.person)
        thr, why = fitted or (model_thr, "the model's calibrated threshold")
        personal = None if plain else self.personal()
        if personal is not None:
            why += ", your faces seen through your personal adapter"
            if "helps" not in personal:  # switched on before it was measured as it is used
                why += " (learnt by an earlier version: `library personalize` again checks it)"
        return thr, distance, why

    def model_threshold(self) -> float:
        """The library model's calibrated threshold."""
        rec = store.model_record(self.con)
        if not rec:
            raise LibraryError("the library holds no faces yet: scan photos into it first "
                               "(`facetrain library scan PHOTOS`)")  # fmt: skip
        if rec.get("threshold") is None:
            raise LibraryError("the library's model has no calibrated threshold; pass --threshold")
        return float(rec["threshold"])

    def is_empty(self) -> bool:
        """No photo recorded yet."""
        return store.count_photos(self.con) == 0

    # --- reading -----------------------------------------------------------------------

    def people(self) -> list[dict]:
        return curate.people(self.con)

    def stack(self, ref: str) -> int:
        return curate.stack_id(self.con, ref)

    def faces(self, ref: str) -> list[dict]:
        """A stack's faces: id, photo path, box, confirmed."""
        return [dict(r) for r in store.face_listing(self.con, self.stack(ref))]

    def face_ids(self, stack: int, limit: int | None = None) -> list[int]:
        return store.face_ids(self.con, stack, limit)

    def photos(self, people: list[str | int], who: bool = False, since: str | None = None,
               until: str | None = None) -> list[dict]:  # fmt: skip
        """The photos on which every one of these people is (names, or stack ids), the
        latest first (`dates.latest_first`); with `who`, everyone on each (`people`);
        `since`, `until`: those taken from that year, month or day to that one."""
        if not people:
            raise LibraryError("name one person at least (see `facetrain library people`)")
        ids = [self.stack(str(p)) for p in people]  # an id or a name, each checked there
        try:
            return dates.between(dates.latest_first(store.photos_with(self.con, ids, who)),
                                 since, until)  # fmt: skip
        except ValueError as e:
            raise LibraryError(str(e)) from None

    def photo_view(self, photo_id: int) -> dict:
        """One photo for its page: file name, date, size, and every face on it from left to
        right, its box in the photo's own pixels, with its stack (id, name, hidden; None for
        a face in no stack) and whether the owner confirmed it."""
        row = store.photo(self.con, photo_id) if store.is_row_id(photo_id) else None
        if row is None:
            raise LibraryError(f"no photo {photo_id}")
        faces = sorted(store.faces_of_photo(self.con, photo_id), key=lambda f: (f["x1"], f["id"]))
        people = store.people_by_id(self.con, [f["person_id"] for f in faces])
        when = dates.date_text(dates.with_date(dict(row)))
        return {"id": photo_id, "name": Path(row["path"]).name, "date": when,
                "size": [row["width"], row["height"]], "faces": [_on_photo(f, people)
                                                                 for f in faces]}  # fmt: skip

    def photo(self, photo_id: int, least: float = 1.0) -> tuple[np.ndarray, float]:
        """A photo of the library, decoded (LibraryError when unknown or unreadable), at
        `least` of its size or more where its file allows (`images.load_rgb_smaller`: for
        a picture shown smaller), and the scale it was decoded at."""
        from facetrain.data.images import ImageError, load_rgb_smaller

        path = store.photo_path(self.con, photo_id)
        if path is None:
            raise LibraryError(f"no photo {photo_id}")
        try:
            return load_rgb_smaller(path, least)
        except (ImageError, OSError) as e:
            raise UnreadablePhoto(f"photo {photo_id} is unreadable now ({e})") from None

    def photo_jpeg(self, photo_id: int, size: int = 480) -> bytes:
        """A photo shrunk to fit `size`, as JPEG; a grey tile saying so when it cannot be
        read now (missing, or its file damaged), its faces and names being still here."""
        from facetrain.data.images import text_tile, to_jpeg

        row = store.photo(self.con, photo_id) if store.is_row_id(photo_id) else None
        side = max(row["width"] or 0, row["height"] or 0) if row is not None else 0
        try:
            return to_jpeg(self.photo(photo_id, size / side if side else 1.0)[0], size)
        except UnreadablePhoto:
            return text_tile(size, UNREADABLE_TILE)

    def face_crop(self, face_id: int, margin: float = 0.25, size: int = 0) -> np.ndarray:
        """A face with a margin around its box, cut from its photo; `size`: to be shown
        that large, the photo decoded no larger than it needs."""
        row = store.face_box(self.con, face_id)
        if row is None:
            raise LibraryError(f"no face {face_id}")
        x1, y1, x2, y2 = row["x1"], row["y1"], row["x2"], row["y2"]
        m = margin * max(x2 - x1, y2 - y1)
        side = max(x2 - x1, y2 - y1) + 2 * m
        img, k = self.photo(row["photo_id"], size / side if size and side > 0 else 1.0)
        h, w = img.shape[:2]
        return img[max(0, int(k * (y1 - m))) : min(h, int(k * (y2 + m))),
                   max(0, int(k * (x1 - m))) : min(w, int(k * (x2 + m)))]  # fmt: skip

    def face_thumbnail(self, face_id: int, size: int = 112) -> bytes:
        """A face's JPEG thumbnail, cut from its photo once and kept in DB.thumbs/ (named by
        the face and its photo's pixels, so a photo edited is cut again, and one whose
        file only changed, a caption say, is not); a grey tile saying so while the photo
        cannot be read."""
        from facetrain.atomic import OutputError, write_bytes
        from facetrain.data.images import text_tile, to_jpeg

        row = store.face_box(self.con, face_id)
        if row is None:
            raise LibraryError(f"no face {face_id}")
        cached = self.files.thumbs / (f"{face_id}-{row['content'][:16]}-{size}.jpg")
        if cached.is_file():
            return cached.read_bytes()
        try:
            data = to_jpeg(self.face_crop(face_id, size=size), size)
        except UnreadablePhoto:  # not kept: cut when the photo reads again
            return text_tile(size, UNREADABLE_TILE)
        with contextlib.suppress(OutputError, OSError):  # read-only, or full: served, not kept
            write_bytes(cached, data)
        return data

    def prune_thumbnails(self, every: bool = False) -> int:
        """Remove the thumbnails in DB.thumbs/ of faces no longer in the library (their
        photo removed or forgotten) or cut from a photo that changed since: no picture of a
        forgotten face stays behind; `every`: all of them (a migration may have moved every
        box). Files not named as thumbnails are left alone. How many were removed."""
        folder = self.files.thumbs
        if not folder.is_dir():
            return 0
        keep = set() if every else store.face_thumbnail_keys(self.con)
        stale = [p for p in folder.glob("*.jpg") if (m := _THUMBNAIL.fullmatch(p.name))
                 and (int(m[1]), m[2]) not in keep]  # fmt: skip
        for p in stale:
            p.unlink(missing_ok=True)
        return len(stale)

    def missing(self) -> dict:
        """The photos gone from disk that are kept for the names on them (paths), how many
        faces they hold, and how many of those bear each name; "back": those recorded
        missing whose file is at its place again, which are back in the library."""
        back = self._found_back()
        return self._missing_now() | {"back": back}

    def _missing_now(self) -> dict:
        faces = store.faces_on_missing(self.con)
        return {"photos": [p["path"] for p in store.missing_photos(self.con)],
                "faces": len(faces), "names": dict(Counter(f["name"] for f in faces
                                                           if f["name"]))}  # fmt: skip

    def _found_back(self) -> list[str]:
        """Photos recorded missing whose file is at their place again, put back (as the
        scan of their folder would): forgetting never takes a photo that is there."""
        back = [p for p in store.missing_photos(self.con) if os.path.isfile(p["path"])]
        with store.transaction(self.con):
            for p in back:
                store.set_status(self.con, p["id"], "ok")
        return [p["path"] for p in back]

    def forget_missing(self) -> dict:
        """Forget the missing photos (`missing`, which this returns): their faces and their
        thumbnails go; the names stay, and a stack named so again joins them. Not undoable:
        the faces' data is gone."""
        back = self._found_back()
        with store.transaction(self.con):
            gone = self._missing_now() | {"back": back}
            store.delete_missing(self.con)
        self.prune_thumbnails()
        return gone

    # --- the owner's word --------------------------------------------------------------

    def name(self, ref: str, name: str) -> str:
        return curate.name(self.con, ref, name)

    def merge(self, into: str, other: str) -> str:
        return curate.merge(self.con, into, other)

    def split(self, ref: str, threshold: float | None = None) -> str:
        """Sub-cluster a stack (default: at 0.7 × the model's threshold)."""
        thr, distance = self.threshold(threshold)
        pid = self.stack(ref)
        emb, rows = self._adapted(*store.faces_of_person(self.con, pid))
        thr = thr if threshold is not None else 0.7 * thr
        return curate.split(self.con, pid, emb, rows, thr, distance)

    def reject(self, face_id: int) -> str:
        return curate.reject(self.con, face_id)

    def hide(self, ref: str) -> str:
        return curate.hide(self.con, ref)

    def unhide(self, ref: str) -> str:
        return curate.unhide(self.con, ref)

    def move(self, face_id: int, to: str) -> str:
        return curate.move(self.con, face_id, to)

    def stack_view(self, stack: int) -> dict:
        """One stack for its page: name, hidden, its faces (confirmed first; which are the
        owner's word), its cover face and photos."""
        rows = store.people(self.con, only=stack)
        if not rows:
            raise LibraryError(f"no stack {stack}")
        return rows[0] | {"face_ids": self.face_ids(stack), **dated(self.photos([stack])),
                          "confirmed_ids": store.confirmed_ids(self.con, stack),
                          "cover": curate.covers(self.con, stack).get(stack),
                          "with": store.companions(self.con, stack, COMPANIONS)}  # fmt: skip

    def people_with_covers(self, faces: int = 12) -> list[dict]:
        """The stacks (`people`), each with its cover face (`curate.covers`) and its first
        faces."""
        cover = curate.covers(self.con)
        return [p | {"cover": cover.get(p["id"]), "face_ids": self.face_ids(p["id"], faces)}
                for p in self.people()]  # fmt: skip

    def stacked(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The faces of visible stacks as "same person?" compares them: (embeddings, person
        id, photo id), in face order."""
        emb, rows = self._faces("stacked")
        return emb, rows.person, rows.photo

    def suggestions(self, stack: int, k: int = 5, stacked=None) -> list[dict]:
        """ "Same person?": the other stacks nearest this one (mean distance between their
        faces, as the stacks are made), nearest first, under `SUGGEST_WITHIN` thresholds;
        stacks sharing a photo with it are left out (two faces of one photo are two
        people). `stacked(library)`: `stacked()` as a cache keeps it between views (the
        web page's)."""
        from facetrain.distances import mean_distances

        threshold, distance = self.threshold()
        emb, person, photo = self.stacked() if stacked is None else stacked(self)
        mine = person == stack
        if not mine.any():  # no such stack, or a hidden one: nothing to suggest
            return []
        d = mean_distances(emb[mine], emb, distance)
        clash = set(person[np.isin(photo, photo[mine])].tolist())
        ids, inv = np.unique(person, return_inverse=True)
        mean = np.bincount(inv, weights=d) / np.bincount(inv)
        out = []
        for i in np.argsort(mean, kind="stable"):  # the stacked set holds visible people only
            if len(out) >= k or mean[i] >= SUGGEST_WITHIN * threshold:
                break
            if int(ids[i]) in clash:
                continue
            for p in store.people(self.con, only=int(ids[i])):  # none: merged away just now
                out.append({"id": p["id"], "name": p["name"], "faces": p["faces"],
                            "distance": float(mean[i])})  # fmt: skip
        return out

    def move_faces(self, face_ids: list[int], to: str) -> str:
        return curate.move_faces(self.con, face_ids, to)

    def undo(self, steps: int = 1) -> list[str]:
        if steps < 1:
            raise LibraryError(f"--steps {steps}: undo at least 1 action")
        return curate.undo(self.con, steps)

    # --- jobs --------------------------------------------------------------------------

    def gate(self, **changes: float | None):
        """The library's quality gate (`scan.Quality`), remembered with it so that every
        photo is judged by one rule, with `changes` made (`gate_of`): a changed gate is
        saved and every face judged again from its recorded measures (`store.regate`); the
        default gate is not written down. (gate, faces whose judgement changed)."""
        new = self.gate_of(**changes)
        if new == self._kept_gate():
            return new, 0
        with store.transaction(self.con):
            store.set_meta(self.con, "quality", json.dumps(asdict(new)))
            return new, store.regate(self.con, *asdict(new).values())

    def gate_of(self, **changes: float | None):
        """The library's gate with `changes` (min_size, min_score, min_sharpness; None: as
        it is) made, not saved. A damaged gate is refused unless the whole gate is given."""
        from dataclasses import replace

        from facetrain.library.scan import Quality

        for k, v in changes.items():
            if v is not None and not (math.isfinite(v) and v >= 0):
                raise LibraryError(f"--{k.replace('_', '-')} {v}: a finite number ≥ 0")
        if (changes.get("min_score") or 0) > 1:  # a probability: above 1, no face passes
            raise LibraryError(f"--min-score {changes['min_score']}: a detector score, 0 to 1")
        old = self._kept_gate()
        given = {k: float(v) for k, v in changes.items() if v is not None}
        if old is None and len(given) < len(asdict(Quality())):
            raise LibraryError(
                f"{self.path}: its quality gate is damaged ({store.get_meta(self.con, 'quality')!r}"
                "); give the whole gate again: `library scan … --min-size 40 --min-score 0.95 "
                "--min-sharpness 15`"
            )
        return replace(old or Quality(), **given)

    def _kept_gate(self):
        """The gate kept with the library (the default when none is); None: a damaged one."""
        from facetrain.library.scan import Quality

        stored = store.get_meta(self.con, "quality")
        try:
            gate = Quality(**{k: float(v) for k, v in json.loads(stored).items()}) if (
                stored) else Quality()  # fmt: skip
        except (TypeError, ValueError, AttributeError):
            return None
        return gate if all(math.isfinite(v) and v >= 0 for v in asdict(gate).values()) else None

    def scan(self, photos: str | os.PathLike, model, quality=None, device: str = "cpu",
             workers: int = 1, on_progress=None, again: bool = False,
             stop=lambda: False, progress: bool = False):  # fmt: skip
        """New, changed, moved and gone photos below `photos` brought into the library,
        judged by `quality` (which becomes the library's gate, `gate`) or the library's
        own gate; photos searched for larger faces than the gate wants are searched again.
        The folder is remembered (`folders`). `again`: one of those folders scanned again,
        left as it was when it lists no photo any more (`rep.empty`: a drive not mounted).
        `on_progress` and `stop`: as `scan.scan` takes them; `progress`: the new faces'
        stacking shows its bars as `cluster` does."""
        from facetrain.library.scan import Scanner, scan

        if why := not_a_folder(photos):
            raise LibraryError(why)
        _check_workers(workers)
        before = self._kept_gate()
        quality, regated = self.gate(**(asdict(quality) if quality is not None else {}))
        scanner = Scanner(model, quality, device)
        rep = scan(self.con, photos, scanner, workers=workers, skip=self.files.owns,
                   on_progress=on_progress, gone_if_empty=not again, stop=stop)  # fmt: skip
        rep.gate_changed, rep.regated = quality != before, regated
        self._remember(os.path.abspath(photos))  # after: the photos a move took are here
        if rep.removed or rep.changed:  # their faces' thumbnails go with them
            self.prune_thumbnails()
        if store.count_stacks(self.con):  # clustered before: new faces join their stacks
            with contextlib.suppress(LibraryError):  # no threshold yet: `cluster` places them
                rep.joined_stacks, rep.new_stacks = self.stack_new(progress)
        else:
            rep.to_stack = store.count_faces(self.con, "unplaced")
        return rep

    def folders(self) -> list[str]:
        """The folders scanned into this library, for "look for new photos" (`scan_again`);
        a folder inside another one is that one's. A damaged record is none (it is only
        where to look again; a scan by name records the folder anew)."""
        try:
            kept = json.loads(store.get_meta(self.con, "folders") or "[]")
        except ValueError:
            return []
        return [f for f in kept if isinstance(f, str)] if isinstance(kept, list) else []

    def _remember(self, folder: str) -> None:
        """`folder` among `folders`, and a folder gone from disk forgotten once the library
        holds no photo from it (all found again elsewhere: it moved); one whose photos are
        still here is kept (a drive not mounted)."""
        from facetrain.library.scan import within

        before = self.folders()
        kept = [f for f in before if os.path.isdir(f) or store.photos_under(self.con, f)]
        if not any(within(folder, f) for f in kept):
            kept = [f for f in kept if not within(f, folder)] + [folder]
        if sorted(kept) != before:
            with store.transaction(self.con):
                store.set_meta(self.con, "folders", json.dumps(sorted(kept)))

    def scan_again(self, model, quality=None, device: str = "cpu", workers: int = 1,
                   on_folder=None, on_progress=None, stop=lambda: False,
                   progress: bool = False) -> Iterator[tuple[str, object]]:  # fmt: skip
        """Every folder of `folders` scanned again (`scan`), yielded as it ends: (folder,
        its scan report, or why it was left as it was: not there now, or listing no photo
        while the library holds some from it — a drive not mounted is no photo deleted).
        `on_folder(folder, k, n)` before each; after a scan `stop()` stopped, no other;
        `progress`: as `scan` takes it."""
        folders = self.folders()
        if not folders:
            raise LibraryError(f"{self.path} remembers no folder yet: scan one by name first "
                               f"(`facetrain library scan FOLDER --db {self.path}`)")  # fmt: skip
        for k, folder in enumerate(folders):
            if on_folder is not None:
                on_folder(folder, k, len(folders))
            if not os.path.isdir(folder):
                yield folder, "not there now (moved, or a drive not mounted?)"
                continue
            rep = self.scan(folder, model, quality, device, workers, on_progress, True, stop,
                            progress)  # fmt: skip
            yield folder, "lists no photo now (a drive not mounted?)" if rep.empty else rep
            if rep.stopped:
                return

    def stack_new(self, progress: bool = False) -> tuple[int, int]:
        """Faces in no stack yet (a scan's new photos) stacked as `cluster` would stack
        them with the rest — by the rule the last `cluster` used — the stacks they come
        near clustered again with them (`cluster.restack_near`: confirmed faces stay, a
        stack keeps its id while most of it stays); every other stack is left as it is.
        (new faces joined to stacks there before, new stacks). A full re-cluster is
        `cluster`, asked for explicitly."""
        from facetrain.library.cluster import FaceSet, restack_near

        given = store.get_meta(self.con, "stacked_at")  # the last `cluster --threshold`
        thr, distance = self.threshold(None if given is None else float(given))
        emb, rows = self._faces("compared")
        person, confirmed = rows.person, rows.confirmed
        if not (person < 0).any():
            return 0, 0
        faces = FaceSet.of(emb, rows)
        with neighbours.keep(once=True), self._bars(progress, len(faces.ids)):
            plan = restack_near(faces, person, confirmed, store.rejections(self.con), thr,
                                distance, spacing=given is None)  # fmt: skip
        with store.transaction(self.con):
            self._write(plan)
            store.drop_empty_stacks(self.con)
        new = set(faces.ids[person < 0].tolist())
        joined = sum(f in new for _, ids in plan.to_person for f in ids)
        return joined, len(plan.new_stacks)

    def cluster(self, threshold: float | None = None, progress: bool = False):
        """Re-cluster the faces the owner has not confirmed (library/cluster.py);
        (report, threshold, why). `progress`: a bar for each phase, for a library large
        enough to take a while (`CLUSTER_BAR_FROM` faces)."""
        from facetrain.library.cluster import (
            ClusterReport,
            FaceSet,
            People,
            recluster,
        )

        adapter = self._adapter()  # read once for both sets
        named_faces = self._faces("named", adapter)  # read once: the threshold's and the plan's
        thr, distance, why = self.threshold_and_why(threshold, named_faces)
        emb, rows = self._faces("free", adapter)
        free, named = FaceSet.of(emb, rows), People.of(*named_faces)
        unnamed = store.unnamed_stacks(self.con)  # a cluster goes back to the one it was
        back = np.isin(rows.person, list(unnamed))
        was = dict(zip(rows.id[back].tolist(), rows.person[back].tolist(), strict=True))
        with (
            neighbours.keep(once=True),  # past 50,000 faces: one index for spacing and pairs
            self._bars(progress, len(free.ids) + len(named.person)),
        ):
            spacing = threshold is None  # a threshold the owner gives is used as it is
            if spacing:
                why += f"; each pair's limit from your library's own spacing (≤ {thr:.3f})"
            plan = recluster(free, named, store.rejections(self.con), thr, distance, was,
                             spacing)  # fmt: skip
        with store.transaction(self.con):
            store.unassign_guesses(self.con)
            self._write(plan)
            store.drop_empty_stacks(self.con)
            if threshold is None:  # new faces are stacked by the rule of the last cluster
                store.del_meta(self.con, "stacked_at")
            else:
                store.set_meta(self.con, "stacked_at", repr(float(threshold)))
        faces = len(free.ids) + len(named.person)
        rep = ClusterReport(faces, store.count_stacks(self.con), plan.matched,
                            len(plan.new_stacks), plan.moved, plan.back)  # fmt: skip
        return rep, thr, why

    @contextlib.contextmanager
    def _bars(self, progress: bool, faces: int):
        """A bar for each phase of stacking these many faces (`CLUSTER_PHASES`) when
        `progress` and they are `CLUSTER_BAR_FROM` or more; nothing otherwise."""
        from facetrain.progress import phases

        quiet = not progress or faces < CLUSTER_BAR_FROM
        bars = phases(CLUSTER_PHASES, disable=True if quiet else None)
        with bars as said, neighbours.reporting(said):
            yield

    def _write(self, plan) -> None:
        """A placement into the store (inside the caller's transaction)."""
        for person, ids in plan.to_person:
            store.assign(self.con, [(person, f) for f in ids])
        for ids in plan.new_stacks:
            pid = store.new_person(self.con)
            store.assign(self.con, [(pid, f) for f in ids])

    def _adapter(self):
        """The owner's personal adapter when one is on for this model, else None."""
        row = store.active_adapter(self.con)
        if row is None:  # most libraries: no need to load what learns one (torch, ~1 s)
            return None
        from facetrain.library.personalize import Adapter

        return Adapter.from_bytes(row["weights"])

    def _faces(self, which: str, adapter=False):
        """(embeddings as the library compares them, rows) of one of the store's face sets
        (`adapter`: the one already read, to read it once for several sets)."""
        return self._adapted(*store.read_faces(self.con, which), adapter)

    def _adapted(self, emb: np.ndarray, rows, adapter=False):
        """(embeddings through the owner's adapter when one is on, rows)."""
        adapter = self._adapter() if adapter is False else adapter
        return (emb if adapter is None or not rows else adapter.apply(emb)), rows

    def identify(self, photos: list, threshold: float | None = None, margin: float = MARGIN,
                 device: str = "cpu", model: str | None = None, progress: bool = True,
                 workers: int = 1, namer_of=None) -> list[dict]:  # fmt: skip
        """Every face of each photo named (`identified`), all answers at once."""
        return list(self.identified(photos, threshold, margin, device, model, progress,
                                    workers, namer_of))  # fmt: skip

    def identified(self, photos: list, threshold: float | None = None, margin: float = MARGIN,
                   device: str = "cpu", model: str | None = None, progress: bool = True,
                   workers: int = 1, namer_of=None,
                   parts: Path | None = None) -> Iterator[dict]:  # fmt: skip
        """Every face of each photo named from the named people, or `unknown` (`namer`),
        photo after photo; the photos looked at as a scan looks, by `workers` processes,
        and that work kept in `parts` when given (`identify.looked_at`). `namer_of`: where
        the namer comes from instead (the web page's, kept while nothing changes)."""
        from facetrain.data.listing import photos_in
        from facetrain.inference.processes import workers_for
        from facetrain.library.identify import identified
        from facetrain.library.scan import Scanner

        _check_workers(workers)
        namer = namer_of(self) if namer_of is not None else self.namer(threshold, margin)
        passed_over: dict[str, str] = {}
        photos = photos_in(photos, empty_ok=True, skipped=passed_over)  # an empty inbox: none
        workers = workers_for(workers, device, len(photos))
        fm = self.model(model, device=device, prefetch=workers <= 1)
        scanner = Scanner(fm, self.gate()[0], device)
        for p, why in passed_over.items():
            yield {"photo": p, "error": why, "faces": [], "rule": namer.rule}
        yield from identified(photos, scanner, namer, workers=workers, progress=progress,
                              parts=parts)  # fmt: skip

    def namer(self, threshold: float | None = None, margin: float = MARGIN):
        """The open-set rule that names faces of a new photo (`curate.Namer`): a face gets
        a named person's name when it is nearer to that person's confirmed faces than each
        pair's limit — the model's threshold tightened by the library's spacing around
        both faces, as in clustering — no other person is within `margin`, and no stack
        the owner has not named, kept apart from that person, is nearer (`rivals`).
        Faces are compared as the plain model sees them, the owner's adapter or not: through
        it, East-Asian strangers were given names more often (library/personalize.py)."""
        if not math.isfinite(margin) or margin < 0:
            raise LibraryError(f"--margin {margin}: a finite number ≥ 0")
        lib_emb, lib_rows = self._faces("compared", None)
        named = lib_rows.confirmed
        thr, distance, why = self.threshold_and_why(threshold, (lib_emb[named], lib_rows[named]),
                                                    plain=True)  # fmt: skip
        pemb, prows = self._faces("prototypes", None)
        return curate.namer_of((lib_emb, lib_rows.person, lib_rows.photo),
                               (pemb, prows.person, prows.photo), store.names(self.con), thr,
                               distance, why, margin, spacing=threshold is None)  # fmt: skip

    def export(self, folder: str | os.PathLike, unnamed: bool = False) -> dict[str, int]:
        from facetrain.library.export import export_by_person

        return export_by_person(self.con, folder, unnamed)

    def export_xmp(self, folder: str | os.PathLike) -> dict:
        from facetrain.library.export import export_xmp

        return export_xmp(self.con, folder)

    def import_xmp(self, root: str | os.PathLike) -> dict:
        """Names from the XMP of the photos below root (`imports.xmp`)."""
        from facetrain.library import imports

        return imports.xmp(self, root)

    def import_picasa(self, root: str | os.PathLike, contacts_xml: str | None = None) -> dict:
        """Names from Picasa's face tags in the folders below root (`imports.picasa`)."""
        from facetrain.library import imports

        return imports.picasa(self, root, contacts_xml)

    def import_takeout(self, root: str | os.PathLike) -> dict:
        """Names from Google Photos' Takeout JSON below root (`imports.takeout`)."""
        from facetrain.library import imports

        return imports.takeout(self, root)

    def evaluate(self, truth: str | os.PathLike) -> tuple[dict, dict]:
        """Pairwise and BCubed scores of the stacks against folder labels, and what was
        left out."""
        from facetrain.library.evaluate import scores, truth_labels

        if not Path(truth).is_dir():
            raise LibraryError(f"{truth}: not a folder")
        pred, labels, left = truth_labels(self.con, truth)
        try:
            return scores(pred, labels), left
        except ValueError as e:
            raise LibraryError(f"{e} (left out: {left})") from None

    def personalize(self, on_progress=None, anyway: bool = False) -> dict:
        """Learn the owner's adapter from their named faces, measured first, the library's
        way, on faces held back from it (library/personalize.py); switch it on and
        re-cluster the unnamed faces through it when it helps (better on a figure, worse on
        none) or the owner wants it `anyway`, else keep it off. `anyway` after a kept-off
        adapter of the same faces switches that one on: nothing is learnt again. The
        report: before/after figures, whether it is on, the re-clustering."""
        from facetrain.library import personalize as pz

        faces = self._adapter_faces()
        pz.enough(faces.person)
        key = pz.digest(faces)
        kept = store.kept_adapter(self.con, key) if anyway else None
        if kept is not None:
            with store.transaction(self.con):
                store.switch_on_adapter(self.con, kept["id"])
            report, on = json.loads(kept["report"]) | {"kept_one_switched_on": True}, True
        else:
            model_thr = self.model_threshold()
            _, distance = self.threshold(model_thr)  # the threshold given: no faces read
            report = self._measured(faces, key, model_thr, distance, on_progress)
            on = anyway or report["helps"]
            self._keep_adapter(faces, distance, report, on)
        named = faces.person >= 0
        out = report | {"personalized": on, "named_faces": int(named.sum()),
                        "people": int(len(np.unique(faces.person[named])))}  # fmt: skip
        if not on:
            return out
        rep, thr, _ = self.cluster()
        return out | {"threshold_now": thr, "stacks": rep.stacks}

    def _measured(self, faces, key: str, model_thr: float, distance: str,
                  on_progress) -> dict:  # fmt: skip
        """The adapter's hold-out report for these faces (`key`: their digest, kept in it); a
        killed job keeps its finished rounds, for the same faces only."""
        from facetrain.library import personalize as pz

        partial = json.loads(store.get_meta(self.con, "personalize_partial") or "{}")

        def keep(r: int, rounds: int, runs: list) -> None:
            with store.transaction(self.con):
                store.set_meta(self.con, "personalize_partial",
                               json.dumps({"digest": key, "runs": runs}))  # fmt: skip
            if on_progress is not None:
                on_progress(r, rounds)

        done = partial.get("runs") if partial.get("digest") == key else None
        if done and on_progress is not None:
            on_progress(len(done), pz.ROUNDS, resumed=True)
        return pz.measure(faces, distance, model_thr, done=done, on_round=keep) | {"digest": key}

    def _keep_adapter(self, faces, distance: str, report: dict, on: bool) -> None:
        """The adapter learnt from every named face, stored with its report, on or off."""
        from facetrain.library import personalize as pz

        adapter = pz.learn(faces, distance)
        with store.transaction(self.con):
            store.save_adapter(self.con, store.get_meta(self.con, "model_hash") or "",
                               adapter.to_bytes(), json.dumps(report), active=on)  # fmt: skip
            store.del_meta(self.con, "personalize_partial")

    def personalize_off(self) -> dict:
        """Back to the plain model: adapters switched off (kept), unnamed faces re-clustered."""
        with store.transaction(self.con):
            was = store.adapters_off(self.con)
        rep, thr, _ = self.cluster() if was else (None, None, None)
        return {"personalized": False, "switched_off": was, "stacks": rep and rep.stacks}

    def personal(self) -> dict | None:
        """The adapter in use and its measured report, or None."""
        row = store.active_adapter(self.con)
        return None if row is None else {"since": row["at"]} | json.loads(row["report"])

    def _adapter_faces(self):
        """Every usable face's plain embedding, its named person (-1: not named by the
        owner) and its photo."""
        from facetrain.library.cluster import concat_rows
        from facetrain.library.personalize import Faces

        named, nrows = store.read_faces(self.con, "named")
        free, frows = store.read_faces(self.con, "free")
        emb = concat_rows(named, free)
        person = np.concatenate([nrows.person, np.full(len(frows), -1, np.int64)])
        photo = np.concatenate([nrows.photo, frows.photo])
        return Faces(emb.astype(np.float32), person, photo)

    def migrate(self, model, device: str = "cpu", workers: int = 1) -> dict:
        """Every photo read again by `model` (`workers` processes), the names carried."""
        from facetrain.inference.compiled import model_hash
        from facetrain.library.scan import Scanner, migrate

        _check_workers(workers)
        gate = self.gate()[0]
        scanner = Scanner(model, gate, device)
        before = self._model_before(device)
        rep = migrate(self.con, scanner, model.source, model_hash(model), workers=workers,
                      before=before and Scanner(before, gate, device))  # fmt: skip
        self.prune_thumbnails(every=True)  # boxes another detector setting moved
        return rep


class UnreadablePhoto(LibraryError):
    """A photo the library holds whose file cannot be read now (missing, or damaged)."""


UNREADABLE_TILE = "photo not\nreadable now"  # what the page shows for its faces meanwhile


def not_a_folder(photos: str | os.PathLike) -> str | None:
    """Why `photos` cannot be scanned, or None: it is not there, or it is not a folder."""
    if Path(photos).is_dir():
        return None
    what = "a file, not a folder of photos" if os.path.lexists(photos) else "no such folder"
    return f"{photos}: {what}"


def _check_workers(workers: int) -> None:
    """`devices.check_workers`, said as the library's error before any photo is read."""
    from facetrain.devices import check_workers

    try:
        check_workers(workers)
    except ValueError as e:
        raise LibraryError(str(e)) from None


def _on_photo(face, people: dict[int, dict]) -> dict:
    """A face as a photo's page shows it: box, its stack (or None), confirmed, and usable
    (whether it passes the quality gate)."""
    return {
        "id": face["id"],
        "box": [face[k] for k in ("x1", "y1", "x2", "y2")],
        "stack": people.get(face["person_id"]),
        "confirmed": bool(face["confirmed"]),
        "usable": bool(face["usable"]),
    }


def dated(photos: list[dict]) -> dict[str, list]:
    """Photos as a page lists them: their ids and dates ("" for none), in their order."""
    return {"photo_ids": [p["id"] for p in photos],
            "photo_dates": [dates.date_text(p) for p in photos]}  # fmt: skip
