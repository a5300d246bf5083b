"""The owner's word on the stacks: name, merge, split, reject, hide — and undo.

Every action is one transaction that also stores what it changed (the face rows and
people rows as they were before), so `undo` can put them back exactly, newest first.
Naming or merging confirms the faces (`confirmed = 1`): from then on clustering never
moves them, and a later re-cluster or model change keeps the name on those faces.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from facetrain import neighbours
from facetrain.library import store
from facetrain.library.names import clean_name, name_problem
from facetrain.library.rivals import FACES as RIVAL_FACES
from facetrain.library.rivals import Rivals
from facetrain.library.store import LibraryError, transaction
from facetrain.library.turns import upright_area
from facetrain.neighbours import pair_limits
from facetrain.open_set import MARGIN, UNKNOWN, identify
from facetrain.progress import counted


def people(con) -> list[dict]:
    """Stacks with their face and photo counts, largest first."""
    return store.people(con)


def stack_id(con, ref: str) -> int:
    """A stack by id (digits) or by name (anything else): never a name shadowing an id."""
    if ref.isdigit():
        pid = int(ref) if store.is_row_id(int(ref)) and store.person_exists(con, int(ref)) else None
    else:
        pid = store.person_named(con, clean_name(ref))
    if pid is None:
        raise LibraryError(f"no stack or person {ref!r} (see `facetrain library people`)")
    return pid


def _log(con, kind: str, description: str, before: dict, created=(), rejections=()) -> None:
    undo = dict(before, created=list(created), rejections=[list(r) for r in rejections])
    store.log_action(con, kind, description, undo)


def names_in_normal_form(con) -> None:
    """A library made before names were kept in one normal form (`clean_name`: NFC,
    trimmed, one space where several were) has its names put in it once, so that a name
    typed now finds the person named then; a name whose normal form another person already
    has is left as it was."""
    if store.get_meta(con, "names") == "clean":
        return
    try:
        with transaction(con):
            rows = con.execute("SELECT id, name FROM people WHERE name IS NOT NULL").fetchall()
            taken = {name for _, name in rows}
            for pid, name in rows:
                clean = clean_name(name)
                if clean != name and clean not in taken:
                    con.execute("UPDATE people SET name = ? WHERE id = ?", (clean, pid))
                    taken.add(clean)
            store.set_meta(con, "names", "clean")
    except sqlite3.OperationalError:  # a full disk, a long lock: as it was, tried next time
        pass


def name(con, ref: str, new_name: str) -> str:
    """Name a stack; naming it like an existing person merges it into that person (a name
    `name_problem` refuses is refused). Naming a stack as it is named, every face
    confirmed, changes nothing and leaves nothing for `undo`."""
    new_name = clean_name(new_name)
    if problem := name_problem(new_name):
        raise LibraryError(problem)
    pid = stack_id(con, ref)
    other = store.person_named(con, new_name, other_than=pid)
    if other is not None:
        return merge(con, str(other), str(pid))
    now = store.people(con, only=pid)
    if now and now[0]["name"] == new_name and now[0]["confirmed"] == now[0]["faces"]:
        return f"stack {pid} is {new_name!r} already, every face confirmed: nothing to do"
    with transaction(con):
        faces = store.face_ids(con, pid)
        _log(con, "name", f"stack {pid} named {new_name!r}", store.snapshot(con, faces, [pid]))
        store.name_person(con, pid, new_name)
    return f"stack {pid} is now {new_name!r} ({counted(len(faces), 'face')})"


def merge(con, into: str, other: str) -> str:
    a, b = stack_id(con, into), stack_id(con, other)
    if a == b:
        raise LibraryError("cannot merge a stack with itself")
    with transaction(con):
        fa, fb = store.face_ids(con, a), store.face_ids(con, b)
        clash = store.photos_shared(con, fa, fb)
        if clash:
            raise LibraryError(
                f"stacks {a} and {b} both have a face in {counted(clash, 'photo')}: two faces "
                "of one photo are two people — reject the wrong face first"
            )
        before = store.snapshot(con, fa + fb, [a, b])
        names = {pid: name for pid, name, _ in before["people"] if name is not None}
        _log(con, "merge", f"stack {b} merged into {a}", before)
        store.merge_people(con, a, b)
    said = f"stack {b} merged into {a} ({counted(len(fa) + len(fb), 'face')}"
    if b in names and a in names:  # two names, one person: the other name is no one's now
        return f"{said}; {names[a]!r} now, {names[b]!r} no longer names anyone)"
    return f"{said}{f', named {names[b]!r}' if b in names else ''})"


def split(con, pid: int, emb: np.ndarray, rows, threshold: float,
          distance: str = "squared_l2") -> str:  # fmt: skip
    """Sub-cluster a stack (its faces `rows`, compared as `emb`) at a tighter threshold.
    The part holding most of the owner's confirmed faces (else the largest) keeps the stack
    and its name; the other parts' unconfirmed faces become new unnamed stacks, and a
    confirmed face stays where the owner put it, whichever part it fell in. Each part's
    unconfirmed faces are rejected for the other parts: the owner said they are other
    people, so no later stacking (a look for new photos, `cluster`) puts them together
    again."""
    from facetrain.library.cluster import agglomerate

    if len(rows) < 2:
        raise LibraryError(f"stack {pid} has {counted(len(rows), 'face')}: nothing to split")
    photo = np.array([r["photo_id"] for r in rows])
    confirmed = np.array([bool(r["confirmed"]) for r in rows])
    labels, _ = agglomerate(emb, photo, threshold, distance)
    parts = sorted((np.flatnonzero(labels == c) for c in np.unique(labels)),
                   key=lambda p: (confirmed[p].sum(), len(p)), reverse=True)  # fmt: skip
    moving = [p[~confirmed[p]] for p in parts[1:]]
    moving = [p for p in moving if len(p)]
    if not moving:
        return f"stack {pid} holds together at threshold {threshold:.3f}: not split"
    with transaction(con):
        before = store.snapshot(con, [r["id"] for r in rows], [pid])
        created = []
        for part in moving:
            new = store.new_person(con)
            created.append(new)
            store.assign(con, [(new, rows[i]["id"]) for i in part], confirmed=0)
        kept = np.setdiff1d(np.flatnonzero(~confirmed), np.concatenate(moving))
        apart = _kept_apart(con, rows, [kept, *moving], [pid, *created])
        _log(con, "split", f"stack {pid} split in {len(moving) + 1}", before, created, apart)
    left = len(rows) - sum(len(p) for p in moving)
    return f"stack {pid} split: kept {counted(left, 'face')}, new stacks {created}"


def _kept_apart(con, rows, parts: list[np.ndarray], stacks: list[int]) -> list[tuple]:
    """Each part's faces (indices of rows) rejected for every other part's stack; the
    (face, stack) pairs new here (an undo takes back these only)."""
    pairs = []
    for part, own in zip(parts, stacks, strict=True):
        for i in part:
            face, known = rows[i]["id"], set(store.rejections_of(con, rows[i]["id"]))
            others = [s for s in stacks if s != own and s not in known]
            store.reject(con, face, others)
            pairs += [(face, s) for s in others]
    return pairs


def reject(con, face_id: int) -> str:
    """This face is not this person: it leaves the stack and never comes back to it."""
    exists, pid = store.face_person(con, face_id)
    if not exists:
        raise LibraryError(f"no face {face_id}")
    if pid is None:
        raise LibraryError(f"face {face_id} is in no stack")
    with transaction(con):
        _log(con, "reject", f"face {face_id} is not stack {pid}",
             store.snapshot(con, [face_id], [pid]), rejections=[(face_id, pid)])  # fmt: skip
        store.reject(con, face_id, [pid])
        store.assign(con, [(None, face_id)], confirmed=0)
    return f"face {face_id} removed from stack {pid} (remembered)"


def hide(con, ref: str) -> str:
    return _set_hidden(con, ref, True)


def unhide(con, ref: str) -> str:
    return _set_hidden(con, ref, False)


def _set_hidden(con, ref: str, hidden: bool) -> str:
    pid = stack_id(con, ref)
    done = "hidden" if hidden else "shown again"
    if store.hidden_as(con, pid, hidden):  # no step to undo: `undo` undoes the last change
        return f"stack {pid} is {'hidden' if hidden else 'shown'} already: nothing to do"
    with transaction(con):
        faces = store.face_ids(con, pid)
        kind = "hide" if hidden else "unhide"
        _log(con, kind, f"stack {pid} {done}", store.snapshot(con, faces, [pid]))
        store.set_hidden(con, pid, hidden)
    return f"stack {pid} {done} ({counted(len(faces), 'face')})"


def move(con, face_id: int, to: str) -> str:
    """This face is that person: it moves to the stack `to`, confirmed (clustering never
    moves it again); a name no one has yet makes that person, with this face (a stranger
    in a group photo the owner knows). Refused when `to` already has a face of the same
    photo."""
    exists, pid = store.face_person(con, face_id)
    if not exists:
        raise LibraryError(f"no face {face_id}")
    with transaction(con):
        target, created = _person_or_new(con, to)
        if target == pid:
            raise LibraryError(f"face {face_id} is already in stack {target}")
        if store.photos_shared(con, [face_id], store.face_ids(con, target)):
            raise LibraryError(f"stack {target} already has a face in this photo: two faces "
                               "of one photo are two people")  # fmt: skip
        kept = [p for p in (pid, target) if p is not None and p not in created]
        before = store.snapshot(con, [face_id], kept)
        _log(con, "move", f"face {face_id} moved to stack {target}", before, created)
        store.assign(con, [(target, face_id)], confirmed=1)
    return f"face {face_id} moved to {'new person ' if created else 'stack '}{target}"


def _person_or_new(con, to: str) -> tuple[int, list[int]]:
    """The stack `to` names (id or name), or a new person of that name when no one has it
    — refused when someone has it in another case ("amy" with Amy here): the owner says
    which. (stack, [the stack when made here])."""
    try:
        return stack_id(con, to), []
    except LibraryError:
        name = clean_name(to)
        if name.isdigit():  # an id no stack has
            raise
    if problem := name_problem(name):
        raise LibraryError(problem)
    like = [n for n in store.names(con).values() if n.casefold() == name.casefold()]
    if like:
        raise LibraryError(f"no person {name!r}, but {like[0]!r}: type the name as it is "
                           "(a new person takes a name no one has, in any case)")  # fmt: skip
    new = store.new_person(con)
    store.name_person(con, new, name)
    return new, [new]


def name_regions(con, photo: dict, regions: list[tuple[str, tuple]],
                 source: str = "a sidecar") -> dict[str, int]:  # fmt: skip
    """Names from another program's face regions (name, (cx, cy, w, h) normalised) given
    to the faces of one photo (`photo`: id, width, height), each to the face `placed`
    says; `source` is what the undo log says they came from. The owner's word stands: a
    face the owner confirmed, or rejected for that name, is left. So do the library's
    rules: a name `name_problem` refuses is not taken, a face keeps the first name given to
    it, and a person has one face in a photo. Counts: faces_named, regions_without_face,
    names_refused."""
    faces = store.faces_of_photo(con, photo["id"])
    out = dict.fromkeys(("faces_named", "regions_without_face", "names_refused"), 0)
    taken = {f["id"]: f["person_id"] for f in faces if f["confirmed"]}  # face -> person
    with transaction(con):
        for (name, _), face in zip(regions, placed(faces, photo, regions)):
            name = clean_name(name)
            if name_problem(name):
                out["names_refused"] += 1
                continue
            if face is None:
                out["regions_without_face"] += 1
                continue
            pid = store.person_named(con, name)
            if (
                face["id"] in taken
                or pid is not None
                and (pid in taken.values() or pid in store.rejections_of(con, face["id"]))
            ):
                continue
            if pid is None:
                pid = store.new_person(con)
                store.name_person(con, pid, name)
            _log(con, "name", f"face {face['id']} named {name!r} from {source}",
                 store.snapshot(con, [face["id"]], [pid]))  # fmt: skip
            store.assign(con, [(pid, face["id"])], confirmed=1)
            taken[face["id"]] = pid
            out["faces_named"] += 1
    return out


def placed(faces: list, photo: dict, regions: list[tuple[str, tuple]]) -> list:
    """The face of ours each region marks: the one whose box holds the region's centre
    and overlaps it most (None where no box holds it)."""
    W, H = photo["width"], photo["height"]
    out = []
    for _, (cx, cy, w, h) in regions:
        x, y = cx * W, cy * H
        box = [(cx - w / 2) * W, (cy - h / 2) * H, (cx + w / 2) * W, (cy + h / 2) * H]
        inside = [f for f in faces if f["x1"] <= x <= f["x2"] and f["y1"] <= y <= f["y2"]]
        out.append(max(inside, key=lambda f: _overlap(box, f), default=None))
    return out


def turned_to_fit(faces: list, photo: dict, regions: list, turns: list[int]) -> list | None:
    """Regions measured on the photo turned one of `turns` ways (EXIF orientations),
    brought upright the one way that puts the most of them on faces; None when another
    way puts as many on other faces (which way is unclear)."""
    ways = {t: [(n, upright_area(a, t)) for n, a in regions] for t in dict.fromkeys(turns)}
    found = {t: placed(faces, photo, r) for t, r in ways.items()}
    hits = {t: sum(f is not None for f in found[t]) for t in ways}
    best = [t for t in ways if hits[t] == max(hits.values())]
    fits = {tuple(None if f is None else f["id"] for f in found[t]) for t in best}
    return ways[best[0]] if len(fits) == 1 else None


def _overlap(box, f) -> float:
    x1, y1 = max(box[0], f["x1"]), max(box[1], f["y1"])
    x2, y2 = min(box[2], f["x2"]), min(box[3], f["y2"])
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def quality(row) -> float:
    """How good a face is to show a person by: detector score × size (full at 160 px) ×
    sharpness (full at 150) × one half when its box runs off the photo (a magazine crop,
    a head cut by the frame)."""
    size = min(float(row["size"] or 0) / 160.0, 1.0)
    sharp = min(float(row["sharpness"] or 0) / 150.0, 1.0)
    w, h = row["width"] or 0, row["height"] or 0
    inside = row["x1"] >= 0 and row["y1"] >= 0 and row["x2"] <= w and row["y2"] <= h
    return float(row["score"] or 0) * size * sharp * (1.0 if inside else 0.5)


def covers(con, person_id: int | None = None) -> dict[int, int]:
    """Each stack's cover (or one stack's): its best face by `quality`, the owner's
    confirmed faces first."""
    best: dict[int, tuple] = {}
    for r in store.face_quality(con, person_id):
        key = (r["confirmed"], quality(r), -r["id"])
        if r["person_id"] not in best or key > best[r["person_id"]][0]:
            best[r["person_id"]] = (key, r["id"])
    return {p: f for p, (_, f) in best.items()}


def move_faces(con, face_ids: list[int], to: str) -> str:
    """These faces are that person: moved together, confirmed, one action (one undo).
    Refused when two of them, or one of them and the person, share a photo."""
    target = stack_id(con, to)
    faces = sorted(set(face_ids))
    known = [store.face_person(con, f) for f in faces]
    if not faces or not all(exists for exists, _ in known):
        raise LibraryError(f"no face among {faces}" if not faces else "a face that is not here")
    stay = [f for f, (_, p) in zip(faces, known) if p != target]
    if store.photos_shared(con, stay, store.face_ids(con, target)) or len(
            store.photos_of_faces(con, stay)) < len(stay):  # fmt: skip
        raise LibraryError(f"two of these faces share a photo with each other or with stack "
                           f"{target}: two faces of one photo are two people")  # fmt: skip
    people = sorted({p for _, p in known if p is not None} | {target})
    with transaction(con):
        _log(con, "move", f"{counted(len(stay), 'face')} moved to stack {target}",
             store.snapshot(con, stay, people))  # fmt: skip
        store.assign(con, [(target, f) for f in stay], confirmed=1)
    return f"{counted(len(stay), 'face')} moved to stack {target}"


def undo(con, steps: int = 1) -> list[str]:
    """Revert the last `steps` curating actions, newest first."""
    done = []
    for _ in range(steps):
        act = store.last_action(con)
        if act is None:
            break
        with transaction(con):
            store.revert(con, act["id"], json.loads(act["undo"]))
        done.append(act["description"])
    return done


def fitted_threshold(model_thr: float, distance: str, emb: np.ndarray,
                     person: np.ndarray) -> tuple[float, str] | None:  # fmt: skip
    """The threshold the owner's named people (confirmed faces `emb` of people `person`)
    support — two people with two faces each: the best-accuracy threshold over their pairs
    — used only when their pairs say the model's is too strict for this family: under 90%
    of them right at the model's threshold (which was not fitted to them), more right at
    the fitted one, and the fitted one larger; else None. A model calibrated far too strict
    is corrected; a model that already tells the named people apart keeps its threshold
    (fitted to two people, it merged two others); one too loose for some faces is
    tightened by the library's spacing, near those faces only (a lower ceiling fitted to
    two East-Asian people cut the LFW faces of a mixed library too: F 0.913 -> 0.711)."""
    from facetrain.evaluate.verification import best_threshold, labelled_pairs

    people = Counter(person.tolist())
    if sum(n >= 2 for n in people.values()) < 2:
        return None
    d, same = labelled_pairs(emb, [str(p) for p in person.tolist()], distance)
    thr = best_threshold(d, same, distance)
    right, right_fitted = np.mean((d < model_thr) == same), np.mean((d < thr) == same)
    if right >= 0.9 or right_fitted <= right or thr <= model_thr:
        return None
    return thr, (
        f"fitted to your named people: {counted(len(person), 'confirmed face')} of "
        f"{counted(len(people), 'person', 'people')} "
        f"(the model's own, {model_thr:.3f}, gets {right:.0%} of their pairs right; "
        f"this one {right_fitted:.0%})"
    )


def namer_of(faces: tuple, protos: tuple, names: dict[int, str], threshold: float,
             distance: str, why: str, margin: float = MARGIN,
             spacing: bool = True) -> Namer:  # fmt: skip
    """The library's namer (see `Library.namer`) over its faces as arrays: `faces` (the
    embeddings new faces are compared among, each one's stack or -1, its photo), `protos`
    (the named people's confirmed faces: embeddings, person ids, photos); `spacing`: each
    pair's limit from the library's spacing, else the threshold alone."""
    emb, stack, photo = faces
    pemb, pid, pphoto = protos
    rivals = Rivals.of(emb, stack, photo, set(names))
    pscale = index = None
    if spacing and len(pid):
        # the prototypes' spacing among themselves and the library, the named faces
        # thus counted twice: a tighter spacing than the library's own, and measured
        # so — counted once, strangers named rose from 12.9% to 18.9% on
        # east-asian-idols with two people named, and on four of the other six
        # (bench/library_populations.py)
        index = neighbours.index_of(emb, distance)  # one, built when due, for every search
        pscale = neighbours.scales_among(pemb, pphoto, emb, photo, distance, index=index,
                                         copies=neighbours.copy_radius(threshold))  # fmt: skip
        why += "; tightened by your library's spacing around each face"
    return Namer((pemb, pid, names), threshold, distance, margin, why, emb, photo, pscale,
                 index, rivals)  # fmt: skip


@dataclass
class Namer:
    """What names the faces of new photos: the named people's confirmed faces (`protos`),
    the threshold and why, and — for the spacing rule — the library's faces and the
    prototypes' spacing among them (None: the threshold alone), with the library's index
    (`neighbours.index_of`, built when due) that every photo's spacing searches."""

    protos: tuple
    threshold: float
    distance: str
    margin: float
    why: str
    lib_emb: np.ndarray | None = None
    lib_photo: np.ndarray | None = None
    pscale: np.ndarray | None = None
    index: object = None
    rivals: object = None  # `rivals.Rivals`: the unnamed stacks, or None

    @cached_property
    def people(self) -> frozenset[int]:
        """The ids of the people it can name: those with confirmed faces to compare with."""
        return frozenset(self.protos[1].tolist())

    @property
    def rule(self) -> str:
        """The rule in words, in the units of the distances it gives: under the spacing
        rule those are limits (1: a pair's limit), not the threshold's."""
        rivals = ""
        if self.rivals is not None:
            rivals = f"; no unnamed stack of {RIVAL_FACES}+ faces, apart from that person, nearer"
        if self.pscale is None:
            return (f"nearest named person under threshold {self.threshold:.3f} ({self.why}), "
                    f"runner-up at least {self.margin:.3f} farther{rivals}")  # fmt: skip
        return (f"nearest named person, a face's distance to each the mean over their faces "
                f"in units of each pair's limit (threshold {self.threshold:.3f}: {self.why}): "
                f"named under 1, the runner-up at least "
                f"{self.margin / max(self.threshold, 1e-12):.3f} farther{rivals}")  # fmt: skip

    def name(self, emb: np.ndarray, among: set[int] | None = None, photo: int = -1,
             apart: bool = False) -> list[dict]:  # fmt: skip
        """The faces of ONE photo named (see `identify`); `among`: the person ids it may
        name (the people another program says are on the photo), else every named one —
        a face is named one of them only when that person is also the nearest of everyone
        named (a stranger nearer to someone not listed is not taken for the one listed);
        `photo`: the photo's id when the library holds it (its faces are not their own
        neighbours in the spacing), else a new photo. A face of a new photo keeps no
        name that an unnamed stack nearer to it disputes (`rivals`)."""
        qscale = self._qscale(emb, photo)
        limits = None if qscale is None else pair_limits(qscale, self.pscale, self.threshold)
        rule = (self.threshold, self.distance, self.margin)
        if among is None:
            return self._disputed(emb, identify(emb, self.protos, *rule, limits, apart), qscale)
        pemb, pid, names = self.protos
        keep = np.isin(pid, sorted(among))
        found = identify(emb, (pemb[keep], pid[keep], names), *rule,
                         None if limits is None else limits[:, keep], apart)  # fmt: skip
        nearest = [r["nearest"] for r in identify(emb, self.protos, *rule, limits)]
        return [r if r["name"] == n else r | {"name": UNKNOWN} for r, n in zip(found, nearest)]

    def _qscale(self, emb: np.ndarray, photo: int) -> np.ndarray | None:
        """The spacing around these faces of one photo under the spacing rule; None when
        the threshold alone decides."""
        if self.pscale is None or not len(emb) or not len(self.protos[0]):
            return None
        return self.spacing(emb, np.full(len(emb), photo))

    def _disputed(self, emb: np.ndarray, found: list[dict], qscale) -> list[dict]:
        """`found` with a name taken back where an unnamed stack is nearer to the face
        than the named person (`rivals.Rivals.nearer`); that stack's id is given."""
        if self.rivals is None:
            return found
        ids = {n: p for p, n in self.protos[2].items()}
        out = []
        for i, r in enumerate(found):
            who = ids.get(r["name"]) if r["name"] != UNKNOWN else None
            scale = None if qscale is None else float(qscale[i])
            u = None if who is None else self.rivals.nearer(emb[i], r["distance"], who, self, scale)
            out.append(r if u is None else r | {"name": UNKNOWN, "unnamed_stack": u})
        return out

    def spacing(self, emb: np.ndarray, photo: np.ndarray) -> np.ndarray | None:
        """The library's spacing around these faces (`photo`: their photos' ids; a face of
        the library is not its own neighbour, nor are the others of its photo), in the
        space it compares faces in; None when the threshold alone decides."""
        from facetrain.neighbours import K, copy_radius, kth_in

        if self.pscale is None:
            return None
        return kth_in(emb, photo, self.lib_emb, self.lib_photo, self.distance, K, self.index,
                      copy_radius(self.threshold))  # fmt: skip
