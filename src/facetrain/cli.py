"""The `facetrain` command line. Each command is a thin shell over one library function."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from facetrain.progress import console

app = typer.Typer(
    help="Train face-recognition embedding models end to end, and put them to work.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Merge = Annotated[
    bool,
    typer.Option("--merge-same-names", help="Same folder name in several roots = one identity."),
]
JsonOut = Annotated[Path | None, typer.Option("--json", help="Also write the result as JSON.")]


def fail(message: str, code: int = 2) -> None:
    """Print a clear one-line error and exit (2 = unusable arguments)."""
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def _write_json(path: Path | None, obj) -> None:
    if path is not None:
        from facetrain import atomic

        atomic.write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        fail(f"--shard {text!r}: expected i/n, e.g. 0/4")
    if not (n >= 1 and 0 <= i < n):
        fail(f"--shard {text!r}: need 0 <= i < n")
    return i, n


def _parse_thresholds(text: str) -> tuple[float, float, float]:
    try:
        t = tuple(float(x) for x in text.split(","))
    except ValueError:
        t = ()
    if len(t) != 3 or not all(0.0 < x < 1.0 for x in t):
        fail(f"--thresholds {text!r}: expected three numbers in (0, 1), e.g. 0.6,0.7,0.7")
    return t  # type: ignore[return-value]


@app.command()
def stats(
    data: Annotated[list[str], typer.Argument(help="Dataset roots (a:b or several) or lists.")],
    merge_same_names: Merge = False,
    check: Annotated[bool, typer.Option(help="Decode every image to find broken ones.")] = False,
    json_out: JsonOut = None,
) -> None:
    """Identities, images, images-per-identity histogram and problems of a dataset."""
    from facetrain.data.listing import DatasetError
    from facetrain.data.split import stats as dataset_stats

    try:
        result = dataset_stats(data, merge_same_names=merge_same_names, check=check)
    except DatasetError as e:
        fail(str(e))
    console.print(
        f"identities: [bold]{result['identities']}[/]  images: [bold]{result['images']}[/]"
    )
    ipi = result["images_per_identity"]
    console.print(
        f"images per identity: min {ipi['min']}, median {ipi['median']:g}, "
        f"mean {ipi['mean']}, max {ipi['max']}"
    )
    table = Table("images per identity", "identities", "")
    top = max(result["histogram"].values(), default=0) or 1
    for label, n in result["histogram"].items():
        table.add_row(label, str(n), "█" * round(30 * n / top))
    console.print(table)
    if result["problems"]:
        console.print("[bold yellow]problems[/] (skipped or worth a look):")
        for kind, n in result["problems"].items():
            ex = ", ".join(result["problem_examples"].get(kind, [])[:3])
            console.print(f"  {kind}: {n}   e.g. {ex}")
    else:
        console.print("problems: none")
    _write_json(json_out, result)


@app.command()
def align(
    raw: Annotated[str, typer.Argument(help="Photo roots, one folder per identity (a:b).")],
    out: Annotated[Path, typer.Argument(help="Output folder for aligned faces.")],
    mode: Annotated[
        str, typer.Option(help="similarity (5-point, 112 template) or box.")
    ] = "similarity",
    size: Annotated[int | None, typer.Option(help="Output size (112 similarity, 182 box).")] = None,
    margin: Annotated[float, typer.Option(help="Box mode: pixels added around the box.")] = 44,
    select: Annotated[str, typer.Option(help="Several faces: center, largest or all.")] = "center",
    min_face: Annotated[int, typer.Option(help="Smallest face side in pixels.")] = 20,
    thresholds: Annotated[str, typer.Option(help="P,R,O-Net score thresholds.")] = "0.6,0.7,0.7",
    factor: Annotated[float, typer.Option(help="Image pyramid scale factor.")] = 0.709,
    workers: Annotated[int, typer.Option(help="Processes (0 = one per core).")] = 0,
    shard: Annotated[str, typer.Option(help="i/n: this machine's share of the job.")] = "0/1",
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    batch_size: Annotated[int, typer.Option(help="Images per detector batch.")] = 16,
    max_pixels: Annotated[int, typer.Option(help="Refuse larger images.")] = 100_000_000,
    detect_max_side: Annotated[int, typer.Option(help="Detect on a copy this small.")] = 1600,
    merge_same_names: Merge = False,
    json_out: JsonOut = None,
) -> None:
    """Detect and align faces (MTCNN) into OUT, one folder per identity; resumable."""
    from facetrain.align.job import MODES, AlignConfig, run_align, summary_dict
    from facetrain.align.transform import SELECT_MODES
    from facetrain.data.listing import DatasetError, parse_roots

    if mode not in MODES:
        fail(f"--mode {mode!r}: choose from {', '.join(MODES)}")
    if select not in SELECT_MODES:
        fail(f"--select {select!r}: choose from {', '.join(SELECT_MODES)}")
    if size is not None and size < 16:
        fail("--size must be at least 16")
    if min_face < 12:
        fail("--min-face must be at least 12 (MTCNN's smallest window)")
    if not 0.1 < factor < 1.0:
        fail("--factor must be in (0.1, 1)")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            fail("--device cuda: no CUDA device is available here")
    cfg = AlignConfig(
        mode=mode,
        size=size,
        margin=margin,
        select=select,
        min_face=min_face,
        thresholds=_parse_thresholds(thresholds),
        factor=factor,
        detect_max_side=detect_max_side,
        max_pixels=max_pixels,
        device=device,
        batch_size=batch_size,
        merge_same_names=merge_same_names,
    )
    try:
        roots = parse_roots(raw)
        if any(Path(r).resolve() == out.resolve() for r in roots):
            fail("OUT must not be one of the input roots")
        summary = run_align(roots, out, cfg, workers=workers, shard=_parse_shard(shard))
    except (DatasetError, ValueError) as e:
        fail(str(e))
    total = sum(summary.counts.values())
    console.print(
        f"aligned {summary.faces_written} faces from {total} inputs in {summary.seconds:.1f} s"
        + (f" ({summary.skipped_done} done before, skipped)" if summary.skipped_done else "")
    )
    for status, n in sorted(summary.counts.items()):
        console.print(f"  {status}: {n}")
    for kind, n in summary.problems.counts.items():
        console.print(f"  skipped while listing, {kind}: {n}")
    console.print(f"every input is recorded in {summary.csv_path}")
    _write_json(json_out, summary_dict(summary))


@app.command()
def prune(
    data: Annotated[str, typer.Argument(help="Dataset roots (a:b) or a list file.")],
    out: Annotated[Path, typer.Argument(help="List file to write.")],
    min_images: Annotated[int, typer.Option(help="Keep identities with at least this many.")] = 2,
    merge_same_names: Merge = False,
) -> None:
    """Write a list of the images whose identity has at least --min-images (nothing moves)."""
    from facetrain.data.listing import DatasetError
    from facetrain.data.split import prune as prune_fn

    if min_images < 1:
        fail("--min-images must be at least 1")
    try:
        r = prune_fn(data, out, min_images, merge_same_names=merge_same_names)
    except DatasetError as e:
        fail(str(e))
    console.print(
        f"kept {r['identities_kept']}/{r['identities_in']} identities, "
        f"{r['images_kept']}/{r['images_in']} images (min {min_images}) → {out}"
    )


@app.command()
def split(
    data: Annotated[str, typer.Argument(help="Dataset roots (a:b) or a list file.")],
    out: Annotated[Path, typer.Argument(help="Folder for train.txt and val.txt.")],
    by: Annotated[str, typer.Option(help="identity (unseen people) or image.")] = "identity",
    val_fraction: Annotated[float, typer.Option(help="Share that goes to val.")] = 0.1,
    min_train: Annotated[int, typer.Option(help="--by image: images kept in train.")] = 1,
    min_val: Annotated[
        int, typer.Option(help="--by image: an identity gives this many to val or none.")
    ] = 0,
    seed: Annotated[int, typer.Option(help="Same seed, same split.")] = 0,
    merge_same_names: Merge = False,
) -> None:
    """Split train/val by identity or by image, as list files (nothing moves)."""
    from facetrain.data.listing import DatasetError
    from facetrain.data.split import split as split_fn

    try:
        r = split_fn(
            data,
            out,
            by=by,
            fraction=val_fraction,
            min_train=min_train,
            min_val=min_val,
            seed=seed,
            merge_same_names=merge_same_names,
        )
    except (DatasetError, ValueError) as e:
        fail(str(e))
    console.print(
        f"train: {r.train_images} images / {r.train_identities} identities → {r.train_list}\n"
        f"val:   {r.val_images} images / {r.val_identities} identities → {r.val_list}"
    )


@app.command()
def msceleb(
    tsv: Annotated[list[Path], typer.Argument(help="MS-Celeb-1M TSV files, then OUT.")],
) -> None:
    """Decode MS-Celeb-1M TSV files (6- or 7-column layouts) into OUT/<MID>/ folders."""
    from facetrain.data.msceleb import ERRORS_FILE, decode_tsv

    if len(tsv) < 2:
        fail("give one or more TSV files and then the output folder")
    *files, out = tsv
    for f in files:
        if not f.is_file():
            fail(f"{f}: no such TSV file")
    counts = decode_tsv([str(f) for f in files], out)
    console.print(f"wrote {counts['written']} images to {out}")
    if counts["bad_row"]:
        console.print(f"skipped {counts['bad_row']} bad rows, listed in {out / ERRORS_FILE}")
    if counts["files_already_done"]:
        console.print(f"{counts['files_already_done']} TSV files were already fully decoded")


@app.command()
def pack(
    data: Annotated[str, typer.Argument(help="Split folder (train.txt/val.txt), roots or list.")],
    out: Annotated[Path, typer.Argument(help="Pack folder to write.")],
    images_per_shard: Annotated[int, typer.Option(help="Images per shard file.")] = 20000,
    store: Annotated[
        str, typer.Option(help="raw: decoded pixels, fastest; encoded: file bytes, smallest.")
    ] = "raw",
    merge_same_names: Merge = False,
) -> None:
    """Pack aligned images (with their split) into shard files + index for fast loading."""
    from facetrain.data.listing import DatasetError
    from facetrain.data.packed import pack as pack_fn

    if images_per_shard < 1:
        fail("--images-per-shard must be at least 1")
    try:
        r = pack_fn(
            data,
            out,
            images_per_shard=images_per_shard,
            store=store,
            merge_same_names=merge_same_names,
        )
    except (DatasetError, ValueError) as e:
        fail(str(e))
    splits = ", ".join(f"{k} {v}" for k, v in r.splits.items())
    console.print(
        f"packed {r.images} images of {r.identities} identities in {r.shards} shards ({splits})"
        f" → {out}"
    )
    if r.skipped:
        console.print(f"skipped {r.skipped} images, each with its reason in {out / 'skipped.tsv'}")


def _coerce(field_type, text: str):
    t = str(field_type)
    if "bool" in t:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true/false, got {text!r}")
    if "list[int]" in t:
        return [int(x) for x in text.split(",") if x]
    if "list[str]" in t:
        return [x for x in text.split(":") if x]
    if "int" in t:
        return int(text)
    if "float" in t:
        return float(text)
    return text


@app.command()
def train(
    data: Annotated[
        list[str] | None, typer.Option(help="Aligned faces: pack, folders (a:b) or lists.")
    ] = None,
    out: Annotated[str | None, typer.Option(help="Run folder; the same --out resumes.")] = None,
    model: Annotated[str | None, typer.Option(help="Model name (see models).")] = None,
    loss: Annotated[
        str | None, typer.Option(help="softmax, arcface, cosface, triplet, contrastive.")
    ] = None,
    epochs: Annotated[int | None, typer.Option()] = None,
    batch_size: Annotated[int | None, typer.Option()] = None,
    lr: Annotated[float | None, typer.Option()] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda.")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML or JSON file of settings.")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Any other setting, KEY=VALUE (repeatable); see config.json."),
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
    import dataclasses

    from facetrain.train.config import TrainConfig, load_config_file
    from facetrain.train.loop import TrainingError
    from facetrain.train.loop import train as train_fn

    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    values: dict = {}
    try:
        if config is not None:
            values.update(load_config_file(config))
        explicit = {
            "out": out,
            "model": model,
            "loss": loss,
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "device": device,
        }
        values.update({k: v for k, v in explicit.items() if v is not None})
        if data:
            values["data"] = [r for spec in data for r in spec.split(":") if r]
        if work_dir is not None:
            work_dir.mkdir(parents=True, exist_ok=True)
            os.chdir(work_dir)
        if data_dir is not None:
            roots = values.get("data") or [""]
            values["data"] = [str(data_dir / r) if not os.path.isabs(r) else r for r in roots]
            values["data"] = [r.rstrip("/") for r in values["data"]]
        if output_dir is not None:
            o = values.get("out", "run")
            values["out"] = o if os.path.isabs(o) else str(output_dir / o)
        if log_dir is not None:
            values["log_dir"] = str(log_dir)
        if num_gpus is not None:
            values["device"] = "cuda" if num_gpus > 0 else "cpu"
        for item in set_ or []:
            key, sep, text = item.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in fields:
                fail(f"--set {item!r}: expected KEY=VALUE with KEY one of the settings")
            values[key] = _coerce(fields[key].type, text.strip())
        cfg = TrainConfig(**values)
        if cfg.device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                fail("--device cuda: no CUDA device is available here")
            if num_gpus and num_gpus > torch.cuda.device_count():
                fail(f"--num-gpus {num_gpus}: this machine has {torch.cuda.device_count()}")
        if num_gpus and num_gpus > 1 and "WORLD_SIZE" not in os.environ:
            _relaunch_with_torchrun(num_gpus)
        result = train_fn(cfg, log=console.print)
    except (TrainingError, ValueError) as e:
        fail(str(e))
    if os.environ.get("RANK", "0") != "0":  # torchrun: rank 0 speaks for the job
        return
    if result:
        console.print(
            f"final verification accuracy {result['accuracy']:.4f} ± {result['accuracy_std']:.4f}"
        )
    console.print(f"run folder: {cfg.out}")


def _relaunch_with_torchrun(n: int) -> None:
    """--num-gpus N: the same command again as N processes under torchrun (PyTorch's own
    launcher; `python -m torch.distributed.run` is torchrun)."""
    argv = sys.argv[1:]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc_per_node={n}", "-m", "facetrain", *argv]
    console.print(f"starting {n} processes: {' '.join(cmd[1:])}")
    os.execv(sys.executable, cmd)


ModelArg = Annotated[
    str, typer.Argument(help="Run folder, model.safetensors, or an exported .onnx / .pt file.")
]
SpecOpt = Annotated[
    Path | None,
    typer.Option("--preprocess", help="JSON preprocessing spec for a model made elsewhere."),
]
AlignOpt = Annotated[
    str,
    typer.Option(help="auto: align photos that are not the model's aligned size; always; never."),
]
DeviceOpt = Annotated[str, typer.Option(help="cpu, cuda, cuda:1, ...")]


def _open_model(model: str, device: str = "cpu", backend: str = "auto", spec: Path | None = None):
    """The model, or a clear error and exit 2."""
    from facetrain.models.saved import ModelFileError, open_model, read_spec

    try:
        return open_model(model, device, backend, read_spec(spec) if spec else None)
    except ModelFileError as e:
        fail(str(e))


@app.command("eval")
def eval_(
    model: ModelArg,
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
    distance: Annotated[str, typer.Option(help="euclidean or cosine.")] = "euclidean",
    flip: Annotated[str, typer.Option(help="sum, concat or none; default: the model's.")] = "",
    subtract_mean: Annotated[bool, typer.Option(help="Mean fitted on the other folds.")] = False,
    out: Annotated[
        Path | None,
        typer.Option(help="Write metrics.json, folds.csv, roc.csv, roc.png here [RUN/eval]."),
    ] = None,
    folds_csv: Annotated[Path | None, typer.Option(help="Write per-fold accuracy here.")] = None,
    roc: Annotated[Path | None, typer.Option(help="Write the ROC curve PNG here.")] = None,
    spec: SpecOpt = None,
    device: DeviceOpt = "cpu",
    json_out: JsonOut = None,
) -> None:
    """Verification metrics of a trained model on LFW-style pairs and/or .bin sets."""
    from facetrain.evaluate import model_eval
    from facetrain.evaluate.plots import plot_roc
    from facetrain.evaluate.sets import ALIGN_MODES, FLIPS, bin_set, pairs_set
    from facetrain.evaluate.verification import DISTANCES

    if distance not in DISTANCES:
        fail(f"--distance {distance!r}: choose from {', '.join(DISTANCES)}")
    if flip and flip not in FLIPS:
        fail(f"--flip {flip!r}: choose from {', '.join(FLIPS)}")
    if align not in ALIGN_MODES:
        fail(f"--align {align!r}: choose from {', '.join(ALIGN_MODES)}")
    pairs, images = pairs or [], images or []
    if not pairs and not bin_:
        fail("give --pairs with --images, and/or --bin")
    if len(pairs) != len(images):
        fail("give one --images folder for each --pairs file (the folder its names refer to)")
    fm = _open_model(model, device, spec=spec)
    flip = flip or fm.pre.flip
    try:
        sets = [
            pairs_set(str(p), str(i), alignment=fm.pre.alignment, align=align)
            for p, i in zip(pairs, images)
        ]
        sets += [bin_set(str(b)) for b in bin_ or []]
    except (ValueError, OSError) as e:
        fail(str(e))
    results, rocs = {}, {}
    for s in sets:
        try:
            r, curve = model_eval.evaluate_set(
                fm, s, flip=flip, distance=distance, subtract_mean=subtract_mean, device=device
            )
        except ValueError as e:
            fail(str(e))
        name = s.name if s.name not in results else f"{s.name}_{len(results)}"
        results[name], rocs[name] = r, curve
        console.print(model_eval.summary_line(f"[bold]{name}[/]", r))
        tar = ", ".join(f"{k}: {v:.4f}" for k, v in r["tar_at_far"].items())
        console.print(f"  TAR at FAR {tar}")
        for path, why in list(r.get("unusable_images", {}).items())[:10]:
            console.print(f"  [yellow]skipped[/] {path}: {why}")
    about = model_eval.about(fm, flip, distance, subtract_mean)
    if out is None and Path(model).is_dir():
        out = Path(model) / "eval"
    if out is not None:
        model_eval.write_outputs(out, results, rocs, about)
        console.print(f"wrote {out}/metrics.json, folds.csv, roc.csv, roc.png")
    if folds_csv is not None:
        model_eval.write_folds(folds_csv, results)
    if roc is not None:
        plot_roc(rocs, roc)
    _write_json(json_out, model_eval.combined(results, about))


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


def _embed_data(fm, data: list[str], align: str, device: str):
    """Embed DATA roots, reporting skipped images; exits cleanly when nothing is usable."""
    from facetrain.data.listing import DatasetError
    from facetrain.use.embeddings import embed_dataset

    try:
        t = embed_dataset(fm, data, align=align, device=device)
    except (DatasetError, ValueError) as e:
        fail(str(e))
    for path, why in list(t.skipped.items())[:20]:
        console.print(f"[yellow]skipped[/] {path}: {why}")
    if len(t.skipped) > 20:
        console.print(f"[yellow]… {len(t.skipped) - 20} more skipped[/]")
    if len(t) == 0:
        fail(f"{':'.join(data)}: no usable face images", 1)
    return t


BackendOpt = Annotated[str, typer.Option(help="auto, torch or onnx (onnxruntime).")]


@app.command("plot-embeddings")
def plot_embeddings_cmd(
    model: ModelArg,
    data: Annotated[list[str], typer.Argument(help="Identity folders or list files.")],
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("embeddings.png"),
    max_identities: Annotated[int, typer.Option(help="Draw at most this many.")] = 20,
    align: AlignOpt = "auto",
    spec: SpecOpt = None,
    device: DeviceOpt = "cpu",
) -> None:
    """A t-SNE map of a dataset's embeddings, coloured by identity."""
    import numpy as np

    from facetrain.evaluate.plots import plot_embeddings

    fm = _open_model(model, device, spec=spec)
    t = _embed_data(fm, data, align, device)
    names = sorted(set(t.labels))[:max_identities]
    keep = np.array([x in names for x in t.labels])
    if keep.sum() < 3:
        fail("need at least 3 usable faces to draw a map")
    plot_embeddings(t.embeddings[keep], [x for x, k in zip(t.labels, keep) if k], out)
    console.print(f"wrote {out} ({int(keep.sum())} faces, {len(names)} identities)")


