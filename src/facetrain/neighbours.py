"""Which embeddings lie near which: the candidate pairs behind the library's clustering.

Up to `EXACT_SEARCH` faces every pair is compared, block by block (exact; memory linear in
the number of faces). Past that, comparing every pair is the whole cost — 10¹² dot
products a pass at 1,000,000 faces, hours on two cores — so an inverted-file index (faiss
IVF-Flat: 4·√N lists, `NPROBE` of them searched per face) proposes the candidates; a
search of a few faces still compares them with every face (`by_index`). The index only
says where to look: every distance the library decides on is computed by `distances`.
On 100,000 synthetic faces (`bench/library_scale.py`) the index gives the same stacks as
comparing every pair, 11.7x faster; 1,000,000 faces cluster in about 12 minutes. On
48,553 real faces it gives the stacks of comparing every pair within 0.0012 BCubed F on every
population (`bench/index_populations.py`).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from facetrain.distances import canonical, distance_matrix, indexed_distances, pair_distances

EXACT_SEARCH = 50_000  # up to this many faces, every pair is compared
NPROBE = 32  # inverted lists searched per face (of 4·√N). 48,553 real faces stacked with
# the index (bench/index_populations.py): 16 lists lost up to 0.006 BCubed F against every
# pair compared (LFW 0.006, South-Asian 0.003); 32 is within 0.0012 on every set and better
# than 16 on each; 64 moved no set closer than that. At 100,000 synthetic faces 32 costs
# 1.19x the time of 16 (bench/library_scale.py), the same stacks.
EXTRA = 8  # neighbours asked for beyond k, for faces of the same photo among them
FEW_QUERIES = 4  # up to 4·√N query faces (the index's lists) are compared with all N faces
DUE = 2  # a shared index is built once its searches have compared 2·√N faces (`WhenDue`)
SEARCH_COST = 30  # a search's fixed cost in query faces, its passes over the N faces: 27
# at 100,000 and at 1,000,000 faces (bench/few_queries.py: 1 face searched, and 100)
QUERY_BLOCK = 4096  # faces searched at a time: bounds the candidate pairs held at once


# The spacing rule (library/cluster.py says why): two faces may be one person when they
# are nearer than their pair's limit, min(τ·√(sᵢ·sⱼ), T), sᵢ the distance from face i to
# its K-th nearest face of another photo among those it is seen with, T the model's
# threshold — so a crowded region of the faces (a population the model crowds) gets a
# tighter limit than one threshold gives.
K = 3  # the spacing around a face: its distance to the K-th nearest face of another photo
TAU = 1.7  # a pair's limit in units of its faces' spacing (bench/library_populations.py)
# In naming (the library's `identify`, its imports, `classify predict`, `find`), two faces
# nearer than this share of the threshold are one picture twice — a copy, an edit, a burst
# shot — not neighbours: three of a named face narrowed its spacing to nothing, and its
# person was never named again. With dlib's ResNet (threshold 0.190): a photo and its
# re-encoded, resized, shifted or brightened copy 0.004–0.016 (0.063 once, a resize the
# detector aligned anew); two different photos of one person under 0.019 for 0–4.5% of
# faces (bench/copies.py). The stacks keep copies as neighbours (`cluster.local_scales`).
COPIES = 0.1


def copy_radius(threshold: float) -> float:
    """Under this distance two faces are copies of one picture (`COPIES`)."""
    return COPIES * threshold


def pair_limits(sa, sb, threshold: float, tau: float = TAU):
    """The limit of each pair (rows of sa x rows of sb): min(τ·√(sₐ·s_b), threshold); with
    no sb, min(τ·sₐ, threshold) (the spacing around a's faces); the threshold alone
    without scales."""
    if sa is None:
        return threshold
    if sb is None:
        return np.minimum(tau * np.asarray(sa)[:, None], threshold)
    return pair_limit(np.asarray(sa)[:, None], np.asarray(sb)[None, :], threshold, tau)


def pair_limit(sa, sb, threshold: float, tau: float = TAU):
    """The limit of pairs given face by face (sa[i] with sb[i], or broadcast):
    min(τ·√(sₐ·s_b), threshold); the threshold where a face with no neighbour (inf) meets
    one whose copies crowd it (0)."""
    return np.fmin(tau * np.sqrt(sa * sb), threshold)


def block_rows(n: int) -> int:
    """Rows of an exact distance block against n faces: ~80 MB of float32 a block."""
    return max(64, min(2048, 20_000_000 // max(n, 1)))


def kth_other_photo(emb: np.ndarray, photo: np.ndarray, distance: str, k: int,
                    rows: int | None = None, copies: float = 0.0) -> np.ndarray:  # fmt: skip
    """The distance of each of the first `rows` faces (default: all) to its k-th nearest
    face of another photo among all of them (none nearer than `copies`: one picture
    twice); inf when there is none."""
    rows = len(emb) if rows is None else rows
    return kth_in(emb[:rows], photo[:rows], emb, photo, distance, k, copies=copies)


def kth_in(query: np.ndarray, qphoto: np.ndarray, base: np.ndarray, bphoto: np.ndarray,
           distance: str, k: int, index=None, copies: float = 0.0) -> np.ndarray:  # fmt: skip
    """The distance of each query face to its k-th nearest face of `base` on another photo
    (inf when there is none; k at most one less than the faces of base), as `nearest_in`
    finds them."""
    k = min(k, len(base) - 1)
    if k < 1:
        return np.full(len(query), np.inf)
    return nearest_in(query, qphoto, base, bphoto, distance, k, index, copies)[:, k - 1]


def nearest_in(query: np.ndarray, qphoto: np.ndarray, base: np.ndarray, bphoto: np.ndarray,
               distance: str, k: int, index=None, copies: float = 0.0) -> np.ndarray:  # fmt: skip
    """The distances of each query face to its k nearest faces of `base` on other photos,
    nearest first (inf past the last there is), a face nearer than `copies` (one picture
    twice: `copy_radius`) not among them. Past `EXACT_SEARCH` faces of base, for more
    than a few query faces (`by_index`), an index proposes the candidates: `index`, when
    the caller keeps one for this base (`index_of`), so that many small searches of one
    library do not each build their own."""
    e = np.ascontiguousarray(base, np.float32)
    q = np.ascontiguousarray(query, np.float32)
    out = np.full((len(q), k), np.inf)
    if k < 1 or len(q) == 0 or len(e) == 0:
        return out
    if isinstance(index, WhenDue):
        index = index.for_search(len(q))
    todo, indexed = np.arange(len(q)), by_index(len(q), len(e), index)
    say("nearest", 0, len(q))  # its bar from the start: an index takes a while to build
    if indexed:
        index = _index(e, distance) if index is None else index
        for s in range(0, len(q), QUERY_BLOCK):
            part = np.arange(s, min(s + QUERY_BLOCK, len(q)))
            _, cand = index.search(_as_indexed(q[part], distance), k + EXTRA)
            out[part] = _nearest_of_candidates(q[part], qphoto[part], e, bphoto, cand,
                                               distance, k, copies)  # fmt: skip
            say("nearest", part[-1] + 1, len(q))
        todo = np.flatnonzero(np.isinf(out[:, -1]))  # many faces of one photo among them
    kk = min(k, len(e))
    photos = _Photos.of(bphoto) if len(todo) > SORT_PHOTOS else bphoto
    for s in range(0, len(todo), block_rows(len(e))):
        part = todo[s : s + block_rows(len(e))]
        d = _of_other_photos(distance_matrix(q[part], e, distance, dtype=np.float32),
                             qphoto[part], photos, copies)  # fmt: skip
        d.partition(kk - 1, axis=1)  # in place: a copy of the block cost as much again
        out[part, :kk] = np.sort(d[:, :kk], axis=1)
        if not indexed:  # the few faces an index left: part of its count already
            say("nearest", part[-1] + 1, len(q))
    return out


def _of_other_photos(d: np.ndarray, qphoto: np.ndarray, photos: _Photos | np.ndarray,
                     copies: float) -> np.ndarray:  # fmt: skip
    """Distances `d` (query faces x base faces), inf (in place) where a base face is no
    neighbour: one of the query face's photo (`photos`: the base faces', sorted for many
    query faces, or as they are for a few), or nearer than `copies`."""
    if isinstance(photos, _Photos):
        d[photos.same(qphoto)] = np.inf
    else:
        d[qphoto[:, None] == photos[None, :]] = np.inf
    if copies > 0:  # every distance is 0 or more
        d[d < copies] = np.inf
    return d


SORT_PHOTOS = 128  # query faces past which the base faces' photos are sorted first (the
# sort of 48,553 costs about what comparing 165 query faces with each of them does)


@dataclass(frozen=True)
class _Photos:
    """The base faces' photos, sorted once: the faces of a query face's photo found by a
    search, not a comparison with every base face (a block of 411 faces against 48,553:
    0.06 ms, not 7.5, and the mask of them set without a pass over the block)."""

    order: np.ndarray
    sorted: np.ndarray

    @classmethod
    def of(cls, photo: np.ndarray) -> _Photos:
        order = np.argsort(photo, kind="stable")
        return cls(order, photo[order])

    def same(self, qphoto: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query rows, base faces): each query face with every base face of its photo."""
        lo, hi = (np.searchsorted(self.sorted, qphoto, side) for side in ("left", "right"))
        count = hi - lo
        rows = np.repeat(np.arange(len(qphoto)), count)
        within = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
        return rows, self.order[np.repeat(lo, count) + within]


