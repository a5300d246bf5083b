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
    n, emb = len(emb), np.asarray(emb, np.float64)  # converted once, not in every block
    rows, cols = _each_once(rows, cols, n)
    d = _pair_units(emb, photo, rows, cols, threshold, distance, scale, tau, person)
    near = d < 1.0
    rows, cols, d = rows[near], cols[near], d[near]
    forest = _Forest.of(n, rows, cols, d)
    queue = _Queue.of(d, rows, cols, forest.gone)  # each pair of faces: two clusters at first

    def summed(a: int, b: int, near_a: list[int], near_b: list[int]):
        """The sums of units over every pair of cluster b and each of `near_a`, and of
        cluster a and each of `near_b`."""
        groups = [[forest.members[x] for x in near] for near in (near_a, near_b)]
        return _cross_sums(emb, photo, forest.members[a], forest.members[b], *groups,
                           threshold, distance, scale, tau, person)  # fmt: skip

    merges = 0
    while (pair := queue.pop_live(forest.alive)) is not None:
        queue.push(forest.merge(*pair, summed))  # the nearest two (every mean under 1)
        merges += 1
        if said is not None and merges % SAID_EVERY == 0:
            said(merges + forest.final)
    if said is not None:
        said(merges + forest.final)  # every face by now: n = merges + stacks
    return forest.labels()