@app.command()
def embed(
    model: ModelArg,
    data: Annotated[list[str], typer.Argument(help="Identity folders or list files.")],
    out: Annotated[Path, typer.Option(help="Output .npz: embeddings, paths, labels.")],
    align: AlignOpt = "auto",
    backend: BackendOpt = "auto",
    spec: SpecOpt = None,
    device: DeviceOpt = "cpu",
) -> None:
    """Embed every face of a dataset with the model's own preprocessing."""
    from facetrain.use.embeddings import save_table

    fm = _open_model(model, device, backend, spec)
    t = _embed_data(fm, data, align, device)
    try:
        save_table(out, t)
    except ValueError as e:
        fail(str(e))
    console.print(
        f"embedded {len(t)} images of {len(set(t.labels))} identities "
        f"({t.embeddings.shape[1]}-d, {fm.backend}), skipped {len(t.skipped)} → {out}"
    )


@app.command()
def compare(
    model: ModelArg,
    images: Annotated[list[str], typer.Argument(help="Two or more photos or aligned faces.")],
    threshold: Annotated[
        float | None, typer.Option(help="Same person below this [the model's].")
    ] = None,
    align: AlignOpt = "auto",
    backend: BackendOpt = "auto",
    spec: SpecOpt = None,
    device: DeviceOpt = "cpu",
    json_out: JsonOut = None,
) -> None:
    """Distance matrix of faces, and same/different by the model's threshold."""
    from facetrain.evaluate.verification import distance_matrix
    from facetrain.use.embeddings import embed_paths

    if len(images) < 2:
        fail("give at least two images")
    fm = _open_model(model, device, backend, spec)
    t = embed_paths(fm, images, [""] * len(images), align=align, device=device, progress=False)
    for path, why in t.skipped.items():
        console.print(f"[yellow]skipped[/] {path}: {why}")
    if len(t) < 2:
        fail("fewer than two usable faces", 1)
    thr = threshold if threshold is not None else fm.pre.threshold
    d = distance_matrix(t.embeddings, t.embeddings, fm.pre.distance)
    table = Table(title=f"{fm.pre.distance} distance ({fm.pre.flip} flip)")
    table.add_column("")
    for k in range(len(t)):
        table.add_column(str(k), justify="right")
    for i, p in enumerate(t.paths):
        table.add_row(f"{i} {Path(p).name}", *(f"{d[i, j]:.3f}" for j in range(len(t))))
    console.print(table)
    pairs = []
    for i in range(len(t)):
        for j in range(i + 1, len(t)):
            same = None if thr is None else bool(d[i, j] < thr)
            pairs.append(
                {"a": t.paths[i], "b": t.paths[j], "distance": float(d[i, j]), "same": same}
            )
            verdict = "?" if same is None else ("same" if same else "different")
            print(f"{verdict}\t{d[i, j]:.4f}\t{t.paths[i]}\t{t.paths[j]}")
    if thr is None:
        console.print("[yellow]the model has no calibrated threshold; pass --threshold[/]")
    else:
        console.print(
            f"threshold {thr:.3f} ({'given' if threshold is not None else fm.pre.threshold_source})"
        )
    _write_json(
        json_out,
        {"threshold": thr, "distance": fm.pre.distance, "pairs": pairs, "skipped": t.skipped},
    )


