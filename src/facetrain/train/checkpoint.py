"""Checkpoints: tensors in safetensors, everything else in JSON — nothing needs pickle.

A checkpoint is a folder `RUN/checkpoints/step-NNNNNNN/` holding `state.safetensors` and
`state.json`; the small pointer files `last` and `best` name the folder to use and are
replaced atomically after the folder is complete, so a kill at any moment leaves the
previous checkpoint in force. Older folders are removed once no pointer names them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from facetrain import atomic


def flatten_optimizer(sd: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors: dict[str, torch.Tensor] = {}
    rest: dict = {"param_groups": sd["param_groups"], "state": {}}
    for idx, st in sd["state"].items():
        rest["state"][str(idx)] = {}
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim/{idx}/{k}"] = v.detach().cpu().contiguous()
            else:
                rest["state"][str(idx)][k] = v
    return tensors, rest


def unflatten_optimizer(tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    state: dict = {int(i): dict(v) for i, v in rest["state"].items()}
    for key, t in tensors.items():
        if key.startswith("optim/"):
            _, idx, name = key.split("/", 2)
            state.setdefault(int(idx), {})[name] = t
    return {"state": state, "param_groups": rest["param_groups"]}


def save(
    run: Path,
    name: str,
    tensors: dict[str, torch.Tensor],
    meta: dict,
    pointers: tuple[str, ...] = ("last",),
) -> Path:
    """Write checkpoint folder `name` and point `pointers` at it."""
    root = run / "checkpoints"
    folder = root / name
    tmp = root / f".{name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in tensors.items()},
        str(tmp / "state.safetensors"),
    )
    (tmp / "state.json").write_text(json.dumps(meta, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    for p in pointers:
        atomic.write_text(root / p, name + "\n")
    _prune(root)
    return folder


def _prune(root: Path) -> None:
    keep = {(root / p).read_text().strip() for p in ("last", "best") if (root / p).exists()}
    for d in root.iterdir():
        if d.is_dir() and d.name not in keep:
            shutil.rmtree(d, ignore_errors=True)


def load(run: Path, pointer: str = "last") -> tuple[dict[str, torch.Tensor], dict] | None:
    ptr = run / "checkpoints" / pointer
    if not ptr.exists():
        return None
    folder = run / "checkpoints" / ptr.read_text().strip()
    return load_file(str(folder / "state.safetensors")), json.loads(
        (folder / "state.json").read_text()
    )
