"""The verification protocol equals a literal, loop-by-loop transcription of FaceNet's."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import LFW, need
from facetrain.distances import (
    distance_matrix,
    mean_distances,
    pair_distances,
    threshold_problem,
)
from facetrain.evaluate.verification import evaluate, read_pairs


def reference(e1, e2, issame, nfolds=10, distance="squared_l2", subtract_mean=False, target=1e-3):
    """FaceNet's calculate_roc / calculate_val with plain loops (interpolation per the spec);
    for the angle (0..1), its grids of 400 and 4,000 steps over 0..1."""
    top = 4.0 if distance == "squared_l2" else 1.0
    thr_acc, thr_val = np.arange(0, 400) * top / 400, np.arange(0, 4000) * top / 4000
    n = len(issame)
    folds = np.array_split(np.arange(n), nfolds)
    accs, vals, fars = [], [], []
    for test in folds:
        train = np.array([i for i in range(n) if i not in set(test)])
        mean = np.mean(np.concatenate([e1[train], e2[train]]), 0) if subtract_mean else 0.0
        a, b = e1 - mean, e2 - mean
        if distance == "squared_l2":
            d = np.sum((a - b) ** 2, 1)
        else:
            cos = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            d = np.arccos(np.clip(cos, -1, 1)) / np.pi

        def acc_at(t, idx, d=d):
            p = d[idx] < t
            return (np.sum(p & issame[idx]) + np.sum(~p & ~issame[idx])) / len(idx)

        best_t, best_acc = None, -1.0
        for t in thr_acc:
            acc = acc_at(t, train)
            if acc > best_acc:  # strict: the first threshold wins ties
                best_t, best_acc = t, acc
        accs.append(acc_at(best_t, test))

        def far_at(t, idx, d=d):
            p = d[idx] < t
            return np.sum(p & ~issame[idx]) / np.sum(~issame[idx])

        far_train = [far_at(t, train) for t in thr_val]
        t_val = 0.0
        for i, f in enumerate(far_train):
            if f >= target:
                if i == 0:
                    t_val = thr_val[0]
                else:
                    f0, t0 = far_train[i - 1], thr_val[i - 1]
                    t_val = t0 + (target - f0) * (thr_val[i] - t0) / (f - f0)
                break
        p = d[test] < t_val
        vals.append(np.sum(p & issame[test]) / np.sum(issame[test]))
        fars.append(np.sum(p & ~issame[test]) / np.sum(~issame[test]))
    return np.mean(accs), np.std(accs), np.mean(vals), np.std(vals), np.mean(fars)


def synthetic_pairs(n=600, dim=16, seed=0, noise=0.9):
    rng = np.random.default_rng(seed)
    e1 = rng.normal(size=(n, dim))
    issame = rng.random(n) < 0.5
    e2 = np.where(
        issame[:, None], e1 + noise * rng.normal(size=(n, dim)), rng.normal(size=(n, dim))
    )
    norm = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    return norm(e1), norm(e2), issame


@pytest.mark.parametrize(
    "distance,subtract_mean,seed",
    [("squared_l2", False, 0), ("cosine", True, 1), ("squared_l2", True, 2)],
)
def test_matches_bruteforce_reference(distance, subtract_mean, seed):
    e1, e2, same = synthetic_pairs(seed=seed)
    got = evaluate(e1, e2, same, distance=distance, subtract_mean=subtract_mean, far_target=1e-2)
    want = reference(e1, e2, same, distance=distance, subtract_mean=subtract_mean, target=1e-2)
    keys = ("accuracy", "accuracy_std", "val", "val_std", "far")
    np.testing.assert_allclose([got[k] for k in keys], want, rtol=0, atol=1e-12)
    assert 0.6 < got["accuracy"] < 0.99  # a real, imperfect separation was measured


def test_the_same_unit_embeddings_score_alike_whichever_distance():
    """For unit vectors the angle orders pairs as squared L2 does, so the figures should not
    depend on the choice; with the angle's 0..1 searched in 0.01 steps (a quarter as fine
    as squared L2's) accuracy moved by up to 0.34% and AUC by 5e-4."""
    rng = np.random.default_rng(0)
    gaps = []
    for _ in range(3):
        n, d = 3000, 128
        a = rng.normal(size=(2 * n, d))
        a /= np.linalg.norm(a, axis=1, keepdims=True)
        b = np.concatenate([a[:n] + rng.normal(size=(n, d)) * 0.07,
                            a[n:] * 0.55 + rng.normal(size=(n, d)) * 0.06])  # fmt: skip
        b /= np.linalg.norm(b, axis=1, keepdims=True)
        same, order = np.arange(2 * n) < n, rng.permutation(2 * n)
        l2, angle = (evaluate(a[order], b[order], same[order], distance=m)
                     for m in ("squared_l2", "cosine"))  # fmt: skip
        assert abs(l2["auc"] - angle["auc"]) < 1e-4
        gaps.append(abs(l2["accuracy"] - angle["accuracy"]))
    assert np.mean(gaps) < 0.001 and 0.97 < l2["accuracy"] < 0.99, gaps


