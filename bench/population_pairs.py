"""`eval-populations` on a large population: wall time and peak memory of its figures over
every pair of faces, block by block (`evaluate.populations.figures`), against the one
N x N matrix it held before (kept here as the baseline), on synthetic unit embeddings of
20 faces a person. Each measurement runs in its own process (peak = its max RSS, Python
and libraries included); both must give the same figures.

    .venv/bin/python bench/population_pairs.py [--faces 10000 20000]

The last line: `N faces: blocks X s, P MB; one matrix Y s, Q MB; ratio Y/X`.
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


def synthetic(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.arange(n) // 20
    emb = rng.normal(size=(n // 20 + 1, 128))[labels] + rng.normal(scale=0.9, size=(n, 128))
    return (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32), labels


def one_matrix(emb, labels, threshold: float) -> dict:
    """The figures as `eval-populations` computed them before: every pair at once."""
    from facetrain.distances import distance_matrix
    from facetrain.evaluate.populations import FAR

    iu = np.triu_indices(len(emb), 1)
    d = distance_matrix(emb, emb, "squared_l2")[iu]
    same = (labels[:, None] == labels[None, :])[iu]
    return {"far_at_threshold": float((d[~same] < threshold).mean()),
            "distance_at_far": float(np.quantile(d[~same], FAR)),
            "same_at_threshold": float((d[same] < threshold).mean())}  # fmt: skip


def child(n: int, method: str) -> None:
    from facetrain.evaluate.populations import figures

    emb, labels = synthetic(n)
    t0 = time.perf_counter()
    if method == "blocks":
        f = vars(figures("synthetic", emb, labels, "squared_l2", 1.0))
    else:
        f = one_matrix(emb, labels, 1.0)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    keys = ("far_at_threshold", "distance_at_far", "same_at_threshold")
    print(json.dumps({"seconds": seconds, "peak_mb": peak} | {k: f[k] for k in keys}))


def measure(n: int, method: str) -> dict:
    cmd = [sys.executable, __file__, "--child", method, "--faces", str(n)]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faces", type=int, nargs="+", default=[10_000, 20_000])
    ap.add_argument("--child", choices=["blocks", "matrix"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.faces[0], args.child)
    print(f"{cpu_name()}, {len(os.sched_getaffinity(0))} cores")
    print("| faces | method | seconds | peak MB | distance at 1% FAR |\n|---|---|---|---|---|")
    last = ""
    for n in args.faces:
        got = {m: measure(n, m) for m in ("blocks", "matrix")}
        for m, r in got.items():
            print(f"| {n:,} | {m} | {r['seconds']:.1f} | {r['peak_mb']:.0f} | "
                  f"{r['distance_at_far']:.6f} |", flush=True)  # fmt: skip
        b, m = got["blocks"], got["matrix"]
        for k in ("far_at_threshold", "distance_at_far", "same_at_threshold"):
            assert abs(b[k] - m[k]) < 1e-9, (k, b[k], m[k])
        last = (f"{n} faces: blocks {b['seconds']:.1f} s, {b['peak_mb']:.0f} MB; one matrix "
                f"{m['seconds']:.1f} s, {m['peak_mb']:.0f} MB; ratio "
                f"{m['seconds'] / b['seconds']:.2f}x time, {m['peak_mb'] / b['peak_mb']:.1f}x "
                "memory")  # fmt: skip
    print(last)


if __name__ == "__main__":
    main()
