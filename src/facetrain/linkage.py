"""Average linkage cut at each pair's limit: the clustering behind the library's stacks.

Distances are taken in units of each pair's limit (`units`: the model's threshold, or
`neighbours.pair_limits` of the faces' spacing), so the cut is at 1; two faces of one photo,
or of two people the owner named apart, are `BIG` apart. `dense_clusters` averages over the
full matrix. `linked_clusters` gives the same merges in memory linear in the near pairs:
two clusters average 1 or more apart unless one of their pairs is under 1, so only the
clusters such a pair links are ever compared, on every pair of their faces (the far pairs
too), when they first come near. It serves groups too large for a matrix: on a real library
of 48,553 faces (LFW, CelebA, CFP, East- and South-Asian faces: `bench/index_populations.py`)
the faces under their limits form one connected group, whose matrix would be 19 GB.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from facetrain.distances import distance_matrix, indexed_distances
from facetrain.neighbours import TAU, pair_limit, pair_limits

BIG = 1e6  # the distance of two faces that are never one person
COLUMNS = 4_000_000  # distances computed at a time when a cluster first meets others


def units(emb, photo, rows, cols, threshold: float, distance: str, scale=None,
          tau: float = TAU, person=None) -> np.ndarray:  # fmt: skip
    """The distances of faces `rows` x faces `cols` in units of their pair's limit: under 1,
    they may be one person; `BIG` for two faces of one photo or of two named people."""
    d = distance_matrix(emb[rows], emb[cols], distance)
    d /= threshold if scale is None else pair_limits(scale[rows], scale[cols], threshold, tau)
    d[_apart(photo, person, rows[:, None], cols[None, :])] = BIG
    return d


def _apart(photo, person, a, b) -> np.ndarray:
    """Whether faces a and b (broadcast) can never be one person: one photo, or two people."""
    out = photo[a] == photo[b]
    if person is not None:
        out |= (person[a] != person[b]) & (person[a] >= 0) & (person[b] >= 0)
    return out & (a != b)


def dense_clusters(emb, photo, threshold: float, distance: str, scale=None,
                   tau: float = TAU, person=None) -> np.ndarray:  # fmt: skip
    """Labels (0..k-1) by average linkage over the full matrix of `units`, cut at 1."""
    from sklearn.cluster import AgglomerativeClustering

    every = np.arange(len(emb))
    d = units(emb, photo, every, every, threshold, distance, scale, tau, person)
    return AgglomerativeClustering(
        n_clusters=None, metric="precomputed", linkage="average", distance_threshold=1.0
    ).fit_predict(d)


def linked_clusters(emb, photo, rows, cols, threshold: float, distance: str, scale=None,
                    tau: float = TAU, person=None, said=None) -> np.ndarray:  # fmt: skip
    """`dense_clusters`' labels from the pairs (rows, cols) that may be under their limit
    (any superset of those that are, either way round: the rest are dropped here), without
    the matrix. `said(done)`: how far it is, out of the faces (a group of 48,520 real faces
    takes a minute): merges made and stacks final, which add up to the faces at the end
    and grow with the merges, as the time does."""
    n = len(emb)
    key = np.unique(np.minimum(rows, cols).astype(np.int64) * n + np.maximum(rows, cols))
    rows, cols = key // n, key % n  # each pair once, whichever way it was given
    keep = rows < cols  # no face with itself
    rows, cols = rows[keep], cols[keep]
    d = _pair_units(emb, photo, rows, cols, threshold, distance, scale, tau, person)
    near = d < 1.0
    rows, cols, d = rows[near], cols[near], d[near]
    forest = _Forest.of(n, rows, cols, d)
    queue = _Queue.of(d, rows, cols)  # every pair of faces is a pair of clusters at first

    def summed(a: int, others: list[int]) -> list[float]:
        """The sum of units over every pair of cluster a and each of the others."""
        groups = [forest.members[x] for x in others]
        return _block_sums(emb, photo, forest.members[a], groups, threshold, distance, scale,
                           tau, person)  # fmt: skip

    merges = 0
    while (pair := queue.pop_live(forest.alive)) is not None:
        for entry in forest.merge(*pair, summed):  # the nearest two (every mean under 1)
            queue.push(entry)
        merges += 1
        if said is not None and merges % SAID_EVERY == 0:
            said(merges + forest.final)
    if said is not None:
        said(merges + forest.final)  # every face by now: n = merges + stacks
    return forest.labels()


SAID_EVERY = 512  # merges between two reports of how far a linkage is


@dataclass
class _Queue:
    """Pairs of clusters, nearest first, ties in order of their ids: the faces' own pairs
    sorted once in arrays (no object each: most of a linkage's memory on real faces) and
    read a block at a time, the pairs of merged clusters on a heap."""

    d: np.ndarray
    a: np.ndarray
    b: np.ndarray
    start: int  # where the next block of the arrays begins
    block: list  # the block being read, as (d, a, b) tuples
    at: int  # the next of the block
    heap: list

    @classmethod
    def of(cls, d: np.ndarray, a: np.ndarray, b: np.ndarray) -> _Queue:
        order = np.lexsort((b, a, d))
        return cls(d[order], a[order], b[order], 0, [], 0, [])

    def _head(self) -> tuple[float, int, int] | None:
        """The nearest of the faces' own pairs not yet taken, or None."""
        if self.at == len(self.block):
            if self.start >= len(self.d):
                return None
            part = slice(self.start, self.start + QUEUE_BLOCK)
            self.block = list(zip(self.d[part].tolist(), self.a[part].tolist(),
                                  self.b[part].tolist()))  # fmt: skip
            self.start, self.at = self.start + QUEUE_BLOCK, 0
        return self.block[self.at]

    def push(self, entry: tuple[float, int, int]) -> None:
        heapq.heappush(self.heap, entry)

    def pop_live(self, alive: list[bool]) -> tuple[int, int] | None:
        """The nearest pair of two live clusters, or None when no pair is left: the pairs
        of clusters merged since they were queued (most, on real faces) are dropped here,
        in one loop."""
        heap = self.heap
        while True:
            head = self._head()
            if head is not None and (not heap or head < heap[0]):
                self.at += 1
                _, a, b = head
            elif heap:
                _, a, b = heapq.heappop(heap)
            else:
                return None
            if alive[a] and alive[b]:
                return a, b


QUEUE_BLOCK = 65_536  # the faces' own pairs made Python objects at a time


@dataclass
class _Forest:
    """The clusters so far: each one's faces, and its live pairs (the sum of units over
    every pair of faces of the two clusters, kept while their mean is under 1)."""

    members: list
    sums: list[dict[int, float]]
    alive: list[bool]
    size: list[int]
    final: int  # clusters with no live pair: stacks now

    @classmethod
    def of(cls, n: int, rows: np.ndarray, cols: np.ndarray, d: np.ndarray) -> _Forest:
        sums: list[dict[int, float]] = [{} for _ in range(n)]
        ids = list(range(n))  # one object per face, not one per pair
        for s in range(0, len(d), 100_000):  # a block at a time: no list of every pair
            part = slice(s, s + 100_000)
            for a, b, v in zip(rows[part].tolist(), cols[part].tolist(), d[part].tolist()):
                sums[a][ids[b]] = sums[b][ids[a]] = v
        alone = sum(not x for x in sums)
        return cls([np.array([i]) for i in range(n)], sums, [True] * n, [1] * n, alone)

    def merge(self, a: int, b: int, summed) -> list[tuple[float, int, int]]:
        """Clusters a and b become a new one; its live pairs, as (mean, it, other)."""
        new = _merged(self.sums[a], self.sums[b], a, b, summed)
        c, size = len(self.members), self.size[a] + self.size[b]
        self.members.append(np.concatenate([self.members[a], self.members[b]]))
        self.members[a] = self.members[b] = None  # a chain of merges must not keep each step
        self.alive[a] = self.alive[b] = False
        self.alive.append(True)
        self.size.append(size)
        sums, mine, out = self.sums, {}, []
        sums[a], sums[b] = {}, {}
        sums.append(mine)
        for x, s in new.items():
            theirs = sums[x]
            theirs.pop(a, None), theirs.pop(b, None)
            m = s / (size * self.size[x])
            if m < 1.0:
                mine[x] = theirs[c] = s
                out.append((m, c, x))
            elif not theirs:
                self.final += 1
        if not out:
            self.final += 1
        return out

    def labels(self) -> np.ndarray:
        n = sum(len(m) for m, alive in zip(self.members, self.alive) if alive)
        labels = np.empty(n, np.int64)
        for k, c in enumerate(c for c in range(len(self.members)) if self.alive[c]):
            labels[self.members[c]] = k
        return labels


def _merged(sa: dict, sb: dict, a: int, b: int, summed) -> dict[int, float]:
    """The sums of units between a ∪ b and every cluster that either is near: a pair only
    one of them kept (the other's mean is 1 or more) computed in full for the other."""
    only_a = [x for x in sa if x != b and x not in sb]
    only_b = [x for x in sb if x != a and x not in sa]
    out = {x: sa[x] + sb[x] for x in sa if x in sb}
    out.update(zip(only_a, (sa[x] + s for x, s in zip(only_a, summed(b, only_a)))))
    out.update(zip(only_b, (sb[x] + s for x, s in zip(only_b, summed(a, only_b)))))
    return out


def _pair_units(emb, photo, rows, cols, threshold, distance, scale, tau, person):
    """`units` of the pairs (rows[i], cols[i])."""
    d = indexed_distances(emb, rows, cols, distance)
    d /= threshold if scale is None else pair_limit(scale[rows], scale[cols], threshold, tau)
    d[_apart(photo, person, rows, cols)] = BIG
    return d


def _block_sums(emb, photo, rows, groups, threshold, distance, scale, tau, person):
    """The sum of `units` between faces `rows` and each group of faces, a block of columns
    at a time (memory: `COLUMNS` distances)."""
    out, start = [], 0
    while start < len(groups):
        stop, width = start, 0
        while stop < len(groups) and (stop == start or width * len(rows) < COLUMNS):
            width += len(groups[stop])
            stop += 1
        cols = np.concatenate(groups[start:stop])
        d = units(emb, photo, rows, cols, threshold, distance, scale, tau, person)
        edges = np.cumsum([0] + [len(g) for g in groups[start : stop - 1]])
        out += np.add.reduceat(d.sum(0), edges).tolist()
        start = stop
    return out
