"""`find` in a folder, on every population: of the photos it returns for a face, how many
show that person (precision), and how many of that person's photos it returns (recall)?

The faces are those of each set of bench/library_populations.py (photos of one usable
face, cached; the default model) and the library mixing them. Three ways to look:

- **in the folder**: each face looked for among all the set's faces — the folder holding
  the query's own photo — its own photo left out of the counts;
- **held out**: one photo of each person (2 or more photos) taken out of the folder and
  looked for there, as `facetrain.find("me.jpg", "photos/")` is used; `--rounds` draws;
- **small folders**: k people × m photos drawn from the set (`SMALL`), one photo of each
  held out and looked for among the rest; `--draws` folders of each kind.

Four rules decide a hit: one threshold (the model's calibrated one, as `find` first did);
each pair's limit from the folder's spacing (`use.api.within_limits`, as `find` did
until 2026-12-06); the stacks (`use.api.in_its_stack`: the folder's faces stacked as the
library stacks them with no names, the query placed as a new face is — in the folder,
the query's own stack of one clustering of the set); and both at once, as `find`
does now.

    .venv/bin/python bench/find_precision.py [--sets NAME ...] [--rounds 3] [--draws 24]
    .venv/bin/python bench/find_precision.py --scale 20000 100000   # the time of a find

Prints per set, way and rule: precision, recall, F1 and the share of queries with at
least one photo of someone else among their hits; then the time to stack each folder and
to place one query.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from facetrain.devices import cpu_name
from library_populations import MODEL, SETS, with_mixed


def scores(hit: np.ndarray, same: np.ndarray) -> dict:
    """Precision, recall, F1 (pooled over queries) and queries with a wrong hit."""
    tp, fp = (hit & same).sum(), (hit & ~same).sum()
    p, r = tp / max(tp + fp, 1), tp / max(same.sum(), 1)
    return {"precision": p, "recall": r, "f1": 2 * p * r / max(p + r, 1e-12),
            "wrong_queries": (hit & ~same).any(1).mean()}  # fmt: skip


def in_the_folder(e, truth, photo, thr: float, dist: str) -> dict:
    """Each face among all the set's faces, its own photo left out of the counts."""
    from facetrain.library.cluster import with_new_faces
    from facetrain.use.api import within_limits

    d, spaced = within_limits(e, e, thr, dist, photo)
    stacks = with_new_faces(e, photo, np.full(len(e), -1), thr, dist)
    off = ~np.eye(len(e), dtype=bool)
    same = (truth[:, None] == truth[None, :]) & off
    mine = stacks[:, None] == stacks[None, :]
    return {"one threshold": scores((d < thr) & off, same),
            "pair limits": scores(spaced & off, same), "stacks": scores(mine & off, same),
            "stacks and pair limits": scores(mine & spaced & off, same)}  # fmt: skip


def held_out(e, truth, photo, q, thr: float, dist: str) -> tuple[dict, float, float]:
    """The faces `q` taken out and looked for among the others: the scores of each rule,
    the seconds to stack the folder, the mean seconds to place one query."""
    from facetrain.library.cluster import with_new_faces
    from facetrain.use.api import in_its_stack, within_limits

    rest = np.setdiff1d(np.arange(len(e)), q)
    t = time.perf_counter()
    stacks = with_new_faces(e[rest], photo[rest], np.full(len(rest), -1), thr, dist)
    stacked = time.perf_counter() - t
    d, spaced = within_limits(e[q], e[rest], thr, dist, photo[rest])
    t = time.perf_counter()
    mine = np.array([in_its_stack(e[i], e[rest], photo[rest], stacks, thr, dist) for i in q])
    placed = (time.perf_counter() - t) / len(q)
    same = truth[q][:, None] == truth[rest][None, :]
    return ({"one threshold": scores(d < thr, same), "pair limits": scores(spaced, same),
             "stacks": scores(mine, same),
             "stacks and pair limits": scores(mine & spaced, same)}, stacked, placed)  # fmt: skip


def one_of_each(truth: np.ndarray, among: np.ndarray, rng) -> np.ndarray:
    """One face of each person of `among` (faces) with 2 or more there."""
    people, counts = np.unique(truth[among], return_counts=True)
    return np.array([rng.choice(among[truth[among] == p]) for p in people[counts >= 2]])


def small_folder(truth: np.ndarray, rng, k: int, m: int) -> np.ndarray | None:
    """The faces of k people with m photos each, drawn (None: the set has too few)."""
    people, counts = np.unique(truth, return_counts=True)
    if (counts >= m).sum() < k:
        return None
    who = rng.choice(people[counts >= m], k, replace=False)
    return np.concatenate([rng.choice(np.flatnonzero(truth == w), m, replace=False) for w in who])


def mean_rows(rounds: list[dict]) -> dict:
    return {r: {k: np.mean([x[r][k] for x in rounds]) for k in rounds[0][r]} for r in rounds[0]}


