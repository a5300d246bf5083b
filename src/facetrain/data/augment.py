"""Training-time augmentation on whole uint8 batches (N,3,H,W): one tensor op per step.

Working on the batch instead of per image removes the per-sample Python and PIL cost that
dominates small-face loaders, and the same code runs on a GPU tensor unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

NORMALIZATIONS = ("fixed", "per_image", "none")


@dataclass(frozen=True)
class Augment:
    """flip: random horizontal flip; crop: random crop to this size (None keeps the size);
    normalize: `fixed` = (x - 127.5) / 128 (FaceNet/InsightFace), `per_image` = zero mean,
    unit std per image (FaceNet's prewhiten), `none` = float 0..255."""

    flip: bool = True
    crop: int | None = None
    normalize: str = "fixed"


def normalize(x: torch.Tensor, how: str) -> torch.Tensor:
    x = x.float()
    if how == "fixed":
        return (x - 127.5) / 128.0
    if how == "per_image":
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True)
        n = x[0].numel()
        return (x - mean) / torch.maximum(std, torch.full_like(std, 1.0 / n**0.5))
    if how == "none":
        return x
    raise ValueError(f"unknown normalization {how!r}; choose from {', '.join(NORMALIZATIONS)}")


def apply(batch: torch.Tensor, aug: Augment, generator: torch.Generator | None = None):
    """Augment a uint8 batch and return it normalized as float32."""
    n, _, h, w = batch.shape
    if aug.crop is not None and (aug.crop < h or aug.crop < w):
        c = aug.crop
        ys = torch.randint(0, h - c + 1, (n,), generator=generator).tolist()
        xs = torch.randint(0, w - c + 1, (n,), generator=generator).tolist()
        batch = torch.stack([b[:, y : y + c, x : x + c] for b, y, x in zip(batch, ys, xs)])
    if aug.flip:
        flip = torch.rand(n, generator=generator) < 0.5
        batch = torch.where(flip[:, None, None, None], batch.flip(3), batch)
    return normalize(batch, aug.normalize)


def center(batch: torch.Tensor, aug: Augment) -> torch.Tensor:
    """Evaluation-time counterpart of `apply`: centre crop, no flip, same normalization."""
    _, _, h, w = batch.shape
    if aug.crop is not None and (aug.crop < h or aug.crop < w):
        c = aug.crop
        y, x = (h - c) // 2, (w - c) // 2
        batch = batch[:, :, y : y + c, x : x + c]
    return normalize(batch, aug.normalize)