@app.command()
def export(
    model: Annotated[str, typer.Argument(help="Run folder or model.safetensors.")],
    format_: Annotated[str, typer.Option("--format", help="onnx or torchscript.")] = "onnx",
    out: Annotated[Path | None, typer.Option(help="Output file [RUN/model.onnx or .pt].")] = None,
    check: Annotated[
        list[str] | None, typer.Option(help="Aligned faces for the parity check (folder).")
    ] = None,
    tolerance: Annotated[float, typer.Option(help="Largest |Δ| accepted.")] = 1e-4,
) -> None:
    """Export to ONNX or TorchScript with the preprocessing inside; check parity."""
    import torch

    from facetrain.evaluate.sets import Images, prepare
    from facetrain.export import FORMATS, export_onnx, export_torchscript, max_difference
    from facetrain.models.saved import open_model

    if format_ not in FORMATS:
        fail(f"--format {format_!r}: choose from {', '.join(FORMATS)}")
    fm = _open_model(model)
    if fm.module is None or fm.backend != "torch":
        fail(f"{model}: export takes a facetrain run folder or model.safetensors")
    if out is None:
        base = Path(model) if Path(model).is_dir() else Path(model).parent
        out = base / ("model.onnx" if format_ == "onnx" else "model.pt")
    write = export_onnx if format_ == "onnx" else export_torchscript
    write(fm.module, fm.pre, out)
    exported = open_model(out)
    pre = fm.pre
    if check:
        from facetrain.data.listing import iter_samples

        paths = [s.path for s in iter_samples(check)][:64]
        imgs = [
            t
            for t in Images(paths, pre.alignment, "auto").fetch(list(range(len(paths))))
            if t is not None
        ]
        if not imgs:
            fail(f"{':'.join(check)}: no usable faces for the parity check")
        x = torch.stack(imgs)
        what = f"{len(imgs)} real faces"
    else:
        x = torch.randint(0, 256, (16, 3, pre.input_size, pre.input_size), dtype=torch.uint8)
        what = "16 random images (pass --check DIR for real faces)"
    x = prepare(x, size=pre.input_size, normalize=pre.normalize, crop=pre.crop)
    delta = max_difference(fm, exported, x)
    ok = delta <= tolerance
    console.print(
        f"exported {out} ({format_}); parity on {what}: max |Δ| = {delta:.2e} "
        f"({'ok' if ok else 'FAILED'}, tolerance {tolerance:g})"
    )
    if not ok:
        raise typer.Exit(1)