def test_perfect_and_random_embeddings():
    e1, e2, same = synthetic_pairs(noise=0.05)
    r = evaluate(e1, e2, same)
    assert r["accuracy"] > 0.995 and r["auc"] > 0.999 and r["eer"] < 0.01
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(2, 600, 8))
    a /= np.linalg.norm(a, axis=1, keepdims=True)  # the grid 0..4 assumes unit vectors
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    r = evaluate(a, b, rng.random(600) < 0.5)
    assert 0.4 < r["accuracy"] < 0.62 and 0.35 < r["auc"] < 0.65 and 0.35 < r["eer"] < 0.65


def test_distances():
    a, b = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])
    assert pair_distances(a, b, "squared_l2")[0] == pytest.approx(2.0)
    assert pair_distances(a, b, "cosine")[0] == pytest.approx(0.5)


@pytest.mark.parametrize("distance", ["squared_l2", "cosine", "euclidean"])
def test_a_threshold_is_below_the_largest_distance_between_two_faces(distance):
    """The largest distance is that of opposite unit embeddings: a threshold above it is on
    another scale (it would call every two faces one person) and is refused; up to it, and
    0, are taken."""
    a = np.array([[0.6, 0.8]])
    top = pair_distances(a, -a, distance)[0]
    assert threshold_problem(top, distance) is None
    assert threshold_problem(0.0, distance) is None
    for bad in (top + 1e-6, 100.0, -0.1, float("nan"), float("inf")):
        assert "every two faces would be one person" in threshold_problem(bad, distance)


@pytest.mark.parametrize("distance", ["squared_l2", "cosine"])
def test_mean_distances_are_the_matrix_mean(distance):
    """What `library serve`'s "same person?" asks of a person of many faces: the mean over
    the person's faces of each face's distance (squared L2 in closed form, the angle
    directly; each in blocks of rows, one block and many), as the whole matrix gives it."""
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(700, 16)), rng.normal(size=(90, 16))
    a[:350] /= np.linalg.norm(a[:350], axis=1, keepdims=True)  # unit rows, as stored, and not
    whole = distance_matrix(a, b, distance).mean(0)
    for block in (1000, 256, 7):
        np.testing.assert_allclose(mean_distances(a, b, distance, block), whole, rtol=1e-10)
    assert mean_distances(a[:0], b, distance).shape == (90,)


@pytest.mark.parametrize("distance", ["squared_l2", "cosine"])
def test_one_face_to_every_row_is_the_matrix_row(distance):
    """`to_rows`, what naming asks of every face of a library for one new face, with the
    rows' squared norms measured once or not, is the matrix's row in float32."""
    from facetrain.distances import row_squares, to_rows

    rng = np.random.default_rng(4)
    b = rng.normal(size=(500, 16)).astype(np.float32)
    b[:250] /= np.linalg.norm(b[:250], axis=1, keepdims=True)
    q = b[3] + 0.01 * rng.normal(size=16).astype(np.float32)
    whole = distance_matrix(q[None], b, distance)[0]
    assert (row_squares(b, distance) is None) == (distance == "cosine")
    for squares in (None, row_squares(b, distance)):
        got = to_rows(q, b, distance, squares)
        assert got.dtype == np.float32 and got.min() >= 0
        np.testing.assert_allclose(got, whole, rtol=1e-4, atol=1e-5)