def by_index(queries: int, faces: int, index=None) -> bool:
    """Whether an index proposes the candidates of a search: past `EXACT_SEARCH` faces,
    when the caller keeps one for them or the query faces are more than `FEW_QUERIES`·√N.
    Building an index of N faces costs about what comparing 4·√N faces with every one
    does at a million; a find, a look for a few new photos, or a photo named against a
    large gallery built one (5 s at 100,000 faces) to search a few (bench/few_queries.py)."""
    if faces <= EXACT_SEARCH:
        return False
    return index is not None or queries > FEW_QUERIES * np.sqrt(faces)


def scales_among(emb: np.ndarray, photo: np.ndarray, others: np.ndarray, ophoto: np.ndarray,
                 distance: str, k: int = K, index=None,
                 copies: float = 0.0) -> np.ndarray:  # fmt: skip
    """The spacing (`kth_other_photo`) of these faces among themselves and `others`
    together, without joining them: `index`, an index of `others` the caller keeps
    (`index_of`), serves here and in its other searches."""
    k = min(k, len(emb) + len(others) - 1)
    if k < 1:
        return np.full(len(emb), np.inf)
    near = [nearest_in(emb, photo, others, ophoto, distance, k, index, copies),
            nearest_in(emb, photo, emb, photo, distance, k, copies=copies)]  # fmt: skip
    return np.sort(np.concatenate(near, axis=1), axis=1)[:, k - 1]