classify_app = typer.Typer(
    help="Name people from their embeddings, or say unknown.", no_args_is_help=True
)
app.add_typer(classify_app, name="classify")


@classify_app.command("train")
def classify_train(
    model: ModelArg,
    data: Annotated[list[str], typer.Argument(help="One folder per known person.")],
    out: Annotated[Path, typer.Option(help="Classifier file (.npz).")],
    method: Annotated[str, typer.Option(help="svm, knn, logreg or centroid.")] = "svm",
    threshold: Annotated[
        str, typer.Option(help="auto (model's, else validated on DATA), model, data, or a number.")
    ] = "auto",
    test_fraction: Annotated[
        float, typer.Option(help="Held out per person for the figures.")
    ] = 0.3,
    unknown: Annotated[
        list[str] | None, typer.Option(help="Faces of people not in DATA, to measure refusals.")
    ] = None,
    align: AlignOpt = "auto",
    spec: SpecOpt = None,
    device: DeviceOpt = "cpu",
    json_out: JsonOut = None,
) -> None:
    """Fit a classifier on DATA; print held-out accuracy of all four methods."""
    from facetrain.evaluate.verification import labelled_threshold
    from facetrain.use.classify import METHODS, Classifier, evaluate_methods, save_classifier

    if method not in METHODS:
        fail(f"--method {method!r}: choose from {', '.join(METHODS)}")
    fm = _open_model(model, device, spec=spec)
    t = _embed_data(fm, data, align, device)
    if len(set(t.labels)) < 2:
        fail("need at least two people to classify")
    dist = fm.pre.distance
    if threshold in ("auto", "model") and fm.pre.threshold is not None:
        thr, src = fm.pre.threshold, f"the model's ({fm.pre.threshold_source})"
    elif threshold in ("auto", "data"):
        try:
            thr, src = labelled_threshold(t.embeddings, t.labels, dist), "validated on DATA's pairs"
        except ValueError as e:
            fail(str(e))
    elif threshold == "model":
        fail(f"{model} has no calibrated threshold; use --threshold data or a number")
    else:
        try:
            thr, src = float(threshold), "given"
        except ValueError:
            fail(f"--threshold {threshold!r}: auto, model, data or a number")
    strangers = _embed_data(fm, unknown, align, device).embeddings if unknown else None
    try:
        figures = evaluate_methods(
            t.embeddings,
            t.labels,
            threshold=thr,
            distance=dist,
            test_fraction=test_fraction,
            unknown=strangers,
        )
    except ValueError as e:
        fail(str(e))
    table = Table(title=f"held-out faces, threshold {thr:.3f} ({src})")
    for col in ("method", "accuracy (forced)", "accuracy (with unknown)", "strangers refused"):
        table.add_column(col, justify="right")
    for m, r in figures.items():
        refused = f"{r['unknown_rejected']:.3f}" if "unknown_rejected" in r else "-"
        table.add_row(m, f"{r['accuracy']:.3f}", f"{r['open_set_accuracy']:.3f}", refused)
    console.print(table)
    from dataclasses import asdict

    clf = Classifier(method, t.embeddings, t.labels, thr, dist, src, fm.source, asdict(fm.pre))
    save_classifier(out, clf)
    console.print(f"{method} on {len(t)} faces of {len(set(t.labels))} people → {out}")
    _write_json(json_out, {"threshold": thr, "threshold_source": src, "methods": figures})


