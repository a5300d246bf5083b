"""A look for new photos in a large real library: every real face at hand
(`bench/index_populations.py`'s library: LFW, mini-train, more-train, the East- and
South-Asian sets, about 48,600 faces), stacked by the library's rule with some faces left
out; then those faces arrive (`cluster.with_new_faces`, what `Library.stack_new` does
with no names). Two draws of the arriving faces: 20 photos each of 5 people (a family's
new photos) and 100 faces drawn at random from the whole library.

The working tree's code (and with `--baseline REV` that revision's too) runs in its own
process on the same faces (peak memory = that process's max RSS) and prints the seconds
of the look alone, how many faces it clustered again, and how many pairs of faces it
puts together or apart otherwise than stacking every face at once does; then each
set's BCubed F within the whole library (`index_populations.bcubed`).

    .venv/bin/python bench/look_real.py [--baseline REV] [--draws five random]

With a baseline, the last lines are the ratio of the seconds, baseline / now, a draw.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from facetrain.devices import cpu_name

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster_memory import child, tree_of  # noqa: E402
from index_populations import EMBEDDINGS, bcubed, library  # noqa: E402

CHILD = """
import json, resource, sys, time
import numpy as np
from facetrain.library import cluster
z = np.load(sys.argv[1])
emb, photo, new, thr, dist = z["emb"], z["photo"], z["new"], float(sys.argv[2]), sys.argv[3]
stack = np.full(len(emb), -1)
stack[~new] = cluster.agglomerate(emb[~new], photo[~new], thr, dist, spacing=True)[0]
seen = []
restack = cluster.restack_near
def counted(faces, person, *a, **k):
    plan = restack(faces, person, *a, **k)
    seen.append(sum(len(ids) for _, ids in plan.to_person) + sum(map(len, plan.new_stacks)))
    return plan
cluster.restack_near = counted
t0 = time.perf_counter()
got = cluster.with_new_faces(emb, photo, stack, thr, dist)
s = time.perf_counter() - t0
np.save(sys.argv[4], got)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": round(s, 2), "peak_mb": round(peak), "restacked": seen[0]}))
"""


def draw(truth: np.ndarray, how: str, seed: int = 0) -> np.ndarray:
    """The faces that arrive: 20 of each of 5 people with 40 or more, or 100 at random."""
    rng, new = np.random.default_rng(seed), np.zeros(len(truth), bool)
    if how == "random":
        new[rng.choice(len(truth), 100, replace=False)] = True
        return new
    people = [p for p, c in zip(*np.unique(truth, return_counts=True)) if p and c >= 40]
    for p in rng.choice(people, 5, replace=False):
        new[rng.choice(np.flatnonzero(truth == p), 20, replace=False)] = True
    return new


def apart(a: np.ndarray, b: np.ndarray) -> int:
    """Pairs of faces one labelling puts together and the other apart."""
    pairs = lambda x: int((np.unique(x, return_counts=True)[1] ** 2).sum())  # noqa: E731
    both = pairs(np.unique(np.stack([a, b], 1), axis=0, return_inverse=True)[1].ravel())
    return (pairs(a) - both + pairs(b) - both) // 2


def by_population(labels: np.ndarray, lib: dict) -> dict[str, float]:
    """BCubed F of each set's faces, each face's precision and recall taken over the whole
    library (`index_populations.bcubed`: a face stacked with another set's faces counts)."""
    return {s: bcubed(labels, lib["truth"], lib["set"] == s) for s in np.unique(lib["set"])}


def main(argv=None) -> int:
    from facetrain.inference.compiled import open_for_use
    from facetrain.library.cluster import agglomerate

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", help="a revision to measure against")
    ap.add_argument("--draws", nargs="+", default=["five", "random"])
    args = ap.parse_args(argv)
    pre = open_for_use("pretrained:dlib_resnet").pre
    lib = library(EMBEDDINGS)
    emb, photo = lib["emb"], lib["photo"]
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; {len(emb)} real faces; "
          f"threshold {pre.threshold:.3f} {pre.distance}")  # fmt: skip
    at_once = agglomerate(emb, photo, pre.threshold, pre.distance, spacing=True)[0]
    ratios, fs = [], {("", "at once"): by_population(at_once, lib)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        trees = {"now": Path(__file__).parents[1] / "src"}
        if args.baseline:
            trees = {"baseline": tree_of(args.baseline, tmp)} | trees
        for how in args.draws:
            np.savez(tmp / "faces.npz", emb=emb, photo=photo, new=draw(lib["truth"], how))
            got = {}
            for name, src in trees.items():
                got[name] = child(CHILD, src, tmp / "faces.npz", pre.threshold,
                                  pre.distance, tmp / f"{name}.npy")  # fmt: skip
                if "error" not in got[name]:
                    labels = np.load(tmp / f"{name}.npy")
                    got[name]["pairs_unlike_at_once"] = apart(labels, at_once)
                    fs[how, name] = by_population(labels, lib)
                print(f"{how:<7} {name:<9} {got[name]}")
            if any("error" in g for g in got.values()):
                return 1
            if args.baseline:
                ratios.append((how, got["baseline"]["seconds"] / got["now"]["seconds"]))
    print("BCubed F of each set's faces within the whole library:")
    for (how, name), f in fs.items():
        print(f"  {how:<7} {name:<9} " + "  ".join(f"{p} {v:.4f}" for p, v in f.items()))
    for how, r in ratios:
        print(f"{how}: look seconds baseline/now {r:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
