"""Models trained elsewhere, as facetrain models: the peers' checkpoint formats.

- facenet-pytorch: an `InceptionResnetV1` state dict (their VGGFace2 or CASIA-WebFace
  checkpoints) → `inception_resnet_v1`, 160x160 MTCNN box crops, (x - 127.5) / 128.
- arcface_torch: a `backbone.pth` of an iresnet → `iresnetNN`, the standard 112x112
  five-point crop, (x - 127.5) / 127.5.

The architectures are the same; only the names differ, so each importer renames keys by
rule and checks that every tensor has a place of the right shape. Checkpoints are read
with `torch.load(weights_only=True)`: no code in a file is ever run. The result is a
`model.safetensors` with the preprocessing record, usable wherever a MODEL is.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import torch

from facetrain.errors import FacetrainError
from facetrain.inference.record import Preprocess, save_model
from facetrain.models import create_model

FORMATS = ("facenet-pytorch", "arcface-torch")
ARCFACE_ARCHS = ("iresnet18", "iresnet34", "iresnet50", "iresnet100")


class ImportError_(FacetrainError):
    """A checkpoint that cannot be read, or whose keys or shapes do not fit."""


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from a .pth/.pt file, weights only (a whole pickled model is refused)."""
    try:
        with warnings.catch_warnings():  # torch's note on a pickle protocol: noise here
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ImportError_(f"{path}: no such file") from None
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, … for foreign files
        raise ImportError_(f"{path}: not a weights-only PyTorch checkpoint ({_why(e)}); "
                           "only tensors are loaded, no file's code is run") from None  # fmt: skip
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ImportError_(f"{path}: not a state dict (a mapping of names to tensors)")
    return {k.removeprefix("module."): v for k, v in obj.items()}  # DataParallel's prefix


def _why(e: Exception) -> str:
    """torch's reason for refusing a file, without its advice to load it unsafely."""
    text = str(e).strip()
    if "WeightsUnpickler error:" in text:
        after = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()
        return after[0].strip() if after else "not plain tensors"
    if isinstance(e, KeyError | EOFError) or not text:  # torch's reader lost in the bytes
        return "not a file torch.save wrote"
    return text.splitlines()[0]


def _facenet_key(key: str) -> str | None:
    """facenet-pytorch's InceptionResnetV1 names → facetrain's (None: not part of it)."""
    if key.startswith("logits."):  # their classifier over the training identities
        return None
    stem = {"conv2d_1a": 0, "conv2d_2a": 1, "conv2d_2b": 2, "conv2d_3b": 4, "conv2d_4a": 5,
            "conv2d_4b": 6}  # fmt: skip
    m = re.match(r"(conv2d_\w\w)\.(conv|bn)\.(.+)", key)
    if m and m.group(1) in stem:
        return f"stem.{stem[m.group(1)]}.{'0' if m.group(2) == 'conv' else '1'}.{m.group(3)}"
    repeats = {"repeat_1": 0, "mixed_6a": 5, "repeat_2": 6, "mixed_7a": 16, "repeat_3": 17}
    m = re.match(r"(repeat_\d|mixed_\da|block8)\.(?:(\d+)\.)?(.+)", key)
    if m:
        name, idx, rest = m.groups()
        pos = 22 if name == "block8" else repeats[name] + int(idx or 0)
        rest = re.sub(r"branch(\d)", r"branches.\1", rest)
        rest = re.sub(
            r"\.(\d+)\.(conv|bn)\.", lambda g: f".{g[1]}.{'0' if g[2] == 'conv' else '1'}.", rest
        )
        rest = re.sub(
            r"^(branches\.\d)\.(conv|bn)\.",
            lambda g: f"{g[1]}.{'0' if g[2] == 'conv' else '1'}.",
            rest,
        )
        rest = re.sub(r"^conv2d\.", "up.", rest)
        return f"body.{pos}.{rest}"
    return {"last_linear.weight": "bottleneck.weight"}.get(key) or (
        "bn." + key[len("last_bn.") :] if key.startswith("last_bn.") else key
    )


def _arcface_key(key: str) -> str:
    """arcface_torch's iresnet names → facetrain's."""
    stem = {"conv1.": "stem.0.", "bn1.": "stem.1.", "prelu.": "stem.2."}
    for a, b in stem.items():
        if key.startswith(a):
            return b + key[len(a) :]
    m = re.match(r"layer(\d)\.(\d+)\.(\w+?)(?:\.(\d))?\.(\w+)$", key)
    if not m:
        return key
    layer, block, part, sub, leaf = m.groups()
    body = {"bn1": 0, "conv1": 1, "bn2": 2, "prelu": 3, "conv2": 4, "bn3": 5}
    where = (
        f"body.{body[part]}" if part in body else f"down.{sub}" if part == "downsample" else part
    )
    return f"stages.{int(layer) - 1}.{block}.{where}.{leaf}"


def _fit(model: torch.nn.Module, renamed: dict[str, torch.Tensor], source: str) -> None:
    """Load the renamed tensors, refusing any missing, unexpected or misshapen one."""
    from facetrain.models.fit import misfit

    why = misfit(model.state_dict(), renamed)
    if why:
        raise ImportError_(f"{source}: does not fit the architecture: {why}")
    model.load_state_dict(renamed)


def _convert(state: dict, rename, arch: str, emb: int, source: str) -> torch.nn.Module:
    renamed = {}
    for k, v in state.items():
        new = rename(k)
        if new is not None:
            renamed[new] = v
    model = create_model(arch, emb)
    _fit(model, renamed, source)
    return model.eval()


def _embedding_size(state: dict, key: str, source: str) -> int:
    if key not in state:
        raise ImportError_(f"{source}: no {key}: not a checkpoint of this format")
    return int(state[key].shape[0])


def import_facenet_pytorch(path: str | os.PathLike, out: str | os.PathLike) -> Path:
    state = read_state_dict(path)
    emb = _embedding_size(state, "last_linear.weight", str(path))
    model = _convert(state, _facenet_key, "inception_resnet_v1", emb, str(path))
    pre = Preprocess(
        model="inception_resnet_v1",
        embedding_size=emb,
        input_size=160,
        normalize="fixed",
        alignment={"mode": "box", "size": 160, "margin": 0},  # facenet-pytorch's MTCNN default
        flip="none",
        threshold_source=f"imported from facenet-pytorch {Path(path).name}: not calibrated",
    )
    return save_model(out, model, pre)


def import_arcface_torch(path: str | os.PathLike, out: str | os.PathLike, arch: str) -> Path:
    if arch not in ARCFACE_ARCHS:
        raise ImportError_(f"--arch {arch!r}: choose from {', '.join(ARCFACE_ARCHS)}")
    state = read_state_dict(path)
    emb = _embedding_size(state, "features.weight", str(path))
    model = _convert(state, _arcface_key, arch, emb, str(path))
    pre = Preprocess(
        model=arch,
        embedding_size=emb,
        input_size=112,
        normalize="arcface",
        alignment={"mode": "similarity", "size": 112},
        flip="sum",
        threshold_source=f"imported from arcface_torch {Path(path).name}: not calibrated",
    )
    return save_model(out, model, pre)
