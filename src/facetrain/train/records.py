"""What a training run writes into its run folder (names: `facetrain.run_folder`): the code
revision, settings and machine it started from (and every resume's changes), the metrics
log with its TensorBoard copy, and the checks before a run starts or resumes there."""

from __future__ import annotations

import json
from pathlib import Path

from facetrain import atomic
from facetrain.run_folder import (
    CONFIG,
    LOCK,
    MACHINE,
    METRICS,
    REVISION,
    RUN_MARKERS,
    SCHEDULE,
    read_rates,
)
from facetrain.train import checkpoint
from facetrain.train.schedule import read_schedule_file

SETTINGS = "resumed with settings "
RATES = "resumed with schedule_file "  # its rates changed since the run started
ON = "resumed on "  # another machine, or other versions of what ran the run


def check_own(run: Path) -> None:
    """A run folder is facetrain's own: a folder that exists with other things in it is
    refused, so a training run never overwrites a user's files (config.json, say)."""
    from facetrain.errors import FacetrainError

    if not run.exists():
        return
    if not run.is_dir():
        raise FacetrainError(f"--out {run}: is a file, not a run folder")
    entries = sorted(p.name for p in run.iterdir() if p.name != LOCK)
    if entries and not any((run / m).exists() for m in RUN_MARKERS):
        raise FacetrainError(
            f"--out {run}: not a facetrain run folder (it holds {', '.join(entries[:3])}"
            f"{', …' if len(entries) > 3 else ''}); give a new or empty folder"
        )


def remove_if_unstarted(run: Path) -> None:
    """A run folder that holds only the records of a start (its settings, revision,
    machine, schedule file's rates and lock: refused before it packed a face or trained a
    step) is removed, by the call that made it: left, it reads as a run that has not
    finished."""
    import shutil

    records = {CONFIG, REVISION, MACHINE, SCHEDULE, LOCK}
    if run.is_dir() and all(p.name in records and p.is_file() for p in run.iterdir()):
        shutil.rmtree(run, ignore_errors=True)


def truncate_metrics(run: Path, step: int, owed: bool = False) -> None:
    """Drop log lines written after the checkpoint being resumed from; `owed`: that
    checkpoint owes its verification, so the lines of one cut short at its step go too."""
    path = run / METRICS
    if not path.exists():
        return
    keep = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            d = json.loads(line)
            at = d.get("step", 0)
            if at <= step and not (owed and at == step and "eval" in d):
                keep.append(line)
        except (json.JSONDecodeError, AttributeError):
            pass  # a line cut by a kill
    atomic.write_text(path, "".join(f"{ln}\n" for ln in keep))


def record_revision(path: Path, revision: str) -> None:
    """The first line is the revision the run started from; a resume with other code adds a
    `resumed with REV` line rather than hiding where the run came from."""
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    revisions = [line.removeprefix("resumed with ") for line in lines
                 if not line.startswith((SETTINGS, RATES, ON))]  # fmt: skip
    if not lines:
        lines = [revision]
    elif revision not in (revisions[0], revisions[-1]):
        lines.append(f"resumed with {revision}")
    atomic.write_text(path, "\n".join(lines) + "\n")


def record_config(run: Path, cfg) -> str | None:
    """config.json is the configuration the run started with. A resume (a checkpoint
    exists) with other settings — more threads, another device — keeps it and adds a
    `resumed with settings KEY=VALUE (was OLD)` line to revision.txt, the run's history.
    A config.json that cannot be read (edited by hand) is written anew with this resume's
    settings, the history says so, and so does the returned warning."""
    why = _record(run, CONFIG, cfg.flat(), SETTINGS, "table of settings")
    return f"{why}; it holds this resume's settings now (revision.txt says so)" if why else None


def _settings_of(path: Path) -> tuple[dict | None, str]:
    """The run's recorded settings, or None and why they cannot be read."""
    from facetrain import foreign

    return foreign.read_table(path, "table of settings")


def record_machine(run: Path, machine: dict) -> None:
    """machine.json is what the run started on (`devices.describe`): the versions and the
    processor its figures depend on. A resume elsewhere keeps it and adds a `resumed on
    KEY=VALUE (was OLD)` line to revision.txt, so a figure that does not repeat says why;
    a record that cannot be read, or a run from before there was one, gets this resume's
    and its history says so."""
    _record(run, MACHINE, machine, ON, "table",
            missing="the run's start was not recorded (before machine.json)")  # fmt: skip


