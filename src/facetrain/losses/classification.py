"""Classifier heads over embeddings: plain softmax, ArcFace and CosFace margins."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class SoftmaxHead(nn.Module):
    """Logits = W · prelogits + b (FaceNet's softmax training)."""

    def __init__(self, embedding_size: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(embedding_size, num_classes)

    def forward(self, prelogits: torch.Tensor, labels: torch.Tensor | None = None):
        return self.fc(prelogits)


# The margin each loss uses when none is given (the papers' values).
DEFAULT_MARGIN = {"arcface": 0.5, "cosface": 0.35}


class MarginHead(nn.Module):
    """Scaled cosine logits with an additive margin on the true class.

    ArcFace (Deng et al.): s·cos(θ + m). CosFace (Wang et al.): s·(cos θ − m). For ArcFace,
    where θ + m would pass π the logit continues as cos θ − m·sin m (InsightFace's "easy
    margin off" rule) so the target logit stays monotonic in θ.
    """

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        kind: str = "arcface",
        s: float = 64.0,
        m: float | None = None,
    ):
        super().__init__()
        if kind not in ("arcface", "cosface"):
            raise ValueError(f"unknown margin {kind!r}; choose arcface or cosface")
        self.kind, self.s = kind, s
        self.m = m if m is not None else DEFAULT_MARGIN[kind]
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.normal_(self.weight, std=0.01)

    def cosines(self, embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(embeddings, dim=1), F.normalize(self.weight, dim=1))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None):
        cos = self.cosines(embeddings).clamp(-1.0, 1.0)
        if labels is None:  # inference: plain scaled cosines
            return self.s * cos
        return margin_logits(cos, labels, self.kind, self.s, self.m)


def margin_logits(cos: torch.Tensor, labels: torch.Tensor, kind: str, s: float, m: float):
    """s · cosines with the margin applied at each row's label column; a label of -1 (the
    class lives on another rank, in Partial FC) leaves the row plain."""
    has = labels >= 0
    col = labels.clamp_min(0)[:, None]
    target = cos.gather(1, col)
    if kind == "cosface":
        new = target - m
    else:
        sin = torch.sqrt((1.0 - target * target).clamp_min(1e-12))
        cos_m = target * math.cos(m) - sin * math.sin(m)
        new = torch.where(target > math.cos(math.pi - m), cos_m, target - m * math.sin(m))
    new = torch.where(has[:, None], new, target)
    return s * cos.scatter(1, col, new)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0):
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
