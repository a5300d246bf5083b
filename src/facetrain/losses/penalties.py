"""Penalties added to a softmax loss: center loss and the prelogits norm (FaceNet)."""

from __future__ import annotations

import torch
from torch import nn


class CenterLoss(nn.Module):
    """Mean squared distance of prelogits to their class centre (Wen et al., as in FaceNet).

    The centres are not trained by the optimizer: each step moves them towards the batch,
    FaceNet's rule centres[y] -= (1 − α)(centres[y] − x) for every sample (repeated labels
    accumulate). Call `loss = center(x, y)` in training; the update happens inside, after
    the loss is computed, and centres are part of the state dict (saved and resumed).
    """

    def __init__(self, num_classes: int, embedding_size: int, alpha: float = 0.95):
        super().__init__()
        self.alpha = alpha
        self.register_buffer("centers", torch.zeros(num_classes, embedding_size))

    def forward(self, prelogits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        centers_batch = self.centers[labels]
        loss = torch.mean(torch.square(prelogits - centers_batch))
        if self.training:
            with torch.no_grad():
                diff = (1.0 - self.alpha) * (centers_batch - prelogits.detach().float())
                self.centers.index_add_(0, labels, -diff.to(self.centers.dtype))
        return loss


def prelogits_norm(prelogits: torch.Tensor, p: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """Mean p-norm of the prelogits (FaceNet's `prelogits_norm_p`, added × a factor)."""
    return torch.mean(torch.linalg.vector_norm(prelogits.abs() + eps, ord=p, dim=1))
