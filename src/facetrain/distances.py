"""The distances between embeddings, named for what they compute.

- `squared_l2`: ‖a − b‖², what FaceNet's and InsightFace's LFW protocol thresholds (0..4
  between unit vectors). Records and settings written before the name existed say
  `euclidean` for it; they are read as `squared_l2`.
- `cosine`: the angle between a and b divided by π (0..1).

Peers (dlib, face_recognition, OpenFace) quote thresholds in plain L2 (‖a − b‖), so output
meant for comparison with theirs shows `plain_l2` of a squared distance as well.
"""

from __future__ import annotations

import numpy as np

DISTANCES = ("squared_l2", "cosine")
ALIASES = {"euclidean": "squared_l2"}  # the old name, still accepted


def canonical(name: str) -> str:
    """The distance's current name (an old alias mapped); ValueError for an unknown one."""
    name = ALIASES.get(name, name)
    if name not in DISTANCES:
        raise ValueError(f"unknown distance {name!r}; choose from {', '.join(DISTANCES)}")
    return name


def pair_distances(emb1: np.ndarray, emb2: np.ndarray, distance: str = "squared_l2"):
    """The distance between each row of emb1 and the same row of emb2."""
    e1, e2 = np.asarray(emb1, np.float64), np.asarray(emb2, np.float64)
    if canonical(distance) == "squared_l2":
        return np.sum(np.square(e1 - e2), axis=1)
    dot = np.sum(e1 * e2, axis=1)
    norm = np.linalg.norm(e1, axis=1) * np.linalg.norm(e2, axis=1)
    return np.arccos(np.clip(dot / norm, -1.0, 1.0)) / np.pi


def distance_matrix(a: np.ndarray, b: np.ndarray, distance: str = "squared_l2") -> np.ndarray:
    """All distances between rows of a and rows of b, in `pair_distances`' units."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if canonical(distance) == "squared_l2":
        d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
        return np.maximum(d, 0.0)
    an = a / np.linalg.norm(a, axis=1, keepdims=True)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.arccos(np.clip(an @ bn.T, -1.0, 1.0)) / np.pi


def plain_l2(d, distance: str):
    """A squared-L2 distance (or threshold) as plain L2, for comparison with peers'
    thresholds; None for a cosine distance, which has no L2 reading."""
    if canonical(distance) != "squared_l2" or d is None:
        return None
    return np.sqrt(np.maximum(d, 0.0))
