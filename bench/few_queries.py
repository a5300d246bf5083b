"""A few faces searched among many: every pair compared against an index built for the
search (`neighbours.by_index`). Past `neighbours.EXACT_SEARCH` faces an index proposes
the neighbours; building one costs seconds (100,000 faces) to a minute (1,000,000), which
a search of a few faces — a find's face, a look's new photos, the stacks they come near —
paid every time. Per N (bench/library_scale.py's synthetic lookalike families) and per
number of query faces q: the seconds of a search through a new index (as before) and
comparing every pair (what a search of up to `FEW_QUERIES`·√N faces does now), the same
run, and the share of the k nearest distances the index got right (every pair: exact).
Last, `classify predict` a photo at a time against a gallery of `--classify` known
faces, both ways; and with `--namer K ...`, `library identify` of K photos in a library
of the first `--faces` N faces: the library's index built at the namer's first search
(before) and when due (`neighbours.WhenDue`, now).

    .venv/bin/python bench/few_queries.py [--faces 100000 1000000] [--queries 1 100 ...]
                                          [--classify 100000]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from facetrain.devices import cpu_name
from library_scale import synthetic


def one_search(n: int, q: int, base, bphoto, query) -> str:
    """The line of one search of q faces among n: through a new index (before) and every
    pair compared (what a search of up to `FEW_QUERIES`·√N faces does now)."""
    from facetrain import neighbours

    qphoto, k = np.full(q, -1), neighbours.K
    t = time.perf_counter()
    index = neighbours._build(base, "squared_l2")
    got = neighbours.nearest_in(query, qphoto, base, bphoto, "squared_l2", k, index)
    before = time.perf_counter() - t
    now = "an index" if neighbours.by_index(q, n) else "every pair"
    rule, neighbours.FEW_QUERIES = neighbours.FEW_QUERIES, np.inf
    t = time.perf_counter()
    exact = neighbours.nearest_in(query, qphoto, base, bphoto, "squared_l2", k)
    every = time.perf_counter() - t
    neighbours.FEW_QUERIES = rule
    same = np.isclose(got, exact, rtol=1e-5).mean()
    return (
        f"{n} faces, {q} searched: a new index {before:.2f} s, every pair {every:.2f} s "
        f"({before / every:.1f}x); now: {now}; the index's distances right {same:.4f}"
    )


def photos_named(n: int, photos: int = 20) -> str:
    """`classify predict` a photo at a time (three faces each) against a gallery of n known
    faces, their spacing measured once: each photo's faces searched through a new index
    (before) and compared with every known face (now), the same run."""
    from facetrain import neighbours
    from facetrain.use.classify import Classifier

    emb, label, _ = synthetic(n + 3 * photos)
    clf = Classifier("centroid", emb[:n], [f"p{x}" for x in label[:n]], 1.0, "squared_l2",
                     "given").fit()  # fmt: skip
    clf.among  # noqa: B018 — measured once, before either way is timed
    asked = [emb[n + 3 * k : n + 3 * k + 3] for k in range(photos)]
    seconds, names = [], []
    for few in (0, neighbours.FEW_QUERIES):  # 0: every search of many faces used an index
        rule, neighbours.FEW_QUERIES = neighbours.FEW_QUERIES, few
        t = time.perf_counter()
        names.append([r["name"] for a in asked for r in clf.predict(a, one_photo=True)])
        seconds.append(time.perf_counter() - t)
        neighbours.FEW_QUERIES = rule
    same = sum(a == b for a, b in zip(*names, strict=True))
    return (
        f"classify predict, {photos} photos of 3 faces among {n} known faces: "
        f"{seconds[0] / photos:.3f} s a photo before, {seconds[1] / photos:.3f} s now "
        f"({seconds[0] / seconds[1]:.1f}x); {same} of {len(names[0])} names the same"
    )


def namer_photos(n: int, counts: list[int]) -> list[str]:
    """`library identify` of k photos (three faces each) in a library of n faces with 20
    people named (20 faces each): the namer made, then the photos named, with the
    library's index built at the namer's first search (before: `FEW_QUERIES` and `DUE` 0)
    and when due (now: `neighbours.WhenDue`), the same names required."""
    import sys
    import tempfile
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from facetrain import neighbours
    from facetrain.library import store
    from helpers import embedded_library

    emb, _, photo = synthetic(n + 3 * max(counts))
    lines = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        embedded_library(Path(tmp) / "lib.db", emb[:n], 0.19, photo[:n].tolist()) as lib,
    ):
        with store.transaction(lib.con):
            for k in range(20):
                pid = store.new_person(lib.con)
                store.name_person(lib.con, pid, f"p{k}")
                store.assign(lib.con, [(pid, 1 + 20 * k + i) for i in range(20)], confirmed=1)
        for count in counts:
            asked = [emb[n + 3 * k : n + 3 * k + 3] for k in range(count)]
            seconds, names = [], []
            for at_once in (True, False):
                rule = neighbours.FEW_QUERIES, neighbours.DUE
                if at_once:
                    neighbours.FEW_QUERIES, neighbours.DUE = 0, 0
                t = time.perf_counter()
                namer = lib.namer()
                names.append([r["name"] for a in asked for r in namer.name(a)])
                seconds.append(time.perf_counter() - t)
                neighbours.FEW_QUERIES, neighbours.DUE = rule
            same = names[0] == names[1]
            lines.append(f"a namer and {count} photos of 3 faces, library of {n} faces: index "
                         f"at once {seconds[0]:.2f} s, when due {seconds[1]:.2f} s "
                         f"({seconds[0] / seconds[1]:.2f}x); the same names: {same}")  # fmt: skip
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faces", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--queries", type=int, nargs="*", help="default: 1, 10, 100, √N, 4·√N, 8·√N")
    ap.add_argument(
        "--classify",
        type=int,
        nargs="*",
        default=[100_000],
        help="galleries for classify predict (a minute a photo before at 10⁶)",
    )
    ap.add_argument(
        "--namer",
        type=int,
        nargs="*",
        default=[],
        help="photos named in a library of --faces[0] faces (e.g. 1 10 100 300)",
    )
    args = ap.parse_args()
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores")
    for n in args.faces:
        emb, _, photo = synthetic(n + 10_000)
        root = int(np.sqrt(n))
        for q in args.queries or [1, 10, 100, root, 4 * root, 8 * root]:
            print(one_search(n, q, emb[:n], photo[:n], emb[n : n + q]), flush=True)

    for n in args.classify:
        print(photos_named(n), flush=True)
    if args.namer:
        print("\n".join(namer_photos(args.faces[0], args.namer)), flush=True)


if __name__ == "__main__":
    main()
