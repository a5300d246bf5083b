"""Commands that prepare data: stats, align, prune, split, msceleb, pack."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from facetrain.cli.common import (
    JsonOut,
    Merge,
    app,
    fail,
    open_model_arg,
    show_first,
    write_json,
)
from facetrain.progress import console, counted


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
    if len(t) != 3:
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
    from facetrain import atomic
    from facetrain.data.split import stats as dataset_stats

    atomic.output_files(data, **{"--json": json_out})
    result = dataset_stats(data, merge_same_names=merge_same_names, check=check)
    _print_stats(result)
    write_json(json_out, result)


def _print_stats(result: dict) -> None:
    """The answer of `stats`: on standard output, for a pipe or a file."""
    from facetrain.progress import stdout_console as console

    console.print(f"identities: {result['identities']}  images: {result['images']}", style="bold")
    if "splits" in result:  # a pack
        console.print("a pack: " + ", ".join(f"{k} {n}" for k, n in result["splits"].items()))
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
    if "sizes" in result:  # --check: decoded, so their sizes are known
        sizes = list(result["sizes"].items())
        more = f", and {len(sizes) - 6} other sizes" if len(sizes) > 6 else ""
        said = ", ".join(f"{size} ({n:,})" for size, n in sizes[:6])
        console.print(f"image sizes: {said or 'none'}{more}", highlight=False)
    if result["problems"]:
        console.print("problems (skipped or worth a look):", style="bold yellow")
        for kind, n in result["problems"].items():
            ex = ", ".join(result["problem_examples"].get(kind, [])[:3])
            console.print(f"  {kind}: {n:,}   e.g. {ex}")
    else:
        console.print("problems: none")


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
    from facetrain.align.job import AlignConfig, run_align, summary_dict
    from facetrain.data.listing import parse_roots

    cfg = AlignConfig(
        mode=mode, size=size, margin=margin, select=select, min_face=min_face,
        thresholds=_parse_thresholds(thresholds), factor=factor,
        detect_max_side=detect_max_side, max_pixels=max_pixels, device=device,
        batch_size=batch_size, merge_same_names=merge_same_names,
    )  # fmt: skip
    summary = run_align(parse_roots(raw), out, cfg, workers=workers, shard=_parse_shard(shard))
    total = sum(summary.counts.values())
    console.print(
        f"aligned {counted(summary.faces_written, 'face')} from {counted(total, 'input')} in "
        f"{summary.seconds:.1f} s"
        + (f" ({summary.skipped_done:,} done before, skipped)" if summary.skipped_done else "")
    )
    for status, n in sorted(summary.counts.items()):
        console.print(f"  {status}: {n:,}")
    for kind, n in summary.problems.counts.items():
        console.print(f"  skipped while listing, {kind}: {n:,}")
    console.print(f"every input is recorded in {summary.csv_path}")
    write_json(json_out, summary_dict(summary))


@app.command()
def prune(
    data: Annotated[str, typer.Argument(help="Dataset roots (a:b) or a list file.")],
    out: Annotated[Path, typer.Argument(help="List file to write.")],
    min_images: Annotated[int, typer.Option(help="Keep identities with at least this many.")] = 2,
    merge_same_names: Merge = False,
) -> None:
    """Write a list of the images whose identity has at least --min-images (nothing moves)."""
    from facetrain import atomic
    from facetrain.data.split import prune as prune_fn

    if min_images < 1:
        fail("--min-images must be at least 1")
    atomic.output_files([data], OUT=out)
    r = prune_fn(data, out, min_images, merge_same_names=merge_same_names)
    console.print(
        f"kept {r['identities_kept']:,}/{r['identities_in']:,} identities, "
        f"{r['images_kept']:,}/{r['images_in']:,} images (min {min_images}) → {out}"
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
    for name, images, people, path in (
        ("train:", r.train_images, r.train_identities, r.train_list),
        ("val:  ", r.val_images, r.val_identities, r.val_list),
    ):
        who = counted(people, "identity", "identities")
        console.print(f"{name} {counted(images, 'image')} / {who} → {path}")


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
    console.print(f"wrote {counted(counts['written'], 'image')} to {out}")
    if counts["bad_row"]:
        console.print(f"skipped {counted(counts['bad_row'], 'bad row')}, listed in "
                      f"{out / ERRORS_FILE}")  # fmt: skip
    if n := counts["files_already_done"]:
        console.print(f"{n} TSV file{'s were' if n > 1 else ' was'} decoded before")
    if n := counts["empty_file"]:
        console.print(f"{n} TSV file{'s were' if n > 1 else ' was'} empty", style="yellow")


@app.command()
def recordio(
    rec: Annotated[Path, typer.Argument(help="InsightFace train.rec (its train.idx beside it).")],
    out: Annotated[Path, typer.Argument(help="Folder for one folder of images per identity.")],
) -> None:
    """Unpack InsightFace's train.rec (MS1MV2, Glint360K, WebFace...) into OUT/LABEL/
    folders, the images' bytes as found; resumable. Then `pack OUT PACK --store encoded`."""
    from facetrain.data.recordio import ERRORS_FILE, RecordIOError, unpack_to_folders

    for f in (rec, rec.with_suffix(".idx")):
        if not f.is_file():
            fail(f"{f}: no such file (a RecordIO dataset is train.rec with train.idx beside it)")
    try:
        c = unpack_to_folders(rec, out)
    except RecordIOError as e:
        fail(str(e))
    before = f" ({c['done_before']:,} done before)" if c["done_before"] else ""
    console.print(f"wrote {counted(c['written'], 'image')} of {counted(c['records'], 'record')} "
                  f"to {out}{before}")  # fmt: skip
    if c["bad"]:
        console.print(f"skipped {counted(c['bad'], 'record')} that do not decode, listed in "
                      f"{out / ERRORS_FILE}", style="yellow")  # fmt: skip
    console.print(f"next: `facetrain pack {out} PACK --store encoded` (the images as they are)")


@app.command()
def rewarp(
    data: Annotated[str, typer.Argument(help="Standard 112x112 aligned faces (a:b) or a list.")],
    out: Annotated[Path, typer.Argument(help="Folder for the re-warped faces.")],
    model: Annotated[
        str | None, typer.Option(help="The model whose geometry to use [the default model].")
    ] = None,
    json_out: JsonOut = None,
) -> None:
    """Re-warp aligned faces into a model's own geometry (e.g. dlib's 150x150 chip)."""
    from dataclasses import asdict

    from facetrain.align.rewarp import rewarp_dataset
    from facetrain.data.listing import parse_roots

    fm = open_model_arg(model)
    rep = rewarp_dataset(parse_roots(data), out, fm.pre.alignment)
    show_first([f"skipped {path}: {why}" for path, why in rep.skipped.items()], "more image",
               tail=" skipped")  # fmt: skip
    console.print(
        f"re-warped {counted(rep.written, 'face')} into {fm.pre.model}'s "
        f"{fm.pre.alignment['size']}x{fm.pre.alignment['size']} geometry → {out}"
        + (f" ({rep.done_before:,} done before)" if rep.done_before else "")
    )
    write_json(json_out, asdict(rep))


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
        f"packed {counted(r.images, 'image')} of "
        f"{counted(r.identities, 'identity', 'identities')} in {counted(r.shards, 'shard')} "
        f"({splits}) → {out}"
    )
    if r.skipped:
        console.print(f"skipped {counted(r.skipped, 'image')}, each with its reason in "
                      f"{out / 'skipped.tsv'}")  # fmt: skip
