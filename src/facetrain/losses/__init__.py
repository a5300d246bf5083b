"""Losses, apart from how their pairs or triplets are chosen (see `facetrain.miners`).

Classification: `SoftmaxHead` (a linear classifier on the prelogits) and `MarginHead`
(class centres on the sphere scored by a `Margin`, ArcFace or CosFace, which Partial FC
takes too), both scored with `cross_entropy` (+ label smoothing); `CenterLoss` and
`prelogits_norm` are added penalties.
Metric: `triplet_loss` and `contrastive_loss` take index tensors from a miner, so one
forward pass serves every triplet or pair and gradients flow back through it.
"""

from facetrain.losses.classification import MarginHead, SoftmaxHead, cross_entropy
from facetrain.losses.margins import DEFAULT_MARGIN, Margin
from facetrain.losses.metric import contrastive_loss, triplet_loss
from facetrain.losses.penalties import CenterLoss, prelogits_norm

__all__ = [
    "DEFAULT_MARGIN",
    "CenterLoss",
    "Margin",
    "MarginHead",
    "SoftmaxHead",
    "contrastive_loss",
    "cross_entropy",
    "prelogits_norm",
    "triplet_loss",
]