def test_fold_ids_keep_official_boundaries():
    e1, e2, same = synthetic_pairs(n=600)
    folds = np.repeat(np.arange(10), 60)
    keep = np.ones(600, bool)
    keep[[3, 4, 70]] = False  # three pairs missing
    r = evaluate(e1[keep], e2[keep], same[keep], fold_ids=folds[keep])
    assert len(r["fold_accuracy"]) == 10
    shifted = evaluate(e1[keep], e2[keep], same[keep])  # contiguous blocks would move folds
    assert r["fold_accuracy"] != shifted["fold_accuracy"]


@need(LFW)
def test_reads_lfw_pairs_and_reports_missing(tmp_path):
    p = read_pairs(LFW / "pairs.txt", LFW)
    assert len(p.issame) == 6000 and p.issame.sum() == 3000 and not p.missing
    assert np.bincount(p.fold).tolist() == [600] * 10
    subset = tmp_path / "imgs"
    (subset / "Abel_Pacheco").mkdir(parents=True)
    q = read_pairs(LFW / "pairs.txt", subset)
    assert len(q.issame) == 0 and len(q.missing) == 6000
    assert len(q.absent) == len(set(q.absent)) == 7701  # each image not there, named once


def test_labelled_threshold_sits_in_the_middle_of_the_gap():
    """Identities whose same pairs all lie at squared distance 0.5 and different pairs at
    2.0: every threshold between is 100% accurate, and the validated one is the middle of
    that gap (1.25), not its lower edge (0.51) — so a stranger a little nearer than the
    known different pairs is still refused."""
    from facetrain.evaluate.verification import labelled_threshold

    n_id, per_id = 5, 4
    dim = n_id + n_id * per_id  # one axis per identity, one private offset axis per image
    a = np.arcsin(0.5)  # same pair: 2 sin²a = 0.5; different pair: 2
    emb, labels = [], []
    for k in range(n_id):
        for j in range(per_id):
            v = np.zeros(dim)
            v[k], v[n_id + k * per_id + j] = np.cos(a), np.sin(a)
            emb.append(v)
            labels.append(f"id{k}")
    d_same = pair_distances(np.array(emb[:1]), np.array(emb[1:2]), "squared_l2")
    d_diff = pair_distances(np.array(emb[:1]), np.array(emb[per_id : per_id + 1]), "squared_l2")
    assert np.allclose([d_same[0], d_diff[0]], [0.5, 2.0])
    assert labelled_threshold(np.array(emb), labels, "squared_l2") == pytest.approx(1.25, abs=0.02)


def test_an_angle_threshold_is_found_as_finely_as_a_squared_l2_one():
    """Same pairs at angles up to 0.120 (of π) and different ones from 0.126: squared L2's
    0.01 steps over the angle's 0..1 had no threshold in that gap (0.12 is not below the
    last same pair, 0.13 is above the first different one); the angle's own grid has."""
    from facetrain.evaluate.verification import best_threshold

    rng = np.random.default_rng(0)
    d = np.concatenate([rng.uniform(0.05, 0.12, 200), [0.12], rng.uniform(0.126, 0.3, 200)])
    same = np.arange(len(d)) < 201
    t = best_threshold(d, same, "cosine")
    assert 0.12 < t < 0.126 and np.mean((d < t) == same) == 1.0


def test_labelled_pairs_capped_are_drawn_without_listing_every_pair():
    """A val split of 8,000 people of 60 faces has 14 million same pairs: a cap draws that
    many distinct ones (each of one identity), and as many different ones, at once."""
    from facetrain.evaluate.verification import labelled_pair_ids

    labels = np.repeat(np.arange(8000), 60)
    pairs, same = labelled_pair_ids(labels, max_same=3000)
    assert same.sum() == 3000 and (~same).sum() == 3000
    assert len({tuple(p) for p in pairs[same].tolist()}) == 3000
    assert (labels[pairs[same, 0]] == labels[pairs[same, 1]]).all()
    assert (pairs[same, 0] != pairs[same, 1]).all()
    assert (labels[pairs[~same, 0]] != labels[pairs[~same, 1]]).all()
    small = np.array([0, 0, 0, 1, 1, 2])  # under the cap: every same pair, in order
    assert labelled_pair_ids(small, max_same=3000)[0][:4].tolist() == [[0, 1], [0, 2], [1, 2],
                                                                      [3, 4]]  # fmt: skip


