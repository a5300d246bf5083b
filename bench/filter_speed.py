"""`facetrain filter`'s outlier scores on a large dataset: each image's distance to its
identity's centre (`use.filter.centre_distances`) against the loop it replaced (a pass over
every image's label for each identity, kept here as the baseline), on synthetic unit
embeddings, alternating rounds; both must give the same scores.

    .venv/bin/python bench/filter_speed.py [--images 100000] [--identities 10000]

The last line: `N images of K identities: loop X s, now Y s, ratio X/Y`.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from facetrain.distances import pair_distances
from facetrain.use.embeddings import Table
from facetrain.use.filter import centre_distances


def loop(t: Table, distance: str = "squared_l2") -> np.ndarray:
    """The scores as `filter` computed them before: one pass over the labels a person."""
    labels = np.asarray(t.labels)
    out = np.zeros(len(t), np.float64)
    for name in set(t.labels):
        idx = np.flatnonzero(labels == name)
        c = t.embeddings[idx].mean(0)
        c = c / max(np.linalg.norm(c), 1e-12)
        out[idx] = pair_distances(t.embeddings[idx], np.repeat(c[None], len(idx), 0), distance)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--identities", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(a.images, 128)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    labels = [f"person{k:06d}" for k in rng.integers(0, a.identities, a.images)]
    t = Table(emb, [f"{i}.jpg" for i in range(a.images)], labels)
    print(f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores; "
          f"{a.images} images of {len(set(labels))} identities")  # fmt: skip
    times: dict[str, list[float]] = {"loop": [], "now": []}
    for _ in range(a.rounds):
        for name, f in (("loop", loop), ("now", centre_distances)):
            t0 = time.perf_counter()
            got = f(t)
            times[name].append(time.perf_counter() - t0)
            if name == "loop":
                want = got
            else:
                assert np.abs(got - want).max() < 1e-5, np.abs(got - want).max()
    before, now = (float(np.median(times[k])) for k in ("loop", "now"))
    print(f"rounds: loop {', '.join(f'{x:.2f}' for x in times['loop'])} s; now "
          f"{', '.join(f'{x:.2f}' for x in times['now'])} s")  # fmt: skip
    print(f"{a.images} images of {len(set(labels))} identities: loop {before:.2f} s, now "
          f"{now:.2f} s, ratio {before / now:.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
