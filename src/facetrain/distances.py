"""The distances between embeddings, named for what they compute.

- `squared_l2`: ‖a − b‖², what FaceNet's and InsightFace's LFW protocol thresholds (0..4
  between unit vectors). Records and settings written before the name existed say
  `euclidean` for it; they are read as `squared_l2`.
- `cosine`: the angle between a and b divided by π (0..1).

Peers (dlib, face_recognition, OpenFace) quote thresholds in plain L2 (‖a − b‖), so output
meant for comparison with theirs shows `plain_l2` of a squared distance as well.

This module is the only place a distance is computed: evaluation, the library, `compare`,
`classify`, the miners and the losses all call it. Given torch tensors, `pair_distances`
and `distance_matrix` compute in torch (on the tensors' device, differentiable; the cosine
is clamped just inside ±1 so that its gradient stays finite); given anything else, in
numpy (float64 unless `dtype` says otherwise).
"""

from __future__ import annotations

import math

import numpy as np

DISTANCES = ("squared_l2", "cosine")
ALIASES = {"euclidean": "squared_l2"}  # the old name, still accepted


def canonical(name: str) -> str:
    """The distance's current name (an old alias mapped); ValueError for an unknown one."""
    name = ALIASES.get(name, name)
    if name not in DISTANCES:
        raise ValueError(f"unknown distance {name!r}; choose from {', '.join(DISTANCES)}")
    return name


# the largest distance between two embeddings, which every model gives as unit vectors
LARGEST = {"squared_l2": 4.0, "cosine": 1.0}


def threshold_problem(value: float, distance: str) -> str | None:
    """Why `value` cannot be a threshold of `distance` ("same person" under it), or None: a
    finite number from 0 to the largest distance between two embeddings. One above it is
    on another scale (a plain L2, a percentage), and made every two faces one person
    (`--threshold 100` stacked everyone)."""
    name = canonical(distance)
    if math.isfinite(value) and 0 <= value <= LARGEST[name]:
        return None
    return (f"a finite number from 0 to {LARGEST[name]:g}, the largest {name} distance between "
            "two faces (one above it is on another scale: every two faces would be one "
            "person)")  # fmt: skip


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def pair_distances(emb1, emb2, distance: str = "squared_l2", dtype=np.float64):
    """The distance between each row of emb1 and the same row of emb2."""
    if _is_torch(emb1):
        return _pair_torch(emb1, emb2, canonical(distance))
    e1, e2 = np.asarray(emb1, dtype), np.asarray(emb2, dtype)
    if canonical(distance) == "squared_l2":
        return np.sum(np.square(e1 - e2), axis=1)
    dot = np.sum(e1 * e2, axis=1)
    norm = np.linalg.norm(e1, axis=1) * np.linalg.norm(e2, axis=1)
    return np.arccos(np.clip(dot / norm, -1.0, 1.0)) / np.pi


PAIRS = 100_000  # pairs compared at a time by `indexed_distances`: ~100 MB of their rows


def indexed_distances(emb, rows, cols, distance: str = "squared_l2", dtype=np.float64):
    """`pair_distances` of emb[rows[i]] and emb[cols[i]], `PAIRS` at a time: the rows are
    copied a block at a time, not for every pair at once (a dense library's near pairs
    are millions, each two 128-d rows)."""
    out = np.empty(len(rows), dtype)
    for s in range(0, len(rows), PAIRS):
        r, c = rows[s : s + PAIRS], cols[s : s + PAIRS]
        out[s : s + len(r)] = pair_distances(emb[r], emb[c], distance, dtype)
    return out


def distance_matrix(a, b, distance: str = "squared_l2", dtype=np.float64):
    """All distances between rows of a and rows of b, in `pair_distances`' units."""
    if _is_torch(a):
        return _matrix_torch(a, b, canonical(distance))
    a, b = np.asarray(a, dtype), np.asarray(b, dtype)
    if canonical(distance) == "squared_l2":  # the norms without an a- or b-sized copy
        d = row_squares(a, distance)[:, None] + row_squares(b, distance)[None, :] - 2.0 * a @ b.T
        return np.maximum(d, 0.0)
    an = a / np.linalg.norm(a, axis=1, keepdims=True)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.arccos(np.clip(an @ bn.T, -1.0, 1.0)) / np.pi


