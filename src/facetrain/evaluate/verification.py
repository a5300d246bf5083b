"""Face verification on pairs, exactly the protocol behind FaceNet's and InsightFace's LFW
numbers, plus the readers for LFW `pairs.txt`.

Protocol (`evaluate`): distances are squared L2 between the given vectors ("squared_l2") or
angle/π ("cosine"; see facetrain.distances); the pairs are cut into contiguous folds (or
given fold ids); for each held-out fold, the accuracy threshold is the best of the grid 0,
0.01, … 3.99 on the other folds (the first on ties) and the VAL threshold comes from the
grid 0, 0.001, … 3.999 on the other folds (for "cosine", as many steps over its 0..1):
the first grid threshold whose FAR reaches the target, linearly interpolated with its
predecessor (FaceNet called scipy's
`interp1d(kind="slinear")` here, which current scipy refuses on repeated FAR values; the
interpolation is done directly instead). "Same" means distance < threshold. AUC and EER
come from the ROC averaged over folds.

Counting is done with sorted distances and `searchsorted`, so a 4,000-threshold grid costs
O((n + T) log n) per fold rather than a pass over the pairs per threshold.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facetrain.distances import pair_distances

ACC_THRESHOLDS = np.arange(0, 4, 0.01)
VAL_THRESHOLDS = np.arange(0, 4, 0.001)


def grids(distance: str) -> tuple[np.ndarray, np.ndarray]:
    """The accuracy and VAL threshold grids for `distance`: FaceNet's over squared L2's
    0..4, and as many steps over the angle's 0..1 (its 0.01 steps had been a quarter as
    fine, and the same embeddings' accuracy moved by up to 0.4% between the two)."""
    from facetrain.distances import canonical

    scale = 1.0 if canonical(distance) == "squared_l2" else 0.25
    return ACC_THRESHOLDS * scale, VAL_THRESHOLDS * scale


def _counts_below(dist: np.ndarray, issame: np.ndarray, thresholds: np.ndarray):
    """For each threshold: (true accepts, false accepts, n_same, n_diff) with dist < t."""
    same = np.sort(dist[issame])
    diff = np.sort(dist[~issame])
    ta = np.searchsorted(same, thresholds, side="left")
    fa = np.searchsorted(diff, thresholds, side="left")
    return ta, fa, len(same), len(diff)


def _rates(dist, issame, thresholds):
    """tpr, fpr, accuracy per threshold (FaceNet's calculate_accuracy, vectorized)."""
    ta, fa, n_same, n_diff = _counts_below(dist, issame, thresholds)
    tpr = ta / n_same if n_same else np.zeros(len(thresholds))
    fpr = fa / n_diff if n_diff else np.zeros(len(thresholds))
    acc = (ta + (n_diff - fa)) / len(dist)
    return tpr, fpr, acc


def _val_threshold(dist, issame, far_target: float, grid: np.ndarray) -> float:
    _, fa, _, n_diff = _counts_below(dist, issame, grid)
    far = fa / n_diff if n_diff else np.zeros(len(grid))
    hits = np.flatnonzero(far >= far_target)
    if len(hits) == 0:
        return 0.0
    i = int(hits[0])
    if i == 0:
        return float(grid[0])
    f0, f1 = far[i - 1], far[i]
    t0, t1 = grid[i - 1], grid[i]
    return float(t0 + (far_target - f0) * (t1 - t0) / (f1 - f0))


def _val_far(threshold: float, dist, issame) -> tuple[float, float]:
    pred = dist < threshold
    n_same, n_diff = int(issame.sum()), int((~issame).sum())
    val = float((pred & issame).sum() / n_same) if n_same else 0.0
    far = float((pred & ~issame).sum() / n_diff) if n_diff else 0.0
    return val, far


def _folds(n: int, nrof_folds: int, fold_ids: np.ndarray | None) -> list[np.ndarray]:
    if fold_ids is not None:
        fold_ids = np.asarray(fold_ids)
        return [np.flatnonzero(fold_ids == f) for f in np.unique(fold_ids)]
    return np.array_split(np.arange(n), nrof_folds)