SMALL = [(3, 4), (4, 4), (5, 6), (6, 8), (10, 8), (15, 9)]  # people × photos, one held out


def ways_of(e, truth, photo, thr: float, dist: str, rounds: int, draws: int, times: list):
    """Each way to look and its rows: in the folder, held out (`rounds` draws), and held
    out of small folders (`draws` each kind)."""
    ways = {"in the folder": in_the_folder(e, truth, photo, thr, dist)}
    rng, got = np.random.default_rng(0), []
    for _ in range(rounds):
        q = one_of_each(truth, np.arange(len(e)), rng)
        rows, stacked, placed = held_out(e, truth, photo, q, thr, dist)
        got.append(rows)
        times.append((len(e), stacked, placed))
    ways["held out"] = mean_rows(got)
    for k, m in SMALL:
        folders = [small_folder(truth, rng, k, m) for _ in range(draws)]
        if any(f is None for f in folders):
            continue
        got = []
        for f in folders:
            q = one_of_each(truth[f], np.arange(len(f)), rng)
            rows, _, _ = held_out(e[f], truth[f], photo[f], q, thr, dist)
            got.append(rows)
        ways[f"{k}×{m}, one held out"] = mean_rows(got)
    return ways


def at_scale(n: int, queries: int = 10) -> None:
    """A find among n synthetic faces (bench/library_scale.py's lookalike families, its
    threshold 1.0): the folder stacked once, then per query (medians) the pair limits and
    the placement among the stacks, as `Recognizer.find` runs them, against the pair
    limits as find measured them before (the spacing of every face), in the same run."""
    from facetrain import neighbours
    from facetrain.library.cluster import with_new_faces
    from facetrain.use.api import in_its_stack, within_limits
    from library_scale import synthetic

    emb, _, photo = synthetic(n + queries)
    e, p = emb[:n], photo[:n]
    t = time.perf_counter()
    with neighbours.keep(once=True):
        stacks = with_new_faces(e, p, np.full(n, -1), 1.0, "squared_l2")
    stacked, limits, placing, before = time.perf_counter() - t, [], [], []
    copies = neighbours.copy_radius(1.0)
    for q in emb[n:]:
        t = time.perf_counter()  # the pair limits as find measured them before: every face
        neighbours.kth_other_photo(e, p, "squared_l2", neighbours.K, copies=copies)
        neighbours.kth_in(q[None], np.full(1, -1), e, p, "squared_l2", neighbours.K,
                          copies=copies)  # fmt: skip
        before.append(time.perf_counter() - t)
        t = time.perf_counter()
        within_limits(q[None], e, 1.0, "squared_l2", p)
        limits.append(time.perf_counter() - t)
        t = time.perf_counter()
        in_its_stack(q, e, p, stacks, 1.0, "squared_l2")
        placing.append(time.perf_counter() - t)
    now = np.median(limits) + np.median(placing)
    print(f"{n} faces: stacked in {stacked:.1f} s; a find: pair limits "
          f"{np.median(limits):.2f} s (before: {np.median(before):.2f} s), placed among the "
          f"stacks {np.median(placing):.2f} s; {np.median(before) / now:.2f}x")  # fmt: skip


def main() -> None:
    from facetrain.inference.compiled import open_for_use

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", nargs="*", default=list(SETS))
    ap.add_argument("--rounds", type=int, default=3, help="held-out draws a set")
    ap.add_argument("--draws", type=int, default=24, help="small folders of each kind")
    ap.add_argument("--scale", type=int, nargs="*", help="instead: a find among N faces")
    args = ap.parse_args()
    if args.scale:
        for n in args.scale:
            at_scale(n)
        return
    pre = open_for_use(MODEL).pre
    thr, dist = pre.threshold, pre.distance
    print(f"{cpu_name()}, {os.cpu_count()} cores; {MODEL}, threshold {thr:.3f} {dist}")
    print("| set | faces | way | rule | precision | recall | F1 | queries with a wrong hit |")
    print("|---|---|---|---|---|---|---|---|")
    times = []
    for name, s in with_mixed(args.sets).items():
        keep = s["truth"] != ""
        e, truth, photo = s["emb"][keep], s["truth"][keep], s["photo"][keep]
        folder_times: list = []
        ways = ways_of(e, truth, photo, thr, dist, args.rounds, args.draws, folder_times)
        times.append((name, *folder_times[0]))
        for way, rows in ways.items():
            for rule, r in rows.items():
                print(f"| {name} | {len(e)} | {way} | {rule} | {r['precision']:.3f} | "
                      f"{r['recall']:.3f} | {r['f1']:.3f} | {r['wrong_queries']:.1%} |",
                      flush=True)  # fmt: skip
    for name, n, stacked, placed in times:
        print(f"{name}: {n} faces stacked in {stacked:.2f} s; a query placed in "
              f"{placed * 1000:.0f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
