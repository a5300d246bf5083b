"""Every loss and miner against a brute-force reference computed here with plain loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facetrain.distances import distance_matrix, pair_distances
from facetrain.losses import (
    CenterLoss,
    MarginHead,
    contrastive_loss,
    cross_entropy,
    prelogits_norm,
    triplet_loss,
)
from facetrain.miners import all_triplets, balanced_pairs, mine_triplets, positive_pairs


def batch(seed=0, n_ids=4, k=3, extra=2, dim=8):
    g = torch.Generator().manual_seed(seed)
    labels = torch.tensor(
        [i for i in range(n_ids) for _ in range(k)] + [100 + e for e in range(extra)]
    )
    emb = F.normalize(torch.randn(len(labels), dim, generator=g), dim=1)
    return emb, labels


def d2(e, i, j):
    return float(sum((a - b) ** 2 for a, b in zip(e[i], e[j])))


def brute_triplets(e, y, rule, margin):
    """Per anchor-positive pair, the set of negatives `rule` admits."""
    out = {}
    n = len(y)
    for a in range(n):
        for p in range(n):
            if a == p or y[a] != y[p]:
                continue
            negs = []
            for k in range(n):
                if y[k] == y[a]:
                    continue
                dap, dan = d2(e, a, p), d2(e, a, k)
                ok = {
                    "all": True,
                    "semihard": dap < dan < dap + margin,
                    "random_violating": dan - dap < margin,
                    "hardest": True,
                }[rule]
                if ok:
                    negs.append((dan, k))
            if rule == "hardest" and negs:
                negs = [min(negs)]
            out[(a, p)] = {k for _, k in negs}
    return out


@pytest.mark.parametrize("rule", ["all", "semihard", "hardest", "random_violating"])
def test_miners_choose_what_the_definition_admits(rule):
    e, y = batch(seed=1)
    margin = 0.5
    ref = brute_triplets(e.tolist(), y.tolist(), rule, margin)
    got = mine_triplets(e, y, rule, margin, torch.Generator().manual_seed(0)).tolist()
    if rule == "all":
        assert sorted(map(tuple, got)) == sorted(
            (a, p, k) for (a, p), ks in ref.items() for k in ks
        )
        return
    chosen = {}
    for a, p, k in got:
        assert (a, p) not in chosen  # one negative per anchor-positive pair
        chosen[(a, p)] = k
    assert set(chosen) == {ap for ap, ks in ref.items() if ks}  # skipped only when none admitted
    assert all(k in ref[ap] for ap, k in chosen.items())


def test_random_choice_is_spread_and_seeded():
    e, y = batch(seed=2, extra=6)
    picks = {
        tuple(
            mine_triplets(e, y, "random_violating", 4.0, torch.Generator().manual_seed(s))[
                0
            ].tolist()
        )
        for s in range(20)
    }
    assert len(picks) > 3  # really random among the admitted negatives
    a = mine_triplets(e, y, "semihard", 1.0, torch.Generator().manual_seed(7))
    b = mine_triplets(e, y, "semihard", 1.0, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_extra_identities_are_only_negatives():
    e, y = batch(extra=3)
    t = all_triplets(y)
    extra = set(range(12, 15))
    assert not extra & set(t[:, 0].tolist()) and not extra & set(t[:, 1].tolist())
    assert extra <= set(t[:, 2].tolist())
    assert len(positive_pairs(y)) == 4 * 3 * 2


def test_triplet_loss_value_and_gradient_reach_all_members():
    e, y = batch(seed=3)
    e = e.clone().requires_grad_(True)
    t = all_triplets(y)
    loss = triplet_loss(e, t, 0.3)
    ed = e.detach().tolist()
    want = np.mean([max(0.0, d2(ed, a, p) - d2(ed, a, n) + 0.3) for a, p, n in t.tolist()])
    assert loss.item() == pytest.approx(want, rel=1e-5)
    loss.backward()
    active = {
        i for a, p, n in t.tolist() if d2(ed, a, p) - d2(ed, a, n) + 0.3 > 0 for i in (a, p, n)
    }
    nonzero = set(torch.nonzero(e.grad.abs().sum(1)).flatten().tolist())
    assert nonzero == active
    assert triplet_loss(e, t[:0], 0.3).item() == 0.0


def test_the_one_distance_in_torch_matches_by_hand_and_numpy():
    e, _ = batch(seed=4)
    d = distance_matrix(e, e, "squared_l2")
    ed = e.tolist()
    for i in range(0, 14, 3):
        for j in range(14):
            assert d[i, j].item() == pytest.approx(d2(ed, i, j), abs=1e-5)
    n = e.detach().double().numpy()
    for name in ("squared_l2", "cosine"):
        mat = distance_matrix(e.double(), e.double(), name).detach().numpy()
        np.testing.assert_allclose(mat, distance_matrix(n, n, name), atol=1e-3)
        pair = pair_distances(e[:7].double(), e[7:].double(), name).detach().numpy()
        np.testing.assert_allclose(pair, np.diagonal(mat[:7, 7:]), atol=1e-6)


def test_balanced_pairs_and_contrastive_loss():
    e, y = batch(seed=5)
    pairs, same = balanced_pairs(y, torch.Generator().manual_seed(0))
    n_pos = sum(1 for i in range(14) for j in range(i + 1, 14) if y[i] == y[j])
    assert int(same.sum()) == n_pos == int((~same).sum())
    assert all((y[i] == y[j]) == s for (i, j), s in zip(pairs.tolist(), same.tolist()))
    assert len({tuple(p) for p in pairs.tolist()}) == len(pairs)  # no pair twice
    loss = contrastive_loss(e, pairs, same, margin=1.2)
    ed = e.tolist()
    terms = [d2(ed, i, j) if s else max(0.0, 1.2 - math.sqrt(d2(ed, i, j))) ** 2
             for (i, j), s in zip(pairs.tolist(), same.tolist())]  # fmt: skip
    assert loss.item() == pytest.approx(np.mean(terms), rel=1e-4)


@pytest.mark.parametrize("kind,m", [("arcface", 0.5), ("cosface", 0.35)])
def test_margin_heads(kind, m):
    torch.manual_seed(0)
    head = MarginHead(8, 5, kind, s=30.0, m=m)
    x = torch.randn(6, 8)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    logits = head(x, y)
    xn, wn = F.normalize(x, dim=1).tolist(), F.normalize(head.weight, dim=1).tolist()
    for i in range(6):
        for c in range(5):
            cos = sum(a * b for a, b in zip(xn[i], wn[c]))
            if c == y[i]:
                theta = math.acos(cos)
                if kind == "cosface":
                    want = cos - m
                elif theta + m < math.pi:
                    want = math.cos(theta + m)
                else:
                    want = cos - m * math.sin(m)
            else:
                want = cos
            assert logits[i, c].item() == pytest.approx(30.0 * want, abs=1e-4)
    assert torch.allclose(head(x), 30.0 * head.cosines(x))


def test_label_smoothing_cross_entropy():
    logits, y = torch.randn(4, 3), torch.tensor([0, 2, 1, 1])
    p = logits.log_softmax(1).tolist()
    eps = 0.1
    want = np.mean([-(1 - eps) * p[i][y[i]] - eps / 3 * sum(p[i]) for i in range(4)])
    assert cross_entropy(logits, y, eps).item() == pytest.approx(want, rel=1e-5)


def test_center_loss_value_and_facenet_update():
    cl = CenterLoss(3, 2, alpha=0.9)
    cl.centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]]))
    x = torch.tensor([[1.0, 0.0], [3.0, 1.0], [0.0, 2.0]])
    y = torch.tensor([0, 0, 2])
    loss = cl(x, y)
    want = np.mean([(1 - 0) ** 2, 0, (3 - 0) ** 2, (1 - 0) ** 2, (0 - 2) ** 2, (2 - 0) ** 2])
    assert loss.item() == pytest.approx(want)
    # centres[y] -= (1 - α)(centres[y] - x), accumulated over repeated labels
    expect0 = torch.tensor([0.0, 0.0]) - 0.1 * (
        (torch.tensor([0.0, 0]) - x[0]) + (torch.tensor([0.0, 0]) - x[1])
    )
    assert torch.allclose(cl.centers[0], expect0)
    assert torch.allclose(cl.centers[1], torch.tensor([1.0, 1.0]))
    assert torch.allclose(
        cl.centers[2], torch.tensor([2.0, 0.0]) - 0.1 * (torch.tensor([2.0, 0]) - x[2])
    )


def test_prelogits_norm():
    x = torch.tensor([[3.0, -4.0], [0.0, 1.0]])
    assert prelogits_norm(x, p=2, eps=0).item() == pytest.approx((5 + 1) / 2)
    assert prelogits_norm(x, p=1, eps=0).item() == pytest.approx((7 + 1) / 2)