def evaluate(
    emb1: np.ndarray,
    emb2: np.ndarray,
    issame,
    *,
    nrof_folds: int = 10,
    distance: str = "squared_l2",
    subtract_mean: bool = False,
    far_target: float = 1e-3,
    fold_ids: np.ndarray | None = None,
) -> dict:
    """10-fold verification metrics for pairs (emb1[i], emb2[i], issame[i]).

    Returns accuracy ± std, VAL ± std at `far_target` and the FAR reached, AUC, EER, the
    mean accuracy threshold, and the fold-averaged ROC (`fpr`, `tpr` over ACC_THRESHOLDS).
    `fold_ids` keeps official fold boundaries when some pairs are missing.
    """
    emb1, emb2 = np.asarray(emb1, np.float64), np.asarray(emb2, np.float64)
    issame = np.asarray(issame, bool)
    if not (len(emb1) == len(emb2) == len(issame)):
        raise ValueError("emb1, emb2 and issame must have the same length")
    folds = _folds(len(issame), nrof_folds, fold_ids)
    if len(folds) < 2:
        raise ValueError("need at least 2 folds")
    if issame.all() or not issame.any():
        kind = "same-person" if issame.any() else "different-people"
        raise ValueError(f"every pair is a {kind} pair: accuracy, AUC and the ROC need both "
                         "kinds (were the other images missing?)")  # fmt: skip
    all_idx = np.arange(len(issame))
    per_fold = []
    for test in folds:
        train = np.setdiff1d(all_idx, test, assume_unique=True)
        mean = 0.0
        if subtract_mean:
            mean = np.mean(np.concatenate([emb1[train], emb2[train]]), axis=0)
        dist = pair_distances(emb1 - mean, emb2 - mean, distance)
        per_fold.append(_fold(dist, issame, train, test, far_target, grids(distance)))
    tprs, fprs, accs, thresholds, vals, fars = map(list, zip(*per_fold, strict=True))
    tpr, fpr = np.mean(tprs, axis=0), np.mean(fprs, axis=0)
    return {
        "accuracy": float(np.mean(accs)),
        "accuracy_std": float(np.std(accs)),
        "val": float(np.mean(vals)),
        "val_std": float(np.std(vals)),
        "far": float(np.mean(fars)),
        "auc": float(np.trapezoid(tpr, fpr)),
        "eer": equal_error_rate(fpr, tpr),
        "threshold": float(np.mean(thresholds)),
        "fold_accuracy": accs,
        "fpr": fpr,
        "tpr": tpr,
    }


def _fold(dist: np.ndarray, issame: np.ndarray, train: np.ndarray, test: np.ndarray,
          far_target: float, grid: tuple[np.ndarray, np.ndarray]) -> tuple:  # fmt: skip
    """One fold: thresholds chosen on its train pairs, measured on its test pairs — (tpr,
    fpr over the accuracy grid, accuracy, the accuracy threshold, VAL, FAR)."""
    acc_grid, val_grid = grid
    _, _, acc_train = _rates(dist[train], issame[train], acc_grid)
    best = acc_grid[int(np.argmax(acc_train))]
    tpr, fpr, _ = _rates(dist[test], issame[test], acc_grid)
    _, _, acc = _rates(dist[test], issame[test], np.array([best]))
    t_val = _val_threshold(dist[train], issame[train], far_target, val_grid)
    v, f = _val_far(t_val, dist[test], issame[test])
    return tpr, fpr, float(acc[0]), float(best), v, f


def labelled_threshold(emb: np.ndarray, labels: list[str], distance: str) -> float:
    """The best-accuracy threshold over pairs of labelled embeddings (every same pair and as
    many different pairs, sampled with a fixed seed), the middle of the best range: how a
    threshold is validated on a training run's val split or on a user's own gallery."""
    return best_threshold(*labelled_pairs(emb, labels, distance), distance)


def labelled_pairs(emb: np.ndarray, labels: list[str], distance: str):
    """(distances, issame) of every same pair of labelled embeddings and as many different
    pairs, sampled with a fixed seed."""
    pairs, issame = labelled_pair_ids(labels)
    return pair_distances(emb[pairs[:, 0]], emb[pairs[:, 1]], distance), issame


