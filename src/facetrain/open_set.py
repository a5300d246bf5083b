"""Naming a face among known people, or `unknown`: the one open-set rule that the photo
library (`library identify`, names imported by likeness) and `classify predict` share.

A face's distance to a person is measured against each of that person's known faces; with
the spacing rule (`neighbours.pair_limits`: each pair's limit the model's threshold,
tightened where the faces around both crowd) distances are in units of each pair's limit
and averaged over the person's faces. The nearest person is named only under the limit and
ahead of the runner-up by a margin: a model that crowds a population (dlib's ResNet and
East-Asian faces) would otherwise name strangers as whoever is nearest
(bench/library_populations.py, bench/classify_populations.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facetrain.distances import distance_matrix
from facetrain.neighbours import K, block_rows, copy_radius, kth_in, pair_limits, scales_among

MARGIN = 0.05  # the runner-up margin, in the model's distance (`library identify`'s default)
UNKNOWN = "unknown"  # the answer for a face of no known person: no person may be called it

NO_ONE = {"name": UNKNOWN, "nearest": None, "distance": None, "runner_up": None}


def identify(
    emb: np.ndarray,
    protos: tuple,
    threshold: float,
    distance: str = "squared_l2",
    margin: float = 0.0,
    limits: np.ndarray | None = None,
    apart: bool = False,
) -> list[dict]:
    """Name the faces of ONE photo from the named people: each face's distance to a person
    is the nearest of that person's prototypes; a person is given to at most one face of
    the photo (the assignment with the least total distance); a face stays `unknown` when
    its person is not under the threshold or the runner-up is within `margin`. With
    `limits` (faces x prototypes), distances are in units of each pair's limit, a face's
    distance to a person is the mean over that person's faces (average linkage, as the
    stacks are made: the nearest of many faces named strangers — 20% on east-asian-idols
    with two people named, 13% with the mean; bench/library_populations.py), and both
    rules apply at 1 and margin / threshold."""
    from scipy.optimize import linear_sum_assignment

    pemb, pid, names = protos
    if len(pemb) == 0 or len(emb) == 0:
        return [dict(NO_ONE) for _ in emb]
    people_ids, per, threshold, margin = _to_people(emb, protos, threshold, distance, margin,
                                                    limits)  # fmt: skip
    rows, cols = linear_sum_assignment(per)
    given = dict(zip(rows.tolist(), cols.tolist()))
    out = []
    for i, row in enumerate(per):
        order = np.argsort(row)
        j = given.get(i, int(order[0]))
        best = float(row[j])
        others = np.delete(row, j)
        second = float(others.min()) if len(others) else None
        ok = i in given and best < threshold and (second is None or second - best >= margin)
        if apart and ok:  # no other face of the photo within margin of this person either
            rivals = np.delete(per[:, j], i)
            ok = not len(rivals) or float(rivals.min()) - best >= margin
        out.append(_answer(names, people_ids, j, int(order[0]), ok, best, second))
    return out


def identify_each(
    emb: np.ndarray,
    protos: tuple,
    threshold: float,
    distance: str,
    margin: float,
    limits: np.ndarray | None = None,
) -> list[dict]:
    """`identify` of each face on its own, as the photo of one face (no person is kept
    from a face because another face took them): a block of faces at a time."""
    pemb, pid, names = protos
    if len(pemb) == 0 or len(emb) == 0:
        return [dict(NO_ONE) for _ in emb]
    out, step = [], block_rows(len(pemb))
    for lo in range(0, len(emb), step):
        part = None if limits is None else limits[lo : lo + step]
        people_ids, per, thr, mar = _to_people(emb[lo : lo + step], protos, threshold,
                                               distance, margin, part)  # fmt: skip
        nearest = per.argmin(1)
        best = per[np.arange(len(per)), nearest]
        second = np.partition(per, 1, axis=1)[:, 1] if per.shape[1] > 1 else None
        ok = best < thr if second is None else (best < thr) & (second - best >= mar)
        for i, j in enumerate(nearest.tolist()):
            runner_up = None if second is None else float(second[i])
            out.append(_answer(names, people_ids, j, j, bool(ok[i]), float(best[i]), runner_up))
    return out


def _to_people(emb, protos, threshold, distance, margin, limits):
    """Each face's distance to each person (the people's ids, faces x people), and the
    threshold and margin in those distances' units."""
    pemb, pid, _ = protos
    d = distance_matrix(emb, pemb, distance)
    mean = limits is not None
    if mean:  # a limit of 0 (a face crowded by its copies) names its copies
        d = d / np.maximum(limits, 1e-12)
        threshold, margin = 1.0, margin / threshold
    order = np.argsort(pid, kind="stable")
    people_ids, starts, counts = np.unique(pid[order], return_index=True, return_counts=True)
    d = d[:, order]
    per = np.add.reduceat(d, starts, 1) / counts if mean else np.minimum.reduceat(d, starts, 1)
    return people_ids, per, threshold, margin


def _answer(names, people_ids, j: int, nearest: int, ok: bool, best: float, second) -> dict:
    return {"name": names[int(people_ids[j])] if ok else UNKNOWN,
            "nearest": names[int(people_ids[nearest])], "distance": best,
            "runner_up": second}  # fmt: skip


@dataclass(frozen=True)
class Among:
    """The known faces among all the faces seen, with the known faces' spacing measured
    once: what the limits of each new face's pairs are measured against (`limits`), photo
    after photo, without measuring the known faces again."""

    seen: np.ndarray
    photo: np.ndarray
    scales: np.ndarray  # the known faces' (the first len(scales) of seen)
    threshold: float
    distance: str

    @classmethod
    def of(cls, known: np.ndarray, context: np.ndarray, threshold: float, distance: str) -> Among:
        """Every face on a photo of its own and none the neighbour of its copies
        (`neighbours.copy_radius`): the known faces' spacing among themselves and all the
        faces seen (the known ones and `context`, other people's faces seen with them — so
        the known are counted twice, as a library's namer counts its named faces)."""
        seen = np.concatenate([known, context]) if len(context) else known
        photo = np.arange(len(seen))
        scales = scales_among(known, photo[: len(known)], seen, photo, distance,
                              copies=copy_radius(threshold))  # fmt: skip
        return cls(seen, photo, scales, threshold, distance)

    def limits(self, queries: np.ndarray) -> np.ndarray:
        """Each pair's limit (queries x known faces) under the spacing rule, the queries'
        spacing measured among all the faces seen."""
        qs = kth_in(queries, np.full(len(queries), -1), self.seen, self.photo, self.distance, K,
                    copies=copy_radius(self.threshold))  # fmt: skip
        return pair_limits(qs, self.scales, self.threshold)
