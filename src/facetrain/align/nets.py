"""MTCNN's three networks (P-Net, R-Net, O-Net) in PyTorch, with the weights that ship
inside the `facenet-pytorch` wheel (`inference.compile` makes the ONNX files the detector
runs on a CPU from these; a GPU runs them here).

The layers are MTCNN's as facenet-pytorch names them, so its state dicts load as they are;
the weights are read from the wheel's data folder without importing the package (whose
import pulls in torchvision and its compiler stack: seconds before a first face).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from facetrain.align.weights import NET_FILES, weights_folder


class PNet(nn.Module):
    """Proposals: a 12x12 window slid over the image (fully convolutional)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1, self.conv4_2 = nn.Conv2d(32, 2, 1), nn.Conv2d(32, 4, 1)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)


class RNet(nn.Module):
    """Refinement of 24x24 crops: face or not, and a box correction."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x)).permute(0, 3, 2, 1).contiguous()
        x = self.prelu4(self.dense4(x.view(x.shape[0], -1)))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)


class ONet(nn.Module):
    """Output on 48x48 crops: face or not, the box, and five landmarks."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1, self.dense6_2 = nn.Linear(256, 2), nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x)).permute(0, 3, 2, 1).contiguous()
        x = self.prelu5(self.dense5(x.view(x.shape[0], -1)))
        return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)


