"""Issue 28: the photo library's decisions measured on every population, and on one library
mixing them all.

Each set is scanned the library's way (`Scanner`: every face of every photo, the quality
gate) with the default model; a face's truth is its folder when its photo has exactly one
usable face (as `library eval` counts), and unknown otherwise (clustered, not scored).
Faces are cached in bench/out/populations/ (delete it, or --fresh, after a change to
detection or the model).

Per set: the oracle (the best single threshold of average linkage, chosen with the truth),
BCubed F of the library's own clustering with no names, the model's calibrated threshold,
and seconds.

    .venv/bin/python bench/library_populations.py [--sets NAME ...] [--fresh]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from facetrain.devices import cpu_name

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
CACHE = Path(__file__).resolve().parent / "out" / "populations"
MODEL = "pretrained:dlib_resnet"


def _folders(root: Path) -> list[tuple[str, str]]:
    return [
        (str(p), p.parent.name)
        for p in sorted(root.glob("*/*"))
        if p.suffix.lower() in (".jpg", ".jpeg", ".png")
    ]


def lfw_library(identities: int = 60, min_images: int = 6, per: int = 8):
    """bench/cluster.py's LFW library: the first 60 people with 6+ images, 8 each."""
    lfw = SHARED / "lfw"
    names = sorted(d for d in os.listdir(lfw) if (lfw / d).is_dir())
    chosen = [n for n in names if len(os.listdir(lfw / n)) >= min_images][:identities]
    return [(str(lfw / n / f), n) for n in chosen for f in sorted(os.listdir(lfw / n))[:per]]


def family(members: int = 30, strangers: int = 300, per_stranger: int = 5, seed: int = 0):
    """bench/personalize.py's mini-train family: 30 people with 12+ images, and 300 others
    with 5 images each."""
    rng = np.random.default_rng(seed)
    ids = sorted(p for p in (SHARED / "mini-train").iterdir() if p.is_dir())
    rich = [p for p in ids if len(list(p.glob("*.jpg"))) >= 12]
    fam = [rich[i] for i in rng.choice(len(rich), members, replace=False)]
    rest = [p for p in ids if p not in fam]
    others = [rest[i] for i in rng.choice(len(rest), strangers, replace=False)]
    out = []
    for k, folder in enumerate(fam + others):
        files = sorted(folder.glob("*.jpg"))
        out += [(str(f), folder.name) for f in (files if k < members else files[:per_stranger])]
    return out


def bbt():
    root = SHARED / "photos" / "bbt"
    return _folders(root / "reference") + [(str(p), "") for p in sorted((root / "group").glob("*"))]


SETS = {
    "east-asian-idols": lambda: _folders(SHARED / "populations" / "east-asian-idols"),
    "south-asian-actors": lambda: _folders(SHARED / "populations" / "south-asian-actors"),
    "bbt": bbt,
    "friends": lambda: _folders(SHARED / "photos" / "friends"),
    "lfw-60": lfw_library,
    "mini-train-family": family,
}


def faces_of_set(name: str, fresh: bool = False) -> dict:
    """emb (N, D), photo (N,), truth (N,: folder name, '' when unknown) of a set's usable
    faces, scanned once and cached."""
    path = CACHE / f"{name}.npz"
    if path.exists() and not fresh:
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    from facetrain.data.images import ImageError, load_rgb
    from facetrain.inference.compiled import open_for_use
    from facetrain.library.scan import Scanner

    scanner = Scanner(open_for_use(MODEL))  # as the library opens it
    emb, photo, truth = [], [], []
    for k, (p, who) in enumerate(SETS[name]()):
        try:
            faces = [f for f in scanner.faces_of(load_rgb(p)) if f["usable"]]
        except (ImageError, OSError):
            continue
        for f in faces:
            emb.append(f["embedding"])
            photo.append(k)
            truth.append(who if len(faces) == 1 else "")
    out = {"emb": np.array(emb, np.float32), "photo": np.array(photo), "truth": np.array(truth)}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


