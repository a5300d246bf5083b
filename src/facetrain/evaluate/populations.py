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


def all_pairs(emb: np.ndarray, labels, distance: str) -> tuple[np.ndarray, np.ndarray]:
    """Every pair's distance, and whether it is one person."""
    labels = np.asarray(labels)
    iu = np.triu_indices(len(emb), 1)
    return distance_matrix(emb, emb, distance)[iu], (labels[:, None] == labels[None, :])[iu]


def figures(name: str, emb: np.ndarray, labels, distance: str, threshold: float,
            sure_below: float | None = None) -> Figures:  # fmt: skip
    d, same = all_pairs(emb, labels, distance)
    if same.all() or not same.any():
        raise ValueError(f"{name}: needs two people or more, and someone with two faces")

    def under(x: np.ndarray, limit: float | None) -> float | None:
        return None if limit is None else float((x < limit).mean())

    return Figures(name, len(emb), under(d[~same], threshold), under(d[~same], sure_below),
                   float(np.quantile(d[~same], FAR)), under(d[same], sure_below),
                   under(d[same], threshold))  # fmt: skip


def sure_below_of(sets: list[Figures]) -> tuple[float, str]:
    """(sure_below, the set it comes from): the smallest distance at FAR, rounded down."""
    worst = min(sets, key=lambda f: f.distance_at_far)
    return math.floor(worst.distance_at_far * 1000) / 1000, worst.name
