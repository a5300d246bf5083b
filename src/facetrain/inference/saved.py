"""A MODEL as users name it, opened ready to embed: `pretrained:NAME`, a run folder, a
facetrain weights file (`record.py` reads and writes those by path), or a model exported to
ONNX or TorchScript, with its preprocessing record; and which command-line argument names
a model rather than photos."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facetrain import foreign
from facetrain.inference.record import (
    META_KEY,
    ModelFileError,
    Preprocess,
    load_weights,
    record_dict,
)
from facetrain.run_folder import WEIGHTS, is_run

if TYPE_CHECKING:  # imported where a model is loaded: naming one needs no torch
    import torch


@dataclass
class FaceModel:
    """A model ready to embed, whatever its format: `run` maps a prepared float batch
    (N, 3, S, S) to raw embeddings; `pre` says how to prepare it."""

    pre: Preprocess
    run: Callable[[torch.Tensor], torch.Tensor]
    backend: str
    source: str
    module: torch.nn.Module | None = None

    @classmethod
    def of_module(cls, net: torch.nn.Module, pre: Preprocess, source: str) -> FaceModel:
        """A facetrain network (an Embedder) with its record."""
        return cls(pre, lambda x: net.embed(x, normalize=False), "torch", source, net)

    def embed(self, x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        import torch

        z = self.run(x)
        return torch.nn.functional.normalize(z, dim=1) if normalize else z

    def eval(self) -> FaceModel:
        """Inference mode for the module behind it (batch norm, dropout), if there is one."""
        if self.module is not None:
            self.module.eval()
        return self


def read_spec(path: str | os.PathLike) -> dict:
    """A preprocessing spec (JSON file) for a model made elsewhere."""
    try:
        spec = foreign.loads(Path(path).read_bytes())
    except (OSError, ValueError) as e:
        raise ModelFileError(f"{path}: cannot read the preprocessing spec ({e})") from None
    if not isinstance(spec, dict):
        raise ModelFileError(f"{path}: a preprocessing spec is a JSON object of fields")
    return spec


def load_model(path: str | os.PathLike, device: str = "cpu") -> tuple[torch.nn.Module, Preprocess]:
    """Load RUN (its model.safetensors), a weights file or `pretrained:NAME`; returns
    (eval-mode model, recipe)."""
    from facetrain.inference import pretrained

    return load_weights(pretrained.resolve(path), device, name=path)


def open_model(
    path: str | os.PathLike,
    device: str = "cpu",
    backend: str = "auto",
    spec: dict | None = None,
) -> FaceModel:
    """Any model facetrain can use: a run folder, model.safetensors, an exported ONNX or
    TorchScript file, or `pretrained:NAME`. backend `onnx` runs a run folder's exported
    model.onnx with onnxruntime. `spec` supplies (or overrides) the preprocessing of a
    foreign model."""
    from facetrain.devices import check_device
    from facetrain.inference import pretrained

    check_device(device)
    p = Path(pretrained.resolve(path))
    if backend not in ("auto", "torch", "onnx"):
        raise ModelFileError(f"unknown backend {backend!r}; choose auto, torch or onnx")
    if backend == "onnx" and p.is_dir():
        p = p / "model.onnx"
        if not p.is_file():
            raise ModelFileError(
                f"{path}: no model.onnx here; run `facetrain export {path} --format onnx` first"
            )
    if not p.exists():
        raise ModelFileError(f"{path}: no such file or folder")
    # its source: the name of a pretrained model, else the absolute path (remembered by a
    # library, so it must mean the same file from any working folder)
    source = str(path) if pretrained.is_spec(path) else str(p.resolve())
    if p.suffix == ".onnx":
        return replace(load_onnx(p, device, spec), source=source)
    if backend == "onnx":
        raise ModelFileError(f"{path}: --backend onnx needs an .onnx file or a run folder")
    if p.suffix in (".pt", ".ts", ".torchscript"):
        return replace(load_torchscript(p, device, spec), source=source)
    net, pre = load_model(p, device)
    if spec:
        pre = Preprocess.from_dict(asdict(pre) | spec, str(path))
    return FaceModel.of_module(net, pre, source)


def content_hash(fm: FaceModel) -> str:
    """What identifies a model's weights wherever its file lies: a hash of its parameters
    and buffers (a torch module), else of its file's bytes."""
    import hashlib

    h = hashlib.sha256()
    if fm.module is not None:
        import torch

        for name, t in sorted(fm.module.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    else:
        with open(fm.source, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:32]


def _record(meta: str | None, spec: dict | None, source: str, fill: dict) -> Preprocess:
    if meta is None and not spec:
        raise ModelFileError(
            f"{source}: no facetrain preprocessing record in this file; pass the model's "
            "preprocessing as a JSON spec (--preprocess SPEC.json: input_size, normalize, "
            "alignment, ...)"
        )
    d = record_dict(meta, source) if meta else {"model": "external"}
    d = {k: v for k, v in fill.items() if v is not None} | d | (spec or {})
    return Preprocess.from_dict(d, source)


def load_onnx(path: str | os.PathLike, device: str = "cpu", spec: dict | None = None):
    """An ONNX embedding model run by onnxruntime (CUDA when asked and available)."""
    from facetrain.extras import require

    ort = require("onnxruntime", "onnx", f"{path}: running an ONNX model")

    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        sess = ort.InferenceSession(str(path), providers=providers)
    except Exception as e:  # onnxruntime raises its own error types for foreign files
        raise ModelFileError(f"{path}: not a usable ONNX model ({e})") from None
    inp, outp = sess.get_inputs()[0], sess.get_outputs()[0]
    side = inp.shape[-1] if isinstance(inp.shape[-1], int) else None
    dim = outp.shape[-1] if isinstance(outp.shape[-1], int) else None
    meta = sess.get_modelmeta().custom_metadata_map.get(META_KEY)
    pre = _record(meta, spec, str(path), {"input_size": side, "embedding_size": dim})
    if side is not None and pre.input_size != side:
        raise ModelFileError(
            f"{path}: the model takes {side}x{side} inputs but its preprocessing says "
            f"input_size {pre.input_size}"
        )

    def run(x: torch.Tensor) -> torch.Tensor:
        import torch

        y = sess.run(None, {inp.name: x.detach().cpu().float().numpy()})[0]
        return torch.from_numpy(np.asarray(y, np.float32)).to(x.device)

    return FaceModel(pre, run, "onnx", str(path))


def load_torchscript(path: str | os.PathLike, device: str = "cpu", spec: dict | None = None):
    import torch

    extra = {META_KEY: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still works
            net = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except Exception as e:  # torch.jit raises RuntimeError subclasses for foreign files
        raise ModelFileError(f"{path}: not a TorchScript model ({e})") from None
    pre = _record(extra[META_KEY] or None, spec, str(path), {})
    net.eval()

    @torch.no_grad()
    def run(x: torch.Tensor) -> torch.Tensor:
        return net(x)

    return FaceModel(pre, run, "torchscript", str(path), net)


MODEL_SUFFIXES = (".safetensors", ".onnx", ".pt", ".ts", ".torchscript")


def is_model(arg: str | os.PathLike) -> bool:
    """Whether a command-line argument names a model (rather than photos): a
    `pretrained:NAME`, a weights or exported file, or a run folder (one still training
    is a model not made yet, never a folder of photos)."""
    from facetrain.inference import pretrained

    p = Path(arg)
    if pretrained.is_spec(arg):
        return True
    return p.suffix in MODEL_SUFFIXES or (p.is_dir() and ((p / WEIGHTS).is_file() or is_run(p)))


def split_model(args: list[str]) -> tuple[str | None, list[str]]:
    """[MODEL] INPUTS...: the model the arguments start with (None: the default), and the
    rest. MODEL may be left out because photos and face folders are never models."""
    if args and is_model(args[0]):
        return args[0], list(args[1:])
    return None, list(args)
