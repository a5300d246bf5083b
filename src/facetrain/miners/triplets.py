"""Triplet miners: which (anchor, positive, negative) of a batch the triplet loss sees."""

from __future__ import annotations

import torch

from facetrain.distances import distance_matrix

TRIPLET_MINERS = ("all", "semihard", "hardest", "random_violating")


def positive_pairs(labels: torch.Tensor) -> torch.Tensor:
    """(a, p) index pairs with the same label, a ≠ p, both orders."""
    same = labels[:, None] == labels[None, :]
    same.fill_diagonal_(False)
    return same.nonzero()


def all_triplets(labels: torch.Tensor) -> torch.Tensor:
    ap = positive_pairs(labels)
    neg = labels[ap[:, 0]][:, None] != labels[None, :]
    k, n = neg.nonzero(as_tuple=True)
    return torch.stack([ap[k, 0], ap[k, 1], n], 1)


def _pick_random(mask: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """For each row with any True, the column of one True chosen uniformly; -1 otherwise."""
    r = torch.rand(mask.shape, generator=generator).to(mask.device)  # a CPU generator: draw there
    r = torch.where(mask, r, torch.full_like(r, -1.0))
    best = r.argmax(1)
    return torch.where(mask.any(1), best, torch.full_like(best, -1))


def mine_triplets(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    how: str = "semihard",
    margin: float = 0.2,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(M, 3) anchor, positive, negative indices chosen by `how`."""
    if how == "all":
        return all_triplets(labels)
    if how not in TRIPLET_MINERS:
        raise ValueError(f"unknown miner {how!r}; choose from {', '.join(TRIPLET_MINERS)}")
    with torch.no_grad():
        e = embeddings.detach().float()
        d = distance_matrix(e, e, "squared_l2")
        ap = positive_pairs(labels)
        d_ap = d[ap[:, 0], ap[:, 1]][:, None]
        d_an = d[ap[:, 0]]  # (pairs, N)
        is_neg = labels[ap[:, 0]][:, None] != labels[None, :]
        if how == "hardest":
            masked = torch.where(is_neg, d_an, torch.full_like(d_an, float("inf")))
            n = masked.argmin(1)
            n = torch.where(is_neg.any(1), n, torch.full_like(n, -1))
        elif how == "semihard":
            n = _pick_random(is_neg & (d_an > d_ap) & (d_an < d_ap + margin), generator)
        else:  # random_violating
            n = _pick_random(is_neg & (d_an - d_ap < margin), generator)
        keep = n >= 0
        return torch.cat([ap[keep], n[keep][:, None]], 1)
