"""A look for new photos in a large library: the wall time and peak memory of placing a
look's new faces, the stacks they come near clustered again with them
(`cluster.restack_near`, `now`) against the new faces clustered alone and given to the
nearest stacks (`cluster.place`, `before`), on bench/library_scale.py's synthetic faces
(lookalike families; F against their identities). The library is stacked first (its
spacing rule), then `--new` faces arrive. Each measurement runs in its own process (peak
memory = that process's max RSS). `--few-queries 0`: every search among more than 50,000
faces builds an index, as before 2026-12-06 (`neighbours.by_index`).

    .venv/bin/python bench/look_scale.py [--faces 100000] [--new 100 1000] [--few-queries 0]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

from facetrain.devices import cpu_name
from library_scale import synthetic


def child(n: int, new: int, how: str, few: float | None = None) -> None:
    from arriving import place_alone
    from facetrain import neighbours

    if few is not None:  # 0: every search past 50,000 faces builds an index, as before
        neighbours.FEW_QUERIES = few
    from facetrain.library.cluster import FaceSet, People, agglomerate, local_scales, restack_near
    from facetrain.library.evaluate import scores

    emb, label, photo = synthetic(n)
    old = len(emb) - new
    with neighbours.keep(once=True):
        scale = local_scales(emb[:old], photo[:old], "squared_l2")
        stacks = agglomerate(emb[:old], photo[:old], 1.0, "squared_l2", scale=scale)[0]
    person = np.concatenate([stacks, np.full(new, -1)])
    t0 = time.perf_counter()
    with neighbours.keep(once=True):
        if how == "now":
            plan = restack_near(FaceSet(np.arange(len(emb)), emb, photo), person,
                                np.zeros(len(emb), bool), set(), 1.0)  # fmt: skip
        else:
            faces = FaceSet(np.arange(old, len(emb)), emb[old:], photo[old:])
            plan = place_alone(faces, People(emb[:old], stacks, photo[:old]), 1.0, "squared_l2")
    secs = time.perf_counter() - t0
    for pid, ids in plan.to_person:
        person[ids] = pid
    for ids in plan.new_stacks:
        person[ids] = person.max() + 1
    f = scores(person.tolist(), label.tolist())["bcubed_f"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"secs": secs, "peak_mb": peak, "f": f}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faces", type=int, default=100_000)
    ap.add_argument("--new", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--few-queries", type=float, help="neighbours.FEW_QUERIES (0: before)")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(int(args.child[0]), int(args.child[1]), args.child[2], args.few_queries)
        return 0
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; {args.faces} faces "
          "stacked, then a look's new faces placed")  # fmt: skip
    for new in args.new:
        got = {}
        for how in ("before", "now"):
            cmd = [sys.executable, __file__, "--child", str(args.faces), str(new), how]
            cmd += [] if args.few_queries is None else ["--few-queries", str(args.few_queries)]
            got[how] = json.loads(subprocess.run(cmd, capture_output=True, text=True,
                                                 check=True).stdout.splitlines()[-1])  # fmt: skip
        b, w = got["before"], got["now"]
        print(f"{new} new faces: before {b['secs']:.1f} s, {b['peak_mb']:.0f} MB, F {b['f']:.4f}"
              f" | now {w['secs']:.1f} s, {w['peak_mb']:.0f} MB, F {w['f']:.4f} | time "
              f"{w['secs'] / b['secs']:.2f}x", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
