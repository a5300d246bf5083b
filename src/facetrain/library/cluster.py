"""Stacks of faces, one per person: clustering that respects the owner's names.

1. Faces the owner confirmed keep their person. Hidden faces and faces below the quality
   gate take no part.
2. The other faces are clustered by average-linkage agglomeration on the model's distance
   (order-independent: the result does not depend on the order faces were scanned). Two
   faces may be one person when they are nearer than their pair's limit, min(τ·√(sᵢ·sⱼ), T):
   T is the model's calibrated threshold, and sᵢ the library's own spacing around face i
   (`local_scales`: the distance to its K-th nearest face of another photo). One global
   threshold fits the people the model was calibrated on and merges people it compresses
   (East-Asian faces: 15 idols in 2 stacks at T); the spacing of the library's own faces
   says where the model crowds people, so each region of a library — one population, or
   several in one family's library — gets its own limit, and T stays the ceiling. Two
   faces of one photo are never the same person: such pairs get an infinite distance, and
   any cluster still holding two faces of one photo keeps the face nearest its centre and
   lets the others go.
3. Confirmed faces are clustered with the others, pinned to their person (and a cluster
   joins only faces the clustering with no pins joins too: `meet`): a cluster
   holding some goes to the person most of them are (never a face the owner rejected for
   that person); any other goes back to the unnamed stack most of it was in (so a stack
   keeps its id while most of it stays), less the faces the owner rejected for that stack
   — which go back the same way, so the parts of a stack the owner split stay apart — and
   what was in no such stack becomes a new unnamed stack (`recluster`).
4. New faces (a scan's) are stacked as clustering everything again would stack them, at
   the cost of the stacks they come near: those are clustered again with them
   (`restack_near`), every other stack left as it is.
5. For names another program lists on photos without places, the stack the photos that
   list someone share is theirs (`shared_face`), the same clustering on those photos.

Every function here is pure: it reads no store and writes nothing. `Library` reads the
faces, applies the owner's adapter, asks `recluster` or `restack_near` for a `Placement`
and writes it in one transaction.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

import numpy as np

from facetrain.distances import distance_matrix
from facetrain.groups import by_label
from facetrain.linkage import dense_clusters, linked_clusters
from facetrain.neighbours import (
    TAU,
    K,
    block_rows,
    kth_other_photo,
    pair_limits,
    pairs_within,
    say,
    spacing_and_pairs,
)

# The largest group of faces clustered over its full distance matrix (`dense_clusters`, ~25
# bytes a pair: 1.2 GB here; quicker than `linked_clusters` below this, which gives the same
# stacks in memory linear in the group's near pairs).
EXACT_MAX = 7000


def local_scales(emb: np.ndarray, photo: np.ndarray, distance: str, k: int = K,
                 rows: int | None = None) -> np.ndarray:  # fmt: skip
    """The distance of each of the first `rows` faces (default: all) to its k-th nearest
    face of another photo among all of them (inf when there is none): memory linear in the
    number of faces; an index proposes the neighbours past `neighbours.EXACT_SEARCH`.
    Copies of one picture count here (unlike in naming, `neighbours.copy_radius`): without
    them, friends' stacks fell from F 0.745 to 0.695 (bench/copies.py)."""
    return kth_other_photo(emb, photo, distance, k, rows=rows)


@dataclass
class ClusterReport:
    faces: int
    stacks: int
    matched_to_named: int
    new_stacks: int
    split_for_cannot_link: int
    kept: int = 0  # clusters given back to the unnamed stack most of them were in


def concat_rows(*arrays: np.ndarray) -> np.ndarray:
    """The rows of each array in turn (any may be the store's empty (0, 0) array)."""
    parts = [e for e in arrays if len(e)]
    return np.concatenate(parts) if parts else arrays[0]


def near_pairs(emb: np.ndarray, threshold: float, distance: str,
               scale: np.ndarray | None = None, tau: float = TAU):  # fmt: skip
    """The sparse graph of face pairs nearer than `threshold` (with `scale`: than their
    pair's limit; both directions, no self pairs): memory linear in the number of faces
    and their near pairs."""
    return _graph(len(emb), *pairs_within(emb, threshold, distance, scale, tau))


