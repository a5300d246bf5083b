"""Commands that put a model to work: embed, compare, export, classify, filter."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from facetrain.cli.common import (
    INPUTS_HELP,
    AlignOpt,
    BackendOpt,
    DeviceOpt,
    JsonOut,
    SpecOpt,
    app,
    embed_data,
    fail,
    model_and_inputs,
    open_model_arg,
    write_json,
)
from facetrain.progress import console


@app.command()
def embed(
    args: Annotated[list[str], typer.Argument(help=INPUTS_HELP, metavar="[MODEL] DATA...")],
    out: Annotated[Path, typer.Option(help="Output .npz: embeddings, paths, labels.")],
    align: AlignOpt = "auto",
    backend: BackendOpt = "auto",
    spec: SpecOpt = None,
    device: DeviceOpt = "cpu",
) -> None:
    """Embed every face of a dataset with the model's own preprocessing."""
    from facetrain.use.embeddings import save_table

    fm, data = model_and_inputs(args, device, backend, spec)
    if not data:
        fail("give the faces to embed: identity folders or list files")
    t = embed_data(fm, data, align, device)
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
    args: Annotated[
        list[str],
        typer.Argument(
            help="[MODEL] then two or more photos or aligned faces.", metavar="[MODEL] IMAGE..."
        ),
    ],
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
    from facetrain.distances import distance_matrix, plain_l2
    from facetrain.use.embeddings import embed_paths

    fm, images = model_and_inputs(args, device, backend, spec)
    if len(images) < 2:
        fail("give at least two images")
    t = embed_paths(fm, images, [""] * len(images), align=align, device=device, progress=False)
    for path, why in t.skipped.items():
        console.print(f"[yellow]skipped[/] {path}: {why}")
    if len(t) < 2:
        fail("fewer than two usable faces", 1)
    thr = threshold if threshold is not None else fm.pre.threshold
    d = distance_matrix(t.embeddings, t.embeddings, fm.pre.distance)
    table = Table(title=f"{fm.pre.distance} distance ({fm.pre.flip} flip), unit embeddings")
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
        l2 = plain_l2(thr, fm.pre.distance)
        also = "" if l2 is None else f" (plain L2 {l2:.3f}, the scale dlib's 0.6 is quoted in)"
        src = "given" if threshold is not None else fm.pre.threshold_source
        console.print(f"threshold {thr:.3f} {fm.pre.distance}{also}; from: {src}")
    write_json(
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

    from facetrain.export import FORMATS, export_onnx, export_torchscript, max_difference
    from facetrain.models.feed import Images, prepare
    from facetrain.models.saved import open_model

    if format_ not in FORMATS:
        fail(f"--format {format_!r}: choose from {', '.join(FORMATS)}")
    fm = open_model_arg(model)
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
    args: Annotated[
        list[str],
        typer.Argument(help="[MODEL] then one folder per known person.", metavar="[MODEL] DATA..."),
    ],
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
    from facetrain.use.classify import (
        METHODS,
        Classifier,
        choose_threshold,
        evaluate_methods,
        save_classifier,
    )

    if method not in METHODS:
        fail(f"--method {method!r}: choose from {', '.join(METHODS)}")
    fm, data = model_and_inputs(args, device, spec=spec)
    t = embed_data(fm, data, align, device)
    if len(set(t.labels)) < 2:
        fail("need at least two people to classify")
    dist = fm.pre.distance
    thr, src = choose_threshold(threshold, fm.pre, t.embeddings, t.labels)
    strangers = embed_data(fm, unknown, align, device).embeddings if unknown else None
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
    write_json(json_out, {"threshold": thr, "threshold_source": src, "methods": figures})


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
    fm = open_model_arg(model or clf.model, device, backend, spec)
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
    write_json(json_out, results)


@app.command("filter")
def filter_cmd(
    args: Annotated[list[str], typer.Argument(help=INPUTS_HELP, metavar="[MODEL] DATA...")],
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

    fm, data = model_and_inputs(args, device, spec=spec)
    t = embed_data(fm, data, align, device)
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


import_app = typer.Typer(
    help="Models trained elsewhere as facetrain models (weights only; nothing runs).",
    no_args_is_help=True,
)
app.add_typer(import_app, name="import")
ImportOut = Annotated[Path, typer.Option(help="Folder (gets model.safetensors) or .safetensors.")]


def _weights_path(out: Path) -> Path:
    return out if out.suffix == ".safetensors" else out / "model.safetensors"


@import_app.command("facenet-pytorch")
def import_facenet(
    file: Annotated[Path, typer.Argument(help="An InceptionResnetV1 state dict (.pt/.pth).")],
    out: ImportOut,
) -> None:
    """facenet-pytorch's InceptionResnetV1 (e.g. their VGGFace2 or CASIA checkpoints)."""
    from facetrain.models.imports import import_facenet_pytorch

    path = import_facenet_pytorch(file, _weights_path(out))
    console.print(f"imported {file} → {path} (inception_resnet_v1, 160² box crops)")


@import_app.command("arcface-torch")
def import_arcface(
    file: Annotated[Path, typer.Argument(help="arcface_torch's backbone.pth.")],
    out: ImportOut,
    arch: Annotated[str, typer.Option(help="iresnet18, iresnet34, iresnet50 or iresnet100.")],
) -> None:
    """arcface_torch's iresnet backbone (the standard 112² five-point crop)."""
    from facetrain.models.imports import import_arcface_torch

    path = import_arcface_torch(file, _weights_path(out), arch)
    console.print(f"imported {file} → {path} ({arch}, 112² aligned faces)")
