"""Inception-ResNet-v1 (Szegedy et al. 2016) as FaceNet trains it: 160x160 input, 5x Block35,
10x Block17, 6x Block8, average pool, dropout, bottleneck to the embedding, BatchNorm."""

from __future__ import annotations

import torch
from torch import nn

from facetrain.models.registry import Embedder, register_model


class BasicConv(nn.Sequential):
    def __init__(self, cin, cout, k, stride=1, padding=0):
        super().__init__(
            nn.Conv2d(cin, cout, k, stride, padding, bias=False),
            nn.BatchNorm2d(cout, eps=0.001, momentum=0.1),
            nn.ReLU(inplace=False),
        )


class _Residual(nn.Module):
    """relu(x + scale * up(concat(branches(x)))), the shape shared by Block35/17/8."""

    def __init__(self, channels, branches, cat, scale, relu=True):
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.up = nn.Conv2d(cat, channels, 1)
        self.scale, self.relu = scale, relu

    def forward(self, x):
        out = x + self.scale * self.up(torch.cat([b(x) for b in self.branches], 1))
        return torch.relu(out) if self.relu else out


def block35(scale=0.17):
    return _Residual(
        256,
        [
            BasicConv(256, 32, 1),
            nn.Sequential(BasicConv(256, 32, 1), BasicConv(32, 32, 3, padding=1)),
            nn.Sequential(
                BasicConv(256, 32, 1),
                BasicConv(32, 32, 3, padding=1),
                BasicConv(32, 32, 3, padding=1),
            ),
        ],
        96,
        scale,
    )


def block17(scale=0.10):
    return _Residual(
        896,
        [
            BasicConv(896, 128, 1),
            nn.Sequential(
                BasicConv(896, 128, 1),
                BasicConv(128, 128, (1, 7), padding=(0, 3)),
                BasicConv(128, 128, (7, 1), padding=(3, 0)),
            ),
        ],
        256,
        scale,
    )


def block8(scale=0.20, relu=True):
    return _Residual(
        1792,
        [
            BasicConv(1792, 192, 1),
            nn.Sequential(
                BasicConv(1792, 192, 1),
                BasicConv(192, 192, (1, 3), padding=(0, 1)),
                BasicConv(192, 192, (3, 1), padding=(1, 0)),
            ),
        ],
        384,
        scale,
        relu,
    )


class _Concat(nn.Module):
    def __init__(self, *branches):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x):
        return torch.cat([b(x) for b in self.branches], 1)


class InceptionResnetV1(Embedder):
    input_size = 160

    def __init__(self, embedding_size: int = 512, dropout: float = 0.2):
        super().__init__()
        self.stem = nn.Sequential(
            BasicConv(3, 32, 3, 2),
            BasicConv(32, 32, 3),
            BasicConv(32, 64, 3, padding=1),
            nn.MaxPool2d(3, 2),
            BasicConv(64, 80, 1),
            BasicConv(80, 192, 3),
            BasicConv(192, 256, 3, 2),
        )
        mixed_6a = _Concat(
            BasicConv(256, 384, 3, 2),
            nn.Sequential(
                BasicConv(256, 192, 1), BasicConv(192, 192, 3, padding=1), BasicConv(192, 256, 3, 2)
            ),
            nn.MaxPool2d(3, 2),
        )
        mixed_7a = _Concat(
            nn.Sequential(BasicConv(896, 256, 1), BasicConv(256, 384, 3, 2)),
            nn.Sequential(BasicConv(896, 256, 1), BasicConv(256, 256, 3, 2)),
            nn.Sequential(
                BasicConv(896, 256, 1), BasicConv(256, 256, 3, padding=1), BasicConv(256, 256, 3, 2)
            ),
            nn.MaxPool2d(3, 2),
        )
        self.body = nn.Sequential(
            *[block35() for _ in range(5)],
            mixed_6a,
            *[block17() for _ in range(10)],
            mixed_7a,
            *[block8() for _ in range(5)],
            block8(scale=1.0, relu=False),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.bottleneck = nn.Linear(1792, embedding_size, bias=False)
        self.bn = nn.BatchNorm1d(embedding_size, eps=0.001, momentum=0.1)

    def embed_raw(self, x):
        x = self.pool(self.body(self.stem(x))).flatten(1)
        return self.bn(self.bottleneck(self.dropout(x)))


@register_model
def inception_resnet_v1(embedding_size: int = 512, **kw) -> InceptionResnetV1:
    return InceptionResnetV1(embedding_size, **kw)