def labelled_pair_ids(labels, max_same: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(pairs of indices, issame): every same pair of the labels (at most `max_same`,
    sampled, when given) and as many different pairs, sampled with a fixed seed."""
    labels_a = np.asarray(labels)
    order = np.argsort(labels_a, kind="stable")  # each identity's images, in order
    _, starts, counts = np.unique(labels_a[order], return_index=True, return_counts=True)
    groups = [order[a : a + n] for a, n in zip(starts, counts) if n > 1]
    if not groups:
        raise ValueError("no identity has two images: cannot validate a threshold")
    rng = np.random.default_rng(0)
    if max_same and sum(len(g) * (len(g) - 1) // 2 for g in groups) > max_same:
        same = _sampled_same(groups, max_same, rng)
    else:
        same = [(int(a), int(b)) for g in groups for k, a in enumerate(g) for b in g[k + 1 :]]
    diff: list[tuple[int, int]] = []
    for _ in range(20 * len(same)):
        i, j = rng.integers(0, len(labels_a), 2)
        if labels_a[i] != labels_a[j]:
            diff.append((int(i), int(j)))
        if len(diff) == len(same):
            break
    return np.array(same + diff), np.array([True] * len(same) + [False] * len(diff))


def _sampled_same(groups: list[np.ndarray], k: int, rng) -> list[tuple[int, int]]:
    """k distinct same pairs drawn evenly from all of them (an identity as often as it
    has pairs) without listing them all: a million faces' pairs do not fit a list."""
    pairs_of = np.array([len(g) * (len(g) - 1) / 2 for g in groups])
    chosen: set[tuple[int, int]] = set()
    while len(chosen) < k:
        for g in rng.choice(len(groups), 2 * k, p=pairs_of / pairs_of.sum()):
            a, b = rng.choice(len(groups[g]), 2, replace=False)
            chosen.add(tuple(sorted((int(groups[g][a]), int(groups[g][b])))))
            if len(chosen) == k:
                break
    return sorted(chosen)


def best_threshold(d: np.ndarray, issame: np.ndarray, distance: str = "squared_l2") -> float:
    """The middle of the first best-accuracy plateau of these pairs' distances, on the
    protocol's accuracy grid for `distance`."""
    grid = grids(distance)[0]
    acc = _rates(np.asarray(d), np.asarray(issame, bool), grid)[2]
    best = np.flatnonzero(acc == acc.max())
    breaks = np.flatnonzero(np.diff(best) > 1)
    plateau = best[: breaks[0] + 1] if len(breaks) else best
    # the middle of the first best-accuracy plateau, not its lower edge: a gallery whose
    # same and different pairs are separated by a gap gets a threshold in the gap's middle,
    # the one that rejects an unseen stranger as safely as it accepts a new photo
    return float(grid[plateau[len(plateau) // 2]])


def equal_error_rate(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """The FPR where FPR = 1 − TPR on the ROC, linearly interpolated."""
    gap = (1.0 - tpr) - fpr  # decreasing along the curve
    cross = np.flatnonzero(np.diff(np.sign(gap)) != 0)
    if gap[0] == 0 or len(cross) == 0:
        return float(fpr[0] if gap[0] == 0 else fpr[np.argmin(np.abs(gap))])
    i = int(cross[0])
    w = gap[i] / (gap[i] - gap[i + 1])
    return float(fpr[i] + w * (fpr[i + 1] - fpr[i]))


@dataclass
class Pairs:
    """LFW-style pairs resolved to image paths; `fold` per pair; `missing` lists the lines
    whose images were not found (their pairs are dropped, the folds are kept), `absent` the
    images not found, each once."""

    path1: list[str]
    path2: list[str]
    issame: np.ndarray
    fold: np.ndarray
    missing: list[str]
    absent: list[str] = field(default_factory=list)


def _lfw_path(images: Path, name: str, num: str, ext: str) -> Path:
    return images / name / f"{name}_{int(num):04d}.{ext}"


def read_pairs(pairs_file: str | os.PathLike, images: str | os.PathLike, ext="jpg") -> Pairs:
    """Read LFW `pairs.txt`: header `folds n`, then per fold n same-pairs `name i j` and n
    different-pairs `n1 i n2 j`."""
    try:
        lines = Path(pairs_file).read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as e:
        raise ValueError(f"{pairs_file}: not UTF-8 text (byte {e.start})") from None
    n_folds, per = _pairs_header(pairs_file, lines[0])
    body = [ln.split() for ln in lines[1:] if ln.strip()]
    if len(body) != n_folds * 2 * per:
        raise ValueError(f"{pairs_file}: expected {n_folds * 2 * per} pairs, found {len(body)}")
    p1, p2, same, fold, missing, absent = [], [], [], [], [], {}
    for k, parts in enumerate(body):
        a, b, is_same = _pair(f"{pairs_file}:{k + 2}", parts, Path(images), ext)
        gone = [str(p) for p in (a, b) if not p.exists()]
        if gone:
            missing.append(" ".join(parts))
            absent.update(dict.fromkeys(gone))
            continue
        p1.append(str(a))
        p2.append(str(b))
        same.append(is_same)
        fold.append(k // (2 * per))
    return Pairs(p1, p2, np.array(same, bool), np.array(fold, np.int64), missing, list(absent))


def _pairs_header(pairs_file, line: str) -> tuple[int, int]:
    head = line.split()
    if len(head) != 2:
        raise ValueError(f"{pairs_file}: first line should be 'folds pairs-per-fold'")
    try:
        n_folds, per = int(head[0]), int(head[1])
    except ValueError:
        raise ValueError(f"{pairs_file}:1: expected two numbers, 'folds pairs-per-fold'") from None
    if n_folds < 2 or per < 1:
        raise ValueError(f"{pairs_file}:1: {n_folds} folds of {per} pairs: the protocol needs "
                         "at least 2 folds (each is scored at a threshold chosen on the "
                         "others) of at least 1 pair each")  # fmt: skip
    return n_folds, per


def _pair(where: str, parts: list[str], images: Path, ext: str) -> tuple[Path, Path, bool]:
    """(image a, image b, same person) of one line: `name i j` or `n1 i n2 j`."""
    if len(parts) not in (3, 4):
        raise ValueError(f"{where}: expected 3 or 4 fields")
    if not (parts[1].isdigit() and parts[-1].isdigit()):
        raise ValueError(f"{where}: image numbers expected, got {' '.join(parts)!r}")
    a = _lfw_path(images, parts[0], parts[1], ext)
    b = _lfw_path(images, parts[len(parts) - 2] if len(parts) == 4 else parts[0], parts[-1], ext)
    if a == b:
        raise ValueError(f"{where}: compares {a.name} with itself (distance 0 whatever the "
                         "model: it measures nothing)")  # fmt: skip
    return a, b, len(parts) == 3
