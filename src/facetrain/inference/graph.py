"""A model's whole path from aligned faces to unit embeddings as one torch module, traced to
the ONNX graph `compiled` runs: what `feed` does around the network (centre crop,
normalisation, resize, the flipped face's embedding, the L2 norm) happens inside it, so
the runtime feeds nothing but the aligner's pixels and cannot prepare a face another way.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from facetrain.inference.feed import prepare
from facetrain.inference.record import Preprocess


class FacesToEmbeddings(nn.Module):
    """uint8 aligned faces (N, S, S, 3) → unit embeddings, as `feed.embed` computes them."""

    def __init__(self, net: nn.Module, pre: Preprocess):
        super().__init__()
        self.net, self.pre = net, pre

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        pre = self.pre
        x = prepare(faces.permute(0, 3, 1, 2), size=pre.input_size, normalize=pre.normalize,
                    crop=pre.crop)  # fmt: skip
        e = self.net.embed_raw(x).float()
        if pre.flip != "none":
            f = self.net.embed_raw(x.flip(3)).float()
            e = e + f if pre.flip == "sum" else torch.cat([e, f], 1)
        return F.normalize(e, dim=1)


def aligned_side(pre: Preprocess) -> int:
    """The side of the faces the model's aligner gives (its alignment record's size)."""
    return int(pre.alignment.get("size", pre.input_size))


def trace_model(net: nn.Module, pre: Preprocess, out: str | os.PathLike) -> Path:
    """`out`: the model's faces-to-unit-embeddings graph, for any number of faces."""
    from facetrain.runtime import trace

    side = aligned_side(pre)
    example = torch.randint(0, 256, (2, side, side, 3), dtype=torch.uint8)
    module = FacesToEmbeddings(net.cpu().eval(), pre)
    return trace(module, (example,), Path(out), ["faces"], ["embedding"], {"faces": {0: "n"}})
