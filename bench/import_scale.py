"""An import by likeness into a large library: Google Photos' (or XMP's) lists of the
people on group photos, named in rounds (`imports.name_listed`), each round's namer
measuring every photo's spacing among the library's faces. Past 50,000 faces an index
proposes the neighbours; each namer used to build its own, though naming changes none of
the library's faces. Now the rounds keep one (`neighbours.keep`). Both on copies of one
library, alternating, the better of the rounds:

    .venv/bin/python bench/import_scale.py [--faces 200000] [--groups 300] [--rounds 2]

A library of synthetic faces as bench/library_scale.py makes them (128-d unit vectors, ~20
faces a person, one face a photo), `--named` people confirmed and named; then `--groups`
photos of three new faces — one named person and two others — each listing the named one
and one of the others by name. Prints seconds of each way, the faces each named, whether
both named the same faces the same, and the ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from facetrain.devices import cpu_name
from library_scale import synthetic  # noqa: E402

BENCH_MODEL = ({"distance": "squared_l2", "threshold": 1.0}, "bench", "bench")


def build(db: Path, faces: int, named: int, groups: int, model: tuple = BENCH_MODEL) -> list:
    """The library; the group photos' (photo id, names listed). `model`: the record,
    source and weights' hash it says its faces come from."""
    from facetrain.library import store
    from facetrain.library.library import Library

    emb, label, _ = synthetic(faces)
    rng = np.random.default_rng(3)
    with Library(db, create=True) as lib, store.transaction(lib.con):
        pre, source, digest = model
        store.check_model(lib.con, pre, source, str(db), digest)
        people = {}
        for k in range(named):
            people[k] = store.new_person(lib.con)
            store.name_person(lib.con, people[k], f"person {k}")
        for i, (e, k) in enumerate(zip(emb, label)):
            fid = _photo(lib.con, f"/bench/{i}.jpg", [e])[1][0]
            if int(k) in people:
                store.assign(lib.con, [(people[int(k)], fid)], confirmed=1)
        listed = []
        for g in range(groups):
            who = [int(rng.integers(named)), *rng.integers(named, label.max(), 2)]
            three = [_new_face(emb, label, k, rng) for k in who]
            pid, _ = _photo(lib.con, f"/bench/group{g}.jpg", three)
            listed.append((pid, [f"person {who[0]}", f"person {who[1]}"]))
    return listed


def _new_face(emb, label, k: int, rng) -> np.ndarray:
    """Another face of person k: one of theirs, moved as their faces differ."""
    e = emb[rng.choice(np.flatnonzero(label == k))] + rng.normal(scale=0.03, size=128)
    return (e / np.linalg.norm(e)).astype(np.float32)


def _photo(con, path: str, embs: list) -> tuple[int, list[int]]:
    from facetrain.library import store

    digest = hashlib.sha256(path.encode()).hexdigest()
    pid = store.add_photo(con, path, digest, 1, 0.0, 600, 200, None, "ok", None)
    box = lambda j: [200 * j, 0, 200 * j + 150, 150]  # noqa: E731
    faces = [dict(box=box(j), landmarks=[], score=1.0, size=150.0, sharpness=100.0,
                  usable=True, embedding=e) for j, e in enumerate(embs)]  # fmt: skip
    return pid, store.insert_faces(con, pid, faces)


def run(db: Path, listed: list, kept: bool) -> tuple[float, dict, dict]:
    """(seconds, counts, {face id: person id named}) of one import on this copy."""
    from facetrain import neighbours
    from facetrain.library import imports, store
    from facetrain.library.library import Library

    with Library(db) as lib:
        rows = [(store.photo(lib.con, pid), names) for pid, names in listed]
        was = neighbours.keep
        if not kept:  # the way it was: every namer builds its own index
            neighbours.keep = imports.keep = contextlib.nullcontext
        try:
            t = time.perf_counter()
            out = imports.name_listed(lib, rows, "bench", {})
            seconds = time.perf_counter() - t
        finally:
            neighbours.keep = imports.keep = was
        got = lib.con.execute("SELECT id, person_id FROM faces WHERE confirmed = 1 AND "
                              "photo_id IN (SELECT id FROM photos WHERE path LIKE "
                              "'/bench/group%')").fetchall()  # fmt: skip
    return seconds, out, {r["id"]: r["person_id"] for r in got}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faces", type=int, default=200_000)
    ap.add_argument("--named", type=int, default=20)
    ap.add_argument("--groups", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    print(f"{cpu_name()}, {os.cpu_count()} cores; {args.faces} faces, {args.named} "
          f"named people, {args.groups} group photos")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "lib.db"
        t = time.perf_counter()
        listed = build(base, args.faces, args.named, args.groups)
        print(f"library built in {time.perf_counter() - t:.0f} s")
        times, named = {"each namer its own index": [], "one index kept": []}, {}
        for _ in range(args.rounds):
            for way in times:
                copy = Path(tmp) / "copy.db"
                shutil.copy(base, copy)
                s, out, named[way] = run(copy, listed, way == "one index kept")
                times[way].append(s)
                print(f"{way}: {s:.1f} s, {out['faces_named']} faces named "
                      f"({out['by_likeness']} by likeness)")  # fmt: skip
                copy.unlink()
    before, now = (min(v) for v in times.values())
    same = named["each namer its own index"] == named["one index kept"]
    print(f"ratio: {before / now:.2f}x faster ({before:.1f} s → {now:.1f} s); the same faces "
          f"named the same: {same}")  # fmt: skip


if __name__ == "__main__":
    main()
