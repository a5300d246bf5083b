"""Triplet and contrastive losses over index tensors chosen by a miner."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from facetrain.distances import pair_distances


def triplet_loss(embeddings: torch.Tensor, triplets: torch.Tensor, margin: float = 0.2):
    """FaceNet's loss: mean over triplets (a, p, n) of max(0, |a−p|² − |a−n|² + α).

    Zero (with a graph) when the miner found no triplet, so a step never crashes.
    """
    if len(triplets) == 0:
        return embeddings.sum() * 0.0
    a, p, n = embeddings[triplets[:, 0]], embeddings[triplets[:, 1]], embeddings[triplets[:, 2]]
    d_ap = pair_distances(a, p, "squared_l2")
    d_an = pair_distances(a, n, "squared_l2")
    return F.relu(d_ap - d_an + margin).mean()


def contrastive_loss(
    embeddings: torch.Tensor, pairs: torch.Tensor, same: torch.Tensor, margin: float = 1.0
):
    """Hadsell et al.: same pairs pull (d²), different pairs push until d ≥ margin
    (max(0, margin − d)²); the mean over all pairs."""
    if len(pairs) == 0:
        return embeddings.sum() * 0.0
    d2 = pair_distances(embeddings[pairs[:, 0]], embeddings[pairs[:, 1]], "squared_l2")
    d = torch.sqrt(d2 + 1e-12)
    return torch.where(same, d2, F.relu(margin - d).pow(2)).mean()
