"""OpenFace's nn4.small2: a small GoogLeNet-style network for 96x96 faces, 128-d output.

Inception modules follow OpenFace's Torch definition: each kxk branch has a 1x1 reduction,
convolutions are followed by BatchNorm and ReLU, pooling branches use max or L2 (LP, p=2)
pooling with an optional 1x1 projection, and a strided module passes its pooled input on
unprojected. OpenFace's DepthConcat zero-pads the smaller L2-pool maps; so does this."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from facetrain.models.registry import Embedder, register_model


def _cbr(cin, cout, k, stride=1, padding=0) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, padding), nn.BatchNorm2d(cout), nn.ReLU(inplace=False)
    )


class Inception(nn.Module):
    def __init__(self, cin, kernels, outs, reduces, pool, pool_proj, plain, stride=1):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(_cbr(cin, r, 1), _cbr(r, o, k, stride, k // 2))
            for k, o, r in zip(kernels, outs, reduces)
        )
        self.pool_kind, self.stride = pool, stride
        self.pool_proj = _cbr(cin, pool_proj, 1) if pool_proj else None
        self.plain = _cbr(cin, plain, 1) if plain else None

    def forward(self, x):
        outs = [b(x) for b in self.branches]
        if self.pool_kind == "max":
            p = F.max_pool2d(x, 3, self.stride, 1)
        else:  # L2 pooling without padding; the output is zero-padded back (DepthConcat)
            p = F.lp_pool2d(x, 2, 3, self.stride)
        if self.pool_proj is not None:
            p = self.pool_proj(p)
        if p.shape[-1] != outs[0].shape[-1]:
            d = outs[0].shape[-1] - p.shape[-1]
            p = F.pad(p, (d // 2, d - d // 2, d // 2, d - d // 2))
        outs.append(p)
        if self.plain is not None:
            outs.append(self.plain(x))
        return torch.cat(outs, 1)


class NN4Small2(Embedder):
    input_size = 96

    def __init__(self, embedding_size: int = 128, dropout: float = 0.0, feature_bn: bool = False):
        super().__init__()
        self.body = nn.Sequential(
            _cbr(3, 64, 7, 2, 3),
            nn.MaxPool2d(3, 2, 1),
            _cbr(64, 64, 1),
            _cbr(64, 192, 3, 1, 1),
            nn.MaxPool2d(3, 2, 1),
            Inception(192, (3, 5), (128, 32), (96, 16), "max", 32, 64),  # 3a → 256
            Inception(256, (3, 5), (128, 64), (96, 32), "l2", 64, 64),  # 3b → 320
            Inception(320, (3, 5), (256, 64), (128, 32), "max", 0, 0, stride=2),  # 3c → 640
            Inception(640, (3, 5), (192, 64), (96, 32), "l2", 128, 256),  # 4a → 640
            Inception(640, (3, 5), (256, 128), (160, 64), "max", 0, 0, stride=2),  # 4e → 1024
            Inception(1024, (3,), (384,), (96,), "l2", 96, 256),  # 5a → 736
            Inception(736, (3,), (384,), (96,), "max", 96, 256),  # 5b → 736
            nn.AdaptiveAvgPool2d(1),
        )
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(736, embedding_size)
        # FaceNet's batch-normalised bottleneck / InsightFace's `features` BN: centres the
        # batch, so a normalised (ArcFace/CosFace) head does not see every face as one point
        self.features = nn.BatchNorm1d(embedding_size) if feature_bn else nn.Identity()
        self.embedding_batchnorm = feature_bn

    def embed_raw(self, x):
        return self.features(self.linear(self.dropout(self.body(x).flatten(1))))


@register_model
def nn4_small2(embedding_size: int = 128, **kw) -> NN4Small2:
    return NN4Small2(embedding_size, **kw)


@register_model
def nn4_small2_bn(embedding_size: int = 128, **kw) -> NN4Small2:
    """nn4.small2 with a BatchNorm on the embedding (not in OpenFace's original)."""
    return NN4Small2(embedding_size, feature_bn=True, **kw)
