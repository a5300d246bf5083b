"""dlib's face-recognition ResNet (Davis King, 2017; weights CC0 1.0), ported natively.

29 conv layers on 150x150 RGB chips: a 7x7/2 conv stem and 3x3/2 max pool, then residual
stages of 32, 64, 128, 256 and 256 filters (3, 4, 3, 3 and 1 blocks; each stage but the
first starts with a stride-2 block whose shortcut is a 2x2 average pool), global average
pooling and a 128-d linear layer without bias. Batch norm was folded into per-channel
affine layers when the network was saved.

dlib adds a shortcut to a block's output zero-padded to the larger of the two (channels
and, where a stride-2 3x3 conv without padding loses a row, height and width), so
`_add_padded` does the same. The input is normalised inside the model as dlib does it:
(pixel - mean_rgb) / 256, so the model takes 0..255 floats (`normalize="none"`).

`facetrain.inference.dlib_format.load_dlib(path)` reads dlib's own `.dat`; no dlib is needed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from facetrain.models.registry import Embedder, register_model

INPUT_SIZE = 150
MEAN_RGB = (122.782, 117.001, 104.298)
STAGES = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))


class Affine(nn.Module):
    """Per-channel scale and shift: dlib's `affine_` (a batch norm folded at save time)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias[:, None, None], x, self.weight[:, None, None])


def _add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a + b, the smaller zero-padded at the end of channels, rows and columns (dlib's add)."""
    if a.shape == b.shape:  # most blocks: padding by nothing still copied both (5% of a pass)
        return a + b
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(t):
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return pad(a) + pad(b)


class Block(nn.Module):
    """conv-affine-relu-conv-affine, plus the input (average-pooled when downsampling)."""

    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        stride, pad = (2, 0) if down else (1, 1)  # dlib pads only stride-1 convs
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, pad)
        self.aff1 = Affine(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.aff2 = Affine(cout)
        self.pool = nn.AvgPool2d(2, 2) if down else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.aff2(self.conv2(F.relu(self.aff1(self.conv1(x)))))
        short = x if self.pool is None else self.pool(x)
        return F.relu(_add_padded(y, short))


class DlibResNet(Embedder):
    input_size = INPUT_SIZE
    embedding_batchnorm = False  # a plain linear layer last

    def __init__(self, embedding_size: int = 128, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("mean", torch.tensor(MEAN_RGB).view(1, 3, 1, 1), persistent=False)
        self.conv1 = nn.Conv2d(3, 32, 7, 2, 0)
        self.aff1 = Affine(32)
        blocks, cin = [], 32
        for cout, n, down in STAGES:
            blocks += [Block(cin, cout, down)] + [Block(cout, cout, False) for _ in range(n - 1)]
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(256, embedding_size, bias=False)

    def embed_raw(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / 256.0
        x = F.max_pool2d(F.relu(self.aff1(self.conv1(x))), 3, 2)
        return self.fc(self.dropout(self.blocks(x).mean(dim=(2, 3))))


@register_model
def dlib_resnet(embedding_size: int = 128, **kw) -> DlibResNet:
    return DlibResNet(embedding_size, **kw)
