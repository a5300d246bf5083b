"""A reader of dlib's serialization format, for the networks dlib's DNN tools save (`.dat`).

dlib writes a network from the loss layer down: every wrapper writes its version and then
its sub-network, so the versions of all layers come first, then the input layer, then each
layer's details from the bottom up, each followed by the layer's bookkeeping (three flags
and three empty tensors). Integers are variable-length (a byte giving the length and sign,
then little-endian bytes), floats are a (mantissa, exponent) pair of such integers, strings
are a length and bytes, and tensors (version 2) are four dimensions and raw float32 data.

Only what is needed to read dlib's face-recognition ResNet is understood: `con_`,
`affine_`, `relu_`, `max_pool_`, `avg_pool_`, `add_prev_`, `fc_`, the RGB input layers and
`loss_metric_`. Anything else is refused with the file, the offset and what was found, so a
truncated file, another dlib model (a shape predictor) or a foreign file gives one clear
error and no partial result.

`load_dlib` maps such a network onto facetrain's `dlib_resnet` (the model family knows
nothing of files; the mapping from dlib's layers onto it lives here).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from facetrain.errors import FacetrainError
from facetrain.models.dlib_resnet import Affine, DlibResNet


class DlibFormatError(FacetrainError):
    """The file is not a dlib network this reader understands."""


@dataclass
class Layer:
    """One computational layer: its dlib name, settings and parameters (float32 arrays)."""

    kind: str  # con, affine, relu, max_pool, avg_pool, add_prev, fc
    settings: dict = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class DlibNet:
    """A parsed network: input settings, the layers bottom-up, and the loss settings."""

    input: dict
    layers: list[Layer]
    loss: dict


class _Reader:
    def __init__(self, data: bytes, source: str):
        self.b, self.pos, self.source = data, 0, source

    def fail(self, what: str) -> DlibFormatError:
        return DlibFormatError(f"{self.source}: {what} (at byte {self.pos} of {len(self.b)})")

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.b):
            raise self.fail("the file ends early: truncated")
        out = self.b[self.pos : self.pos + n]
        self.pos += n
        return out

    def int(self) -> int:
        head = self.take(1)[0]
        n = head & 0x0F
        if n > 8 or head & 0x70:
            raise self.fail(f"not a dlib integer (byte {head:#x})")
        v = int.from_bytes(self.take(n), "little")
        return -v if head & 0x80 else v

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()
        if exponent >= 32000:  # dlib's codes for inf, -inf and NaN
            return {32000: np.inf, 32001: -np.inf}.get(exponent, np.nan)
        return float(np.ldexp(float(mantissa), exponent))

    def str(self, limit: int = 256) -> str:
        n = self.int()
        if not 0 <= n <= limit:
            raise self.fail(f"not a dlib string (length {n})")
        try:
            return self.take(n).decode("ascii")
        except UnicodeDecodeError:
            raise self.fail("not a dlib string (bytes that are not text)") from None

    def bool(self) -> bool:
        c = self.take(1)
        if c not in (b"0", b"1"):
            raise self.fail(f"not a dlib flag ({c!r})")
        return c == b"1"

    def tensor(self) -> np.ndarray:
        version = self.int()
        dims = [self.int() for _ in range(4)]
        if any(d < 0 for d in dims):
            raise self.fail(f"negative tensor size {dims}")
        n = int(np.prod(dims))
        if version == 2:
            raw = self.take(4 * n)
            return np.frombuffer(raw, "<f4").astype(np.float32).reshape(dims)
        if version == 1:
            return np.array([self.float() for _ in range(n)], np.float32).reshape(dims)
        raise self.fail(f"unknown tensor version {version}")

    def alias(self) -> list[int]:
        """An alias_tensor: version and (n, k, nr, nc) of a view into a params tensor."""
        version = self.int()
        if version != 1:
            raise self.fail(f"unknown alias_tensor version {version}")
        return [self.int() for _ in range(4)]


def _con(r: _Reader) -> Layer:
    flat = r.tensor().ravel()
    n, nr, nc, sy, sx, py, px = (r.int() for _ in range(7))
    wshape, bshape = r.alias(), r.alias()
    for _ in range(4):  # learning-rate and weight-decay multipliers: training only
        r.float()
    k = wshape[1]
    nw, nb = n * k * nr * nc, int(np.prod(bshape))
    if flat.size != nw + nb or wshape != [n, k, nr, nc]:
        raise r.fail(f"con_ parameters of {flat.size} values do not fit {wshape} + {bshape}")
    params = {"weight": flat[:nw].reshape(n, k, nr, nc)}
    if nb:
        params["bias"] = flat[nw:]
    return Layer("con", {"stride": (sy, sx), "padding": (py, px), "kernel": (nr, nc)}, params)


def _affine(r: _Reader) -> Layer:
    flat = r.tensor().ravel()
    g, b = r.alias(), r.alias()
    mode = r.int()
    n = int(np.prod(g))
    if flat.size != n + int(np.prod(b)):
        raise r.fail(f"affine_ parameters of {flat.size} values do not fit 2 x {n}")
    return Layer("affine", {"mode": mode}, {"gamma": flat[:n], "beta": flat[n:]})


def _pool(kind: str):
    def read(r: _Reader) -> Layer:
        nr, nc, sy, sx, py, px = (r.int() for _ in range(6))
        settings = {"kernel": (nr, nc), "stride": (sy, sx), "padding": (py, px)}
        return Layer(kind, settings)

    return read


def _fc(r: _Reader) -> Layer:
    outputs, inputs = r.int(), r.int()
    flat = r.tensor().ravel()
    r.alias(), r.alias()
    bias_mode = r.int()
    for _ in range(4):
        r.float()
    nw = inputs * outputs
    if flat.size < nw:
        raise r.fail(f"fc_ parameters of {flat.size} values do not fit {inputs} x {outputs}")
    # dlib computes x @ W with W of shape (inputs, outputs); torch's Linear wants W.T
    params = {"weight": flat[:nw].reshape(inputs, outputs).T.copy()}
    if bias_mode == 0 and flat.size > nw:  # FC_HAS_BIAS
        params["bias"] = flat[nw : nw + outputs]
    return Layer("fc", {"outputs": outputs, "inputs": inputs}, params)


_DETAILS = {
    "con_4": _con,
    "con_5": _con,
    "affine_": _affine,
    "max_pool_2": _pool("max_pool"),
    "avg_pool_2": _pool("avg_pool"),
    "relu_": lambda r: Layer("relu"),
    "relu_2": lambda r: Layer("relu"),
    "add_prev_": lambda r: Layer("add_prev"),
    "fc_2": _fc,
}
_INPUTS = ("input_rgb_image_sized", "input_rgb_image")


def _loss(r: _Reader) -> dict:
    try:
        version, name = r.int(), r.str()
    except DlibFormatError:
        name, version = None, None
    if version != 1 or not (name or "").startswith("loss_metric_"):
        raise DlibFormatError(
            f"{r.source}: not dlib's face-recognition network (a metric-learning network "
            "starts with loss_metric_; shape predictors and face detectors are other models)"
        )
    return {"margin": r.float(), "distance_threshold": r.float()}


def _input(r: _Reader) -> dict:
    name = r.str()
    if name not in _INPUTS:
        raise r.fail(f"unsupported input layer {name!r}")
    mean = [r.float() for _ in range(3)]
    size = (r.int(), r.int()) if name == "input_rgb_image_sized" else None
    return {"kind": name, "mean_rgb": mean, "size": size}


def _tail(r: _Reader) -> None:
    """A layer's bookkeeping: three flags and three (empty) tensors of training state."""
    for _ in range(3):
        r.bool()
    for _ in range(3):
        r.tensor()


