"""IResNet (InsightFace, "ArcFace"): improved residual blocks (BN-conv-BN-PReLU-conv-BN), 112x112
input, a BN-dropout-FC-BN embedding head over the 7x7 final map.

The `_050` variants halve every stage's width (timm's naming): a quarter of the convolutions'
weights and arithmetic, and half the head's, so that a network small enough to ship in the
repository (under 16 MB in half precision at 256-d or less) keeps the family's depth."""

from __future__ import annotations

from torch import nn

from facetrain.models.registry import Embedder, register_model


def _conv3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


class IBasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin, eps=1e-5),
            _conv3(cin, cout),
            nn.BatchNorm2d(cout, eps=1e-5),
            nn.PReLU(cout),
            _conv3(cout, cout, stride),
            nn.BatchNorm2d(cout, eps=1e-5),
        )
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout, eps=1e-5)
            )

    def forward(self, x):
        return self.body(x) + (x if self.down is None else self.down(x))


class IResNet(Embedder):
    input_size = 112

    def __init__(
        self, layers: list[int], embedding_size: int = 512, dropout: float = 0.0, width: int = 64
    ):
        super().__init__()
        self.stem = nn.Sequential(
            _conv3(3, width), nn.BatchNorm2d(width, eps=1e-5), nn.PReLU(width)
        )
        stages, cin = [], width
        for n, cout in zip(layers, (width, 2 * width, 4 * width, 8 * width)):
            blocks = [IBasicBlock(cin, cout, 2)] + [
                IBasicBlock(cout, cout, 1) for _ in range(n - 1)
            ]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.bn2 = nn.BatchNorm2d(cin, eps=1e-5)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin * 7 * 7, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=1e-5)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False  # InsightFace's fixed-scale feature BN
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, IBasicBlock):
                # each residual branch starts as zero: a 100-layer net is stable from step 0
                nn.init.zeros_(m.body[-1].weight)

    def embed_raw(self, x):
        x = self.bn2(self.stages(self.stem(x)))
        return self.features(self.fc(self.dropout(x.flatten(1))))


@register_model
def iresnet18(embedding_size: int = 512, **kw) -> IResNet:
    return IResNet([2, 2, 2, 2], embedding_size, **kw)


@register_model
def iresnet34(embedding_size: int = 512, **kw) -> IResNet:
    return IResNet([3, 4, 6, 3], embedding_size, **kw)


@register_model
def iresnet50(embedding_size: int = 512, **kw) -> IResNet:
    return IResNet([3, 4, 14, 3], embedding_size, **kw)


@register_model
def iresnet100(embedding_size: int = 512, **kw) -> IResNet:
    return IResNet([3, 13, 30, 3], embedding_size, **kw)


@register_model
def iresnet18_050(embedding_size: int = 512, **kw) -> IResNet:
    return IResNet([2, 2, 2, 2], embedding_size, width=32, **kw)


@register_model
def iresnet34_050(embedding_size: int = 512, **kw) -> IResNet:
    return IResNet([3, 4, 6, 3], embedding_size, width=32, **kw)
