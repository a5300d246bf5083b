"""Average linkage over the near pairs gives the stacks of the full matrix."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse.csgraph import connected_components

from facetrain.library.cluster import local_scales, near_pairs
from facetrain.linkage import dense_clusters, linked_clusters


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(((a[:, None] == a) == (b[:, None] == b)).all())


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("distance, threshold", [("squared_l2", 0.9), ("cosine", 0.25)])
def test_linked_clusters_merge_as_the_full_matrix_does(seed, distance, threshold):
    """People in lookalike families, several faces to a photo, each pair at its spacing's
    limit, two people named apart: the same partition as the matrix, from the pairs under
    their limits — given both ways or one way — or from any wider set of pairs."""
    rng = np.random.default_rng(seed)
    family = np.repeat(rng.normal(size=(8, 16)), 4, 0)
    centres = family + rng.normal(scale=0.6, size=(32, 16))
    emb = np.repeat(centres, 8, 0) + rng.normal(scale=0.45, size=(256, 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    photo = np.arange(256)
    photo[rng.choice(256, 60, replace=False)] = rng.integers(0, 25, 60)
    person = np.full(256, -1)
    person[:16] = np.repeat([0, 1], 8)
    scale = local_scales(emb, photo, distance)
    for s, who in ((None, None), (scale, None), (scale, person)):
        dense = dense_clusters(emb, photo, threshold, distance, s, person=who)
        assert 10 < len(np.unique(dense)) < 240  # something to get right
        near = near_pairs(emb, threshold * 1.0001, distance, scale=s).tocoo()
        wide = near_pairs(emb, threshold * 1.5, distance).tocoo()
        one_way = near.row > near.col
        for rows, cols in ((near.row, near.col), (wide.row, wide.col),
                           (near.row[one_way], near.col[one_way])):  # fmt: skip
            linked = linked_clusters(emb, photo, rows, cols, threshold, distance, s,
                                     person=who)  # fmt: skip
            assert same_partition(dense, linked)


def test_the_pairs_read_a_block_at_a_time_merge_as_all_at_once(monkeypatch):
    """The faces' own pairs come out of their sorted arrays in blocks (`QUEUE_BLOCK`): blocks
    of 7 pairs give the full matrix's partition too."""
    from facetrain import linkage

    monkeypatch.setattr(linkage, "QUEUE_BLOCK", 7)
    rng = np.random.default_rng(3)
    emb = np.repeat(rng.normal(size=(20, 16)), 6, 0) + rng.normal(scale=0.5, size=(120, 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    photo = np.arange(120)
    scale = local_scales(emb, photo, "squared_l2")
    dense = dense_clusters(emb, photo, 0.9, "squared_l2", scale)
    near = near_pairs(emb, 0.9 * 1.0001, "squared_l2", scale=scale).tocoo()
    assert near.nnz > 10 * 7 and 5 < len(np.unique(dense)) < 110
    linked = linked_clusters(emb, photo, near.row, near.col, 0.9, "squared_l2", scale)
    assert same_partition(dense, linked)
    d = np.round(rng.random(40), 1)  # ties, broken by the ids as a heap of tuples does
    a, b = rng.integers(0, 50, 40), rng.integers(0, 50, 40)
    gone = np.zeros(50, bool)
    queue, pushed = linkage._Queue.of(d, a, b, gone), [(0.35, 60, 1), (0.0, 61, 2), (0.9, 62, 3)]
    for entry in pushed:  # each of another cluster
        queue.push([entry])
    every = sorted([*zip(d.tolist(), a.tolist(), b.tolist()), *pushed])
    got, alive = [], [True] * 63
    while (pair := queue.pop_live(alive)) is not None:
        got.append(pair)
    assert got == [(x, y) for _, x, y in every]
    queue = linkage._Queue.of(d, a, b, gone)  # pairs of a cluster merged away are passed over
    alive[7] = alive[30] = False
    gone[7] = True  # 7's pairs dropped as their block is read, 30's as they come out
    live = [(x, y) for _, x, y in sorted(zip(d.tolist(), a.tolist(), b.tolist()))
            if alive[x] and alive[y]]  # fmt: skip
    assert 0 < len(live) < len(d)
    assert [queue.pop_live(alive) for _ in range(len(live) + 1)] == [*live, None]


def test_the_queue_gives_every_live_pair_nearest_first(monkeypatch):
    """Faces' pairs read in blocks and merged clusters' pairs in sorted lists, one of each
    list on the heap: every pair of two live clusters comes out in the order of one heap of
    them all, ties by the ids; a merged-away face's pairs, a merged-away cluster's list and
    the pairs in a list whose other cluster is gone are passed over."""
    from facetrain import linkage

    monkeypatch.setattr(linkage, "QUEUE_BLOCK", 7)
    rng = np.random.default_rng(5)
    d = np.round(rng.random(60), 1)
    a, b = rng.integers(0, 40, 60), rng.integers(0, 40, 60)
    gone, alive = np.zeros(40, bool), [True] * 50
    queue = linkage._Queue.of(d, a, b, gone)
    lists = [[(round(float(rng.random()), 1), c, int(x)) for x in rng.choice(c, 6, False)]
             for c in range(40, 50)]  # fmt: skip
    for pairs in lists:
        queue.push(list(pairs))
    for dead in (a[0], b[5], 44, 45):
        alive[dead] = False
    gone[a[0]] = True
    every = sorted([*zip(d.tolist(), a.tolist(), b.tolist()), *sum(lists, [])])
    live = [(x, y) for _, x, y in every if alive[x] and alive[y]]
    assert len(live) > 40 and len({m for m, *_ in every}) < len(every)  # ties among them
    got = []
    while (pair := queue.pop_live(alive)) is not None:
        got.append(pair)
    assert got == live
    fresh, read = linkage._Queue.of(d, a, b, gone), []  # no object for a gone face's pair
    while fresh._next_block():
        read += fresh.block
    faces = sorted(zip(d.tolist(), a.tolist(), b.tolist()))
    assert read == [(m, x, y) for m, x, y in faces if not gone[x] | gone[y]] != faces


def test_faces_no_pair_links_stay_apart():
    """Without a pair under its limit nothing merges; one photo's faces never do."""
    emb = np.eye(4, 8)
    photo = np.array([0, 0, 1, 2])
    none = np.zeros(0, np.int64)
    labels = linked_clusters(emb, photo, none, none, 0.5, "squared_l2")
    assert len(np.unique(labels)) == 4
    emb[1] = emb[0]  # one photo's two faces, alike: still apart
    pairs = np.array([0, 1])
    labels = linked_clusters(emb, photo, pairs, pairs[::-1], 0.5, "squared_l2")
    assert labels[0] != labels[1]


def test_a_group_too_large_for_a_matrix_is_never_compared_whole(monkeypatch):
    """Past `exact_max` faces a connected group is clustered from its near pairs: no block
    of distances near the group's matrix is ever computed, and the stacks are the
    matrix's (the group's matrix is what a real library of 48,553 faces could not hold)."""
    from facetrain import linkage
    from facetrain.library.cluster import agglomerate

    rng = np.random.default_rng(5)
    family = np.repeat(rng.normal(size=(30, 16)), 4, 0)  # 120 people, lookalikes in fours
    centres = family + rng.normal(scale=0.7, size=(120, 16))
    emb = np.repeat(centres, 6, 0) + rng.normal(scale=0.45, size=(720, 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    photo = np.arange(720)
    whole = linkage.dense_clusters(emb, photo, 0.7, "squared_l2")
    blocks = []
    real = linkage.distance_matrix
    block = lambda a, b, *x: blocks.append(len(a) * len(b)) or real(a, b, *x)  # noqa: E731
    monkeypatch.setattr(linkage, "distance_matrix", block)
    monkeypatch.setattr(linkage, "COLUMNS", 2000)
    labels, _ = agglomerate(emb, photo, 0.7, "squared_l2", exact_max=100)
    _, group = connected_components(near_pairs(emb, 0.7, "squared_l2"), directed=False)
    assert np.bincount(group).max() == 720  # one group, too large for the dense path
    assert blocks and max(blocks) < 720 * 720 / 10  # a stack and its neighbours at most
    assert same_partition(whole, labels)
    assert 60 < len(np.unique(labels)) < 120


def test_indexed_distances_equal_pair_distances_across_blocks(monkeypatch):
    from facetrain import distances

    rng = np.random.default_rng(0)
    emb = rng.normal(size=(30, 8))
    rows, cols = rng.integers(0, 30, 50), rng.integers(0, 30, 50)
    monkeypatch.setattr(distances, "PAIRS", 7)
    for d in ("squared_l2", "cosine"):
        got = distances.indexed_distances(emb, rows, cols, d)
        assert np.allclose(got, distances.pair_distances(emb[rows], emb[cols], d))


def test_a_long_linkage_says_how_far_it_is(monkeypatch):
    """A group of tens of thousands of faces takes a minute: merges made and stacks final
    are counted as merges go, never down, as many as the faces by the end."""
    from facetrain import linkage

    rng = np.random.default_rng(3)
    centres = rng.normal(size=(60, 16)) + np.repeat(rng.normal(size=(15, 16)), 4, 0)
    emb = np.repeat(centres, 8, 0) + rng.normal(scale=0.45, size=(480, 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    photo = np.arange(480)
    pairs = near_pairs(emb, 0.8, "squared_l2").tocoo()
    monkeypatch.setattr(linkage, "SAID_EVERY", 10)
    said: list[int] = []
    labels = linked_clusters(emb, photo, pairs.row, pairs.col, 0.8, "squared_l2",
                             said=said.append)  # fmt: skip
    assert len(said) > 5 and said == sorted(said) and said[-1] == 480
    assert 0 < said[len(said) // 2] < 480
    assert same_partition(labels, dense_clusters(emb, photo, 0.8, "squared_l2"))


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("distance, threshold", [("squared_l2", 0.9), ("cosine", 0.6)])
def test_near_pairs_are_those_under_their_limits(monkeypatch, exact, distance, threshold):
    """The graph the stacks come from holds exactly the pairs of other faces nearer than
    their pair's limit — the limits applied as the pairs are found, block by block, through
    the full comparison or the index — with their distances."""
    from facetrain import neighbours
    from facetrain.distances import distance_matrix
    from facetrain.neighbours import pair_limits

    monkeypatch.setattr(neighbours, "EXACT_SEARCH", 10**6 if exact else 100)
    monkeypatch.setattr(neighbours, "NPROBE", 10**3)  # every list: the index misses none
    monkeypatch.setattr(neighbours, "QUERY_BLOCK", 97)  # several blocks
    rng = np.random.default_rng(5)
    emb = np.repeat(rng.normal(size=(40, 16)), 10, 0) + rng.normal(scale=0.5, size=(400, 16))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    scale = local_scales(emb, np.arange(400), distance)
    d = distance_matrix(emb, emb, distance)
    want = (d < pair_limits(scale, scale, threshold)) & ~np.eye(400, dtype=bool)
    wide = (d < threshold) & ~np.eye(400, dtype=bool)
    assert 400 < want.sum() < 0.8 * wide.sum()  # the limits cut pairs the threshold keeps
    got = near_pairs(emb, threshold, distance, scale=scale)
    assert np.array_equal(got.toarray() > 0, want)
    assert np.allclose(got.toarray()[want], d[want], atol=1e-5)


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("distance, threshold", [("squared_l2", 0.9), ("cosine", 0.6)])
def test_spacing_and_near_pairs_in_one_pass_are_those_of_two(monkeypatch, exact, distance,
                                                             threshold):  # fmt: skip
    """The library's stacks find each face's spacing and the pairs under their limits in
    one pass over the distances, blocks of faces at a time (through the index past
    `EXACT_SEARCH`): the same spacing to the bit, with several faces to a photo and one
    picture twice, and the same graph as the two passes give."""
    from facetrain import neighbours
    from facetrain.library.cluster import spaced_pairs

    monkeypatch.setattr(neighbours, "EXACT_SEARCH", 10**6 if exact else 100)
    monkeypatch.setattr(neighbours, "NPROBE", 10**3)
    monkeypatch.setattr(neighbours, "block_rows", lambda n: 37)  # several blocks
    rng = np.random.default_rng(6)
    emb = np.repeat(rng.normal(size=(40, 16)), 10, 0) + rng.normal(scale=0.5, size=(400, 16))
    emb[7] = emb[3]  # one picture twice
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    photo = np.arange(400) // 3  # three faces a photo
    scale, graph = spaced_pairs(emb, photo, threshold, distance)
    assert np.array_equal(scale, local_scales(emb, photo, distance))
    two = near_pairs(emb, threshold, distance, scale=scale)
    assert two.nnz > 400 and np.array_equal(graph.toarray() > 0, two.toarray() > 0)
    assert np.allclose(graph.toarray(), two.toarray(), atol=1e-5)


@pytest.mark.parametrize("copies", [0.0, 0.05])
def test_nearest_faces_leave_out_their_own_photo_however_many_ask(monkeypatch, copies):
    """Each face's nearest faces of other photos, none nearer than `copies`: the same as
    sorting its row of the full matrix with those left out, for many query faces (the base
    faces' photos sorted once and searched) and for a few (compared with each), over
    several blocks."""
    from facetrain import neighbours
    from facetrain.distances import distance_matrix

    monkeypatch.setattr(neighbours, "block_rows", lambda n: 37)
    rng = np.random.default_rng(8)
    emb = rng.normal(size=(300, 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    emb[11] = emb[40]  # one picture twice, on two photos
    photo = rng.integers(0, 90, 300)  # photos of several faces, in no order
    d = distance_matrix(emb, emb, "squared_l2")
    d[(photo[:, None] == photo[None, :]) | (d < copies)] = np.inf
    want = np.sort(d, axis=1)[:, :4]
    assert photo[11] != photo[40] and (want[11, 0] < 1e-5) == (copies == 0)  # the copy
    for q in (np.arange(300), np.arange(0, 300, 7)):  # past `SORT_PHOTOS`, and under it
        assert (len(q) > neighbours.SORT_PHOTOS) == (len(q) == 300)
        got = neighbours.nearest_in(emb[q], photo[q], emb, photo, "squared_l2", 4,
                                    copies=copies)  # fmt: skip
        assert np.allclose(got, want[q], atol=1e-5)


def test_the_exact_near_pairs_bar_counts_the_comparisons(monkeypatch):
    """Each block of faces is compared with the faces up to it only: the "pairs" bar counts
    the comparisons made (a triangle's share of the faces), so it moves evenly with the
    time and ends at every face."""
    from facetrain import neighbours

    monkeypatch.setattr(neighbours, "block_rows", lambda n: 100)
    said = []
    monkeypatch.setattr(neighbours, "say", lambda what, done, total: said.append(done))
    emb = np.random.default_rng(9).normal(size=(400, 16)).astype(np.float32)
    neighbours.pairs_within(emb, 0.5, "squared_l2")
    assert said == [0, 25, 100, 225, 400]