@classify_app.command("predict")
def classify_predict(
    classifier: Annotated[Path, typer.Argument(help="File from `classify train`.")],
    images: Annotated[list[str], typer.Argument(help="Photos or aligned faces.")],
    model: Annotated[
        str | None, typer.Option(help="The model [the one it was trained with].")
    ] = None,
    align: AlignOpt = "auto",
    backend: BackendOpt = "auto",
    spec: SpecOpt = None,
    device: DeviceOpt = "cpu",
    json_out: JsonOut = None,
) -> None:
    """Name the face in each photo, or `unknown` when no known person is close enough."""
    from dataclasses import asdict

    from facetrain.use.classify import load_classifier
    from facetrain.use.embeddings import embed_paths

    try:
        clf = load_classifier(classifier)
    except ValueError as e:
        fail(str(e))
    fm = _open_model(model or clf.model, device, backend, spec)
    keys = ("model", "embedding_size", "input_size", "normalize", "crop", "alignment", "flip")
    mine = {k: asdict(fm.pre)[k] for k in keys}
    theirs = {k: clf.preprocess.get(k) for k in keys}
    if mine != theirs:
        fail(f"{classifier} was made with another model or preprocessing ({theirs}), not {mine}")
    t = embed_paths(fm, images, [""] * len(images), align=align, device=device, progress=False)
    results = []
    for path, why in t.skipped.items():
        console.print(f"[yellow]skipped[/] {path}: {why}")
        results.append({"path": path, "name": None, "error": why})
    for path, r in zip(t.paths, clf.predict(t.embeddings)):
        results.append({"path": path} | r)
        print(f"{r['name']}\t{r['distance']:.4f}\t{path}")
    _write_json(json_out, results)


