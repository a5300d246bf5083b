"""Verification sets and how a model embeds them — shared by training and `facetrain eval`.

A set is a way to fetch its images (uint8, CHW) and its pairs: an LFW-format `pairs.txt`
over an image folder, or an InsightFace `.bin`. Embeddings add (or concatenate) the
flipped image's embedding, as FaceNet's and InsightFace's evaluations do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from facetrain.data.augment import Augment, center
from facetrain.evaluate.verification import evaluate, read_pairs

FLIPS = ("sum", "concat", "none")
METRIC_KEYS = ("accuracy", "accuracy_std", "val", "val_std", "far", "auc", "eer", "threshold")


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def prepare(x_uint8: torch.Tensor, *, size: int, normalize: str, crop: int | None = None):
    """A model's evaluation input: centre crop (if it trained on crops), normalize, resize."""
    return resize(center(x_uint8, Augment(flip=False, crop=crop, normalize=normalize)), size)


@dataclass
class EvalSet:
    name: str
    n_images: int
    fetch: Callable[[list[int]], list[torch.Tensor]]
    idx1: np.ndarray
    idx2: np.ndarray
    issame: np.ndarray
    fold: np.ndarray | None
    missing: int = 0


def pairs_set(pairs_file: str, images: str, max_pairs: int = 0) -> EvalSet:
    """pairs.txt + images; with max_pairs, only the first max_pairs/2 same and different pairs
    of every fold (quick checks during training)."""
    from facetrain.data.images import load_rgb

    pairs = read_pairs(pairs_file, images)
    keep = np.arange(len(pairs.issame))
    if max_pairs:
        keep = np.array(
            sorted(
                i
                for f in np.unique(pairs.fold)
                for same in (True, False)
                for i in np.flatnonzero((pairs.fold == f) & (pairs.issame == same))[
                    : max_pairs // 2
                ]
            ),
            dtype=np.int64,
        )
    p1 = [pairs.path1[i] for i in keep]
    p2 = [pairs.path2[i] for i in keep]
    uniq = sorted(set(p1) | set(p2))
    pos = {p: i for i, p in enumerate(uniq)}

    def fetch(ids):
        return [torch.from_numpy(load_rgb(uniq[i])).permute(2, 0, 1) for i in ids]

    name = Path(pairs_file).parent.name or "pairs"
    return EvalSet(
        name,
        len(uniq),
        fetch,
        np.array([pos[p] for p in p1], dtype=np.int64),
        np.array([pos[p] for p in p2], dtype=np.int64),
        pairs.issame[keep],
        pairs.fold[keep],
        len(pairs.missing),
    )


def bin_set(path: str) -> EvalSet:
    from torchvision.io import ImageReadMode, decode_image

    from facetrain.data.recordio import load_bin

    images, issame = load_bin(path)

    def fetch(ids):
        return [
            decode_image(
                torch.frombuffer(bytearray(images[i]), dtype=torch.uint8), ImageReadMode.RGB
            )
            for i in ids
        ]

    n = len(issame)
    return EvalSet(
        Path(path).stem,
        len(images),
        fetch,
        np.arange(0, 2 * n, 2),
        np.arange(1, 2 * n, 2),
        issame,
        None,
    )


@torch.no_grad()
def embed(
    model,
    s: EvalSet,
    *,
    size: int,
    normalize: str,
    crop: int | None = None,
    flip: str = "sum",
    device: str = "cpu",
    batch: int = 128,
) -> np.ndarray:
    """Unit embeddings of every image of the set (flip: sum, concat or none)."""
    if flip not in FLIPS:
        raise ValueError(f"unknown flip {flip!r}; choose from {', '.join(FLIPS)}")
    model.eval()
    out = []
    for i in range(0, s.n_images, batch):
        imgs = s.fetch(list(range(i, min(i + batch, s.n_images))))
        if len({tuple(t.shape) for t in imgs}) > 1:
            imgs = [resize(t[None].float(), size)[0].round().clamp(0, 255).byte() for t in imgs]
        x = prepare(torch.stack(imgs), size=size, normalize=normalize, crop=crop).to(device)
        e = model.embed(x, normalize=False).float()
        if flip != "none":
            f = model.embed(x.flip(3), normalize=False).float()
            e = e + f if flip == "sum" else torch.cat([e, f], 1)
        out.append(F.normalize(e, dim=1).cpu())
    return torch.cat(out).numpy()


def verify(
    model,
    s: EvalSet,
    *,
    size: int,
    normalize: str,
    crop: int | None = None,
    flip: str = "sum",
    device: str = "cpu",
    distance: str = "euclidean",
    subtract_mean: bool = False,
    far_target: float = 1e-3,
) -> dict:
    emb = embed(model, s, size=size, normalize=normalize, crop=crop, flip=flip, device=device)
    r = evaluate(
        emb[s.idx1],
        emb[s.idx2],
        s.issame,
        fold_ids=s.fold,
        distance=distance,
        subtract_mean=subtract_mean,
        far_target=far_target,
    )
    out = {k: r[k] for k in METRIC_KEYS} | {"pairs_used": len(s.issame), "pairs_missing": s.missing}
    return out
