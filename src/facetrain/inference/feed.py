"""How to feed a PyTorch model: its faces prepared exactly as its preprocessing record says.

The faces come from a `sources.FaceSource` (photos aligned on the fly, faces in memory, an
evaluation set); `prepare` is the evaluation input (centre crop, normalisation, resize); `embed` and
`embed_model` give unit embeddings, adding (or concatenating) the flipped face's as
FaceNet's and InsightFace's evaluations do. Training, `eval`, `embed`, the library and the
Python API all go through here. An image that cannot be used (unreadable, no face) gets a
NaN row and a reason, never an exception.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from facetrain.data.augment import Augment, center, resize
from facetrain.inference.sources import FaceSource, Progress, batches

FLIPS = ("sum", "concat", "none")
# Faces a forward pass: on a CPU, 64 (the activations of 128 outgrow the heap that
# `devices.keep_freed_memory` keeps, and mobilefacenet and iresnet run slower there:
# bench/cpu_memory.py); a GPU wants large batches.
CPU_BATCH, DEVICE_BATCH = 64, 128
# Faces on a CPU go in channels-last (NHWC): its convolutions and max pooling run faster so
# (three runs of bench/cpu_layout.py: nn4_small2 1.8-1.9x, mobilefacenet 1.3-1.4x,
# iresnet18_050 1.03-1.14x); the weights are left as they are, so a model in training is
# not changed by its verification.
CPU_CHANNELS_LAST = True


def prepare(x_uint8: torch.Tensor, *, size: int, normalize: str, crop: int | None = None):
    """A model's evaluation input: centre crop (if it trained on crops), normalize, resize."""
    return resize(center(x_uint8, Augment(flip=False, crop=crop, normalize=normalize)), size)


@torch.no_grad()
def embed(
    model,
    s: FaceSource,
    *,
    size: int,
    normalize: str,
    crop: int | None = None,
    flip: str = "sum",
    device: str = "cpu",
    batch: int | None = None,
    progress: Progress = None,
    workers: int = 0,
) -> np.ndarray:
    """Unit embeddings of every image of the set (flip: sum, concat or none); rows of images
    that could not be used are NaN. With `progress`, a bar (`sources.batches`). `workers`
    threads read (decode, align) the next batches while the model runs. `batch`: faces a
    forward pass (default: `CPU_BATCH` or `DEVICE_BATCH`)."""
    if flip not in FLIPS:
        raise ValueError(f"unknown flip {flip!r}; choose from {', '.join(FLIPS)}")
    model.eval()
    if device == "cpu":
        from facetrain.devices import keep_freed_memory

        keep_freed_memory()
    batch = batch or (CPU_BATCH if device == "cpu" else DEVICE_BATCH)
    read = batches(s, s.fetch, batch=batch, progress=progress, workers=workers)
    out = [_embed_batch(model, imgs, size, normalize, crop, flip, device) for imgs in read]
    width = max(o.shape[1] for o in out) if out else 0
    out = [o if o.shape[1] == width else torch.full((len(o), width), float("nan")) for o in out]
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def _embed_batch(model, imgs: list, size: int, normalize: str, crop, flip: str, device: str):
    """Unit embeddings of one batch of decoded faces; NaN rows where an image is None."""
    ok = [k for k, t in enumerate(imgs) if t is not None]
    if not ok:
        return torch.full((len(imgs), 0), float("nan"))
    got = [imgs[k] for k in ok]
    if len({tuple(t.shape) for t in got}) > 1:
        got = [resize(t[None].float(), size)[0].round().clamp(0, 255).byte() for t in got]
    x = prepare(torch.stack(got), size=size, normalize=normalize, crop=crop).to(device)
    if device == "cpu" and CPU_CHANNELS_LAST:
        x = x.contiguous(memory_format=torch.channels_last)
    e = model.embed(x, normalize=False).float()
    if flip != "none":
        f = model.embed(x.flip(3), normalize=False).float()
        e = e + f if flip == "sum" else torch.cat([e, f], 1)
    rows = F.normalize(e, dim=1).cpu()
    full = torch.full((len(imgs), rows.shape[1]), float("nan"))
    full[ok] = rows
    return full


def embed_model(
    model,
    s: FaceSource,
    *,
    flip: str | None = None,
    device: str = "cpu",
    progress: Progress = None,
    workers: int = 0,
) -> np.ndarray:
    """`embed` with a saved model's own preprocessing record (`model.pre`)."""
    pre = model.pre
    return embed(
        model,
        s,
        size=pre.input_size,
        normalize=pre.normalize,
        crop=pre.crop,
        flip=flip or pre.flip,
        device=device,
        progress=progress,
        workers=workers,
    )
