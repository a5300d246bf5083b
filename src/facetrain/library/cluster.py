"""Stacks of faces, one per person: clustering that respects the owner's names.

1. Faces the owner confirmed keep their person. Hidden faces and faces below the quality
   gate take no part.
2. The other faces are clustered by average-linkage agglomeration on the model's distance
   with the model's calibrated threshold (order-independent: the result does not depend on
   the order faces were scanned). Two faces of one photo are never the same person: such
   pairs get an infinite distance, and any cluster still holding two faces of one photo
   keeps the face nearest its centre and lets the others go.
3. Each cluster is matched to the named person it is closest to (average distance to that
   person's confirmed faces, under the threshold, no face of a shared photo, no face the
   owner rejected for that person); otherwise it becomes a new unnamed stack.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facetrain.distances import canonical, distance_matrix
from facetrain.library import store
from facetrain.library.store import transaction

BIG = 1e6
# The largest group of faces clustered exactly (a dense distance matrix, ~25 bytes a pair:
# 1.2 GB here); a bigger connected group is clustered over a sparse graph (_over_graph).
EXACT_MAX = 7000


@dataclass
class ClusterReport:
    faces: int
    stacks: int
    matched_to_named: int
    new_stacks: int
    split_for_cannot_link: int


def near_pairs(emb: np.ndarray, threshold: float, distance: str, block: int = 0):
    """The sparse graph of face pairs nearer than `threshold` (both directions, no self
    pairs), computed block by block in float32: memory linear in the number of faces."""
    from scipy.sparse import coo_matrix

    e = np.ascontiguousarray(emb, np.float32)
    n = len(e)
    block = block or max(64, min(2048, 20_000_000 // max(n, 1)))
    sq = (e * e).sum(1)
    norm = np.sqrt(np.maximum(sq, 1e-12))
    rows, cols, vals = [], [], []
    for s in range(0, n, block):
        g = e[s : s + block] @ e.T
        if canonical(distance) == "squared_l2":
            d = np.maximum(sq[s : s + block, None] + sq[None, :] - 2.0 * g, 0.0)
        else:  # angle / pi
            g /= norm[s : s + block, None] * norm[None, :]
            d = np.arccos(np.clip(g, -1.0, 1.0)) / np.pi
        r, c = np.nonzero(d < threshold)
        keep = r + s != c
        rows.append(r[keep] + s)
        cols.append(c[keep])
        vals.append(d[r[keep], c[keep]])
    cat = lambda xs, t: np.concatenate(xs).astype(t) if xs else np.zeros(0, t)  # noqa: E731
    return coo_matrix(
        (cat(vals, np.float64), (cat(rows, np.int64), cat(cols, np.int64))), shape=(n, n)
    ).tocsr()


def agglomerate(
    emb: np.ndarray,
    photo: np.ndarray,
    threshold: float,
    distance: str = "squared_l2",
    exact_max: int = EXACT_MAX,
) -> tuple[np.ndarray, int]:
    """Cluster labels (0..k-1) by average linkage at `threshold`, and how many faces were
    moved out to honour cannot-link (two faces of one photo).

    Average linkage only merges groups with a pair nearer than the threshold, so its
    clusters never cross the connected groups of the near-pairs graph: each group is
    clustered alone — exactly, with today's dense method, up to `exact_max` faces — and the
    result is the same as clustering all faces at once, in memory linear in their number."""
    from scipy.sparse.csgraph import connected_components

    n = len(emb)
    if n <= 1:
        return np.zeros(n, np.int64), 0
    # a hair wider than the threshold: float32 rounding must not cut a pair the exact
    # (float64) method would count; a wider graph only joins groups, never changes a result
    graph = near_pairs(emb, threshold * (1 + 1e-4) + 1e-6, distance)
    _, group = connected_components(graph, directed=False)
    labels, next_label = np.empty(n, np.int64), 0
    for idx in np.split(np.argsort(group, kind="stable"), np.cumsum(np.bincount(group))[:-1]):
        if len(idx) == 1:
            part = np.zeros(1, np.int64)
        elif len(idx) <= exact_max:
            part = _exact(emb[idx], photo[idx], threshold, distance)
        else:
            part = _over_graph(emb[idx], threshold, distance)
        labels[idx] = part + next_label
        next_label += int(part.max()) + 1
    labels, moved = _honour_cannot_link(labels, emb, photo, distance)
    return np.unique(labels, return_inverse=True)[1], moved


def _exact(emb, photo, threshold: float, distance: str) -> np.ndarray:
    """Average linkage over the full distance matrix; faces of one photo infinitely apart."""
    from sklearn.cluster import AgglomerativeClustering

    d = distance_matrix(emb, emb, distance)
    same_photo = photo[:, None] == photo[None, :]
    np.fill_diagonal(same_photo, False)
    d[same_photo] = BIG
    return AgglomerativeClustering(
        n_clusters=None, metric="precomputed", linkage="average", distance_threshold=threshold
    ).fit_predict(d)


def _over_graph(emb, threshold: float, distance: str) -> np.ndarray:
    """Average linkage restricted to the pairs under 1.5 x the threshold (scikit-learn's
    connectivity), for a connected group too big for a dense matrix. scikit-learn averages
    over the linked pairs only: with the pairs up to the threshold alone every connected
    group would end as one cluster; with those up to 1.5 x, the near misses between two
    people count too (on LFW with dlib's model: the exact method's BCubed F, 0.963).
    Distances are plain L2 (or 1 − cos) with the threshold translated."""
    from sklearn.cluster import AgglomerativeClustering

    graph = near_pairs(emb, 1.5 * threshold, distance)
    if canonical(distance) == "squared_l2":
        metric, thr = "euclidean", float(np.sqrt(threshold))
    else:
        metric, thr = "cosine", float(1.0 - np.cos(np.pi * threshold))
    return AgglomerativeClustering(
        n_clusters=None, metric=metric, linkage="average", distance_threshold=thr,
        connectivity=graph,
    ).fit_predict(np.asarray(emb, np.float64))  # fmt: skip


def _honour_cannot_link(labels, emb, photo, distance: str) -> tuple[np.ndarray, int]:
    """A cluster holding two faces of one photo keeps the face nearest its centre and lets
    the others go (each alone)."""
    moved, next_label = 0, int(labels.max()) + 1
    order = np.argsort(labels, kind="stable")
    for idx in np.split(order, np.cumsum(np.bincount(labels))[:-1]):
        if len(idx) < 2 or len(np.unique(photo[idx])) == len(idx):
            continue
        d = distance_matrix(emb[idx], emb[idx], distance).clip(max=4.0)
        d[(photo[idx][:, None] == photo[idx][None, :]) & ~np.eye(len(idx), dtype=bool)] = 4.0
        kept_photos: set[int] = set()
        for i in idx[np.argsort(d.mean(1), kind="stable")]:
            if photo[i] in kept_photos:
                labels[i] = next_label
                next_label += 1
                moved += 1
            else:
                kept_photos.add(int(photo[i]))
    return labels, moved


def cluster(con, threshold: float, distance: str = "squared_l2") -> ClusterReport:
    """Re-cluster every unconfirmed face (see the module docstring)."""
    free_emb, free = store.read_faces(con, "free")
    photo = np.array([r["photo_id"] for r in free], np.int64)
    labels, moved = agglomerate(free_emb, photo, threshold, distance)
    people = People.of(*store.read_faces(con, "named"))
    with transaction(con):
        store.unassign_guesses(con)
        matched, _, new = _place(con, free_emb, free, photo, labels, people, threshold, distance)
    return ClusterReport(len(free) + len(people.person), store.count_stacks(con), matched, new,
                         moved)  # fmt: skip


def place_new(con, threshold: float, distance: str = "squared_l2") -> tuple[int, int]:
    """Faces not in any stack yet (a scan's new photos) join the stack they are nearest to
    on average — named or not — or make new stacks; nothing else moves. (faces joined,
    new stacks). A full re-cluster is `cluster`, asked for explicitly."""
    emb, rows = store.read_faces(con, "unplaced")
    if not rows:
        return 0, 0
    photo = np.array([r["photo_id"] for r in rows], np.int64)
    labels, _ = agglomerate(emb, photo, threshold, distance)
    stacks = People.of(*store.read_faces(con, "stacked"))
    with transaction(con):
        _, joined, new = _place(con, emb, rows, photo, labels, stacks, threshold, distance)
    return joined, new


def _place(con, emb, rows, photo, labels, known: People, threshold: float, distance: str):
    """Each cluster to the known person it is nearest to (_assign), else a new stack:
    (clusters matched, faces of wholly matched clusters, new stacks)."""
    rejected = store.rejections(con)
    matched = joined = new = 0
    for idx in _members(labels):
        best = known.nearest(emb[idx], photo[idx], threshold, distance)
        fresh = _assign(con, [rows[i]["id"] for i in idx], best, rejected)
        matched += best is not None
        new += fresh
        joined += len(idx) if best is not None and not fresh else 0
    return matched, joined, new


def _assign(con, ids: list[int], best: int | None, rejected: set) -> bool:
    """Faces to the person `best` (not those the owner rejected for it); the others to a
    new stack. Whether a new stack was made."""
    members = [f for f in ids if (f, best) not in rejected] if best is not None else []
    rest = [f for f in ids if f not in members]
    if rest:
        pid = store.new_person(con)
        store.assign(con, [(pid, f) for f in rest])
    store.assign(con, [(best, f) for f in members])
    return bool(rest)


def _members(labels: np.ndarray) -> list[np.ndarray]:
    """The indices of each label 0..k-1."""
    if len(labels) == 0:
        return []
    return np.split(np.argsort(labels, kind="stable"), np.cumsum(np.bincount(labels))[:-1])


@dataclass
class People:
    """Faces of known people (embeddings, their person and photo) that clusters join."""

    emb: np.ndarray
    person: np.ndarray
    photo: np.ndarray

    @classmethod
    def of(cls, emb: np.ndarray, rows) -> People:
        return cls(emb, np.array([r["person_id"] for r in rows], np.int64),
                   np.array([r["photo_id"] for r in rows], np.int64))  # fmt: skip

    def nearest(self, emb, photo, threshold: float, distance: str) -> int | None:
        """The person whose faces are nearest on average to a cluster's (under the
        threshold), never one with a face in a photo of the cluster. Memory: the cluster's
        size x the known faces."""
        if len(self.person) == 0 or len(emb) == 0:
            return None
        ids, col = np.unique(self.person, return_inverse=True)
        d = np.zeros(len(self.emb))
        for s in range(0, len(emb), 256):  # the cluster's rows a block at a time
            d += distance_matrix(emb[s : s + 256], self.emb, distance).sum(0)
        mean = np.bincount(col, weights=d / len(emb), minlength=len(ids)) / np.bincount(col)
        for k in np.argsort(mean, kind="stable"):
            if mean[k] >= threshold:
                return None
            if not np.isin(photo, self.photo[col == k]).any():
                return int(ids[k])
        return None