def _versions(r: _Reader) -> list[int]:
    """The wrappers' versions, top down, to the input layer's own (3)."""
    versions = []
    while not versions or versions[-1] != 3:
        v = r.int()
        if v not in (1, 2, 3) or len(versions) > 10_000:
            raise r.fail(f"unexpected layer version {v}")
        versions.append(v)
    return versions


def _layers(r: _Reader, n: int) -> list[Layer]:
    """n computational layers, bottom up, each with its bookkeeping."""
    layers = []
    for k in range(n):
        name = r.str()
        read = _DETAILS.get(name)
        if read is None:
            raise r.fail(f"unsupported layer {name!r}")
        layers.append(read(r))
        _tail(r)
        if k == 0:
            r.int()  # the input layer's sample expansion factor
    return layers


def _check_finite(layers: list[Layer], source: str) -> None:
    for k, layer in enumerate(layers):
        for name, values in layer.params.items():
            if not np.isfinite(values).all():
                raise DlibFormatError(f"{source}: non-finite {name} in layer {k} ({layer.kind})")


def parse(data: bytes, source: str = "<bytes>") -> DlibNet:
    """Parse a serialized dlib metric network; DlibFormatError on anything else."""
    r = _Reader(data, source)
    loss = _loss(r)
    versions = _versions(r)
    net_input = _input(r)
    layers = _layers(r, versions.count(2) + 1)  # add_layer wrappers (2) and the input's (3)
    if r.pos != len(r.b):
        raise r.fail(f"{len(r.b) - r.pos} bytes left after the last layer")
    _check_finite(layers, source)
    return DlibNet(net_input, layers, loss)