def spaced_pairs(emb: np.ndarray, photo: np.ndarray, threshold: float, distance: str,
                 tau: float = TAU):  # fmt: skip
    """The faces' spacing among themselves (`local_scales`) and `near_pairs` under the
    limits it gives, found in one pass over the distances (`neighbours.spacing_and_pairs`):
    (spacing, graph)."""
    scale, *pairs = spacing_and_pairs(emb, photo, distance, K, threshold, tau)
    return scale, _graph(len(emb), *pairs)


def _graph(n: int, r: np.ndarray, c: np.ndarray, d: np.ndarray):
    """The pairs (rows, columns, distances) as a sparse n x n graph."""
    from scipy.sparse import coo_matrix

    return coo_matrix((d.astype(np.float64), (r, c)), shape=(n, n)).tocsr()


def agglomerate(
    emb: np.ndarray,
    photo: np.ndarray,
    threshold: float,
    distance: str = "squared_l2",
    exact_max: int = EXACT_MAX,
    scale: np.ndarray | None = None,
    tau: float = TAU,
    person: np.ndarray | None = None,
    spacing: bool = False,
) -> tuple[np.ndarray, int]:
    """Cluster labels (0..k-1) by average linkage at `threshold` (with `scale`, each pair
    at its own limit, `pair_limits`; with `spacing`, the scale is these faces' spacing
    among themselves, `local_scales`, found with the near pairs), and how many faces were
    moved out to honour cannot-link (two faces of one photo; with `person`, two faces the
    owner gave to two people, -1 for none).

    Average linkage only merges groups with a pair nearer than the threshold, so its
    clusters never cross the connected groups of the near-pairs graph: each group is
    clustered alone — over its full matrix up to `exact_max` faces, over its near pairs
    past that (`facetrain.linkage`) — and the result is the same as clustering all faces at
    once, in memory linear in their number and their near pairs."""
    from scipy.sparse.csgraph import connected_components

    n = len(emb)
    if n <= 1:
        return np.zeros(n, np.int64), 0
    # a hair wider than the threshold: float32 rounding must not cut a pair the exact
    # (float64) method would count; a wider graph only joins groups, never changes a result
    wide, wide_tau = threshold * (1 + 1e-4) + 1e-6, tau * (1 + 1e-4)
    if spacing:
        scale, graph = spaced_pairs(emb, photo, wide, distance, wide_tau)
    else:
        graph = near_pairs(emb, wide, distance, scale=scale, tau=wide_tau)
    _, group = connected_components(graph, directed=False)
    labels, next_label, done = np.empty(n, np.int64), 0, 0
    say("groups", 0, n)
    for idx in by_label(group):
        sub = None if scale is None else scale[idx]
        who = None if person is None else person[idx]
        pairs = None if len(idx) <= exact_max else graph[idx][:, idx].tocoo()
        part = _group_clusters(emb[idx], photo[idx], threshold, distance, pairs, sub, tau,
                               who, lambda k, d=done: say("groups", d + k, n))  # fmt: skip
        labels[idx] = part + next_label
        next_label += int(part.max()) + 1
        done += len(idx)
        if len(idx) > 1 or done == n:  # faces alone take no time: said with the next group
            say("groups", done, n)
    labels, moved = _honour_cannot_link(labels, emb, photo, distance)
    return np.unique(labels, return_inverse=True)[1], moved


def _group_clusters(emb, photo, threshold: float, distance: str, pairs, scale, tau: float,
                    person, said) -> np.ndarray:  # fmt: skip
    """The labels (0..k-1) of one connected group of the near-pairs graph: over its full
    matrix (`dense_clusters`), or, given the group's near `pairs`, over those
    (`linked_clusters`: the same stacks; `said(done)` how far it is)."""
    if len(emb) == 1:
        return np.zeros(1, np.int64)

    def stacks(who, said=None):
        if pairs is None:
            return dense_clusters(emb, photo, threshold, distance, scale, tau, who)
        return linked_clusters(emb, photo, pairs.row, pairs.col, threshold, distance, scale,
                               tau, who, said)  # fmt: skip

    labels = stacks(person, said)
    if person is not None and len(np.unique(person[person >= 0])) > 1:
        labels = meet(labels, stacks(None))
    return labels