@app.command("filter")
def filter_cmd(
    model: ModelArg,
    data: Annotated[list[str], typer.Argument(help="Identity folders or list files.")],
    out: Annotated[Path, typer.Option(help="Filtered list file to write.")],
    percentile: Annotated[float, typer.Option(help="Drop this worst % of all images.")] = 5.0,
    min_images: Annotated[int, typer.Option(help="Then keep identities with ≥ this many.")] = 2,
    report_csv: Annotated[
        Path | None, typer.Option("--report", help="Per-image scores [OUT.csv].")
    ] = None,
    align: AlignOpt = "auto",
    spec: SpecOpt = None,
    device: DeviceOpt = "cpu",
) -> None:
    """Find mislabelled and bad images by their distance to their identity's centre."""
    from facetrain.use.filter import filter_table, write_outputs

    fm = _open_model(model, device, spec=spec)
    t = _embed_data(fm, data, align, device)
    try:
        r = filter_table(t, percentile=percentile, min_images=min_images, distance=fm.pre.distance)
    except ValueError as e:
        fail(str(e))
    report_csv = report_csv or out.with_suffix(".csv")
    write_outputs(t, r, out, report_csv)
    order = r.distance.argsort()[::-1][:10]
    table = Table(title="farthest from their identity's centre")
    for col in ("distance", "identity", "image"):
        table.add_column(col, overflow="fold")
    for i in order:
        table.add_row(f"{r.distance[i]:.3f}", t.labels[i], t.paths[i])
    console.print(table)
    console.print(
        f"kept {int(r.keep.sum())}/{len(t)} images (cut-off {r.cutoff:.3f}), "
        f"{r.identities_after}/{r.identities_before} identities with ≥ {min_images}; "
        f"{len(t.skipped)} unusable → {out}, report {report_csv}"
    )


library_app = typer.Typer(
    help="A private photo library: faces stacked per person, named, recognised.",
    no_args_is_help=True,
)
app.add_typer(library_app, name="library")
DbOpt = Annotated[Path, typer.Option("--db", help="The library's SQLite file.")]


def _library(path: Path, *, create: bool = False, migrating_ok: bool = False):
    from facetrain.library.db import LibraryError, connect, get_meta

    try:
        con = connect(path, create=create)
    except LibraryError as e:
        fail(str(e))
    if not migrating_ok and get_meta(con, "migrating_to") is not None:
        fail(f"{path}: a model migration is unfinished; run `facetrain library migrate` again")
    return con


def _library_model(con, db_path: Path, model: str | None, device: str, spec: Path | None):
    """The model a library was made with (or the one given, which must be the same)."""
    from dataclasses import asdict

    from facetrain.library.db import LibraryError, check_model, get_meta

    source = model or get_meta(con, "model_source")
    if source is None:
        fail("a new library needs --model (a run folder, .safetensors or .onnx)")
    fm = _open_model(source, device, spec=spec)
    try:
        check_model(con, asdict(fm.pre), fm.source, str(db_path))
    except LibraryError as e:
        fail(str(e))
    return fm


def _threshold(con, given: float | None) -> tuple[float, str]:
    from facetrain.library.db import model_record

    if given is not None:
        return given, "given"
    rec = model_record(con) or {}
    if rec.get("threshold") is None:
        fail("the library's model has no calibrated threshold; pass --threshold")
    return float(rec["threshold"]), rec.get("distance", "euclidean")


