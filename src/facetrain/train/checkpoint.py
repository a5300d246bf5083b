"""Checkpoints: tensors in safetensors, everything else in JSON — nothing needs pickle.

A checkpoint is a folder `RUN/checkpoints/step-NNNNNNN/` holding `state.safetensors` and
`state.json`; the small pointer files `last`, `previous` and `best` name folders and are
replaced atomically after the folder is complete, so a kill at any moment leaves the
previous checkpoint in force. Two generations are kept (`last` and `previous`, plus
`best`): when the newest is damaged or gone, loading says so and takes the one before.
Older folders are removed once no pointer names them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from facetrain import atomic
from facetrain.errors import FacetrainError


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
    try:  # the half-written folder is given back at once
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                  str(tmp / "state.safetensors"))  # fmt: skip
        (tmp / "state.json").write_text(json.dumps(meta, indent=1))
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, SafetensorError):
            raise _as_os_error(e) from None
        raise
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    if "last" in pointers and (older := _named(root, "last")) not in (None, name):
        atomic.write_text(root / "previous", older + "\n")
    for p in pointers:
        atomic.write_text(root / p, name + "\n")
    _prune(root)
    return folder


POINTERS = ("last", "previous", "best")


def restate(run: Path, name: str, changes: dict, pointers: tuple[str, ...] = ()) -> None:
    """Amend the metadata of checkpoint folder `name` (its tensors stay as written) and
    point `pointers` at it: what the run learnt about the same weights afterwards (their
    verification)."""
    root = run / "checkpoints"
    meta = json.loads((root / name / "state.json").read_text()) | changes
    atomic.write_text(root / name / "state.json", json.dumps(meta, indent=1))
    for p in pointers:
        atomic.write_text(root / p, name + "\n")
    _prune(root)


def _as_os_error(e: SafetensorError) -> Exception:
    """safetensors' writer reports an I/O error as its own error ('… No space left on device
    (os error 28)'): the OSError it was, so that a full disk is said as one (what to do, not
    a traceback). It writes from the tensors' memory; building the file's bytes in Python
    instead held up to two more copies of a checkpoint."""
    found = re.search(r"\(os error (\d+)\)", str(e))
    return OSError(int(found[1]), os.strerror(int(found[1]))) if found else e


def trained(run: Path) -> bool:
    """Whether the run has saved a checkpoint: it has trained, so its settings and its
    snapshot of the data bind every resume. (Before that, a start binds nothing.)"""
    return (run / "checkpoints" / "last").exists()


def _prune(root: Path) -> None:
    keep = {_named(root, p) for p in POINTERS}
    for d in root.iterdir():
        if d.is_dir() and d.name not in keep:
            shutil.rmtree(d, ignore_errors=True)


def load(
    run: Path, pointer: str = "last", on_skip=None
) -> tuple[dict[str, torch.Tensor], dict] | None:
    """The checkpoint `pointer` names; for `last`, when that one is damaged or gone, the
    one before (`previous`, then any complete folder, newest first), each one passed over
    reported to `on_skip(message)`. None when there is no checkpoint at all; CheckpointError
    when there are some and none can be read."""
    root = run / "checkpoints"
    problems = []
    for name in _candidates(root, pointer):
        try:
            return _read(root / name)
        except CheckpointError as e:
            problems.append(str(e))
            if on_skip is not None:
                on_skip(f"{e}; trying the one before")
    if problems:
        raise CheckpointError("no usable checkpoint: " + "; ".join(problems) +
                              f" — delete {root} to start the run over")  # fmt: skip
    return None


def rows_kept(run: Path, key: str) -> int | None:
    """How many rows tensor `key` has in the checkpoint a resume would take (its header
    only is read): what a run started with decides what it goes on with. None when there
    is no checkpoint, or none that holds `key`."""
    from safetensors import safe_open

    for name in _candidates(run / "checkpoints", "last"):
        try:
            with safe_open(str(run / "checkpoints" / name / "state.safetensors"), "pt") as f:
                held = key in f.keys()  # noqa: SIM118 (safe_open has no `in`)
                return f.get_slice(key).get_shape()[0] if held else None
        except Exception:  # damaged or gone: the resume takes the one before, so do we
            continue
    return None


def _candidates(root: Path, pointer: str) -> list[str]:
    """The checkpoint folders to try, in order: the one `pointer` names; for `last`, then
    `previous`, then any folder, newest first."""
    names = [_named(root, pointer)]
    if pointer == "last" and root.is_dir():
        names += [_named(root, "previous")]
        names += sorted((d.name for d in root.iterdir() if d.name.startswith("step-")),
                        reverse=True)  # fmt: skip
    return list(dict.fromkeys(n for n in names if n))


def _named(root: Path, pointer: str) -> str | None:
    """The checkpoint folder a pointer file names; None when it is missing or names no
    folder of ours (damaged, or edited: never a path out of the run)."""
    try:
        name = (root / pointer).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return name if re.fullmatch(r"step-\d+", name) else None


def _read(folder: Path) -> tuple[dict[str, torch.Tensor], dict]:
    try:
        meta = json.loads((folder / "state.json").read_text())
        return load_file(str(folder / "state.safetensors")), meta
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {folder} is gone or incomplete") from None
    except Exception as e:  # safetensors raises its own SafetensorError, JSON ValueError
        raise CheckpointError(f"checkpoint {folder} is damaged ({type(e).__name__}: {e})") from None


class CheckpointError(FacetrainError):
    """No checkpoint of a run can be read."""
