"""Learning-rate schedules as functions of the (fractional) epoch.

`file`: FaceNet's schedule file — `epoch: lr` lines, `#` comments; the rate of the last
line whose epoch is ≤ the current one applies (also at and after the last line, where
FaceNet's reader returned None); a negative rate (or `-`) means stop training.
`step`, `cosine`, `poly`, `constant`: from `lr`, after a linear warm-up.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

SCHEDULES = ("constant", "step", "cosine", "poly", "file")


def read_schedule_file(path: str | os.PathLike) -> list[tuple[int, float]]:
    """The `(epoch, rate)` lines of a schedule file, sorted; ValueError naming the file
    (and the line) where it is not one."""
    entries = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file of 'epoch: learning_rate' lines") from None
    for n, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            e, v = (x.strip() for x in line.split(":"))
            entries.append((int(e), -1.0 if v == "-" else float(v)))
        except ValueError:
            raise ValueError(f"{path}:{n}: expected 'epoch: learning_rate'") from None
        if not math.isfinite(entries[-1][1]):  # (nan, inf: a run of non-finite steps)
            raise ValueError(f"{path}:{n}: the rate must be a number (or '-' to stop)")
    if not entries:
        raise ValueError(f"{path}: no 'epoch: learning_rate' lines")
    entries.sort()
    if entries[0][0] > 0:
        raise ValueError(f"{path}: the first line must cover epoch 0")
    return entries


@dataclass
class Schedule:
    kind: str = "cosine"
    lr: float = 0.1
    epochs: int = 10
    warmup_epochs: float = 0.0
    steps: tuple[int, ...] = ()
    gamma: float = 0.1
    power: float = 2.0
    min_lr: float = 0.0
    entries: list[tuple[int, float]] = field(default_factory=list)

    def __post_init__(self):
        if self.kind not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.kind!r}; choose from {', '.join(SCHEDULES)}")

    def __call__(self, epoch: float) -> float:
        """The rate at fractional epoch `epoch` (negative: stop)."""
        if self.kind == "file":
            rate = self.entries[0][1]
            for e, v in self.entries:
                if e <= int(epoch):
                    rate = v
            return rate
        if self.warmup_epochs and epoch < self.warmup_epochs:
            return self.lr * (epoch + 1e-3) / self.warmup_epochs
        if self.kind == "constant":
            return self.lr
        if self.kind == "step":
            return self.lr * self.gamma ** sum(epoch >= s for s in self.steps)
        t = (epoch - self.warmup_epochs) / max(1e-9, self.epochs - self.warmup_epochs)
        t = min(max(t, 0.0), 1.0)
        if self.kind == "cosine":
            return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * t))
        return self.min_lr + (self.lr - self.min_lr) * (1 - t) ** self.power


def ramp(value: float, epoch: float, over: float) -> float:
    """`value` scaled linearly from 0 at epoch 0 to full at epoch `over` (0: full at once).

    Used for the margin of ArcFace/CosFace: a margin switched on from random weights can hold
    every true-class logit below the others, and the embedding collapses; ramping it lets the
    classes separate first (as the margin-warm-up recipes of the face literature do)."""
    return value if over <= 0 else value * min(1.0, max(0.0, epoch) / over)
