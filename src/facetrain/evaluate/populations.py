"""How a model's "same person" holds on each population: every pair of faces of a folder of
identities, and the distance under which it holds on all of them (`sure_below`).

A threshold is calibrated on one kind of face; where a model crowds a population, most
pairs of different people of it fall under that threshold too (the default model: 98% of
East-Asian strangers' pairs). `sure_below` is the smallest distance, over the sets given,
at which `FAR` of different people's pairs lie; `compare` and `verify` mark a "same" above
it unsure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from facetrain.distances import distance_matrix

FAR = 0.01  # different people's pairs under sure_below, on the most crowded set


@dataclass
class Figures:
    """One set's pairs: different people under the threshold (FAR) and under sure_below,
    the distance at FAR, and same-person pairs under sure_below and under the threshold."""

    name: str
    faces: int
    far_at_threshold: float
    far_at_sure: float | None
    distance_at_far: float
    same_at_sure: float | None
    same_at_threshold: float


BLOCK = 4_000_000  # distances computed at a time (32 MB of float64)


def figures(name: str, emb: np.ndarray, labels, distance: str, threshold: float,
            sure_below: float | None = None) -> Figures:  # fmt: skip
    """One set's figures over every pair of its faces, visited a block of rows at a time:
    memory linear in the faces (as one matrix, 20,000 faces took 9.5 GB and 30,000 more
    than a 24 GB machine has). The distance at FAR is np.quantile's (linear), exact: the
    smallest distances of different people's pairs are kept as the blocks go."""
    labels = np.asarray(labels)
    _, per = np.unique(labels, return_counts=True)
    n_same = int((per * (per - 1) // 2).sum())
    n_diff = len(labels) * (len(labels) - 1) // 2 - n_same
    if n_same == 0 or n_diff == 0:
        raise ValueError(f"{name}: needs two people or more, and someone with two faces")
    pos = (n_diff - 1) * FAR  # np.quantile's position: between the lo-th and lo+1-th
    lo = int(math.floor(pos))
    limits = [threshold] + ([] if sure_below is None else [sure_below])
    under = np.zeros((2, len(limits)), np.int64)  # (different, same) pairs under each limit
    smallest = _Smallest(min(lo + 2, n_diff))
    for d, same in _upper_pairs(emb, labels, distance):
        different = d[~same]
        for row, x in ((0, different), (1, d[same])):
            under[row] += [int((x < lim).sum()) for lim in limits]
        smallest.add(different)
    low = smallest.sorted()
    at_far = low[lo] + (pos - lo) * (low[min(lo + 1, len(low) - 1)] - low[lo])
    rate = (under / np.array([[n_diff], [n_same]])).tolist()  # [different, same][limit]
    at_sure = [None, None] if sure_below is None else [rate[0][1], rate[1][1]]
    return Figures(name, len(emb), rate[0][0], at_sure[0], float(at_far), at_sure[1],
                   rate[1][0])  # fmt: skip


def _upper_pairs(emb: np.ndarray, labels: np.ndarray, distance: str):
    """(distances, one person?) of every pair i < j, a block of rows i at a time."""
    n = len(emb)
    rows = max(1, BLOCK // max(n, 1))
    for s in range(0, n - 1, rows):
        e = min(s + rows, n)
        d = distance_matrix(emb[s:e], emb[s:], distance)
        upper = np.arange(n - s)[None, :] > np.arange(e - s)[:, None]
        yield d[upper], (labels[s:e, None] == labels[None, s:])[upper]


class _Smallest:
    """The k smallest of the values added so far, in memory about 2k."""

    def __init__(self, k: int):
        self.k, self.kept, self.bound = k, np.zeros(0), np.inf

    def add(self, x: np.ndarray) -> None:
        self.kept = np.concatenate([self.kept, x[x <= self.bound]])
        if len(self.kept) > 2 * self.k:
            self.kept = np.partition(self.kept, self.k - 1)[: self.k]
            self.bound = self.kept.max()

    def sorted(self) -> np.ndarray:
        return np.sort(self.kept)[: self.k]


def sure_below_of(sets: list[Figures]) -> tuple[float, str]:
    """(sure_below, the set it comes from): the smallest distance at FAR, rounded down."""
    worst = min(sets, key=lambda f: f.distance_at_far)
    return math.floor(worst.distance_at_far * 1000) / 1000, worst.name