def with_mixed(names, fresh: bool = False) -> dict[str, dict]:
    """Each named set that is here (`faces_of_set`) and, with more than one, the library
    mixing them (`mixed`)."""
    sets = {n: faces_of_set(n, fresh) for n in names if _here(n)}
    if len(sets) > 1:
        sets["mixed"] = mixed(sets)
    return sets


def mixed(sets: dict[str, dict]) -> dict:
    """One library holding every set: photos and people kept apart by the set's name."""
    offset, parts = 0, []
    for name, s in sets.items():
        parts.append((s["emb"], s["photo"] + offset,
                      np.array([f"{name}/{t}" if t else "" for t in s["truth"]])))  # fmt: skip
        offset += int(s["photo"].max()) + 1 if len(s["photo"]) else 0
    return {
        k: np.concatenate([p[i] for p in parts]) for i, k in enumerate(("emb", "photo", "truth"))
    }


def bcubed_f(labels: np.ndarray, truth: np.ndarray) -> float:
    from facetrain.library.evaluate import scores

    known = truth != ""
    return scores(labels[known].tolist(), truth[known].tolist())["bcubed_f"]


def oracle(s: dict, distance: str, grid: np.ndarray) -> tuple[float, float]:
    """The best single threshold of average linkage, chosen with the truth: (F, threshold)."""
    from facetrain.library.cluster import agglomerate

    best = (-1.0, 0.0)
    for t in grid:
        f = bcubed_f(agglomerate(s["emb"], s["photo"], float(t), distance)[0], s["truth"])
        best = max(best, (f, float(t)))
    return best


def stacks_with_no_names(s: dict, threshold: float, distance: str) -> np.ndarray:
    """A stack label per face, as `Library.cluster` makes them when nothing is named
    (`cluster.with_new_faces`, every face new)."""
    from facetrain.library.cluster import with_new_faces

    return with_new_faces(s["emb"], s["photo"], np.full(len(s["emb"]), -1), threshold, distance)


def library_of(s: dict, folder: Path, pre: dict):
    """A real library (SQLite, `Library`) holding a set's faces as scanned, so the owner's
    actions below run the library's own code; face ids are 1..N in the set's order."""
    from facetrain.library import store
    from facetrain.library.library import Library

    lib = Library(folder / "lib.db", create=True)
    with store.transaction(lib.con):
        store.check_model(lib.con, pre, "bench", str(folder / "lib.db"), "bench")
        for ph in np.unique(s["photo"]):
            idx = np.flatnonzero(s["photo"] == ph)
            pid = store.add_photo(lib.con, f"/bench/{ph}.jpg", f"{ph:064x}", 1, 0.0, 100, 100,
                                  None, "ok", None)  # fmt: skip
            store.insert_faces(lib.con, pid, [  # side by side, as in a group photo
                dict(box=[60 * k, 0, 60 * k + 50, 50], landmarks=[], score=1.0, size=50.0,
                     sharpness=100.0, usable=True, embedding=s["emb"][i])
                for k, i in enumerate(idx)])  # fmt: skip
    ids = np.array([r["id"] for r in lib.con.execute("SELECT id FROM faces ORDER BY photo_id, id")])
    order = np.argsort(s["photo"], kind="stable")
    face_id = np.empty(len(ids), np.int64)
    face_id[order] = ids
    return lib, face_id


def name_faces(lib, faces: dict) -> None:
    """Each person ({name: face ids}) named on their faces, confirmed, as an owner would;
    a mixed library's `set/person` names as `set-person`."""
    from facetrain.library import store

    with store.transaction(lib.con):
        for name, ids in faces.items():
            pid = store.new_person(lib.con)
            store.name_person(lib.con, pid, name.replace("/", "-"))
            store.assign(lib.con, [(pid, int(f)) for f in ids], confirmed=1)


