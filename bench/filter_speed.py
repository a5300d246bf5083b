"""Work per identity on a large dataset, against the loops it replaced (a pass over every
image's label for each identity, kept here as the baselines), on synthetic unit embeddings,
alternating rounds; each pair must give the same answer:

- `facetrain filter`'s outlier scores: each image's distance to its identity's centre
  (`use.filter.centre_distances`);
- `classify`'s hold-out split when it compares methods (`use.classify.holdout_split`).

    .venv/bin/python bench/filter_speed.py [--images 100000] [--identities 10000]

A line each: `WHAT, N images of K identities: loop X s, now Y s, ratio X/Y`.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from facetrain.devices import cpu_name
from facetrain.distances import pair_distances
from facetrain.use.classify import holdout_split
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


def loop_split(labels: list[str], test_fraction: float, seed: int = 0):
    """The hold-out split as `classify` made it before: one pass over the labels a person."""
    rng = np.random.default_rng(seed)
    labels_a = np.asarray(labels)
    train, test = [], []
    for name in sorted(set(labels)):
        idx = rng.permutation(np.flatnonzero(labels_a == name))
        k = 0 if len(idx) < 2 else min(len(idx) - 1, max(1, round(test_fraction * len(idx))))
        test += idx[:k].tolist()
        train += idx[k:].tolist()
    return np.array(sorted(train), dtype=np.int64), np.array(sorted(test), dtype=np.int64)


def compare(what: str, before, now, same, rounds: int) -> str:
    """Median seconds of `before()` and `now()`, alternating; `same(a, b)` of their answers."""
    times: dict[str, list[float]] = {"loop": [], "now": []}
    for _ in range(rounds):
        for name, f in (("loop", before), ("now", now)):
            t0 = time.perf_counter()
            got = f()
            times[name].append(time.perf_counter() - t0)
            if name == "loop":
                want = got
            else:
                assert same(got, want), what
    b, n = (float(np.median(times[k])) for k in ("loop", "now"))
    print(f"{what} rounds: loop {', '.join(f'{x:.2f}' for x in times['loop'])} s; now "
          f"{', '.join(f'{x:.2f}' for x in times['now'])} s")  # fmt: skip
    return f"loop {b:.2f} s, now {n:.2f} s, ratio {b / n:.1f}x"


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
    size = f"{a.images} images of {len(set(labels))} identities"
    print(f"{cpu_name()}, {len(os.sched_getaffinity(0))} cores; {size}")
    scores = compare("filter scores", lambda: loop(t), lambda: centre_distances(t),
                     lambda x, y: np.abs(x - y).max() < 1e-5, a.rounds)  # fmt: skip
    split = compare("hold-out split", lambda: loop_split(labels, 0.2),
                    lambda: holdout_split(labels, 0.2),
                    lambda x, y: all(map(np.array_equal, x, y)), a.rounds)  # fmt: skip
    print(f"hold-out split, {size}: {split}")
    print(f"filter scores, {size}: {scores}")


if __name__ == "__main__":
    main()
