"""A run folder's names and its one metrics and schedule readers, shared by train,
evaluate, experiment and export (the base level: it imports nothing of facetrain's, so
evaluate reads a run without importing train).

    RUN/config.json        the settings the run started with
    RUN/revision.txt       the code revision; `resumed with …` / `resumed on …` lines for
                           each change of code, settings, schedule file or machine
    RUN/machine.json       what the run started on: versions, processor, GPU
    RUN/schedule.json      a schedule file's rates, as the run trains by them
    RUN/metrics.jsonl      one JSON line per log, evaluation and event
    RUN/tensorboard/       the same scalars for TensorBoard (or --log-dir)
    RUN/checkpoints/       see train/checkpoint.py
    RUN/model.safetensors  the final weights with their preprocessing record
    RUN/.lock              held by the process training there (facetrain.lock)

An aligned dataset folder carries `align_config.json`, the alignment record that `align`
or `rewarp` wrote and `pack` and training read back (ALIGN_RECORD; its one reader is
`facetrain.data.alignment`).

`read_metrics` is the one reader of metrics.jsonl (plots, report and experiment use it): a
line torn by a kill or damaged by hand is skipped, never a traceback. What a training run
writes into its folder is `train/records.py`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

CONFIG = "config.json"
REVISION = "revision.txt"
MACHINE = "machine.json"
SCHEDULE = "schedule.json"
METRICS = "metrics.jsonl"
LOCK = ".lock"
WEIGHTS = "model.safetensors"
# what a command says of a run folder that has no WEIGHTS yet (still training, or stopped)
UNFINISHED = (f"this run has not finished: no {WEIGHTS} yet (the same `facetrain train` "
              "command goes on with it)")  # fmt: skip
ALIGN_RECORD = "align_config.json"
# what every facetrain run folder has; or a teacher's embeddings put there before the run
# starts (bench/gpu_recipes.py computes them once for several distillation runs), in this
# layout or the earlier one
RUN_MARKERS = (REVISION, "checkpoints", "teacher/work.json", "teacher/meta.json")


def is_run(folder: str | os.PathLike) -> bool:
    """Whether a folder is a training run's (its settings and code revision are there),
    finished or not."""
    return (Path(folder) / CONFIG).is_file() and (Path(folder) / REVISION).is_file()


def read_rates(run: str | os.PathLike) -> list[list] | None:
    """The `[epoch, rate]` lines of RUN/schedule.json (the one reader: training and the
    report); None when there are none to read (a run started before the record, or a file
    damaged by hand)."""
    try:
        table = json.loads((Path(run) / SCHEDULE).read_text(encoding="utf-8"))
        return [[int(e), float(v)] for e, v in table["rates"]] or None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_metrics(run: str | os.PathLike) -> list[dict]:
    """The records of RUN/metrics.jsonl, skipping lines that are not JSON objects."""
    path = Path(run) / METRICS
    if not Path(run).is_dir():
        raise FileNotFoundError(f"{run}: no such run folder")
    if not path.is_file():
        raise FileNotFoundError(f"{run}: no {METRICS} (not a facetrain run folder?)")
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out