def stack_of(lib, face_id: np.ndarray) -> np.ndarray:
    """Each face's stack (its own when in none)."""
    got = dict(lib.con.execute("SELECT id, person_id FROM faces").fetchall())
    return np.array([got[f] if got[f] is not None else -int(f) for f in face_id])


def owner_rounds(s: dict, pre: dict, rounds: int = 5) -> list[float]:
    """F with no names, then after each round of an owner's work: name the largest unnamed
    stack after its majority (a name already given merges it into that person), fix the
    worst named stack (reject its faces of other people), re-cluster."""
    import tempfile

    truth = s["truth"]
    with tempfile.TemporaryDirectory() as tmp:
        lib, face_id = library_of(s, Path(tmp), pre)
        with lib:
            lib.cluster()
            out = [bcubed_f(stack_of(lib, face_id), truth)]
            for _ in range(rounds):
                _name_largest(lib, face_id, truth)
                _fix_worst(lib, face_id, truth)
                lib.cluster()
                out.append(bcubed_f(stack_of(lib, face_id), truth))
    return out


def _majority(stack: np.ndarray, truth: np.ndarray, sid) -> tuple[str, float]:
    who = [t for t in truth[stack == sid] if t]
    if not who:
        return "", 0.0
    name, n = max(((w, who.count(w)) for w in set(who)), key=lambda x: (x[1], x[0]))
    return name, n / (stack == sid).sum()


def _name_largest(lib, face_id, truth) -> None:
    """Name the largest unnamed stack after its majority. When the name merges it into a
    person it shares a photo with, do what the library says: reject the stack's faces of
    other people first, then name it (else go on to the next stack)."""
    from facetrain.library.store import LibraryError

    stacks = stack_of(lib, face_id)
    for p in lib.people():  # largest first
        if p["name"] is None and p["faces"] > 1:
            name, _ = _majority(stacks, truth, p["id"])
            if not name:
                continue
            for attempt in range(2):
                try:
                    lib.name(str(p["id"]), name.replace("/", "-"))
                    return
                except LibraryError:
                    if attempt == 0:
                        wrong = (stacks == p["id"]) & (truth != name) & (truth != "")
                        for i in np.flatnonzero(wrong):
                            lib.reject(int(face_id[i]))


def _fix_worst(lib, face_id, truth) -> None:
    stacks = stack_of(lib, face_id)
    named = [(p["id"], *_majority(stacks, truth, p["id"])) for p in lib.people() if p["name"]]
    named = [x for x in named if x[1]]
    if not named:
        return
    sid, name, purity = min(named, key=lambda x: x[2])
    if purity < 1.0:
        for i in np.flatnonzero((stacks == sid) & (truth != name) & (truth != "")):
            lib.reject(int(face_id[i]))


def identify_rates(s: dict, pre: dict, named: int, seed: int = 0,
                   rivals: bool = True) -> tuple[float, float]:  # fmt: skip
    """`named` people (those with the most faces, 4 or more) named on half their faces;
    the other half, and half the faces of every other person, held back as new photos.
    (share of named people's new faces given their name, share of the others' given any
    name), through `Library.namer` — what `library identify` uses; `rivals=False`: as it
    named before unnamed stacks could take a name back (`library/rivals.py`)."""
    return identify_rates_both(s, pre, named, seed)[rivals]