def _each_once(rows: np.ndarray, cols: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The pairs (rows, cols) of n faces each once, whichever way round they were given, as
    (lower, higher) in order; none of a face with itself. Sorted, not `np.unique`d: its
    hash table took 3.1 s of 6.4 million real pairs (each given both ways), a sort 0.16 s."""
    key = np.minimum(rows, cols).astype(np.int64) * n + np.maximum(rows, cols)
    key.sort()
    key = key[np.r_[True, key[1:] != key[:-1]]] if len(key) else key
    rows, cols = key // n, key % n
    keep = rows < cols
    return rows[keep], cols[keep]


SAID_EVERY = 512  # merges between two reports of how far a linkage is


@dataclass
class _Queue:
    """Pairs of clusters, nearest first, ties in order of their ids. The faces' own pairs
    are sorted once in arrays (no object each: most of a linkage's memory on real faces)
    and read a block at a time, less those of faces merged away by then (`gone`). Each
    merged cluster's pairs are sorted in a list of their own, of which only the nearest not
    yet taken is on the heap: a cluster merged away drops the rest of its list at once.
    On real faces most pairs are dropped so: the faces' without a Python object each, the
    clusters' without a heap entry each (bench/cluster_memory.py)."""

    d: np.ndarray
    a: np.ndarray
    b: np.ndarray
    gone: np.ndarray  # the faces merged away so far, shared with the forest
    start: int  # where the next block of the arrays begins
    block: list  # the block being read, as (d, a, b) tuples
    at: int  # the next of the block
    heap: list  # the nearest pair not yet taken of each cluster's list
    rest: dict  # each cluster with a pair on the heap: the rest of its list, an iterator

    @classmethod
    def of(cls, d: np.ndarray, a: np.ndarray, b: np.ndarray, gone: np.ndarray) -> _Queue:
        order = np.lexsort((b, a, d))
        return cls(d[order], a[order], b[order], gone, 0, [], 0, [], {})

    def _next_block(self) -> bool:
        """Read the next block of the faces' own pairs that has a live one; False at the end."""
        while self.start < len(self.d):
            part = slice(self.start, self.start + QUEUE_BLOCK)
            self.start += QUEUE_BLOCK
            a, b = self.a[part], self.b[part]
            live = ~(self.gone[a] | self.gone[b])
            if live.any():
                self.block = list(zip(self.d[part][live].tolist(), a[live].tolist(),
                                      b[live].tolist()))  # fmt: skip
                self.at = 0
                return True
        return False

    def push(self, entries: list[tuple[float, int, int]]) -> None:
        """A new cluster's pairs, as (mean, it, other): every one of them of that cluster."""
        if entries:
            entries.sort()
            rest = iter(entries)
            first = next(rest)
            self.rest[first[1]] = rest
            heapq.heappush(self.heap, first)

    def _from_heap(self, alive: list[bool]) -> tuple[float, int, int]:
        """The heap's nearest pair, its cluster's next pair with a live other in its place
        (none when the cluster itself is merged away)."""
        entry = heapq.heappop(self.heap)
        c = entry[1]
        rest = self.rest.pop(c)
        if alive[c]:
            for later in rest:
                if alive[later[2]]:
                    self.rest[c] = rest
                    heapq.heappush(self.heap, later)
                    break
        return entry

    def pop_live(self, alive: list[bool]) -> tuple[int, int] | None:
        """The nearest pair of two live clusters, or None when no pair is left: the pairs
        of clusters merged since they were queued are dropped here, in one loop."""
        heap, block, at = self.heap, self.block, self.at
        while True:
            if at == len(block) and self._next_block():
                block, at = self.block, 0
            if at < len(block) and (not heap or block[at] < heap[0]):
                _, a, b = block[at]
                at += 1
            elif heap:
                _, a, b = self._from_heap(alive)
            else:
                self.at = at
                return None
            if alive[a] and alive[b]:
                self.at = at
                return a, b


QUEUE_BLOCK = 8_192  # the faces' own pairs read at a time (those still live made objects)


@dataclass
class _Forest:
    """The clusters so far: each one's faces, and its live pairs (the sum of units over
    every pair of faces of the two clusters, kept while their mean is under 1)."""

    members: list
    sums: list[dict[int, float]]
    alive: list[bool]
    size: list[int]
    final: int  # clusters with no live pair: stacks now
    gone: np.ndarray  # the faces (the first clusters) merged away so far

    @classmethod
    def of(cls, n: int, rows: np.ndarray, cols: np.ndarray, d: np.ndarray) -> _Forest:
        sums: list[dict[int, float]] = [{} for _ in range(n)]
        ids = list(range(n))  # one object per face, not one per pair
        for s in range(0, len(d), 100_000):  # a block at a time: no list of every pair
            part = slice(s, s + 100_000)
            for a, b, v in zip(rows[part].tolist(), cols[part].tolist(), d[part].tolist()):
                sums[a][ids[b]] = sums[b][ids[a]] = v
        alone = sum(not x for x in sums)
        return cls([np.array([i]) for i in range(n)], sums, [True] * n, [1] * n, alone,
                   np.zeros(n, bool))  # fmt: skip

    def merge(self, a: int, b: int, summed) -> list[tuple[float, int, int]]:
        """Clusters a and b become a new one; its live pairs, as (mean, it, other)."""
        new = _merged(self.sums[a], self.sums[b], a, b, summed)
        c, sizes = len(self.members), self.size
        size = sizes[a] + sizes[b]
        self.members.append(np.concatenate([self.members[a], self.members[b]]))
        self.members[a] = self.members[b] = None  # a chain of merges must not keep each step
        self.alive[a] = self.alive[b] = False
        self.alive.append(True)
        for x in (a, b):
            if x < len(self.gone):
                self.gone[x] = True
        sizes.append(size)
        sums, mine, out, final = self.sums, {}, [], 0
        sums[a], sums[b] = {}, {}
        sums.append(mine)
        for x, s in new.items():
            theirs = sums[x]
            theirs.pop(a, None)
            theirs.pop(b, None)
            m = s / (size * sizes[x])
            if m < 1.0:
                mine[x] = theirs[c] = s
                out.append((m, c, x))
            elif not theirs:
                final += 1
        self.final += final if out else final + 1
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
    if only_a or only_b:
        to_b, to_a = summed(a, b, only_a, only_b)
        out.update(zip(only_a, (sa[x] + s for x, s in zip(only_a, to_b))))
        out.update(zip(only_b, (sb[x] + s for x, s in zip(only_b, to_a))))
    return out


def _pair_units(emb, photo, rows, cols, threshold, distance, scale, tau, person):
    """`units` of the pairs (rows[i], cols[i])."""
    d = indexed_distances(emb, rows, cols, distance)
    d /= threshold if scale is None else pair_limit(scale[rows], scale[cols], threshold, tau)
    d[_apart(photo, person, rows, cols)] = BIG
    return d


def _cross_sums(emb, photo, ra, rb, groups_a, groups_b, threshold, distance, scale, tau,
                person):  # fmt: skip
    """The sums of `units` between faces `rb` and each of `groups_a`, and between faces `ra`
    and each of `groups_b`: both in one matrix of `ra` and `rb` against every group (one
    call for a merge: on real faces a merge's sums are a few hundred distances, and the
    calls, not the distances, took the time), a block of columns at a time (memory:
    `COLUMNS` distances)."""
    groups, rows = groups_a + groups_b, np.concatenate([ra, rb])
    sizes = np.array([len(g) for g in groups])
    ends, of_b = np.cumsum(sizes), np.arange(len(groups)) < len(groups_a)  # b's rows count
    out, start = [], 0
    while start < len(groups):  # the groups within `COLUMNS` distances, one at least
        before = ends[start] - sizes[start]
        stop = max(start + 1, int(np.searchsorted(ends, before + COLUMNS // len(rows), "right")))
        d = units(emb, photo, rows, np.concatenate(groups[start:stop]), threshold, distance,
                  scale, tau, person)  # fmt: skip
        summed = np.where(np.repeat(of_b[start:stop], sizes[start:stop]), d[len(ra) :].sum(0),
                          d[: len(ra)].sum(0))  # fmt: skip
        out += np.add.reduceat(summed, ends[start:stop] - sizes[start:stop] - before).tolist()
        start = stop
    return out[: len(groups_a)], out[len(groups_a) :]
