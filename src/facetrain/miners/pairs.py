"""Pair miners: which pairs of a batch the contrastive loss sees."""

from __future__ import annotations

import torch


def balanced_pairs(labels: torch.Tensor, generator: torch.Generator | None = None):
    """All positive pairs (i < j) and an equal number of random negative pairs.

    Returns (pairs (M, 2), same (M,) bool). Never written to disk: drawn per batch.
    """
    i, j = torch.triu_indices(len(labels), len(labels), 1, device=labels.device)
    same = labels[i] == labels[j]
    pos = torch.stack([i[same], j[same]], 1)
    neg_all = torch.stack([i[~same], j[~same]], 1)
    k = min(len(pos), len(neg_all))
    perm = torch.randperm(len(neg_all), generator=generator)[:k].to(labels.device)
    neg = neg_all[perm]
    pairs = torch.cat([pos[:k], neg])
    flags = torch.cat(
        [
            torch.ones(len(pairs) - len(neg), dtype=torch.bool, device=labels.device),
            torch.zeros(len(neg), dtype=torch.bool, device=labels.device),
        ]
    )
    return pairs, flags