def index_of(base: np.ndarray, distance: str) -> WhenDue | None:
    """An index of these faces for many small searches of them to share (a namer's
    photos), built when due (`WhenDue`); within `keep()`, the one built for the same faces
    before, at once. None when they are few enough to be compared with every query face."""
    e = np.ascontiguousarray(base, np.float32)
    if len(e) <= EXACT_SEARCH:
        return None
    kept = getattr(_state, "kept", None)
    if kept is None or getattr(_state, "once", False):
        return WhenDue(e, distance)
    key = _key(e, distance)
    if key not in kept:
        kept.clear()  # one set of faces at a time, as `_index` keeps them
    return WhenDue(e, distance, kept, key, kept.get(key))


@dataclass
class WhenDue:
    """An index of a set of faces that many small searches share, built once they have
    compared `DUE`·√N query faces with every face (each search counted with `SEARCH_COST`
    more): naming one photo in a library of 200,000 faces built it (9–11 s on 2 cores) for
    searches of 0.6 s; naming dozens of photos builds it after the first dozen or so
    (bench/few_queries.py --namer). Built within `keep()`, it is kept there for the next
    namer of these faces."""

    faces: np.ndarray
    distance: str
    kept: dict | None = None  # the caller's `keep()`, and the faces' key there
    key: tuple | None = None
    index: object = None
    compared: int = 0  # query faces searched without it, with each search's fixed cost
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def for_search(self, queries: int):
        """The index for a search of `queries` faces, built now if that makes it due; None
        while comparing them with every face is still cheaper."""
        with self.lock:  # the page's threads may share one namer
            if self.index is None:
                self.compared += queries + SEARCH_COST
                if self.compared > DUE * np.sqrt(len(self.faces)):
                    self.index = _build(self.faces, self.distance)
                    if self.kept is not None:
                        self.kept[self.key] = self.index
            return self.index


