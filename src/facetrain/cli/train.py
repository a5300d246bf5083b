"""Commands that train: train (settings resolved by facetrain.train.config), models."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from facetrain.cli.common import app
from facetrain.progress import console
from facetrain.train.settings import TrainConfig


def _dflt(text: str, setting: str) -> str:
    """Help with the value train uses when neither a flag nor --config sets the setting
    (the flags themselves default to "not given", so that a config file can set them)."""
    return f"{text}  [default: {TrainConfig().get(setting)}]"


def _next_steps(cfg: TrainConfig) -> str:
    """What a finished run is for next: its whole verification (all metrics, the ROC) on the
    sets it was checked on, and its report page (which shows both)."""
    import shlex

    run, e = shlex.quote(cfg.platform.out), cfg.eval
    sets = f" --pairs {shlex.quote(e.pairs)} --images {shlex.quote(e.images)}" if e.pairs else ""
    sets += "".join(f" --bin {shlex.quote(b)}" for b in e.bins)
    return (f"next: facetrain eval {run}{sets or ' --pairs PAIRS.txt --images FACES/'}"
            f" ; facetrain report {run}")  # fmt: skip


@app.command()
def train(
    data: Annotated[
        list[str] | None, typer.Option(help="Aligned faces: pack, folders (a:b) or lists.")
    ] = None,
    out: Annotated[
        str | None, typer.Option(help=_dflt("Run folder; the same --out resumes.", "out"))
    ] = None,
    model: Annotated[
        str | None, typer.Option(help=_dflt("Model name (see models).", "model"))
    ] = None,
    loss: Annotated[
        str | None,
        typer.Option(help=_dflt("softmax, arcface, cosface, triplet, contrastive.", "loss")),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help=_dflt("Passes over the data.", "epochs"))
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(help=_dflt("Images per optimizer step, all processes.", "batch_size")),
    ] = None,
    lr: Annotated[float | None, typer.Option(help=_dflt("Peak learning rate.", "lr"))] = None,
    device: Annotated[str | None, typer.Option(help=_dflt("cpu or cuda.", "device"))] = None,
    config: Annotated[Path | None, typer.Option(help="TOML or JSON file of settings.")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Any other setting, KEY=VALUE (repeatable): --list-settings."),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            "--data_dir",
            envvar="FACETRAIN_DATA_DIR",
            help="Platform: relative --data paths are under here (alone: --data).",
        ),
    ] = None,
    output_dir: Annotated[
        Path | None,
        typer.Option(
            "--output-dir",
            "--output_dir",
            envvar="FACETRAIN_OUTPUT_DIR",
            help="Platform: a relative --out is under here [OUTPUT_DIR/run].",
        ),
    ] = None,
    log_dir: Annotated[
        Path | None,
        typer.Option(
            "--log-dir",
            "--log_dir",
            envvar="FACETRAIN_LOG_DIR",
            help="Platform: TensorBoard events go here instead of RUN/tensorboard.",
        ),
    ] = None,
    work_dir: Annotated[
        Path | None,
        typer.Option(
            "--work-dir",
            "--work_dir",
            envvar="FACETRAIN_WORK_DIR",
            help="Platform: run from this folder (scratch space; relative paths start here).",
        ),
    ] = None,
    list_settings: Annotated[
        bool, typer.Option("--list-settings", help="Every setting: type, default, meaning.")
    ] = False,
    num_gpus: Annotated[
        int | None,
        typer.Option(
            "--num-gpus",
            "--num_gpus",
            envvar="FACETRAIN_NUM_GPUS",
            help="Platform: 0 = CPU; 1 = one GPU; N > 1 = N GPUs through torchrun.",
        ),
    ] = None,
) -> None:
    """Train an embedding model; re-running the same command resumes it exactly."""
    from facetrain.train.config import Platform, resolve
    from facetrain.train.loop import train as train_fn

    if list_settings:
        return _list_settings()
    if work_dir is not None:  # before resolving: relative paths start there
        work_dir.mkdir(parents=True, exist_ok=True)
        os.chdir(work_dir)
    flags = {"out": out, "model": model, "loss": loss, "epochs": epochs,
             "batch_size": batch_size, "lr": lr, "device": device}  # fmt: skip
    if data:
        flags["data"] = [r for spec in data for r in spec.split(":") if r]
    platform = Platform(
        *(None if d is None else str(d) for d in (data_dir, output_dir, log_dir)), num_gpus
    )
    cfg = resolve(config, flags, platform, set_)
    if num_gpus and num_gpus > 1 and "WORLD_SIZE" not in os.environ:
        _relaunch_with_torchrun(num_gpus)
    result = train_fn(cfg, log=console.print)
    if os.environ.get("RANK", "0") == "0":  # torchrun: rank 0 speaks for the job
        if result:
            console.print(f"final verification accuracy {result['accuracy']:.4f} ± "
                          f"{result['accuracy_std']:.4f}")  # fmt: skip
        console.print(f"run folder: {cfg.platform.out}")
        console.print(_next_steps(cfg), soft_wrap=True, highlight=False, markup=False)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # the job is done and every file written: leave without the interpreter's teardown,
        # where torch's gloo threads were destroyed still joinable now and then ("terminate
        # called without an active exception", SIGABRT, a failed job after a good run)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _list_settings() -> None:
    from facetrain.progress import stdout_console as console
    from facetrain.train.config import settings

    table = Table("setting", "type", "default", "meaning", title="--set KEY=VALUE")
    for row in settings():
        table.add_row(*row)
    console.print(table)


def _relaunch_with_torchrun(n: int) -> None:
    """--num-gpus N: the same command again as N processes under torchrun (PyTorch's own
    launcher; `python -m torch.distributed.run` is torchrun)."""
    argv = sys.argv[1:]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc_per_node={n}", "-m", "facetrain", *argv]
    console.print(f"starting {n} processes: {' '.join(cmd[1:])}")
    os.execv(sys.executable, cmd)


@app.command()
def models() -> None:
    """The architectures `--model` accepts, and the pretrained models any MODEL accepts."""
    from facetrain.inference import pretrained
    from facetrain.models import architectures
    from facetrain.progress import stdout_console as out

    table = Table(title="architectures (train --model NAME)")
    for col in ("name", "input", "embedding", "params"):
        table.add_column(col)
    for a in architectures():
        table.add_row(a.name, f"{a.input_size}²", str(a.embedding_size), f"{a.params / 1e6:.2f}M")
    out.print(table)
    table = Table(title="pretrained models (MODEL = pretrained:NAME)")
    table.add_column("name", no_wrap=True)  # what users type: never cut
    for col in ("input", "emb", "LFW (facetrain)"):
        table.add_column(col, no_wrap=True)
    for e in pretrained.ENTRIES.values():
        table.add_row(e.name, f"{e.input_size}²", str(e.embedding_size), e.lfw.split(" (")[0])
    out.print(table)
    for e in pretrained.ENTRIES.values():  # the long fields as paragraphs: they wrap whole
        out.print(f"\npretrained:{e.name} — {e.architecture}", style="bold", highlight=False)
        sure, crowded = pretrained.SURE_BELOW[e.name]
        every = (
            f"{crowded:.0f}% of different East-Asian people's pairs under its threshold; "
            f'"same" beyond doubt only below {sure:.3f} (bench/sure_threshold.py)'
        )
        for label, text in (("source", e.source), ("licence", e.licence), ("LFW", e.lfw),
                            ("every population", every),
                            ("measure it", f"$ {e.measured_by}")):  # fmt: skip
            out.print(f"  {label}: {text}", highlight=False)
    out.print(f"\ndefault MODEL where a command is given none: {pretrained.DEFAULT}")
