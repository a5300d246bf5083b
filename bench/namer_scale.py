"""Naming the faces of one photo in a large library: the spacing around its faces (their
k-th nearest face of another photo in the library), which `library identify` and the
imports by likeness (`imports.named_among`) measure for every photo they name.

Past `neighbours.EXACT_SEARCH` faces an index proposes the neighbours. Each photo used to
search the library joined with its own faces (`cluster.local_scales` of both), so every
photo built an index of the whole library; `Namer` now builds one index of the library
once and searches it for each photo (`neighbours.kth_in`). Both, same faces, same run:

    .venv/bin/python bench/namer_scale.py [--faces 200000] [--photos 20]

Making the namer measures the named faces' spacing among themselves and the library
(`cluster.local_scales` of both joined, before: a second index, of both; now
`neighbours.scales_among`, which searches the library's one index):

    .venv/bin/python bench/namer_scale.py --named 2000

Naming photos with the unnamed stacks as rivals of a name (`library/rivals.py`) and
without, the library's faces in stacks by identity (20 people named, the rest unnamed):

    .venv/bin/python bench/namer_scale.py --rivals

Synthetic faces as bench/library_scale.py makes them (128-d, identities in families of
look-alikes, one face a photo); the photos named are groups of three of them.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from facetrain.devices import cpu_name
from library_scale import synthetic


def main() -> None:
    from facetrain.library.cluster import K, local_scales
    from facetrain.neighbours import index_of, kth_in

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faces", type=int, default=200_000)
    ap.add_argument("--photos", type=int, default=20)
    ap.add_argument("--named", type=int, default=0, help="measure making a namer instead")
    ap.add_argument("--rivals", action="store_true",
                    help="measure naming with unnamed stacks as rivals and without")  # fmt: skip
    ap.add_argument("--after-change", action="store_true",
                    help="measure the page's namer made again after a name changes")  # fmt: skip
    args = ap.parse_args()
    emb, label, photo = synthetic(args.faces)
    rng = np.random.default_rng(1)
    queries = [rng.choice(len(emb), 3, replace=False) for _ in range(args.photos)]
    print(f"{cpu_name()}, {os.cpu_count()} cores; {len(emb)} faces in the library; "
          f"{args.photos} photos of 3 faces each")  # fmt: skip
    if args.named:
        return making(emb, photo, args.named)
    if args.after_change:
        return after_change(emb, photo, queries)
    if args.rivals:
        return rivals(emb, label, photo, queries)

    t = time.perf_counter()
    before = [local_scales(np.concatenate([emb[q], emb]), np.concatenate(
        [np.full(3, -1), photo]), "squared_l2", rows=3) for q in queries]  # fmt: skip
    t_before = (time.perf_counter() - t) / args.photos

    t = time.perf_counter()
    index = index_of(emb, "squared_l2")
    t_index = time.perf_counter() - t
    t = time.perf_counter()
    now = [kth_in(emb[q], np.full(3, -1), emb, photo, "squared_l2", K, index) for q in queries]
    t_now = (time.perf_counter() - t) / args.photos

    same = all(np.allclose(a, b) for a, b in zip(before, now))
    print(f"each photo searching the library joined with it: {t_before * 1000:.0f} ms a photo")
    print(f"one index of the library ({t_index:.1f} s once), searched per photo: "
          f"{t_now * 1000:.1f} ms a photo; same spacing: {same}")  # fmt: skip
    print(f"ratio: {t_before / t_now:.0f}x faster a photo; "
          f"{(t_before * args.photos) / (t_index + t_now * args.photos):.1f}x over "
          f"{args.photos} photos, the index included")  # fmt: skip


def making(emb: np.ndarray, photo: np.ndarray, named: int) -> None:
    """The named faces' spacing and the library's index, as `Library.namer` makes them:
    before (both joined, then the library's own index) and now (one index), alternating."""
    from facetrain.library.cluster import local_scales
    from facetrain.neighbours import index_of, scales_among

    p = np.random.default_rng(2).choice(len(emb), named, replace=False)
    both, bphoto = np.concatenate([emb[p], emb]), np.concatenate([photo[p], photo])
    times = {"before": [], "now": []}
    for _ in range(2):
        t = time.perf_counter()
        before = local_scales(both, bphoto, "squared_l2", rows=named)
        index_of(emb, "squared_l2")
        times["before"].append(time.perf_counter() - t)
        t = time.perf_counter()
        now = scales_among(emb[p], photo[p], emb, photo, "squared_l2",
                           index=index_of(emb, "squared_l2"))  # fmt: skip
        times["now"].append(time.perf_counter() - t)
    same = np.isclose(before, now, rtol=1e-5).mean()
    b, n = min(times["before"]), min(times["now"])
    print(f"{named} named faces: both joined, then the library's index: {b:.1f} s; "
          f"one index: {n:.1f} s; same spacing for {same:.1%} of the named faces")  # fmt: skip
    print(f"ratio: {b / n:.1f}x faster to make a namer")


def after_change(emb: np.ndarray, photo: np.ndarray, queries: list) -> None:
    """The web page's "who is this?" namer, made again after the owner names a stack: a new
    index of the library's faces each time (before) or the one kept (`web._namer_keeping`),
    alternating on one library of these faces with 20 people named (20 faces each)."""
    import sys
    import tempfile
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from facetrain.library import store
    from facetrain.library.web import _namer_keeping
    from helpers import embedded_library

    with (
        tempfile.TemporaryDirectory() as tmp,
        embedded_library(Path(tmp) / "lib.db", emb, 0.19, photo.tolist()) as lib,
    ):
        with store.transaction(lib.con):
            for k in range(21):
                pid = store.new_person(lib.con)
                store.name_person(lib.con, pid, f"p{k}")
                store.assign(lib.con, [(pid, 1 + 20 * k + i) for i in range(20)], confirmed=1)
        kept, times = _namer_keeping({}), {"before": [], "kept": []}
        kept(lib)  # the page's first namer builds the index
        for round_ in range(3):
            with store.transaction(lib.con):  # the owner names one more stack
                store.name_person(lib.con, store.person_named(lib.con, "p20"), f"q{round_}")
            t = time.perf_counter()
            before = lib.namer()
            times["before"].append(time.perf_counter() - t)
            t = time.perf_counter()
            now = kept(lib)
            times["kept"].append(time.perf_counter() - t)
            same = all(before.name(emb[q]) == now.name(emb[q]) for q in queries)
    b, k = np.median(times["before"]), np.median(times["kept"])
    print(f"namer after a change: index built again {b:.2f} s, index kept {k:.2f} s "
          f"(medians of 3); the same names for {len(queries)} photos: {same}")  # fmt: skip
    print(f"ratio: {b / k:.1f}x faster")


def rivals(emb: np.ndarray, label: np.ndarray, photo: np.ndarray, queries: list) -> None:
    """New photos of the named people (3 faces each) named with the unnamed stacks as
    rivals and without, alternating, by one namer of a library whose faces are stacked by
    identity, 20 people named; the
    threshold is library_scale's (squared L2 1.0), so stacks come near each face."""
    import sys
    import tempfile
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from facetrain.library import store
    from helpers import embedded_library

    with (
        tempfile.TemporaryDirectory() as tmp,
        embedded_library(Path(tmp) / "lib.db", emb, 1.0, photo.tolist()) as lib,
    ):
        with store.transaction(lib.con):
            people = {int(k): store.new_person(lib.con) for k in np.unique(label)}
            store.assign(lib.con, [(people[int(k)], i + 1) for i, k in enumerate(label)],
                         confirmed=0)  # fmt: skip
            for k in list(people)[:20]:
                store.name_person(lib.con, people[k], f"p{k}")
        t = time.perf_counter()
        namer = lib.namer()
        made = time.perf_counter() - t
        kept, times, named = namer.rivals, {True: [], False: []}, {True: 0, False: 0}
        rng = np.random.default_rng(3)  # new photos of the named people: every face looked at
        mine = np.flatnonzero(np.isin(label, list(people)[:20]))
        new = [emb[rng.choice(mine, 3)] + rng.normal(scale=0.02, size=(3, emb.shape[1]))
               for _ in queries]  # fmt: skip
        for q in new * 2:
            for on in (True, False):
                namer.rivals = kept if on else None
                t = time.perf_counter()
                got = namer.name(q.astype(np.float32))
                times[on].append(time.perf_counter() - t)
                named[on] += sum(r["name"] != "unknown" for r in got)
    w, wo = np.median(times[True]), np.median(times[False])
    print(f"namer made in {made:.1f} s; a photo of 3 faces named in {1e3 * w:.1f} ms with "
          f"the unnamed stacks as rivals, {1e3 * wo:.1f} ms without (medians); faces "
          f"named {named[True]} / {named[False]}")  # fmt: skip
    print(f"ratio: {w / wo:.2f}x the time without")


if __name__ == "__main__":
    main()