def load_torch_nets(device: str, channels_last: bool = True) -> tuple[PNet, RNet, ONet]:
    """The three networks with their weights, in inference mode, on device (channels-last:
    the faster layout for their small convolutions on a CPU)."""
    nets = []
    layout = torch.channels_last if channels_last else torch.contiguous_format
    for net, name in ((PNet(), "pnet.pt"), (RNet(), "rnet.pt"), (ONet(), "onet.pt")):
        state = torch.load(weights_folder() / name, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        net.eval().requires_grad_(False)
        nets.append(net.to(device, memory_format=layout))
    return nets[0], nets[1], nets[2]


class FromPixels(nn.Module):
    """A network fed the detector's pixels (0..255, NCHW float32) as MTCNN normalises them;
    with `size`, R-Net or O-Net fed an image level and boxes on it (image index, x1, y1,
    x2, y2): each box sampled to size x size by `roi_align` (one sample a bin, aligned=False),
    which ONNX Runtime runs as its RoiAlign operator."""

    def __init__(self, net: nn.Module, size: int | None = None):
        super().__init__()
        self.net, self.size = net, size
        if size is not None:  # imported here, never while tracing
            from torchvision.ops import roi_align

            self.roi_align = roi_align

    def forward(self, x: torch.Tensor, rois: torch.Tensor | None = None):
        if self.size is not None:
            x = self.roi_align(x, rois, (self.size, self.size), 1.0, 1, False)
        return self.net((x - 127.5) * 0.0078125)


def pixel_nets(device: str, channels_last: bool = True) -> tuple[FromPixels, ...]:
    """P-Net on pixels, R-Net and O-Net on an image level and boxes (`FromPixels`)."""
    pnet, rnet, onet = load_torch_nets(device, channels_last)
    return FromPixels(pnet), FromPixels(rnet, 24), FromPixels(onet, 48)


def as_numpy(net: nn.Module, device: str):
    """A torch network as the detector calls every network: float32 arrays in, a tuple of
    arrays out."""

    @torch.inference_mode()
    def run(*xs):
        ts = [torch.from_numpy(x).to(device) for x in xs]
        return tuple(o.float().cpu().numpy() for o in net(*ts))

    return run


class TracedPReLU(nn.Module):
    """PReLU written as relu(x) + a·(x - relu(x)), the per-channel scalings (by -1 and by
    a) as batch norms: ONNX Runtime keeps all of it in its NCHWc block layout (a batch norm
    becomes a 1x1 depthwise convolution, each sum is fused into one), where its own PRelu,
    or clamps with per-channel slopes, leave that layout and come back at every layer (a
    third of P-Net's time went to those copies). Exact: x - relu(x) is min(x, 0) to the
    bit, and each sum adds a zero. Without `blocks`, and in flattened (dense) layers,
    clamps: max(x, 0) + a·min(x, 0), which ONNX Runtime runs a fifth faster than its PRelu
    (per-channel slopes broadcast slowly there)."""

    def __init__(self, prelu: nn.PReLU, blocks: bool = True):
        super().__init__()
        self.blocks = blocks
        a = prelu.weight.detach()
        # batch norms' arguments as buffers: traced as initialisers, which ONNX Runtime
        # needs to turn a batch norm into its block-layout convolution
        for name, v in (("a", a), ("minus", torch.full_like(a, -1.0)),
                        ("zero", torch.zeros_like(a)), ("one", torch.ones_like(a))):  # fmt: skip
            self.register_buffer(name, v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or not self.blocks:
            a = self.a.view(1, -1, *([1] * (x.dim() - 2)))
            return torch.clamp(x, min=0) + a * torch.clamp(x, max=0)
        scaled = lambda t, w: F.batch_norm(t, self.zero, self.one, w, self.zero, False, 0.0, 0.0)  # noqa: E731
        positive = F.relu(x)
        negative = x + scaled(positive, self.minus)  # min(x, 0), exactly
        return positive + scaled(negative, self.a)


def _blocked(conv: nn.Conv2d, prelu: nn.PReLU, after: nn.Conv2d, block: int = 16):
    """`conv`'s output channels padded with zero filters to a multiple of `block` (and
    `after`'s inputs with zero weights): ONNX Runtime keeps only such layers in NCHWc (its
    max pooling needs whole blocks). The padded channels are 0 all the way, so the network's
    function is unchanged."""
    c = conv.out_channels
    n = -(-c // block) * block
    if n == c:
        return conv, prelu, after
    wide, slopes = nn.Conv2d(conv.in_channels, n, conv.kernel_size), nn.PReLU(n)
    fed = nn.Conv2d(n, after.out_channels, after.kernel_size)
    with torch.no_grad():
        for t in (wide.weight, wide.bias, slopes.weight, fed.weight):
            t.zero_()
        wide.weight[:c], wide.bias[:c], slopes.weight[:c] = conv.weight, conv.bias, prelu.weight
        fed.weight[:, :c], fed.bias[:] = after.weight, after.bias
    return wide, slopes, fed


def _for_tracing(net: FromPixels) -> FromPixels:
    """`net` rewritten for ONNX Runtime, computing the same function to the last bit:
    PReLUs as `TracedPReLU`, and R-Net's first layer padded to whole NCHWc blocks
    (`_blocked`). P-Net's first PReLU keeps clamps: its 10-channel maps padded to 16 would
    cost the next convolution more than the blocks save."""
    inner = net.net
    if isinstance(inner, PNet):
        inner.prelu1 = TracedPReLU(inner.prelu1, blocks=False)
    else:
        inner.conv1, inner.prelu1, inner.conv2 = _blocked(inner.conv1, inner.prelu1, inner.conv2)
    for m in list(inner.modules()):
        for name, child in m.named_children():
            if isinstance(child, nn.PReLU):
                setattr(m, name, TracedPReLU(child))
    return net


def trace_nets(folder: Path, rewrite: bool = True) -> None:
    """NET_FILES in `folder` (`pixel_nets`): P-Net for any batch and size, R-Net and O-Net
    for any level size and number of boxes; rewritten for ONNX Runtime (`_for_tracing`)
    unless `rewrite` is false (the plain modules: what the rewrite is checked against)."""
    from facetrain.runtime import trace

    pnet, rnet, onet = pixel_nets("cpu", channels_last=False)
    if rewrite:
        pnet, rnet, onet = map(_for_tracing, (pnet, rnet, onet))
    level, rois = torch.zeros(1, 3, 64, 64), torch.tensor([[0.0, 1, 2, 30, 40]] * 2)
    trace(pnet, (torch.zeros(1, 3, 24, 24),), folder / NET_FILES[0], ["x"], ["reg", "prob"],
          {"x": {0: "n", 2: "h", 3: "w"}})  # fmt: skip
    boxes = {"x": {0: "n", 2: "h", 3: "w"}, "rois": {0: "boxes"}}
    trace(rnet, (level, rois), folder / NET_FILES[1], ["x", "rois"], ["reg", "prob"], boxes)
    trace(onet, (level, rois), folder / NET_FILES[2], ["x", "rois"], ["reg", "points", "prob"],
          boxes)  # fmt: skip
