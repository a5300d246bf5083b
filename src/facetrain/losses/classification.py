"""Classifier heads over embeddings: plain softmax, and class centres scored with a margin."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from facetrain.losses.margins import Margin


class SoftmaxHead(nn.Module):
    """Logits = W · prelogits + b (FaceNet's softmax training)."""

    def __init__(self, embedding_size: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(embedding_size, num_classes)

    def forward(self, prelogits: torch.Tensor, labels: torch.Tensor | None = None):
        return self.fc(prelogits)


class MarginHead(nn.Module):
    """Class centres on the unit sphere, scored by a `Margin` (ArcFace or CosFace) on the
    cosines between normalised embeddings and centres. `margin` is a Margin, or the name of
    one built with `s` and `m` (None: the paper's margin)."""

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        margin: Margin | str = "arcface",
        s: float = 64.0,
        m: float | None = None,
    ):
        super().__init__()
        self.margin = margin if isinstance(margin, Margin) else Margin(margin, s, m)
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.normal_(self.weight, std=0.01)

    def cosines(self, embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(embeddings, dim=1), F.normalize(self.weight, dim=1))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None):
        cos = self.cosines(embeddings).clamp(-1.0, 1.0)
        if labels is None:  # inference: plain scaled cosines
            return self.margin.s * cos
        return self.margin(cos, labels)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0):
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
