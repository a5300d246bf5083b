"""A saved model carries its preprocessing, so every user of it prepares faces the same way.

`model.safetensors` holds the backbone weights and, in the safetensors header metadata, a
`facetrain` JSON record: model name, embedding size, input size, normalization, the
alignment that made its training faces, and a verification threshold calibrated on
validation pairs. (FaceNet's released tools standardised images differently from how the
models were trained; reading the recipe from the weights file makes that impossible.)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from facetrain.models import create_model


class ModelFileError(ValueError):
    pass


@dataclass
class Preprocess:
    model: str
    embedding_size: int
    input_size: int
    normalize: str = "fixed"
    crop: int | None = None  # centre crop before resizing (the model trained on random crops)
    alignment: dict = field(default_factory=lambda: {"mode": "similarity", "size": 112})
    flip: str = "sum"  # how the flipped face joins the embedding: sum, concat or none
    distance: str = "euclidean"  # what `threshold` measures (see evaluate.verification)
    threshold: float | None = None  # "same person" below it
    threshold_source: str = ""

    @classmethod
    def from_dict(cls, d: dict, source: str = "") -> Preprocess:
        """A record from JSON, with a clear error for missing or unknown fields."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ModelFileError(f"{source}: unknown preprocessing fields {unknown}")
        try:
            return cls(**d)
        except TypeError as e:
            raise ModelFileError(f"{source}: incomplete preprocessing record ({e})") from None


def save_model(path: str | os.PathLike, model: torch.nn.Module, pre: Preprocess) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(tmp), metadata={"facetrain": json.dumps(asdict(pre))})
    os.replace(tmp, path)
    return path


def load_model(path: str | os.PathLike, device: str = "cpu") -> tuple[torch.nn.Module, Preprocess]:
    """Load RUN (its model.safetensors) or a weights file; returns (eval-mode model, recipe)."""
    p = Path(path)
    if p.is_dir():
        p = p / "model.safetensors"
    if not p.is_file():
        raise ModelFileError(f"{path}: no model here (expected a run folder or a .safetensors)")
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = (f.metadata() or {}).get("facetrain")
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except Exception as e:  # safetensors raises its own error types for foreign files
        raise ModelFileError(f"{p}: not a safetensors weights file ({e})") from None
    if meta is None:
        raise ModelFileError(f"{p}: no facetrain preprocessing record (not saved by facetrain)")
    pre = Preprocess.from_dict(json.loads(meta), str(p))
    model = create_model(pre.model, pre.embedding_size)
    state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ModelFileError(f"{p}: weights do not fit {pre.model}: {e}") from None
    return model.to(device).eval(), pre


@dataclass
class FaceModel:
    """A model ready to embed, whatever its format: `run` maps a prepared float batch
    (N, 3, S, S) to raw embeddings; `pre` says how to prepare it."""

    pre: Preprocess
    run: Callable[[torch.Tensor], torch.Tensor]
    backend: str
    source: str
    module: torch.nn.Module | None = None

    def embed(self, x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        z = self.run(x)
        return torch.nn.functional.normalize(z, dim=1) if normalize else z

    def eval(self) -> FaceModel:
        return self


def read_spec(path: str | os.PathLike) -> dict:
    """A preprocessing spec (JSON file) for a model made elsewhere."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{path}: cannot read the preprocessing spec ({e})") from None


def open_model(
    path: str | os.PathLike,
    device: str = "cpu",
    backend: str = "auto",
    spec: dict | None = None,
) -> FaceModel:
    """Any model facetrain can use: a run folder, model.safetensors, an exported ONNX or
    TorchScript file. backend `onnx` runs a run folder's exported model.onnx with
    onnxruntime. `spec` supplies (or overrides) the preprocessing of a foreign model."""
    from facetrain.export import load_onnx, load_torchscript

    p = Path(path)
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
    if p.suffix == ".onnx":
        return load_onnx(p, device, spec)
    if backend == "onnx":
        raise ModelFileError(f"{path}: --backend onnx needs an .onnx file or a run folder")
    if p.suffix in (".pt", ".ts", ".torchscript"):
        return load_torchscript(p, device, spec)
    net, pre = load_model(p, device)
    if spec:
        pre = Preprocess.from_dict(asdict(pre) | spec, str(path))
    return FaceModel(pre, lambda x: net.embed(x, normalize=False), "torch", str(p), net)
