"""Partial FC (An et al., 2021): a margin softmax over millions of identities.

The class centres are split by rows across the ranks; each rank scores the whole global
batch (embeddings all-gathered) against its own shard, keeping every centre of a class in
the batch and a random `sample_rate` share of the others; the softmax is completed across
ranks (max, sum of exponentials and the true-class logit are all-reduced). With
sample_rate 1.0 it is exactly the full classifier, spread over the ranks; the memory of the
layer is 1/world of the full one per rank, and its compute `sample_rate` of that.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facetrain.collectives import all_gather, all_reduce_max, all_reduce_sum, world_of
from facetrain.losses.margins import Margin


def shard_bounds(num_classes: int, rank: int, world: int) -> tuple[int, int]:
    """Rows [start, end) of the class centres that `rank` owns."""
    edges = np.linspace(0, num_classes, world + 1).round().astype(int)
    return int(edges[rank]), int(edges[rank + 1])


class PartialFC(nn.Module):
    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        margin: Margin | str = "arcface",
        s: float = 64.0,
        m: float | None = None,
        sample_rate: float = 1.0,
    ):
        super().__init__()
        self.margin = margin if isinstance(margin, Margin) else Margin(margin, s, m)
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"sample_rate {sample_rate}: must be in (0, 1]")
        self.rank, self.world = world_of()
        self.num_classes = num_classes
        self.start, self.end = shard_bounds(num_classes, self.rank, self.world)
        self.sample_rate = sample_rate
        self.weight = nn.Parameter(torch.empty(self.end - self.start, embedding_size))
        nn.init.normal_(self.weight, std=0.01)

    def sample(self, labels: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        """Rows of the local shard to score: every positive class, then random negatives up
        to sample_rate of the shard."""
        n = self.end - self.start
        if self.sample_rate >= 1.0:
            return torch.arange(n, device=labels.device)
        mine = labels[(labels >= self.start) & (labels < self.end)] - self.start
        pos = torch.unique(mine)
        k = max(len(pos), int(self.sample_rate * n))
        score = torch.rand(n, generator=gen).to(labels.device)
        score[pos] = 2.0  # positives first
        return torch.sort(torch.topk(score, k).indices).values

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, gen=None) -> torch.Tensor:
        """The global batch's mean loss, the same on every rank. Backpropagate
        `loss / world` on each rank: the collectives sum the ranks' gradients."""
        emb = all_gather(embeddings)
        y = all_gather(labels)
        rows = self.sample(y, gen)
        w = self.weight[rows]
        cos = F.linear(F.normalize(emb.float(), dim=1), F.normalize(w.float(), dim=1))
        cos = cos.clamp(-1.0, 1.0)
        # where each label sits among the sampled rows (-1: another rank's class)
        local = torch.full((self.end - self.start,), -1, dtype=torch.long, device=y.device)
        local[rows] = torch.arange(len(rows), device=y.device)
        owned = (y >= self.start) & (y < self.end)
        col = torch.where(owned, local[(y - self.start).clamp(0, len(local) - 1)], -1)
        logits = self.margin(cos, col)
        top = all_reduce_max(logits.max(1).values.detach())
        total = all_reduce_sum(torch.exp(logits - top[:, None]).sum(1))
        mask = (col >= 0).to(logits.dtype)
        target = all_reduce_sum(logits.gather(1, col.clamp_min(0)[:, None])[:, 0] * mask)
        return (torch.log(total) + top - target).mean()