@pytest.mark.parametrize(
    "text, why",
    [
        ("10\nA 1 2\n", "first line should be 'folds pairs-per-fold'"),
        ("ten 1\nA 1 2\n", ":1: expected two numbers"),
        ("1 1\nA 1 2\nA 1 B 1\n", ":1: 1 folds of 1 pairs: the protocol needs at least 2"),
        ("2 1\nA 1 2\nA 1 B 1\nA 1 2\n", "expected 4 pairs, found 3"),
        ("2 1\nA 1 2\nA 1 B 1\nA 1 2\nA 1 B 2 3\n", ":5: expected 3 or 4 fields"),
        ("2 1\nA 1 2\nA x B 1\nA 1 2\nA 1 B 1\n", ":3: image numbers expected, got 'A x B 1'"),
        ("2 1\nA 1 2\nA 1 B 1\nA 3 3\nA 1 B 1\n", ":4: compares A_0003.jpg with itself"),
        ("2 1\nZo\xeb 1 2\nA 1 B 1\nA 1 2\nA 1 B 1\n", ": not UTF-8 text \\(byte 6\\)"),
    ],
)
def test_a_pairs_file_that_breaks_the_protocol_is_named_with_line_and_reason(tmp_path, text, why):
    (tmp_path / "pairs.txt").write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError, match=f"pairs.txt{why if why[0] == ':' else ': ' + why}"):
        read_pairs(tmp_path / "pairs.txt", tmp_path)


@pytest.mark.parametrize("distance", ["squared_l2", "cosine"])
def test_population_figures_are_every_pair_s_in_memory_linear_in_the_faces(distance, monkeypatch):
    """`eval-populations` held every pair's distance at once (20,000 faces: 9.5 GB; 30,000
    more than the machine has). Visited a block at a time, the figures are those of the
    whole matrix — the distance at 1% of different people's pairs np.quantile's, exactly —
    in a small fraction of its memory."""
    import tracemalloc

    from facetrain.evaluate import populations

    rng = np.random.default_rng(4)
    labels = rng.integers(0, 150, 1500)
    centres = rng.normal(size=(150, 16))
    emb = centres[labels] + rng.normal(scale=0.7, size=(1500, 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    d = distance_matrix(emb, emb, distance)[np.triu_indices(1500, 1)]
    same = (labels[:, None] == labels[None, :])[np.triu_indices(1500, 1)]
    thr, sure = np.quantile(d[same], [0.8, 0.3])
    monkeypatch.setattr(populations, "BLOCK", 20_000, raising=False)  # 14 rows: many blocks
    tracemalloc.start()
    f = populations.figures("set", emb, labels, distance, thr, sure)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert f.faces == 1500
    assert f.distance_at_far == pytest.approx(np.quantile(d[~same], populations.FAR), abs=1e-12)
    assert f.far_at_threshold == pytest.approx((d[~same] < thr).mean(), abs=1e-12)
    assert f.far_at_sure == pytest.approx((d[~same] < sure).mean(), abs=1e-12)
    assert f.same_at_threshold == pytest.approx((d[same] < thr).mean(), abs=1e-12)
    assert f.same_at_sure == pytest.approx((d[same] < sure).mean(), abs=1e-12)
    assert 0 < f.same_at_sure < f.same_at_threshold < 1 and 0 < f.far_at_threshold < 1
    assert peak < d.nbytes / 4  # the pairs' distances alone, as one array: 9 MB
    with pytest.raises(ValueError, match="someone with two faces"):
        populations.figures("one each", emb[:5], np.arange(5), distance, thr)
