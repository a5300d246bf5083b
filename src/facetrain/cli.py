"""The `facetrain` command line. Each command is a thin shell over one library function."""

from __future__ import annotations

import json
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
        result = train_fn(cfg, log=console.print)
    except (TrainingError, ValueError) as e:
        fail(str(e))
    if result:
        console.print(
            f"final verification accuracy {result['accuracy']:.4f} ± {result['accuracy_std']:.4f}"
        )
    console.print(f"run folder: {cfg.out}")


@app.command("eval")
def eval_(
    model: Annotated[str, typer.Argument(help="Run folder or model.safetensors.")],
    pairs: Annotated[Path | None, typer.Option(help="LFW-format pairs.txt.")] = None,
    images: Annotated[Path | None, typer.Option(help="Aligned images for --pairs.")] = None,
    bin_: Annotated[
        list[Path] | None, typer.Option("--bin", help="InsightFace .bin set (repeatable).")
    ] = None,
    distance: Annotated[str, typer.Option(help="euclidean or cosine.")] = "euclidean",
    flip: Annotated[str, typer.Option(help="sum, concat or none.")] = "sum",
    subtract_mean: Annotated[bool, typer.Option(help="Mean fitted on the other folds.")] = False,
    folds_csv: Annotated[Path | None, typer.Option(help="Write per-fold accuracy here.")] = None,
    device: Annotated[str, typer.Option()] = "cpu",
    json_out: JsonOut = None,
) -> None:
    """Verification metrics of a trained model on LFW-style pairs and/or .bin sets."""
    import csv

    from facetrain.evaluate.sets import FLIPS, METRIC_KEYS, bin_set, embed, pairs_set
    from facetrain.evaluate.verification import DISTANCES, evaluate
    from facetrain.models.saved import ModelFileError, load_model

    if distance not in DISTANCES:
        fail(f"--distance {distance!r}: choose from {', '.join(DISTANCES)}")
    if flip not in FLIPS:
        fail(f"--flip {flip!r}: choose from {', '.join(FLIPS)}")
    if pairs is None and not bin_:
        fail("give --pairs with --images, and/or --bin")
    if pairs is not None and images is None:
        fail("--pairs needs --images (the folder its names refer to)")
    try:
        net, pre = load_model(model, device)
        sets = [pairs_set(str(pairs), str(images))] if pairs is not None else []
        sets += [bin_set(str(b)) for b in bin_ or []]
    except (ModelFileError, ValueError, OSError) as e:
        fail(str(e))
    results = {}
    for s in sets:
        if len(s.issame) == 0:
            fail(f"{s.name}: none of the pairs' images were found ({s.missing} missing)")
        emb = embed(
            net,
            s,
            size=pre.input_size,
            normalize=pre.normalize,
            crop=pre.crop,
            flip=flip,
            device=device,
        )
        e1, e2 = emb[s.idx1], emb[s.idx2]
        kw = dict(fold_ids=s.fold, distance=distance, subtract_mean=subtract_mean)
        r = evaluate(e1, e2, s.issame, **kw)
        out = {k: r[k] for k in METRIC_KEYS}
        out |= {"pairs_used": int(len(s.issame)), "pairs_missing": int(s.missing)}
        out["tar_at_far"] = {
            f"{t:g}": evaluate(e1, e2, s.issame, far_target=t, **kw)["val"]
            for t in (1e-1, 1e-2, 1e-3, 1e-4)
        }
        out["fold_accuracy"] = r["fold_accuracy"]
        results[s.name] = out
        console.print(
            f"[bold]{s.name}[/]: accuracy {out['accuracy']:.4f} ± {out['accuracy_std']:.4f}, "
            f"VAL {out['val']:.4f} ± {out['val_std']:.4f} @ FAR {out['far']:.4f}, "
            f"AUC {out['auc']:.4f}, EER {out['eer']:.4f}, threshold {out['threshold']:.3f} "
            f"({out['pairs_used']} pairs, {out['pairs_missing']} missing)"
        )
        tar = ", ".join(f"{k}: {v:.4f}" for k, v in out["tar_at_far"].items())
        console.print(f"  TAR at FAR {tar}")
    if folds_csv is not None:
        from facetrain import atomic

        with atomic.atomic_open(folds_csv, "w") as f:
            w = csv.writer(f)
            w.writerow(["set", "fold", "accuracy"])
            for name, r in results.items():
                for i, a in enumerate(r["fold_accuracy"]):
                    w.writerow([name, i, f"{a:.6f}"])
    first = next(iter(results.values()))
    _write_json(
        json_out,
        first
        | {
            "sets": results,
            "model": str(model),
            "preprocess": pre.__dict__,
            "flip": flip,
            "distance": distance,
        },
    )


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
