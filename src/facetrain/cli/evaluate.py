"""Commands that measure a model: eval, plot, report, plot-embeddings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facetrain.cli.common import (
    INPUTS_HELP,
    AlignOpt,
    DeviceOpt,
    JsonOut,
    OptionalModelArg,
    SpecOpt,
    WorkersOpt,
    app,
    embed_data,
    fail,
    model_and_inputs,
    open_model_arg,
    show_first,
    work_towards,
    write_json,
)
from facetrain.progress import console, counted


@app.command("eval")
def eval_(
    model: OptionalModelArg = None,
    pairs: Annotated[
        list[Path] | None, typer.Option(help="LFW-format pairs.txt (repeatable).")
    ] = None,
    images: Annotated[
        list[Path] | None,
        typer.Option(help="Image folder of each --pairs: aligned faces or raw photos."),
    ] = None,
    bin_: Annotated[
        list[Path] | None, typer.Option("--bin", help="InsightFace .bin set (repeatable).")
    ] = None,
    align: AlignOpt = "auto",
    distance: Annotated[
        str, typer.Option(help="squared_l2 (formerly 'euclidean') or cosine.")
    ] = "squared_l2",
    flip: Annotated[str, typer.Option(help="sum, concat or none; default: the model's.")] = "",
    subtract_mean: Annotated[bool, typer.Option(help="Mean fitted on the other folds.")] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Write metrics.json, folds.csv, roc.csv, roc.png in this new or "
            "empty folder, or an earlier evaluation's [RUN/eval]."
        ),
    ] = None,
    folds_csv: Annotated[Path | None, typer.Option(help="Write per-fold accuracy here.")] = None,
    roc: Annotated[Path | None, typer.Option(help="Write the ROC curve PNG here.")] = None,
    spec: SpecOpt = None,
    device: DeviceOpt = "cpu",
    workers: WorkersOpt = 0,
    json_out: JsonOut = None,
) -> None:
    """Verification metrics of a trained model on LFW-style pairs and/or .bin sets."""
    from facetrain.evaluate import model_eval
    from facetrain.evaluate.plots import plot_roc

    pairs, images = pairs or [], images or []
    if len(pairs) != len(images):
        fail("give one --images folder for each --pairs file (the folder its names refer to)")
    from facetrain import atomic
    from facetrain.evaluate.sets import unreadable_sets

    atomic.output_files([*pairs, *images, *(bin_ or [])], **{"--out": out, "--folds-csv":
                        folds_csv, "--roc": roc, "--json": json_out})  # fmt: skip
    if why := unreadable_sets(list(zip(pairs, images)), bin_ or []):
        fail("; ".join(why))
    fm = open_model_arg(model, device, spec=spec, torch=True)
    if out is None and model is not None and Path(model).is_dir():
        out = Path(model) / "eval"

    ev = model_eval.evaluate_model(
        fm, list(zip(pairs, images)), bin_ or [], align=align, flip=flip or None,
        distance=distance, subtract_mean=subtract_mean, device=device, out=out, on_set=_show,
        workers=workers,
    )  # fmt: skip
    results, rocs = ev.results, ev.rocs
    if out is not None:
        console.print(f"wrote {out}/metrics.json, folds.csv, roc.csv, roc.png")
    if folds_csv is not None:
        model_eval.write_folds(folds_csv, results)
    if roc is not None:
        plot_roc(rocs, roc)
    write_json(json_out, model_eval.combined(results, ev.about))


def _show(name: str, r: dict) -> None:
    from facetrain.evaluate.model_eval import summary_line

    console.print(summary_line(name, r))
    tar = ", ".join(f"{k}: {v:.4f}" for k, v in r["tar_at_far"].items())
    console.print(f"  TAR at FAR {tar}")
    unusable = r.get("unusable_images", {}).items()
    show_first([f"skipped {path}: {why}" for path, why in unusable], "more image",
               tail=" skipped", indent="  ")  # fmt: skip


@app.command("eval-populations")
def eval_populations(
    args: Annotated[list[str], typer.Argument(
        help="[MODEL] then folders of identities, one a population (say, your family's).",
        metavar="[MODEL] FOLDER...")],
    record: Annotated[bool, typer.Option(
        help="Write the sure_below found into the model (a run folder or .safetensors), "
        "for compare and verify.")] = False,
    align: AlignOpt = "auto",
    device: DeviceOpt = "cpu",
    workers: WorkersOpt = 0,
    json_out: JsonOut = None,
) -> None:  # fmt: skip
    """How the model's "same person" holds on each population: every pair of faces of each
    folder — different people under the threshold, the distance at 1% of them — and the
    sure_below that holds on all (`compare` marks a "same" above it unsure)."""
    from facetrain.evaluate.populations import FAR, figures, sure_below_of
    from facetrain.inference.parts import kept_in_cache, kept_until_done
    from facetrain.inference.saved import split_model

    name, folders = split_model(args)
    if not folders:
        fail("give folders of identities, one a population")
    weights = _weights_file(name) if record else None
    fm = open_model_arg(name, device)
    pre = fm.pre
    if pre.threshold is None:
        fail(f"{fm.source} has no calibrated threshold to measure")
    sets = []
    # each folder's faces kept in the cache as they are embedded, until every figure is out
    kept = [kept_in_cache("eval-populations", fm.source, Path(f).resolve()) for f in folders]
    with kept_until_done(*kept):
        for folder, parts in zip(folders, kept):
            t = embed_data(fm, [folder], align, device, workers, parts=parts)
            try:
                sets.append(figures(folder, t.embeddings, t.labels, pre.distance,
                                    pre.threshold, pre.sure_below))  # fmt: skip
            except ValueError as e:
                fail(str(e))
            _show_population(sets[-1])
    value, worst = sure_below_of(sets)
    console.print(f"sure_below: {value:.3f} ({FAR:.0%} of different people's pairs on {worst}, "
                  f"the most crowded; the model's now: {pre.sure_below})",
                  highlight=False)  # fmt: skip
    if weights is not None:
        _record_sure_below(weights, value, worst, sets)
    write_json(json_out, {"sure_below": value, "from": worst,
                          "sets": [vars(f) for f in sets]})  # fmt: skip


def _show_population(f) -> None:
    def pct(x):
        return "–" if x is None else f"{x:.1%}"

    console.print(f"{f.name}: {f.faces} faces; different people under the threshold "
                  f"{pct(f.far_at_threshold)}, under sure_below {pct(f.far_at_sure)}; 1% of "
                  f"them under {f.distance_at_far:.3f}; same-person pairs \"same\" "
                  f"{pct(f.same_at_sure)} / \"same?\" or \"same\" {pct(f.same_at_threshold)}",
                  highlight=False)  # fmt: skip


def _weights_file(model: str | None) -> Path:
    """The facetrain weights file --record writes into, or a clear error."""
    from facetrain.run_folder import WEIGHTS

    path = Path(model) / WEIGHTS if model and Path(model).is_dir() else Path(model or "")
    if path.suffix != ".safetensors" or not path.is_file():
        fail("--record writes into a facetrain weights file: give a run folder or a "
             ".safetensors (pretrained models carry their own)")  # fmt: skip
    return path


def _record_sure_below(path: Path, value: float, worst: str, sets) -> None:
    """The model's record given the sure_below measured, its weights as they were."""
    import dataclasses

    from facetrain.inference.record import load_weights, save_model

    net, pre = load_weights(path)
    where = ", ".join(Path(f.name).name for f in sets)
    save_model(path, net, dataclasses.replace(pre, sure_below=value, sure_source=(
        f"measured on {where} (facetrain eval-populations): 1% of different people's pairs "
        f"under {value:.3f} on {Path(worst).name}")))  # fmt: skip
    console.print(f"recorded in {path}")


