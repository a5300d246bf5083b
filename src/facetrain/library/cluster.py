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

from facetrain.distances import distance_matrix
from facetrain.library import store
from facetrain.library.store import transaction

BIG = 1e6


@dataclass
class ClusterReport:
    faces: int
    stacks: int
    matched_to_named: int
    new_stacks: int
    split_for_cannot_link: int


def agglomerate(
    emb: np.ndarray, photo: np.ndarray, threshold: float, distance: str = "squared_l2"
) -> tuple[np.ndarray, int]:
    """Cluster labels (0..k-1) and how many faces were moved out to honour cannot-link."""
    from sklearn.cluster import AgglomerativeClustering

    n = len(emb)
    if n == 0:
        return np.zeros(0, np.int64), 0
    if n == 1:
        return np.zeros(1, np.int64), 0
    d = distance_matrix(emb, emb, distance)
    same_photo = photo[:, None] == photo[None, :]
    np.fill_diagonal(same_photo, False)
    d[same_photo] = BIG
    labels = AgglomerativeClustering(
        n_clusters=None,
        metric="precomputed",
        linkage="average",
        distance_threshold=threshold,
    ).fit_predict(d)
    moved, next_label = 0, int(labels.max()) + 1
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(np.unique(photo[idx])) == len(idx):
            continue
        order = idx[np.argsort(d[np.ix_(idx, idx)].clip(max=4.0).mean(1), kind="stable")]
        kept_photos: set[int] = set()
        for i in order:
            if photo[i] in kept_photos:
                labels[i] = next_label
                next_label += 1
                moved += 1
            else:
                kept_photos.add(int(photo[i]))
    return np.unique(labels, return_inverse=True)[1], moved


def cluster(con, threshold: float, distance: str = "squared_l2") -> ClusterReport:
    """Re-cluster every unconfirmed face (see the module docstring)."""
    free_emb, free = store.read_faces(con, "free")
    named_emb, named = store.read_faces(con, "named")
    photo = np.array([r["photo_id"] for r in free], np.int64)
    labels, moved = agglomerate(free_emb, photo, threshold, distance)
    rejected = store.rejections(con)
    named_person = np.array([r["person_id"] for r in named], np.int64)
    named_photo = np.array([r["photo_id"] for r in named], np.int64)
    d_named = distance_matrix(free_emb, named_emb, distance) if len(named) and len(free) else None
    matched = new = 0
    with transaction(con):
        store.unassign_guesses(con)
        for c in range(int(labels.max()) + 1 if len(labels) else 0):
            idx = np.flatnonzero(labels == c)
            best = _nearest_person(idx, photo, d_named, named_person, named_photo, threshold)
            ids = [free[i]["id"] for i in idx]
            members = [f for f in ids if (f, best) not in rejected] if best is not None else []
            rest = [f for f in ids if f not in members]  # unmatched, or rejected by `best`
            matched += best is not None
            if rest:
                pid = store.new_person(con)
                store.assign(con, [(pid, f) for f in rest])
                new += 1
            store.assign(con, [(best, f) for f in members])
    return ClusterReport(len(free) + len(named), store.count_stacks(con), matched, new, moved)


def _nearest_person(idx, photo, d_named, named_person, named_photo, threshold) -> int | None:
    """The named person whose confirmed faces are nearest on average to the cluster (under
    the threshold), never one who has a face in a photo of the cluster."""
    best, best_d = None, threshold
    if d_named is None:
        return None
    for p in np.unique(named_person):
        cols = named_person == p
        if np.isin(photo[idx], named_photo[cols]).any():
            continue  # a face of this cluster shares a photo with the person
        dd = float(d_named[np.ix_(idx, np.flatnonzero(cols))].mean())
        if dd < best_d:
            best, best_d = int(p), dd
    return best
