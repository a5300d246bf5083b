"""MobileFaceNet (Chen et al., 2018): inverted-residual bottlenecks, 112x112 input, a global
depthwise convolution (GDConv) instead of pooling, ~1M parameters."""

from __future__ import annotations

from torch import nn

from facetrain.models.registry import Embedder, register_model


def _cbp(cin, cout, k, s, p, groups=1, act=True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, s, p, groups=groups, bias=False)]
    layers.append(nn.BatchNorm2d(cout))
    if act:
        layers.append(nn.PReLU(cout))
    return layers


class Bottleneck(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expansion: int):
        super().__init__()
        mid = cin * expansion
        self.residual = stride == 1 and cin == cout
        self.body = nn.Sequential(
            *_cbp(cin, mid, 1, 1, 0),
            *_cbp(mid, mid, 3, stride, 1, groups=mid),
            *_cbp(mid, cout, 1, 1, 0, act=False),
        )

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


class MobileFaceNet(Embedder):
    input_size = 112
    # (expansion t, channels c, repeats n, stride s) of the paper's Table 1
    SETTINGS = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))

    def __init__(self, embedding_size: int = 128, dropout: float = 0.0):
        super().__init__()
        layers = [*_cbp(3, 64, 3, 2, 1), *_cbp(64, 64, 3, 1, 1, groups=64)]
        cin = 64
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                layers.append(Bottleneck(cin, c, s if i == 0 else 1, t))
                cin = c
        layers += _cbp(cin, 512, 1, 1, 0)
        layers += _cbp(512, 512, 7, 1, 0, groups=512, act=False)  # GDConv over the 7x7 map
        self.body = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Conv2d(512, embedding_size, 1, bias=False)
        self.bn = nn.BatchNorm1d(embedding_size)

    def embed_raw(self, x):
        x = self.linear(self.dropout(self.body(x)))
        return self.bn(x.flatten(1))


@register_model
def mobilefacenet(embedding_size: int = 128, **kw) -> MobileFaceNet:
    return MobileFaceNet(embedding_size, **kw)