def to_rows(q: np.ndarray, b: np.ndarray, distance: str = "squared_l2",
            b_squares: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """One face's distance to every row of b, in float32, without a copy of b: for
    squared_l2, ‖q‖² + ‖y‖² − 2 q·y with the rows' ‖y‖² given (`b_squares`, measured once
    for many faces). A float64 `distance_matrix` of one face against 200,000 copied the
    library for each face (70 ms of a face's 120, bench/namer_scale.py --rivals)."""
    q = np.asarray(q, np.float32)
    if canonical(distance) != "squared_l2":
        return distance_matrix(q[None], b, distance, np.float32)[0]
    squares = row_squares(b, distance) if b_squares is None else b_squares
    return np.maximum(squares + float(q @ q) - 2.0 * (b @ q), 0.0)


def row_squares(b: np.ndarray, distance: str) -> np.ndarray | None:
    """The rows' squared norms that `to_rows` takes for squared_l2 (None for a distance
    that needs none): measured once, for many faces."""
    if canonical(distance) != "squared_l2":
        return None
    return np.einsum("ij,ij->i", b, b)


def mean_distances(a, b, distance: str = "squared_l2", block: int | None = None) -> np.ndarray:
    """Each row of b's mean distance to the rows of a (numpy), without the len(a) x len(b)
    matrix (a person of thousands of faces against a library of a million would need tens
    of gigabytes): for squared_l2 in closed form, mean ‖x‖² + ‖y‖² − 2 x̄·y, `block` of b's
    rows at a time (65,536); for the angle, `block` of a's rows at a time (at most 2^25
    distances, 256 MB, a block)."""
    a = np.asarray(a, np.float64)
    if len(a) == 0:
        return np.zeros(len(b))
    if canonical(distance) == "squared_l2":
        return _mean_squared_l2(a, b, block or 1 << 16)
    b = np.asarray(b, np.float64)
    block = block or max(1, min(256, 2**25 // max(len(b), 1)))
    total = np.zeros(len(b))
    for s in range(0, len(a), block):
        total += distance_matrix(a[s : s + block], b, distance).sum(0)
    return total / len(a)


def _mean_squared_l2(a: np.ndarray, b, rows: int) -> np.ndarray:
    """mean ‖x‖² + ‖y‖² − 2 x̄·y for each row y of b, in float64, b a block of rows at a
    time: no float64 copy of all of b (a gigabyte at a million faces, slow to map afresh)."""
    b = np.asarray(b)
    norm, mean = (a * a).sum(1).mean(), a.mean(0)
    out = np.empty(len(b))
    for s in range(0, len(b), rows):
        y = np.asarray(b[s : s + rows], np.float64)
        out[s : s + rows] = norm + np.einsum("ij,ij->i", y, y) - 2.0 * y @ mean
    return np.maximum(out, 0.0)


def _pair_torch(a, b, distance: str):
    import torch

    if distance == "squared_l2":
        return (a - b).pow(2).sum(1)
    cos = torch.nn.functional.cosine_similarity(a, b, dim=1)
    return torch.arccos(cos.clamp(-1 + 1e-6, 1 - 1e-6)) / torch.pi


def _matrix_torch(a, b, distance: str):
    import torch

    if distance == "squared_l2":
        return (a.pow(2).sum(1)[:, None] + b.pow(2).sum(1)[None, :] - 2.0 * a @ b.T).clamp_min(0)
    cos = torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(b, dim=1).T
    return torch.arccos(cos.clamp(-1 + 1e-6, 1 - 1e-6)) / torch.pi


def plain_l2(d, distance: str):
    """A squared-L2 distance (or threshold) as plain L2, for comparison with peers'
    thresholds; None for a cosine distance, which has no L2 reading."""
    if canonical(distance) != "squared_l2" or d is None:
        return None
    return np.sqrt(np.maximum(d, 0.0))