@library_app.command("scan")
def library_scan(
    photos: Annotated[Path, typer.Argument(help="Folder of photos (read only, recursively).")],
    db: DbOpt,
    model: Annotated[str | None, typer.Option(help="Run folder, .safetensors or .onnx.")] = None,
    min_size: Annotated[float, typer.Option(help="Quality gate: face box side, px.")] = 40.0,
    min_score: Annotated[float, typer.Option(help="Quality gate: detector score.")] = 0.95,
    min_sharpness: Annotated[float, typer.Option(help="Quality gate: Laplacian var.")] = 15.0,
    spec: SpecOpt = None,
    device: DeviceOpt = "cpu",
    json_out: JsonOut = None,
) -> None:
    """Find, align and embed every face; new, changed, moved and deleted photos handled."""
    from dataclasses import asdict

    from facetrain.library.scan import Quality, Scanner, scan

    if not photos.is_dir():
        fail(f"{photos}: not a folder of photos")
    con = _library(db, create=True)
    fm = _library_model(con, db, model, device, spec)
    rep = scan(con, photos, Scanner(fm, Quality(min_size, min_score, min_sharpness), device))
    for path, why in list(rep.problems.items())[:20]:
        console.print(f"[yellow]{why}[/]: {path}")
    console.print(
        f"scanned {photos}: {rep.new} new, {rep.changed} changed, {rep.moved} moved, "
        f"{rep.duplicates} duplicates, {rep.removed} removed, {rep.unchanged} unchanged; "
        f"{rep.faces} faces found ({rep.usable_faces} pass the quality gate) → {db}"
    )
    _write_json(json_out, asdict(rep))


@library_app.command("cluster")
def library_cluster(
    db: DbOpt,
    threshold: Annotated[float | None, typer.Option(help="[the model's calibrated one]")] = None,
) -> None:
    """Stack unnamed faces per person; named people stay and attract their new faces."""
    from facetrain.library.cluster import cluster

    con = _library(db)
    thr, how = _threshold(con, threshold)
    distance = "euclidean" if how == "given" else how
    r = cluster(con, thr, distance)
    console.print(
        f"{r.faces} faces → {r.stacks} stacks ({r.matched_to_named} clusters joined named "
        f"people, {r.new_stacks} new stacks; {r.split_for_cannot_link} faces moved apart: "
        f"same photo) at threshold {thr:.3f}"
    )


@library_app.command("people")
def library_people(db: DbOpt, json_out: JsonOut = None) -> None:
    """Stacks, largest first: id, name, faces, photos."""
    from facetrain.library.curate import people

    rows = people(_library(db))
    table = Table(title=f"{len(rows)} stacks")
    for col in ("stack", "name", "faces", "photos", "confirmed", "hidden"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["id"]), r["name"] or "", str(r["faces"]), str(r["photos"]),
                      str(r["confirmed"]), "yes" if r["hidden"] else "")  # fmt: skip
    console.print(table)
    _write_json(json_out, rows)


def _curate(db: Path, fn, *args) -> None:
    from facetrain.library.db import LibraryError

    try:
        console.print(fn(_library(db), *args))
    except LibraryError as e:
        fail(str(e))


@library_app.command("name")
def library_name(
    stack: Annotated[str, typer.Argument(help="Stack id or current name.")],
    name: Annotated[str, typer.Argument(help="The person's name.")],
    db: DbOpt,
) -> None:
    """Name a stack (a name already used merges the stack into that person)."""
    from facetrain.library.curate import name as name_fn

    _curate(db, name_fn, stack, name)


@library_app.command("merge")
def library_merge(
    into: Annotated[str, typer.Argument(help="Stack to keep.")],
    other: Annotated[str, typer.Argument(help="Stack merged into it.")],
    db: DbOpt,
) -> None:
    """Merge stack OTHER into INTO."""
    from facetrain.library.curate import merge

    _curate(db, merge, into, other)


@library_app.command("split")
def library_split(
    stack: Annotated[str, typer.Argument(help="Stack id or name.")],
    db: DbOpt,
    threshold: Annotated[float | None, typer.Option(help="[0.7 × the model's]")] = None,
) -> None:
    """Sub-cluster a stack that mixes people."""
    from facetrain.library.curate import split

    con = _library(db)
    thr, how = _threshold(con, None if threshold is None else threshold)
    if threshold is None:
        thr *= 0.7
    _curate(db, split, stack, thr, "euclidean" if how == "given" else how)


@library_app.command("reject")
def library_reject(
    face: Annotated[int, typer.Argument(help="Face id (see `library faces`).")], db: DbOpt
) -> None:
    """Not this person: the face leaves its stack and is never put back."""
    from facetrain.library.curate import reject

    _curate(db, reject, face)


@library_app.command("hide")
def library_hide(stack: Annotated[str, typer.Argument()], db: DbOpt) -> None:
    """Hide a stack (strangers, posters): its faces are left out from now on."""
    from facetrain.library.curate import hide

    _curate(db, hide, stack)


@library_app.command("undo")
def library_undo(
    db: DbOpt, steps: Annotated[int, typer.Option(help="How many actions.")] = 1
) -> None:
    """Undo the last curating actions (name, merge, split, reject, hide)."""
    from facetrain.library.curate import undo

    done = undo(_library(db), steps)
    console.print("\n".join(f"undone: {d}" for d in done) or "nothing to undo")