@app.command()
def plot(
    runs: Annotated[list[Path], typer.Argument(help="Run folders (several: one figure).")],
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("curves.png"),
) -> None:
    """Learning curves of one or more runs: loss, learning rate, accuracies, VAL."""
    from facetrain.evaluate.plots import plot_runs

    try:
        plot_runs(runs, out)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    console.print(f"wrote {out}")


@app.command()
def report(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    out: Annotated[Path | None, typer.Option(help="HTML to write [RUN/report.html].")] = None,
) -> None:
    """One HTML page: learning curves, final metrics table, ROC."""
    from facetrain.evaluate.report import write_report

    try:
        path = write_report(run, out)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    console.print(f"report: {path}")


@app.command("plot-embeddings")
def plot_embeddings_cmd(
    args: Annotated[list[str], typer.Argument(help=INPUTS_HELP, metavar="[MODEL] DATA...")],
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("embeddings.png"),
    max_identities: Annotated[
        int, typer.Option(help="Embed and draw the first this many identities by name.")
    ] = 20,
    align: AlignOpt = "auto",
    spec: SpecOpt = None,
    device: DeviceOpt = "cpu",
) -> None:
    """A t-SNE map of a dataset's embeddings, coloured by identity (only the first
    --max-identities by name are embedded)."""
    from facetrain import atomic
    from facetrain.evaluate.plots import plot_embeddings

    atomic.output_files(args, **{"--out": out})
    if max_identities < 1:  # [:-1] drew all but one, in silence
        fail(f"--max-identities {max_identities}: at least 1")
    fm, data = model_and_inputs(args, device, spec=spec)
    with work_towards(out) as parts:
        t = embed_data(fm, data, align, device, parts=parts, identities=max_identities)
        if len(t.labels) < 3:
            fail("need at least 3 usable faces to draw a map")
        plot_embeddings(t.embeddings, list(t.labels), out)
    faces = counted(len(t.labels), "face")
    people = counted(len(set(t.labels)), "identity", "identities")
    console.print(f"wrote {out} ({faces}, {people})")