def identify_rates_both(s: dict, pre: dict, named: int, seed: int = 0) -> dict:
    """`identify_rates` of one draw, {True: with the unnamed stacks as rivals, False:
    without}, from one library."""
    import tempfile

    rng = np.random.default_rng(seed)
    truth = s["truth"]
    people, counts = np.unique(truth[truth != ""], return_counts=True)
    order = sorted(zip(-counts, people))
    chosen = [p for c, p in order if -c >= 4][:named]
    query = np.zeros(len(truth), bool)
    for p in people:
        idx = rng.permutation(np.flatnonzero(truth == p))
        query[idx[: len(idx) // 2]] = True
    keep = ~query
    sub = {k: v[keep] for k, v in s.items()}
    got = {}
    with tempfile.TemporaryDirectory() as tmp:
        lib, face_id = library_of(sub, Path(tmp), pre)
        with lib:
            name_faces(lib, {p: face_id[sub["truth"] == p] for p in chosen})
            lib.cluster()  # the owner's library: the others in unnamed stacks
            namer = lib.namer()
            for rivals in (True, False):
                namer.rivals = namer.rivals if rivals else None
                got[rivals] = np.array(
                    [namer.name(s["emb"][i][None])[0]["name"] for i in np.flatnonzero(query)]
                )
    want = truth[query]
    mine = np.isin(want, chosen)
    out = {}
    for rivals, g in got.items():
        right = float(np.mean([a == w.replace("/", "-") for a, w in zip(g[mine], want[mine])]))
        strangers = float(np.mean(g[~mine] != "unknown")) if (~mine).any() else 0.0
        out[rivals] = (right, strangers)
    return out


def main(argv=None) -> int:
    from facetrain.inference.compiled import open_for_use
    from facetrain.library.cluster import agglomerate

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", nargs="*", default=list(SETS))
    ap.add_argument("--fresh", action="store_true", help="scan again (after a model change)")
    ap.add_argument("--no-owner", dest="owner", action="store_false",
                    help="skip the simulated owner's naming rounds")  # fmt: skip
    args = ap.parse_args(argv)
    fm = open_for_use(MODEL)
    thr, distance = fm.pre.threshold, fm.pre.distance
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; {MODEL} "
          f"(calibrated threshold {thr:.3f}, {distance})")  # fmt: skip
    sets = with_mixed(args.sets, args.fresh)
    grid = np.round(np.arange(0.04, 0.40, 0.01), 3)
    print(f"{'set':<20}{'faces':>6}{'people':>7} | {'oracle F':>8}{'at':>6} | "
          f"{'calibrated F':>12} | {'no names F':>10}{'/ oracle':>9}{'s':>6} | "
          f"F after naming rounds 1..5, worst drop | identify with 2 / 5 named: "
          f"named right, strangers named")  # fmt: skip
    for name, s in sets.items():
        t0 = time.time()
        labels = stacks_with_no_names(s, thr, distance)
        f = bcubed_f(labels, s["truth"])
        secs = time.time() - t0
        o_f, o_t = oracle(s, distance, grid)
        cal = bcubed_f(agglomerate(s["emb"], s["photo"], thr, distance)[0], s["truth"])
        people = len(set(s["truth"]) - {""})
        rounds = owner_rounds(s, asdict(fm.pre)) if args.owner else []
        drop = max([a - b for a, b in zip(rounds, rounds[1:])], default=0.0)
        print(f"{name:<20}{len(s['emb']):>6}{people:>7} | {o_f:>8.3f}{o_t:>6.2f} | {cal:>12.3f} | "
              f"{f:>10.3f}{f / o_f:>9.3f}{secs:>6.1f} | "
              f"{' '.join(f'{r:.3f}' for r in rounds[1:])} {drop:+.3f} | "
              f"{_identify_cells(s, asdict(fm.pre)) if args.owner else ''}",
              flush=True)  # fmt: skip
    return 0


def _identify_cells(s: dict, pre: dict) -> str:
    cells = []
    for k in (2, 5):
        right, strangers = identify_rates(s, pre, k)
        cells.append(f"{right:.1%} {strangers:.1%}")
    return " / ".join(cells)


def _here(name: str) -> bool:
    try:
        return bool(SETS[name]())
    except (FileNotFoundError, StopIteration):
        print(f"{name}: its data is not here, skipped")
        return False


if __name__ == "__main__":
    sys.exit(main())
