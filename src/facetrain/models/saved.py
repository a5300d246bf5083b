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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from facetrain.models import create_model


@dataclass
class Preprocess:
    model: str
    embedding_size: int
    input_size: int
    normalize: str = "fixed"
    crop: int | None = None  # centre crop before resizing (the model trained on random crops)
    alignment: dict = field(default_factory=lambda: {"mode": "similarity", "size": 112})
    threshold: float | None = None  # squared L2 between unit embeddings; "same" below it
    threshold_source: str = ""


def save_model(path: str | os.PathLike, model: torch.nn.Module, pre: Preprocess) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(tmp), metadata={"facetrain": json.dumps(asdict(pre))})
    os.replace(tmp, path)
    return path


class ModelFileError(ValueError):
    pass


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
    pre = Preprocess(**json.loads(meta))
    model = create_model(pre.model, pre.embedding_size)
    state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ModelFileError(f"{p}: weights do not fit {pre.model}: {e}") from None
    return model.to(device).eval(), pre
