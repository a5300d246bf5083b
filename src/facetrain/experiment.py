"""`make accuracy` / `python -m facetrain.experiment RECIPE...`: a recipe end to end.

For each recipe: pack ../shared/datasets/mini-train once (runs/packs/mini-train), train
(`facetrain train --config RECIPE`, resumable: run it again after an interruption),
evaluate on LFW's 6,000 pairs (`facetrain eval`, writing RUN/eval/) and write the report
page. The LFW accuracy is the last line printed.

`--set KEY=VALUE` (repeatable) overrides a setting of every recipe, e.g. `--set device=cuda`
for a GPU or `--set threads=1` for two runs side by side on two cores.

`python -m facetrain.experiment --table RUN...` prints the finished runs as the markdown
rows of docs/benchmarks.md (recipe, loss, backbone, epochs, training time, LFW figures).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from facetrain import foreign
from facetrain.demo import eval_step, pack_step, report_step, shared_dataset, step
from facetrain.errors import FacetrainError
from facetrain.losses.margins import DEFAULT_MARGIN
from facetrain.progress import console, counted
from facetrain.run_folder import CONFIG, read_metrics
from facetrain.train.config import resolve

PACK = Path("runs/packs/mini-train")
# Smaller training sets a recipe may name as its data (how accuracy grows with data): the
# train side of a `facetrain split` of shared datasets (seed 0), made on first use —
# path: (datasets, by, share that goes to val).
SUBSETS = {
    "runs/subsets/half-identities/train.txt": (["mini-train"], "identity", 0.5),
    "runs/subsets/half-images/train.txt": (["mini-train"], "image", 0.5),
    "runs/subsets/two-thirds/train.txt": (["mini-train", "more-train"], "identity", 0.3333),
    # issue 9's curve of distillation against the number of unlabelled faces (~5k, ~15k)
    "runs/subsets/faces-5k/train.txt": (["mini-train", "more-train"], "image", 0.8466),
    "runs/subsets/faces-15k/train.txt": (["mini-train", "more-train"], "image", 0.5398),
}


# faces in another model's geometry, made on first use: the data of fine-tuning recipes
REWARPED = {"runs/data/mini-train-dlib": ("mini-train", "pretrained:dlib_resnet")}


def rewarped(folder: str) -> None:
    """`facetrain rewarp SHARED/NAME FOLDER --model MODEL`, once."""
    from facetrain.align.rewarp import rewarp_dataset
    from facetrain.inference.saved import open_model

    name, model = REWARPED[folder]
    src = shared_dataset(name)
    step(f"rewarp {src} {folder} --model {model}")
    rewarp_dataset([str(src)], folder, open_model(model).pre.alignment)


def subset(path: str) -> None:
    """`facetrain split SHARED/A:SHARED/B OUT --by BY --val-fraction F` (seed 0)."""
    from facetrain.data.split import split

    names, by, fraction = SUBSETS[path]
    roots = ":".join(str(shared_dataset(n)) for n in names)
    step(f"split {roots} {Path(path).parent} --by {by} --val-fraction {fraction}")
    split(roots, Path(path).parent, by=by, fraction=fraction)


def main(recipes: list[str], overrides: list[str] | None = None) -> None:
    """overrides: KEY=VALUE training settings applied to every recipe (`--set device=cuda`)."""
    from facetrain.train.loop import train

    configs = checked(recipes, overrides)  # every recipe, before the first one runs
    mini, lfw = shared_dataset("mini-train"), shared_dataset("lfw")
    if mini is None or lfw is None:
        console.print("error: needs ../shared/datasets/mini-train and lfw", style="bold red")
        raise SystemExit(2)
    if not (PACK / "meta.json").exists():
        pack_step(str(mini), PACK)
    lines = []
    for recipe, cfg in zip(recipes, configs):
        for d in cfg.data.paths:
            if d in SUBSETS and not Path(d).exists():
                subset(d)
            if d in REWARPED:
                rewarped(d)  # resumable: faces done are skipped
        t0 = time.perf_counter()
        step(f"train --config {recipe}" + "".join(f" --set {kv}" for kv in overrides or []))
        train(cfg, log=console.print)
        minutes = (time.perf_counter() - t0) / 60
        m = eval_step(Path(cfg.platform.out), lfw)
        report_step(Path(cfg.platform.out))
        lines.append(
            f"{recipe}: LFW accuracy {m['accuracy']:.4f} ± {m['accuracy_std']:.4f}, "
            f"VAL@FAR=1e-3 {m['val']:.4f}, AUC {m['auc']:.4f} "
            f"({cfg.platform.out}; this call {minutes:.1f} min)"
        )
    console.rule("results", style="bold green")
    for line in lines:
        print(line)


def checked(recipes: list[str], overrides: list[str] | None) -> list:
    """Each recipe's settings; the mistakes of all of them said at once, exit 2. A recipe
    was checked as its turn came: a mistake in the second found after the first trained
    (hours), and as a traceback."""
    configs, wrong = [], []
    for recipe in recipes:
        try:
            configs.append(resolve(recipe, sets=overrides))
        except FacetrainError as e:  # named once: most of them start with the file's name
            wrong.append(str(e) if str(e).startswith(str(recipe)) else f"{recipe}: {e}")
    for line in wrong:
        console.print(f"error: {line}", style="bold red", highlight=False)
    if wrong:
        raise SystemExit(2)
    return configs


def machine() -> str:
    """'2-core AMD EPYC (family 25, model 1)' style name of this machine, for the results
    table."""
    from facetrain.devices import cpu_name

    return f"{os.cpu_count()}-core {cpu_name()}"


def table_row(run: Path, where: str) -> str:
    """One markdown row: what was trained, for how long, and what it scored on LFW."""
    m, cfg = (_table_of(run / name) for name in ("eval/metrics.json", CONFIG))
    seconds = 0.0
    for rec in read_metrics(run):
        if rec.get("epoch_end"):
            seconds += rec.get("seconds", 0.0)
    loss = cfg["loss"]
    if loss in DEFAULT_MARGIN:
        margin = cfg["margin_m"] if cfg["margin_m"] >= 0 else DEFAULT_MARGIN[loss]
        loss += f" (s {cfg['margin_s']:g}, m {margin:g})"
    if cfg["center_loss_factor"]:
        loss += f" + center {cfg['center_loss_factor']:g}"
    if cfg.get("init_from"):  # a second stage: say what it started from
        loss += f", from {Path(cfg['init_from']).name}"
    size = cfg["input_size"] or "native"
    if cfg["device"].startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            where = torch.cuda.get_device_name()
    elif cfg["threads"]:
        where += f", {counted(cfg['threads'], 'thread')}"
    return (
        f"| {run.name} | {loss} | {cfg['model']} {size}² | {cfg['epochs']} | "
        f"{seconds / 60:.0f} min, {where} | "
        f"{m['accuracy'] * 100:.2f} ± {m['accuracy_std'] * 100:.2f} % | "
        f"{m['val']:.4f} ± {m['val_std']:.4f} (FAR {m['far']:.4f}) | {m['auc']:.4f} |"
    )


def _table_of(path: Path) -> dict:
    got, why = foreign.read_table(path)
    if got is None:
        raise ValueError(why)
    return got


def table(runs: list[str]) -> None:
    where = machine()
    print(
        "| run | loss | backbone (input) | epochs | training time, machine | "
        "LFW accuracy | VAL@FAR=1e-3 (FAR reached) | AUC |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for folder in runs:
        if not (Path(folder) / "eval" / "metrics.json").exists():
            console.print(f"{folder}: not evaluated yet (no eval/metrics.json); left out")
            continue
        try:
            print(table_row(Path(folder), where))
        except (OSError, ValueError, KeyError, TypeError) as e:  # damaged, or another version
            why = f"no {e} in its files" if isinstance(e, KeyError) else str(e)
            console.print(f"{folder}: left out: {why}")


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(prog="python -m facetrain.experiment", description=__doc__)
    ap.add_argument("recipes", nargs="*", default=["recipes/best.toml"])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--table", nargs="+", metavar="RUN", help="print finished runs as rows")
    a = ap.parse_intermixed_args()
    try:
        table(a.table) if a.table else main(a.recipes, a.set)
    except FacetrainError as e:  # a run that cannot go on: one line, as `facetrain` says it
        console.print(f"error: {e}", style="bold red", highlight=False)
        raise SystemExit(2) from None