def _nearest_of_candidates(q, qphoto, e, photo, cand, distance: str, k: int,
                           copies: float = 0.0) -> np.ndarray:  # fmt: skip
    """The k smallest distances from each query face to its candidates (rows of e) of
    other photos and no nearer than `copies`, nearest first (inf where fewer than k
    remain)."""
    valid = (cand >= 0) & (photo[np.clip(cand, 0, None)] != qphoto[:, None])
    d = np.full(cand.shape, np.inf)
    r, c = np.nonzero(valid)
    d[r, c] = pair_distances(q[r], e[cand[r, c]], distance, dtype=np.float32)
    d[d < copies] = np.inf
    return np.sort(d, axis=1)[:, :k]


def pairs_within(emb: np.ndarray, radius: float, distance: str,
                 scale: np.ndarray | None = None, tau: float = TAU):  # fmt: skip
    """Every pair of faces nearer than `radius` (with `scale`: than their pair's limit,
    `pair_limit` at most `radius`), both directions, no self pairs: rows, columns and
    distances. The limits are applied block by block: on real faces a face has 6.6 times
    as many faces under the threshold as under its pair's limit (bench/cluster_memory.py)."""
    e = np.ascontiguousarray(emb, np.float32)
    exact = len(e) <= EXACT_SEARCH
    say("pairs", 0, len(e))
    within = _Within(radius, scale, tau)
    if not exact:
        return _joined(_pairs_indexed(e, within, distance))
    return _both_ways(_pairs_exact(e, within, distance))