def read_dat(path: str | os.PathLike) -> DlibNet:
    """Parse a `.dat` file (a clear DlibFormatError when it is not readable or not this)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise DlibFormatError(f"{p}: cannot read ({e.strerror or e})") from None
    if not data:
        raise DlibFormatError(f"{p}: empty file")
    return parse(data, str(p))


def _weights_in_order(model: DlibResNet) -> list[tuple[str, nn.Module]]:
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d | Affine | nn.Linear)
    ]


def state_dict_from_dlib(net) -> dict[str, torch.Tensor]:
    """Map a parsed dlib network (bottom-up layers) onto DlibResNet's parameter names."""
    model = DlibResNet()
    ours = _weights_in_order(model)
    theirs = [layer for layer in net.layers if layer.kind in ("con", "affine", "fc")]
    if len(ours) != len(theirs):
        raise DlibFormatError(
            f"the network has {len(theirs)} weight layers; dlib_resnet has {len(ours)}"
        )
    state: dict[str, torch.Tensor] = {}
    for (name, module), layer in zip(ours, theirs):
        if layer.kind == "affine":
            values = {"weight": layer.params["gamma"], "bias": layer.params["beta"]}
        else:
            values = layer.params
        for key, param in module.named_parameters(recurse=False):
            got = values.get(key)
            if got is None or tuple(got.shape) != tuple(param.shape):
                shape = None if got is None else tuple(got.shape)
                raise DlibFormatError(
                    f"layer {name}.{key}: dlib has {shape}, dlib_resnet needs "
                    f"{tuple(param.shape)} (not the face-recognition ResNet)"
                )
            state[f"{name}.{key}"] = torch.from_numpy(got.copy())
    return state


def balance_scales(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same function, trainable: every conv's filters scaled to unit RMS and its affine
    scale divided by as much. dlib folded batch norm into the affine layers, which leaves
    the conv filters tiny (RMS ~1e-3) next to affine scales of ~10: one optimizer step that
    is small for a filter of unit scale rewrites these, and fine-tuning the network as
    saved destroys it within a few steps. affine(conv(x)) = γ(w∗x + b) + β equals
    (γ/c)((cw)∗x + cb) + β for any c > 0 per output channel."""
    out = dict(state)
    for name in [
        k[: -len(".weight")] for k in state if k.endswith(".weight") and ".conv" in f".{k}"
    ]:
        aff = name.replace("conv", "aff")
        w = state[f"{name}.weight"]
        c = 1.0 / w.flatten(1).pow(2).mean(1).sqrt().clamp_min(1e-12)  # per output channel
        out[f"{name}.weight"] = w * c[:, None, None, None]
        out[f"{name}.bias"] = state[f"{name}.bias"] * c
        out[f"{aff}.weight"] = state[f"{aff}.weight"] / c
    return out


def load_dlib(path: str | os.PathLike) -> DlibResNet:
    """dlib's `dlib_face_recognition_resnet_model_v1.dat` as an eval-mode DlibResNet (its
    scales balanced for training, see `balance_scales`)."""
    net = read_dat(path)
    model = DlibResNet()
    model.load_state_dict(balance_scales(state_dict_from_dlib(net)))
    return model.eval()
