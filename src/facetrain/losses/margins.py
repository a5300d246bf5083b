"""Additive angular and cosine margins as modules, taken by every centre-based head.

ArcFace (Deng et al.): s·cos(θ + m). CosFace (Wang et al.): s·(cos θ − m). For ArcFace,
where θ + m would pass π the logit continues as cos θ − m·sin m (InsightFace's "easy
margin off" rule) so the target logit stays monotonic in θ. `MarginHead` and Partial FC
both take a `Margin`, so the one rule for a default margin lives here.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# The margin each loss uses when none is given (the papers' values).
DEFAULT_MARGIN = {"arcface": 0.5, "cosface": 0.35}
MARGINS = tuple(DEFAULT_MARGIN)


class Margin(nn.Module):
    """Scaled cosine logits with the margin applied on the true class. `m` may change
    between steps (a margin ramp): it is a plain attribute, not a parameter."""

    def __init__(self, kind: str = "arcface", s: float = 64.0, m: float | None = None):
        super().__init__()
        if kind not in DEFAULT_MARGIN:
            raise ValueError(f"unknown margin {kind!r}; choose from {', '.join(MARGINS)}")
        self.kind, self.s = kind, s
        self.m = DEFAULT_MARGIN[kind] if m is None or m < 0 else m

    def forward(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return margin_logits(cos, labels, self.kind, self.s, self.m)

    def extra_repr(self) -> str:
        return f"{self.kind}, s={self.s}, m={self.m}"


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