def meet(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Labels (0..k-1) of the faces two labellings both put together. Two named people
    kept apart change the order average linkage merges in, and a cluster that could not
    join one named person then joined another whom no names kept apart from it: naming
    5 East-Asian idols of 8 lowered the stacks' F after a round by up to 0.173, in 5 of 8
    small libraries (bench/small_libraries.py --owner). Kept to what both the named and
    the unnamed clustering join, names only ever separate."""
    return np.unique(np.stack([a, b], 1), axis=0, return_inverse=True)[1].ravel()


def _honour_cannot_link(labels, emb, photo, distance: str) -> tuple[np.ndarray, int]:
    """A cluster holding two faces of one photo keeps the face nearest its centre and lets
    the others go (each alone)."""
    moved, next_label = 0, int(labels.max()) + 1
    for idx in by_label(labels):
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


@dataclass
class Placement:
    """Where faces go: to known people, or to new stacks (lists of face ids)."""

    to_person: list[tuple[int, list[int]]]
    new_stacks: list[list[int]]
    matched: int = 0  # clusters placed with a known person
    moved: int = 0  # faces moved out of a cluster for cannot-link
    back: int = 0  # clusters (or parts) given back to an unnamed stack they were in


@dataclass
class FaceSet:
    """Faces to place: their ids, embeddings (as the library compares them) and photos."""

    ids: np.ndarray
    emb: np.ndarray
    photo: np.ndarray
    scale: np.ndarray | None = None  # local_scales, when the library's spacing is used

    @classmethod
    def of(cls, emb: np.ndarray, rows) -> FaceSet:
        """The faces of store.read_faces (its embeddings and FaceColumns)."""
        return cls(rows.id, emb, rows.photo)


def _give(out: Placement, ids: list[int], best: int | None, rejected: set) -> None:
    """Faces to the person `best` (not those the owner rejected for it), the rest to a new
    stack, added to `out`."""
    members = [f for f in ids if (f, best) not in rejected] if best is not None else []
    rest = [f for f in ids if f not in members]
    if members:
        out.to_person.append((best, members))
    if rest:
        out.new_stacks.append(rest)
    out.matched += best is not None


def recluster(free: FaceSet, named: People, rejected: set, threshold: float,
              distance: str = "squared_l2", was: dict[int, int] | None = None,
              spacing: bool = False) -> Placement:  # fmt: skip
    """Every face the owner has not confirmed, clustered together with the confirmed ones
    (faces of two named people never in one cluster; each pair at the limit of the faces'
    spacing among all of them with `spacing`, else of their `scale` where given, else at
    the threshold); a cluster holding confirmed faces goes to the person most of them are
    (never a face rejected for that person), the others go back to the unnamed stacks
    they were in (`was`: face → stack, those that may be given back; `back_to_stacks`),
    or become new stacks. The owner's names pin faces and nothing else: a cluster joins
    only faces the library joins with no names (`meet`), so naming never loosens a stack
    (a threshold or a match fitted to a few names merged people:
    bench/library_populations' owner rounds). Pure: the caller writes the placement."""
    n = len(free.ids)
    emb = concat_rows(free.emb, named.emb)
    photo = np.concatenate([free.photo, named.photo])
    scale = None if free.scale is None else np.concatenate([free.scale, named.scale])
    person = np.concatenate([np.full(n, -1), named.person])
    labels, moved = agglomerate(emb, photo, threshold, distance, scale=scale, person=person,
                                spacing=spacing)  # fmt: skip
    out, unpinned = Placement([], [], moved=moved), []
    for idx in by_label(labels):
        mine, pinned = idx[idx < n], person[idx[idx >= n]]
        if not len(mine):
            continue
        ids = free.ids[mine].tolist()
        if not len(pinned):
            unpinned.append(ids)
            continue
        best = int(np.bincount(pinned - pinned.min()).argmax() + pinned.min())
        _give(out, ids, best, rejected)
    back_to_stacks(out, unpinned, was or {}, rejected)
    return out


def back_to_stacks(out: Placement, clusters: list[list[int]], was: dict[int, int],
                   rejected: set) -> None:  # fmt: skip
    """Clusters pinned to no one, given back to the stacks their faces were in (`was`),
    the largest cluster first: each to the stack most of it was in, which takes those of
    its faces the owner did not reject for it and is then taken; the rest is given back
    the same way — the parts of a stack the owner split were each rejected for the others'
    stacks, so they stay apart; what is left with no stack to go back to is a new stack."""
    free = set(was.values())
    for ids in sorted(clusters, key=len, reverse=True):
        while ids:
            votes = Counter(was[f] for f in ids if was.get(f) in free).most_common()
            best = next((s for s, _ in votes if any((f, s) not in rejected for f in ids)), None)
            if best is None:
                out.new_stacks.append(ids)
                break
            free.discard(best)
            out.to_person.append((best, [f for f in ids if (f, best) not in rejected]))
            out.back += 1
            ids = [f for f in ids if (f, best) in rejected]


def restack_near(faces: FaceSet, person: np.ndarray, confirmed: np.ndarray, rejected: set,
                 threshold: float, distance: str = "squared_l2",
                 spacing: bool = True) -> Placement:  # fmt: skip
    """New faces (`person` -1) stacked as `recluster` stacks everything, at the cost of the
    stacks they come near (a face of theirs nearer than the threshold to a new face): those
    are clustered again with them (with the library's spacing, or without: a threshold
    the owner gave is used as it is), their confirmed faces pinned; a cluster pinned to
    no one goes back to the stack (pinned to no one either) most of it was in, so a stack
    keeps its id while most of it stays. Every other stack is left as it is. Placing the
    new faces alone beside stacks made without them lost a quarter of the F on East-Asian
    faces after five looks for new photos (bench/arriving.py). Pure: every face of those
    stacks and every new one is placed."""
    new = person < 0
    touched = _stacks_near(faces.emb[new], faces.emb[~new], person[~new], threshold, distance)
    sub = new | np.isin(person, touched)
    order = np.concatenate([np.flatnonzero(sub), np.flatnonzero(~sub)])
    scale = np.empty(len(person) if spacing else 0)
    if spacing:
        scale[order[: sub.sum()]] = local_scales(faces.emb[order], faces.photo[order],
                                                 distance, rows=int(sub.sum()))  # fmt: skip
    at = lambda m: scale[m] if spacing else None  # noqa: E731
    free, pinned = sub & ~confirmed, sub & confirmed
    part = replace(faces, ids=faces.ids[free], emb=faces.emb[free], photo=faces.photo[free],
                   scale=at(free))  # fmt: skip
    named = People(faces.emb[pinned], person[pinned], faces.photo[pinned], at(pinned))
    back = set(touched.tolist()) - set(person[pinned].tolist())  # stacks no one pins
    was = {f: p for f, p in zip(faces.ids[free].tolist(), person[free].tolist(), strict=True)
           if p in back}  # fmt: skip
    return recluster(part, named, rejected, threshold, distance, was)


def with_new_faces(emb: np.ndarray, photo: np.ndarray, stack: np.ndarray, threshold: float,
                   distance: str = "squared_l2") -> np.ndarray:  # fmt: skip
    """Each face's stack (labels 0..k-1), as the library stacks faces with no names: the
    faces whose `stack` is -1 (new ones, or all) stacked as clustering every face again
    would (`restack_near`), the stacks they come near clustered again with them, every
    other stack as it was. `find` uses it for a folder's faces and for the face it looks
    for (bench/find_precision.py)."""
    n, new = len(emb), stack < 0
    if new.all():
        return agglomerate(emb, photo, threshold, distance, spacing=True)[0]
    if not new.any():
        return np.unique(stack, return_inverse=True)[1]
    plan = restack_near(FaceSet(np.arange(n), emb, photo), stack, np.zeros(n, bool), set(),
                        threshold, distance)  # fmt: skip
    out = stack.copy()
    for s, ids in plan.to_person:
        out[ids] = s
    for k, ids in enumerate(plan.new_stacks):
        out[ids] = int(stack.max()) + 1 + k
    return np.unique(out, return_inverse=True)[1]


def _stacks_near(new: np.ndarray, old: np.ndarray, person: np.ndarray, threshold: float,
                 distance: str) -> np.ndarray:  # fmt: skip
    """The stacks with a face (of `old`, in stack `person`) nearer than the threshold to
    one of the `new` faces — the ceiling of every pair's limit, so no other stack could
    take a new face in. Memory: a block of new faces x the old ones."""
    near = np.zeros(len(old), bool)
    for s in range(0, len(new), block_rows(len(old))):
        d = distance_matrix(new[s : s + block_rows(len(old))], old, distance, dtype=np.float32)
        near |= (d < threshold).any(axis=0)
    return np.unique(person[near])


@dataclass
class People:
    """Faces of known people (embeddings, their person and photo) that clusters join."""

    emb: np.ndarray
    person: np.ndarray
    photo: np.ndarray
    scale: np.ndarray | None = None  # local_scales of the known faces

    @classmethod
    def of(cls, emb: np.ndarray, rows) -> People:
        """The faces of store.read_faces (its embeddings and FaceColumns)."""
        return cls(emb, rows.person, rows.photo)


def shared_face(emb, photo, threshold: float, distance: str, scale=None, least: int = 3,
                elsewhere: tuple | None = None) -> list[int]:  # fmt: skip
    """The faces of the one person a set of photos shares — the photos that list someone
    whose face nothing else can find: the stack (`agglomerate`, as the library makes
    them) on the most of those photos, when it is on `least` or more and on more
    than any other; [] otherwise (two people always together tie, and stay unnamed).

    `elsewhere` — (emb, photo, scale) of the faces of the photos whose lists do not name
    them — rules out someone never listed who is often beside them (a parent holding a
    baby whose face is seldom found): a stack with a face as near it as its own loosest
    face (`_seen_on`) on half as many of those photos as it is on of theirs is someone
    else, and the next stack is weighed."""
    labels = agglomerate(emb, photo, threshold, distance, scale=scale)[0]
    sizes = np.bincount(labels)
    for k in np.flatnonzero(sizes >= least) if elsewhere is not None else ():
        idx = np.flatnonzero(labels == k)
        sub = None if scale is None else scale[idx]
        if 2 * _seen_on(emb[idx], sub, *elsewhere, threshold, distance) >= len(idx):
            sizes[k] = 0  # someone the lists do not name: not theirs
    order = np.argsort(-sizes, kind="stable")
    if sizes[order[0]] < least or (len(order) > 1 and sizes[order[0]] <= sizes[order[1]]):
        return []
    return np.flatnonzero(labels == order[0]).tolist()


def _seen_on(stack, stack_scale, emb, photo, scale, threshold: float, distance: str) -> int:
    """On how many photos a face (of `emb`, `photo`, `scale`) is as near the stack, on
    average, as the farthest of the stack's own faces is to the others — each pair in
    units of its limit, as the stacks are made."""
    if not len(emb) or len(stack) < 2:
        return 0
    own = distance_matrix(stack, stack, distance) / pair_limits(stack_scale, stack_scale,
                                                                 threshold)  # fmt: skip
    loosest = (own.sum(axis=1) / (len(stack) - 1)).max()
    d = distance_matrix(emb, stack, distance) / pair_limits(scale, stack_scale, threshold)
    return len(np.unique(photo[d.mean(axis=1) <= loosest]))
