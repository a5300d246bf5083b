"""Photos that arrive after the first stacking, on every population: the stacks a library
ends with when half its photos were stacked first (`library cluster`) and the rest came
in later looks for new photos (`library scan`, the page's button), against the stacks of
the same photos stacked at once. Two ways to place a look's new faces, measured in the
same run: `before`, the new faces clustered alone and each cluster given to the stack it
is nearest to (`cluster.place`, what scans did until now), and `now`, the stacks they
come near clustered again with them (`cluster.restack_near`, what `Library.stack_new`
does). BCubed F per set and on the library mixing them all (bench/library_populations'
sets and cache), default model, no names.

    .venv/bin/python bench/arriving.py [--looks 5] [--first 0.5] [--seeds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from facetrain.devices import cpu_name
from library_populations import MODEL, SETS, bcubed_f, stacks_with_no_names, with_mixed


def arriving(s: dict, threshold: float, distance: str, first: float, looks: int, seed: int,
             how: str) -> np.ndarray:  # fmt: skip
    """A stack label per face: the photos of a `first` share stacked at once, the others
    placed in `looks` batches as a scan places new faces (`how`: before, now)."""
    photos = np.random.default_rng(seed).permutation(np.unique(s["photo"]))
    cut = int(len(photos) * first)
    batches = [photos[:cut], *np.array_split(photos[cut:], looks)]
    labels = np.full(len(s["emb"]), -1, np.int64)
    start = np.isin(s["photo"], batches[0])
    sub = {k: v[start] for k, v in s.items()}
    labels[start] = stacks_with_no_names(sub, threshold, distance)
    for batch in batches[1:]:
        seen = (labels >= 0) | np.isin(s["photo"], batch)
        plan = (placed_before if how == "before" else placed_now)(
            s, np.flatnonzero(seen), labels, threshold, distance)  # fmt: skip
        for person, ids in plan.to_person:
            labels[ids] = person
        for ids in plan.new_stacks:
            labels[ids] = labels.max() + 1
    return labels


def placed_before(s: dict, seen: np.ndarray, labels: np.ndarray, threshold: float,
                  distance: str):  # fmt: skip
    """The new faces clustered alone, each cluster to the stack nearest it on average."""
    from facetrain.library.cluster import FaceSet, People

    new, old = seen[labels[seen] < 0], seen[labels[seen] >= 0]
    faces = FaceSet(new, s["emb"][new], s["photo"][new])
    return place_alone(faces, People(s["emb"][old], labels[old], s["photo"][old]), threshold,
                       distance)  # fmt: skip


def place_alone(faces, known, threshold: float, distance: str):
    """How scans placed new faces until 2026-12-04, kept here as the baseline: the new
    faces' spacing among all faces, the new faces clustered among themselves, and each
    cluster given to the known stack nearest it on average (in units of each pair's limit,
    taken from the new face's side; never a stack with a face on one of its photos), the
    rest new stacks."""
    from facetrain.library.cluster import Placement, agglomerate, concat_rows, local_scales

    n = len(faces.ids)
    scale = local_scales(concat_rows(faces.emb, known.emb),
                         np.concatenate([faces.photo, known.photo]), distance, rows=n)  # fmt: skip
    labels = agglomerate(faces.emb, faces.photo, threshold, distance, scale=scale)[0]
    out = Placement([], [])
    for k in range(labels.max() + 1 if n else 0):
        idx = np.flatnonzero(labels == k)
        best = _nearest(known, faces.emb[idx], faces.photo[idx], scale[idx], threshold, distance)
        ids = faces.ids[idx].tolist()
        out.to_person.append((best, ids)) if best is not None else out.new_stacks.append(ids)
    return out


def _nearest(known, emb, photo, scale, threshold: float, distance: str) -> int | None:
    from facetrain.distances import distance_matrix
    from facetrain.neighbours import pair_limits

    if len(known.person) == 0:
        return None
    ids, col = np.unique(known.person, return_inverse=True)
    d = (distance_matrix(emb, known.emb, distance) / pair_limits(scale, None, threshold)).sum(0)
    mean = np.bincount(col, weights=d / len(emb), minlength=len(ids)) / np.bincount(col)
    for k in np.argsort(mean, kind="stable"):
        if mean[k] >= 1.0:
            return None
        if not np.isin(photo, known.photo[col == k]).any():
            return int(ids[k])
    return None


def placed_now(s: dict, seen: np.ndarray, labels: np.ndarray, threshold: float,
               distance: str):  # fmt: skip
    """The stacks the new faces come near, clustered again with them (the library's way)."""
    from facetrain.library.cluster import FaceSet, restack_near

    faces = FaceSet(seen, s["emb"][seen], s["photo"][seen])
    confirmed = np.zeros(len(seen), bool)  # no names
    return restack_near(faces, labels[seen], confirmed, set(), threshold, distance)


def main(argv=None) -> int:
    from facetrain.inference.compiled import open_for_use

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", nargs="*", default=list(SETS))
    ap.add_argument("--looks", type=int, default=5, help="batches the later photos come in")
    ap.add_argument("--first", type=float, default=0.5, help="share of photos stacked first")
    ap.add_argument("--seeds", type=int, default=3, help="orders of arrival, averaged")
    args = ap.parse_args(argv)
    fm = open_for_use(MODEL)
    thr, distance = fm.pre.threshold, fm.pre.distance
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; {MODEL}; "
          f"{args.first:.0%} of the photos stacked first, the rest in {args.looks} looks; "
          f"mean of {args.seeds} orders")  # fmt: skip
    print(f"{'set':<20}{'faces':>6} | {'at once F':>9} | {'before F':>8}{'min':>7}{'s':>6} | "
          f"{'now F':>7}{'min':>7}{'s':>6} | now - at once")  # fmt: skip
    for name, s in with_mixed(args.sets).items():
        once = bcubed_f(stacks_with_no_names(s, thr, distance), s["truth"])
        cells = []
        for how in ("before", "now"):
            t0 = time.time()
            got = [bcubed_f(arriving(s, thr, distance, args.first, args.looks, k, how),
                            s["truth"]) for k in range(args.seeds)]  # fmt: skip
            cells.append(f"{np.mean(got):>8.3f}{min(got):>7.3f}{time.time() - t0:>6.1f}")
        print(f"{name:<20}{len(s['emb']):>6} | {once:>9.3f} | {cells[0]} | {cells[1]} | "
              f"{np.mean(got) - once:+.3f}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
