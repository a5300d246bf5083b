"""A saved model carries its preprocessing, so every user of it prepares faces the same way.

`model.safetensors` holds the backbone weights and, in the safetensors header metadata, a
`facetrain` JSON record: model name, embedding size, input size, normalization, the
alignment that made its training faces, and a verification threshold calibrated on
validation pairs. (FaceNet's released tools standardised images differently from how the
models were trained; reading the recipe from the weights file makes that impossible.)

This module reads and writes those files by path alone; `saved.py` opens a MODEL as users
name it (`pretrained:NAME`, a run folder, an exported file).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors import safe_open

from facetrain import foreign
from facetrain.errors import FacetrainError
from facetrain.run_folder import UNFINISHED, WEIGHTS, is_run

if TYPE_CHECKING:  # torch is imported where weights are read or written, not to run a model
    import torch


class ModelFileError(FacetrainError):
    pass


META_KEY = "facetrain"  # where exported files keep the preprocessing record


@dataclass
class Preprocess:
    model: str
    embedding_size: int
    input_size: int
    normalize: str = "fixed"
    crop: int | None = None  # centre crop before resizing (the model trained on random crops)
    alignment: dict = field(default_factory=lambda: {"mode": "similarity", "size": 112})
    flip: str = "sum"  # how the flipped face joins the embedding: sum, concat or none
    distance: str = "squared_l2"  # what `threshold` measures (see evaluate.verification)
    threshold: float | None = None  # "same person" below it
    threshold_source: str = ""
    # "same person" beyond doubt below it: where different people are at most 1% of pairs
    # on every population measured (None: not measured); between it and the threshold the
    # model crowds some populations (`facetrain eval-populations`, evaluate/populations.py)
    sure_below: float | None = None
    sure_source: str = ""

    def __post_init__(self):
        from facetrain.distances import canonical

        try:
            self.distance = canonical(self.distance)
        except ValueError as e:
            raise ModelFileError(f"preprocessing record: {e}") from None

    @classmethod
    def from_dict(cls, d: dict, source: str = "") -> Preprocess:
        """A record from JSON, with a clear error for missing or unknown fields."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ModelFileError(f"{source}: unknown preprocessing fields {unknown}")
        try:
            pre = cls(**d)
        except TypeError as e:
            raise ModelFileError(f"{source}: incomplete preprocessing record ({e})") from None
        from facetrain.data.alignment import alignment_problem

        if why := alignment_problem(pre.alignment):
            raise ModelFileError(f"{source}: its record's alignment cannot be followed ({why})")
        return pre


# What decides a face's embedding: two records alike in these embed every face alike. The
# rest (threshold, sure_below, where they came from) calibrates decisions and may be
# measured again without making a model another one.
EMBEDDING_FIELDS = ("model", "embedding_size", "input_size", "normalize", "crop", "alignment",
                    "flip")  # fmt: skip


def save_model(path: str | os.PathLike, model: torch.nn.Module, pre: Preprocess) -> Path:
    """Weights and preprocessing record in one safetensors file, written atomically."""
    from safetensors.torch import save

    from facetrain import atomic

    path = Path(path)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    data = save(tensors, metadata={"facetrain": json.dumps(asdict(pre))})
    with atomic.atomic_open(path, "wb") as f:
        f.write(data)
    return path


def read_record(path: str | os.PathLike) -> Preprocess:
    """The preprocessing record of a facetrain weights file, without reading the weights."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = (f.metadata() or {}).get("facetrain")
    except Exception as e:  # safetensors raises its own error types for foreign files
        raise ModelFileError(f"{path}: not a safetensors weights file ({e})") from None
    if meta is None:
        raise ModelFileError(f"{path}: no facetrain preprocessing record (not saved by facetrain)")
    return Preprocess.from_dict(record_dict(meta, str(path)), str(path))


def load_weights(path: str | os.PathLike, device: str = "cpu", name=None):
    """A facetrain weights file (or a run folder's) as (eval-mode model, recipe); `name`
    is what errors call it (the MODEL as the user gave it)."""
    p = Path(path)
    if p.is_dir():
        p = p / WEIGHTS
    if not p.is_file() and is_run(p.parent):
        raise ModelFileError(f"{name or path}: {UNFINISHED}")
    if not p.is_file():
        raise ModelFileError(
            f"{name or path}: no model here (expected a run folder or a .safetensors)"
        )
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = (f.metadata() or {}).get("facetrain")
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except Exception as e:  # safetensors raises its own error types for foreign files
        raise ModelFileError(f"{p}: not a safetensors weights file ({e})") from None
    if meta is None:
        raise ModelFileError(f"{p}: no facetrain preprocessing record (not saved by facetrain)")
    from facetrain.models import create_model
    from facetrain.models.fit import misfit

    pre = Preprocess.from_dict(record_dict(meta, str(p)), str(p))
    model = create_model(pre.model, pre.embedding_size)
    state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    why = misfit(model.state_dict(), state)
    if why:
        raise ModelFileError(f"{p}: weights do not fit its record's {pre.model}: {why}")
    model.load_state_dict(state)
    return model.to(device).eval(), pre


def record_dict(meta: str, source: str) -> dict:
    """The facetrain record in a model file's metadata (ModelFileError when damaged)."""
    try:
        d = foreign.loads(meta)
    except ValueError as e:
        raise ModelFileError(f"{source}: its facetrain record cannot be read ({e})") from None
    if not isinstance(d, dict):
        raise ModelFileError(f"{source}: its facetrain record is not a JSON object")
    return d
