"""The state a run carries from step to step, and its save and restore.

`TrainState` is the loop's position and bookkeeping; `Checkpointer` writes it with every
module's weights, the optimizer and the grad scaler (see checkpoint.py for the folder
format) and puts them back. `NonFiniteGuard` decides what a non-finite step costs:
skipped, then a rollback to the last checkpoint at half the learning rate, then — when
rolling back does not help — a clear error instead of a run that never ends.

Partial FC's class centres live on several processes: its objective says which tensors are
rows, gathered whole into a checkpoint (any number of processes can resume it) and cut to
each process's own rows on restore.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from facetrain.errors import FacetrainError
from facetrain.train import checkpoint, distributed


class TrainingError(FacetrainError):
    """A run that cannot start or cannot go on: the message says why."""


@dataclass
class TrainState:
    epoch: int = 0
    batch: int = 0  # within the epoch
    step: int = 0  # global optimizer steps
    best: float = -1.0  # best accuracy on the first verification set
    lr_scale: float = 1.0  # halved by every rollback
    last_eval: dict = field(default_factory=dict)
    # the epoch whose verification the checkpoint at `step` still owes (None: none owed)
    eval_due: int | None = None
    # the step whose weights RUN/model.safetensors holds, once the run has written it
    model_written: int | None = None
    # the current epoch's step losses so far: its mean loss is over all its steps, the same
    # after a resume or a rollback as in a run that never stopped
    loss_sum: float = 0.0
    loss_steps: int = 0

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def update(self, d: dict) -> None:
        """From a checkpoint's metadata; one written before a field existed keeps its
        default."""
        for k, v in self.as_dict().items():
            setattr(self, k, d.get(k, v))


class Checkpointer:
    """Save and restore a run's modules, optimizer, scaler and state."""

    def __init__(self, run: Path, modules: dict[str, nn.Module], opt, scaler, state: TrainState,
                 dd: distributed.Dist, config: str, objective=None):  # fmt: skip
        self.run, self.modules, self.opt, self.scaler = run, modules, opt, scaler
        self.state, self.dd, self.config = state, dd, config
        self.objective = objective  # what of the tensors is whose (Partial FC's rows)

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {f"{n}.{k}": v for n, m in self.modules.items() for k, v in m.state_dict().items()}
        opt_t, self._opt_rest = checkpoint.flatten_optimizer(self.opt.state_dict())
        out |= opt_t
        return out if self.objective is None else self.objective.checkpoint_out(out, self.opt)

    @property
    def folder_name(self) -> str:
        """The checkpoint folder of the current step (`checkpoints/step-NNNNNNNN`)."""
        return f"step-{self.state.step:08d}"

    def save(self, pointers: tuple[str, ...] = ("last",)) -> None:
        """Every process calls this (Partial FC gathers); the main one writes."""
        tensors = self.tensors()
        meta = dict(self.state.as_dict(), optimizer=self._opt_rest,
                    scaler=self.scaler.state_dict(), config=self.config,
                    world_size=self.dd.world)  # fmt: skip
        if self.dd.main:
            checkpoint.save(self.run, self.folder_name, tensors, meta, pointers)
        distributed.barrier()

    def restate(self, pointers: tuple[str, ...] = ("last",)) -> None:
        """Record the state (a verification's figures) in the checkpoint just saved at this
        step, without writing its tensors again, and point `pointers` at it."""
        if self.dd.main:
            checkpoint.restate(self.run, self.folder_name, self.state.as_dict(), pointers)
        distributed.barrier()

    def restore(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        if self.objective is not None:
            tensors = self.objective.checkpoint_in(tensors, self.opt)
        for n, m in self.modules.items():
            m.load_state_dict(
                {k[len(n) + 1 :]: v for k, v in tensors.items() if k.startswith(n + ".")}
            )
        self.opt.load_state_dict(checkpoint.unflatten_optimizer(tensors, meta["optimizer"]))
        if meta.get("scaler"):
            self.scaler.load_state_dict(meta["scaler"])
        self.state.update(meta)

    def load(self, on_skip=None) -> dict | None:
        """Restore the last usable checkpoint; its metadata, or None when there is none.
        A damaged newest one is reported to on_skip and the one before used."""
        loaded = checkpoint.load(self.run, on_skip=on_skip)
        if loaded is None:
            return None
        self.restore(*loaded)
        return loaded[1]


def all_finite(tensors: list[torch.Tensor]) -> bool:
    """Whether every value of every tensor is finite, in one host sync (a check per tensor
    costs a GPU one sync per gradient): the largest magnitude of each, summed, is finite
    only if each is — max-norms, as squares would overflow for large finite values."""
    if not tensors:
        return True
    return bool(torch.isfinite(torch.stack(torch._foreach_norm(tensors, float("inf"))).sum()))


def finite_weights(modules: dict[str, nn.Module]) -> bool:
    """Whether every floating-point parameter and buffer is finite (one host sync)."""
    return all_finite([t for m in modules.values() for t in m.state_dict().values()
                       if t.is_floating_point()])  # fmt: skip


@dataclass
class NonFiniteGuard:
    """Counts non-finite steps: `max_in_a_row` of them roll back to the last checkpoint
    (at half the learning rate); more than `max_rollbacks` rollbacks end the run."""

    max_in_a_row: int
    max_rollbacks: int = 3
    in_a_row: int = 0
    rollbacks: int = 0

    def __call__(self, finite: bool) -> str:
        """'ok', 'skip' (drop this step) or 'rollback' (return to the last checkpoint)."""
        if finite:
            self.in_a_row = 0
            return "ok"
        self.in_a_row += 1
        if self.in_a_row < self.max_in_a_row:
            return "skip"
        self.in_a_row = 0
        self.rollbacks += 1
        if self.rollbacks > self.max_rollbacks:
            raise TrainingError(
                f"training diverged: still non-finite after {self.max_rollbacks} rollbacks, "
                "each at half the learning rate; lower lr or clip_grad"
            )
        return "rollback"
