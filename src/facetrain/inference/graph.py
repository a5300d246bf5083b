"""A model's whole path from aligned faces to unit embeddings as one torch module, traced to
the ONNX graph `compiled` runs: what `feed` does around the network (centre crop,
normalisation, resize, the flipped face's embedding, the L2 norm) happens inside it, so
the runtime feeds nothing but the aligner's pixels and cannot prepare a face another way.
`tests/test_runtime.py` checks the graph against `feed.embed` for every pretrained model.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from facetrain.align.transform import aligned_size
from facetrain.data.augment import normalize
from facetrain.inference.record import Preprocess


class FacesToEmbeddings(nn.Module):
    """uint8 aligned faces (N, S, S, 3) → unit embeddings, as `feed.embed` computes them."""

    def __init__(self, net: nn.Module, pre: Preprocess):
        super().__init__()
        self.net, self.pre = net, pre
        side = pre.crop or aligned_size(pre.alignment)
        self.register_buffer("resize", resize_matrix(side, pre.input_size), persistent=False)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        pre = self.pre
        x, side = faces.permute(0, 3, 1, 2), faces.shape[1]
        if pre.crop is not None and pre.crop < side:  # `augment.center`, without its loop
            y = (side - pre.crop) // 2
            x = x[:, :, y : y + pre.crop, y : y + pre.crop]
        x = normalize(x, pre.normalize)
        if x.shape[-1] != pre.input_size:  # `resize`, as the exporter can write it
            x = self.resize.T @ x @ self.resize
        e = self.net.embed_raw(x).float()
        if pre.flip != "none":
            f = self.net.embed_raw(x.flip(3)).float()
            e = e + f if pre.flip == "sum" else torch.cat([e, f], 1)
        return F.normalize(e, dim=1)


def resize_matrix(n: int, m: int) -> torch.Tensor:
    """M (n, m) with `augment.resize` of a square n x n batch to m = M.T @ x @ M: the
    antialiased bilinear resize is linear and separable (each row of the identity, resized,
    is a row of M), and the tracing exporter cannot write the operator itself."""
    eye = torch.eye(n)[None, None]
    return F.interpolate(eye, size=(n, m), mode="bilinear", antialias=True,
                         align_corners=False)[0, 0]  # fmt: skip


def trace_model(net: nn.Module, pre: Preprocess, out: str | os.PathLike) -> Path:
    """`out`: the model's faces-to-unit-embeddings graph, for any number of faces."""
    from facetrain.runtime import trace

    side = aligned_size(pre.alignment)
    example = torch.randint(0, 256, (2, side, side, 3), dtype=torch.uint8)
    module = FacesToEmbeddings(net.cpu().eval(), pre)
    return trace(module, (example,), Path(out), ["faces"], ["embedding"], {"faces": {0: "n"}})