def _both_ways(parts: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blocks of pairs found once each (rows, columns, distances) as one, each pair given
    both ways round."""
    r, c, v = _joined(parts)
    return np.r_[r, c], np.r_[c, r], np.r_[v, v]


def _joined(parts: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blocks of pairs (rows, columns, distances) as one of each."""
    rows, cols, vals = zip(*parts, strict=True) if parts else ((), (), ())
    cat = lambda xs, t: np.concatenate(xs).astype(t) if xs else np.zeros(0, t)  # noqa: E731
    return cat(rows, np.int64), cat(cols, np.int64), cat(vals, np.float32)


def spacing_and_pairs(emb: np.ndarray, photo: np.ndarray, distance: str, k: int,
                      radius: float, tau: float = TAU):  # fmt: skip
    """The spacing of every face (`kth_other_photo`) and the pairs nearer than their pair's
    limit from it (`pairs_within` with that spacing): up to `EXACT_SEARCH` faces in one
    pass over the distances, each block of faces paired with those whose spacing is known
    by then, instead of one pass for each (15.9 s and 16.6 s of 48,553 real faces); past
    that, the index's two searches. (spacing, rows, columns, distances)."""
    if len(emb) > EXACT_SEARCH:
        scale = kth_other_photo(emb, photo, distance, k)
        return (scale, *pairs_within(emb, radius, distance, scale, tau))
    e, n = np.ascontiguousarray(emb, np.float32), len(emb)
    scale, kk, parts, photos = np.full(n, np.inf), min(k, n - 1), [], _Photos.of(photo)
    within, block = _Within(radius, scale, tau), block_rows(n)
    for what in ("nearest", "pairs"):
        say(what, 0, n)
    for s in range(0, n, block):
        d = distance_matrix(e[s : s + block], e, distance, dtype=np.float32)
        pairs = _with_faces_before(d, s, radius)  # read before d is changed below
        if kk >= 1:  # as `nearest_in` finds it
            _of_other_photos(d, photo[s : s + block], photos, 0.0)
            d.partition(kk - 1, axis=1)  # in place: d is not read again
            scale[s : s + len(d)] = d[:, kk - 1]
        parts.append(within.kept(*pairs))  # the spacing of both faces known by now
        for what in ("nearest", "pairs"):
            say(what, min(s + block, n), n)
    return scale, *_both_ways(parts)


def _with_faces_before(d: np.ndarray, s: int, radius: float):
    """The pairs under `radius` of a block of faces from face s (the rows of d; its columns
    the faces from the first on) with the faces before each, each pair once: (rows as
    faces, columns, distances)."""
    r, c = np.nonzero(d[:, : s + len(d)] < radius)
    once = c < r + s
    r, c = r[once], c[once]
    return r + s, c, d[r, c]


@dataclass(frozen=True)
class _Within:
    """Pairs nearer than `radius`, or with `scale` than their pair's limit (at most it)."""

    radius: float
    scale: np.ndarray | None
    tau: float

    def kept(self, r: np.ndarray, c: np.ndarray, d: np.ndarray):
        """The pairs (rows, columns, distances) that are within, no face with itself, as
        the same three."""
        s, limit = self.scale, self.radius
        if s is not None:
            limit = pair_limit(s[r], s[c], self.radius, self.tau)
        near = (d < limit) & (r != c)
        return r[near], c[near], d[near]


def _pairs_exact(e: np.ndarray, within: _Within, distance: str) -> list:
    """The pairs within, each once (with the face before it): each block of faces compared
    with the faces up to it only, half the comparisons of every face with every face."""
    out, block = [], block_rows(len(e))
    for s in range(0, len(e), block):
        d = distance_matrix(e[s : s + block], e[: s + block], distance, dtype=np.float32)
        out.append(within.kept(*_with_faces_before(d, s, within.radius)))
        done = min(s + block, len(e))  # the bar counts the comparisons, a triangle's share
        say("pairs", done * done // len(e), len(e))
    return out


def _pairs_indexed(e: np.ndarray, within: _Within, distance: str) -> list:
    index, out, radius = _index(e, distance), [], within.radius
    # the index's squared L2 (between unit vectors for the cosine), a hair wide: it proposes
    wide = radius if canonical(distance) == "squared_l2" else 2 - 2 * np.cos(np.pi * radius)
    for s in range(0, len(e), QUERY_BLOCK):
        lims, _, cand = index.range_search(_as_indexed(e[s : s + QUERY_BLOCK], distance),
                                           float(wide) * 1.001 + 1e-6)  # fmt: skip
        r = np.repeat(np.arange(len(lims) - 1), np.diff(lims.astype(np.int64))) + s
        c = cand.astype(np.int64)
        d = indexed_distances(e, r, c, distance, dtype=np.float32)
        out.append(within.kept(r, c, d))
        say("pairs", min(s + QUERY_BLOCK, len(e)), len(e))
    return out


def _as_indexed(e: np.ndarray, distance: str) -> np.ndarray:
    """What the index holds: the embeddings (squared L2), or unit vectors (cosine)."""
    if canonical(distance) == "squared_l2":
        return np.ascontiguousarray(e, np.float32)
    return np.ascontiguousarray(e / np.linalg.norm(e, axis=1, keepdims=True), np.float32)


_state = threading.local()  # per thread, inside `keep()`: `kept`, the indexes built (by
# content and distance), and `once`, whether each is handed over once more, then let go


@contextlib.contextmanager
def keep(once: bool = False, into: dict | None = None):
    """Within the block, an index built for some faces serves the next searches of the
    same faces. With `once`, the next search alone, then it is let go: a cluster run's
    spacing and then its near pairs search one set (100,000 faces: 13.6 s instead of
    15.8 s), and the index is not held while the groups are clustered. Without, every
    search in the block, the last faces indexed alone kept: an import names by likeness in
    rounds, a namer a round, each searching the library's faces, which naming does not
    change (bench/import_scale.py). `into`: a dict of the caller's that keeps that index
    after the block too (the web page's namer, made again after each change). Each thread
    keeps its own: a look for new photos and a "who is this?" run side by side."""
    outer = getattr(_state, "kept", None), getattr(_state, "once", False)
    _state.kept = into if into is not None else ({} if outer[0] is None else outer[0])
    _state.once = once
    try:
        yield
    finally:
        _state.kept, _state.once = outer


@contextlib.contextmanager
def reporting(said: Callable[[str, int, int], None] | None):
    """Within the block (this thread), the searches say how far they are after each block
    of faces: `said(search, done, total)`, the search `nearest` (`nearest_in`) or `pairs`
    (`pairs_within`); the clustering says `groups` (`cluster.agglomerate`). A cluster run
    of a million faces takes minutes. None: nothing is said (a search within a step)."""
    outer = getattr(_state, "said", None)
    _state.said = said
    try:
        yield
    finally:
        _state.said = outer


def say(what: str, done: int, total: int) -> None:
    """How far a long step is, to whoever listens (`reporting`); nothing when no one does."""
    said = getattr(_state, "said", None)
    if said is not None:
        said(what, int(done), int(total))


def _key(e: np.ndarray, distance: str) -> tuple:
    """What tells one set of faces from another: their bytes' digest (the buffer, no
    copy), their shape and the distance."""
    digest = hashlib.sha1(np.ascontiguousarray(e).data).hexdigest()
    return digest, e.shape, canonical(distance)


def _index(e: np.ndarray, distance: str):
    """The faces' index: within `keep()`, the one built for the same faces before (see
    there for how long it is kept), else a new one."""
    kept, once = getattr(_state, "kept", None), getattr(_state, "once", False)
    if kept is None:
        return _build(e, distance)
    key = _key(e, distance)
    if key in kept:
        return kept.pop(key) if once else kept[key]
    if not once:
        kept.clear()  # one set of faces at a time: an index is as large as they are
    kept[key] = _build(e, distance)
    return kept[key]


def _build(e: np.ndarray, distance: str):
    """An IVF-Flat index of the faces, its lists trained on a fixed sample (repeatable)."""
    import faiss

    x = _as_indexed(e, distance)
    say("index", 0, len(x))  # ~10 s at 100,000 faces, before any search can say anything
    nlist = max(1, min(int(4 * np.sqrt(len(x))), len(x) // 39))  # faiss: ≥ 39 faces a list
    index = faiss.IndexIVFFlat(faiss.IndexFlatL2(x.shape[1]), x.shape[1], nlist)
    sample = np.random.default_rng(0).choice(len(x), min(len(x), 64 * nlist), replace=False)
    index.train(x[np.sort(sample)])
    index.add(x)
    index.nprobe = min(NPROBE, nlist)
    say("index", len(x), len(x))
    return index