@library_app.command("faces")
def library_faces(
    stack: Annotated[str, typer.Argument(help="Stack id or name.")], db: DbOpt
) -> None:
    """The faces of a stack: face id, photo, box (ids for `reject`)."""
    from facetrain.library.curate import stack_id
    from facetrain.library.db import LibraryError

    con = _library(db)
    try:
        pid = stack_id(con, stack)
    except LibraryError as e:
        fail(str(e))
    for r in con.execute(
        "SELECT f.id, p.path, f.x1, f.y1, f.x2, f.y2, f.confirmed FROM faces f"
        " JOIN photos p ON p.id = f.photo_id WHERE f.person_id = ? ORDER BY f.id",
        (pid,),
    ):
        mark = "confirmed" if r[6] else "guess"
        print(f"{r[0]}\t{mark}\t{r[1]}\t{r[2]:.0f},{r[3]:.0f},{r[4]:.0f},{r[5]:.0f}")


@library_app.command("identify")
def library_identify(
    photos: Annotated[list[Path], typer.Argument(help="Photos to recognise.")],
    db: DbOpt,
    threshold: Annotated[float | None, typer.Option(help="[the model's]")] = None,
    margin: Annotated[float, typer.Option(help="Required gap to the runner-up.")] = 0.05,
    device: DeviceOpt = "cpu",
    json_out: JsonOut = None,
) -> None:
    """Name every face in new photos from the named people, or say unknown."""
    import numpy as np

    from facetrain.data.images import ImageError, load_rgb
    from facetrain.library.curate import identify, prototypes
    from facetrain.library.scan import Scanner

    con = _library(db)
    fm = _library_model(con, db, None, device, None)
    thr, how = _threshold(con, threshold)
    distance = "euclidean" if how == "given" else how
    protos = prototypes(con)
    if len(protos[0]) == 0:
        console.print("[yellow]no named people yet: every face is unknown[/]")
    scanner = Scanner(fm, device=device)
    results = []
    for p in photos:
        try:
            faces = scanner.faces_of(load_rgb(p))
        except (ImageError, OSError) as e:
            console.print(f"[yellow]skipped[/] {p}: {e}")
            results.append({"photo": str(p), "error": str(e), "faces": []})
            continue
        names = identify(
            np.stack([f["embedding"] for f in faces]) if faces else np.zeros((0, 1)),
            protos, thr, distance, margin,
        ) if faces else []  # fmt: skip
        out = []
        for f, n in zip(faces, names):
            out.append({"box": [round(v, 1) for v in f["box"]], "score": f["score"]} | n)
            d = "-" if n["distance"] is None else f"{n['distance']:.3f}"
            print(f"{p}\t{n['name']}\t{d}\t" + ",".join(f"{v:.0f}" for v in f["box"]))
        if not faces:
            print(f"{p}\t(no face)")
        results.append({"photo": str(p), "faces": out})
    _write_json(json_out, results)


@library_app.command("export")
def library_export(
    db: DbOpt,
    by_person: Annotated[Path, typer.Option("--by-person", help="Folder to fill with links.")],
    unnamed: Annotated[bool, typer.Option(help="Also unnamed stacks.")] = False,
) -> None:
    """A folder per person of links to the original photos (never moved or copied)."""
    from facetrain.library.export import export_by_person

    counts = export_by_person(_library(db), by_person, unnamed)
    console.print(f"{sum(counts.values())} links in {len(counts)} folders under {by_person}")


@library_app.command("eval")
def library_eval(
    db: DbOpt,
    truth: Annotated[Path, typer.Option(help="A folder per person of their photos.")],
    json_out: JsonOut = None,
) -> None:
    """Pairwise and BCubed precision/recall/F of the stacks against folder labels."""
    from facetrain.library.evaluate import scores, truth_labels

    if not truth.is_dir():
        fail(f"{truth}: not a folder")
    pred, labels, left = truth_labels(_library(db), truth)
    try:
        r = scores(pred, labels)
    except ValueError as e:
        fail(f"{e} (left out: {left})")
    console.print(
        f"{r['faces']} faces of {r['people']} people in {r['stacks']} stacks: pairwise P "
        f"{r['pairwise_precision']:.3f} R {r['pairwise_recall']:.3f} F {r['pairwise_f']:.3f}; "
        f"BCubed P {r['bcubed_precision']:.3f} R {r['bcubed_recall']:.3f} "
        f"F {r['bcubed_f']:.3f}" + (f"; left out: {left}" if left else "")
    )
    _write_json(json_out, r | {"left_out": left})


@library_app.command("migrate")
def library_migrate(
    db: DbOpt,
    model: Annotated[str, typer.Option(help="The new model.")],
    spec: SpecOpt = None,
    device: DeviceOpt = "cpu",
) -> None:
    """Re-embed the library with another model, keeping every name."""
    from facetrain.library.scan import Scanner, migrate

    con = _library(db, migrating_ok=True)
    fm = _open_model(model, device, spec=spec)
    r = migrate(con, Scanner(fm, device=device), fm.source)
    console.print(
        f"migrated {r['photos']} photos to {fm.source}: {r['confirmed_faces_kept']} named "
        f"faces kept, {r['confirmed_faces_lost']} not found again; run `library cluster` next"
    )


@library_app.command("serve")
def library_serve(
    db: DbOpt,
    host: Annotated[
        str, typer.Option(help="Address to bind (local only by default).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8765,
) -> None:
    """The stacks in your browser: name, merge, split, reject, hide, undo."""
    import uvicorn

    from facetrain.library.web import create_app

    _library(db).close()
    if host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]warning:[/] serving on {host}: other machines can see your library")
    console.print(f"library {db}: open http://{host}:{port}/  (Ctrl-C stops)")
    uvicorn.run(create_app(db), host=host, port=port, log_level="warning")


@app.command()
def models() -> None:
    """List the model names `--model` accepts."""
    from facetrain.models import create_model, list_models

    for name in list_models():
        m = create_model(name)
        n = sum(p.numel() for p in m.parameters())
        console.print(f"{name:22s} input {m.input_size}x{m.input_size}  {n / 1e6:6.2f}M params")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        console.print("interrupted; run the same command again to resume")
        sys.exit(130)