def record_rates(run: Path, path: str, log=print) -> None:
    """RUN/schedule.json: the rates of a schedule file (`epoch: lr` lines) the run trains
    by. The file is read at every start and resume, as FaceNet read it every epoch, so
    that its owner can change a run's course: a resume that finds other rates follows
    them and adds `resumed with schedule_file rates=[…] (was […])` to the history. A file
    gone by a resume: the run goes on with the rates recorded, and says so."""
    old = read_rates(run) if checkpoint.trained(run) else None
    try:
        rates = [list(r) for r in read_schedule_file(path)]
    except OSError as e:
        if old is None:
            raise
        log(f"warning: schedule_file {path}: {e.strerror or e}; the run goes on with the "
            f"rates it recorded ({run / SCHEDULE})")  # fmt: skip
        return
    if old is not None and old != rates:
        _add_history(run, f"{RATES}rates={rates} (was {old})", RATES)
    atomic.write_text(run / SCHEDULE, json.dumps({"rates": rates}) + "\n")


def _record(run: Path, name: str, new: dict, kind: str, what: str,
            missing: str | None = None) -> str:  # fmt: skip
    """RUN/name holds what the run started with. A resume keeps it and adds a `kind
    KEY=VALUE (was OLD)` line to the history for what differs; a record that cannot be
    read (or is `missing`, when that says why) is written anew with this resume's, the
    history says so, and why is returned ("" otherwise). A record missing with no such
    reason, or of a run not trained yet, is written as it is now."""
    from facetrain import foreign

    path = run / name
    if checkpoint.trained(run) and (path.exists() or missing):
        old, why = foreign.read_table(path, what) if path.exists() else (None, missing)
        if old is not None:
            changed = [f"{k}={v!r} (was {old.get(k)!r})" for k, v in new.items()
                       if old.get(k) != v]  # fmt: skip
            _add_history(run, kind + ", ".join(changed) if changed else "", kind)
            return ""
        _add_history(run, f"{kind}unknown: {why}; it holds this resume's now", kind)
        atomic.write_text(path, json.dumps(new, indent=2) + "\n")
        return why
    atomic.write_text(path, json.dumps(new, indent=2) + "\n")
    return ""


def _add_history(run: Path, line: str, kind: str) -> None:
    """`line` at the end of revision.txt, unless it is empty or the last line of its `kind`
    said it already (a run resumed again the same way)."""
    hist = run / REVISION
    text = hist.read_text(errors="replace") if hist.exists() else ""
    said = [x for x in text.splitlines() if x.startswith(kind)]
    if line and line not in said[-1:]:
        atomic.write_text(hist, text + line + "\n")


# What the checkpoint's weights and state are shaped by: resumed with another value, they
# would not load (a RuntimeError deep in load_state_dict) or would mean something else.
SHAPING = ("model", "loss", "embedding_size", "input_size", "partial_fc", "teacher")


def check_resume(run: Path, cfg) -> None:
    """A run folder with a checkpoint goes on only with the settings that shaped it:
    ConfigError saying what differs and what to do, before anything is written."""
    from facetrain.train.settings import ConfigError

    path = run / CONFIG
    if not (path.exists() and checkpoint.trained(run)):
        return
    old, _ = _settings_of(path)
    if old is None:
        return  # a damaged record: record_config says so, the checkpoint's own check speaks
    new = cfg.flat()
    differ = [f"{k} {old.get(k)!r} (now {new.get(k)!r})" for k in SHAPING
              if k in old and old.get(k) != new.get(k)]  # fmt: skip
    if differ:
        raise ConfigError(
            f"{run} was started with {', '.join(differ)}: its checkpoint cannot go on with "
            "these settings. Resume with the run's own (leave them out, or `--config "
            f"{run}/config.json`), or give another --out for a new run"
        )


class MetricsLog:
    """metrics.jsonl and TensorBoard, written by the main process only (others: no-ops)."""

    def __init__(self, run: Path, log_dir: str, first_step: int, enabled: bool = True, log=print):
        self.enabled, self.tb = enabled, None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # the `tensorboard` extra: metrics.jsonl holds every figure
            log("TensorBoard is not installed (pip install 'facetrain[tensorboard]'): "
                "no event files; metrics.jsonl has every figure")  # fmt: skip
        else:
            events = Path(log_dir) if log_dir else run / "tensorboard"
            self.tb = SummaryWriter(str(events), purge_step=first_step or None)
        self.path, self.log = run / METRICS, log
        self.file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close)

    def emit(self, line: dict) -> None:
        if not self.enabled:
            return
        if not self.path.exists():  # deleted under a running job: start it again, say so
            self.file.close()
            self.file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
            self.log(f"warning: {self.path} was deleted while training; it starts again "
                     f"at step {line.get('step')} (the lines before are lost)")  # fmt: skip
        self.file.write(json.dumps(line) + "\n")
        self.file.flush()
        for k, v in line.items() if self.tb is not None else ():
            if isinstance(v, int | float) and k not in ("epoch", "step"):
                tag = f"{line['eval']}/{k}" if "eval" in line else f"train/{k}"
                self.tb.add_scalar(tag, v, line["step"])

    def close(self) -> None:
        if self.enabled:
            self.file.close()
        if self.tb is not None:
            self.tb.close()
