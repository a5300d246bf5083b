"""Commands that put a model to work: embed, compare, find, export, classify, filter."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from facetrain import atomic
from facetrain.cli.common import (
    INPUTS_HELP,
    AlignOpt,
    BackendOpt,
    DeviceOpt,
    JsonOut,
    PhotoWorkersOpt,
    SpecOpt,
    WorkersOpt,
    app,
    embed_data,
    faces_of_data,
    fail,
    model_and_inputs,
    open_model_arg,
    work_towards,
    write_json,
)
from facetrain.progress import console, counted, shown
from facetrain.run_folder import WEIGHTS

# how a model's embedding treats the mirror image, in words (`pre.flip`)
FLIP_WORDS = {"none": "one embedding a face", "sum": "face and mirror image summed",
              "concat": "face and mirror image side by side"}  # fmt: skip


@app.command()
def embed(
    args: Annotated[list[str], typer.Argument(help=INPUTS_HELP, metavar="[MODEL] DATA...")],
    out: Annotated[Path, typer.Option(help="Output .npz: embeddings, paths, labels.")],
    align: AlignOpt = "auto",
    backend: BackendOpt = "auto",
    spec: SpecOpt = None,
    device: DeviceOpt = "cpu",
    workers: WorkersOpt = 0,
) -> None:
    """Embed every face of a dataset with the model's own preprocessing."""
    from facetrain.use.embeddings import check_table_path, save_table

    atomic.output_files(args, **{"--out": out})
    try:
        check_table_path(out)  # before the work, not after it
    except ValueError as e:
        fail(str(e))
    fm, data = model_and_inputs(args, device, backend, spec)
    if not data:
        fail("give the faces to embed: identity folders or list files")
    with work_towards(out) as parts:
        t = embed_data(fm, data, align, device, workers, parts=parts)
        save_table(out, t)
    console.print(
        f"embedded {counted(len(t), 'image')} of "
        f"{counted(len(set(t.labels)), 'identity', 'identities')} "
        f"({t.embeddings.shape[1]}-d, {fm.backend}), skipped {len(t.skipped):,} → {out}"
    )


@app.command()
def compare(
    args: Annotated[
        list[str],
        typer.Argument(
            help="[MODEL] then two or more photos or aligned faces; a folder: every photo in it.",
            metavar="[MODEL] IMAGE...",
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
    """Distance matrix of photos (by their nearest faces: every face of a group photo is
    looked at), and same/different by the model's threshold ("same?" where different
    people of some populations are that close too)."""
    from facetrain.use.compare import compare as compare_faces

    atomic.output_files(args, **{"--json": json_out})
    fm, images = model_and_inputs(args, device, backend, spec)
    c = compare_faces(fm, images, threshold, align, device)
    for path, why in c.skipped.items():
        console.print(f"skipped {path}: {why}", style="yellow", highlight=False)
    if len(c.paths) <= MATRIX_UP_TO:
        table = Table("", *map(str, range(len(c.paths))),
                      title=f"{c.distance} distance, {FLIP_WORDS[fm.pre.flip]}")  # fmt: skip
        for i, p in enumerate(c.paths):
            table.add_row(f"{i} {Path(p).name}", *(f"{v:.3f}" for v in c.matrix[i]))
        console.print(table)
    else:  # a matrix wider than a terminal: the pairs below say it all
        console.print(f"{len(c.paths):,} photos, {c.distance} distance, {FLIP_WORDS[fm.pre.flip]}"
                      " (the distance matrix: --json)", highlight=False)  # fmt: skip
    for p in c.pairs:
        verdict = {None: "?", True: "same", False: "different"}[p["same"]]
        verdict += "?" if p["sure"] is False else ""
        a, b = _face_shown(p["a"], p["face_a"]), _face_shown(p["b"], p["face_b"])
        print(f"{verdict}\t{p['distance']:.4f}\t{a}\t{b}")
    if any(p["face_a"] or p["face_b"] for p in c.pairs):
        console.print("a photo of several faces: each compared, the nearest shown",
                      highlight=False)  # fmt: skip
    if c.threshold is None:
        console.print("the model has no calibrated threshold; pass --threshold", style="yellow")
    else:
        l2 = "" if c.threshold_l2 is None else f" (plain L2 {c.threshold_l2:.3f})"
        console.print(f"threshold {c.threshold:.3f} {c.distance}{l2}; from: {c.threshold_source}")
    if any(p["sure"] is False for p in c.pairs):
        console.print(
            f"same?: under the threshold but not under {c.sure_below:.3f}, where the model puts "
            f"different people of some populations ({c.sure_source}): likely the same "
            "person on faces like the threshold's, not sure on others",
            style="yellow",
            highlight=False,
        )
    elif c.sure_below is None and any(p["same"] for p in c.pairs):
        console.print("same: by the threshold alone; this model was not measured on other "
                      "populations, where it may crowd faces (`facetrain eval-populations "
                      "MODEL FOLDER... --record` measures it)", style="yellow")  # fmt: skip
    write_json(json_out, c.as_dict())


MATRIX_UP_TO = 10  # photos whose distance matrix is printed as a table (it fits a terminal)


def _face_shown(path: str, face: dict | None) -> str:
    """A photo as the pair lines name it: which face too, when it holds several."""
    if face is None:
        return shown(path)
    at = "" if face["box"] is None else " at " + ",".join(f"{v:.0f}" for v in face["box"][:2])
    return f"{shown(path)} (face {face['face']} of {face['of']}{at})"


@app.command()
def find(
    args: Annotated[
        list[str],
        typer.Argument(
            help="[MODEL] then the photo of the face to look for, then the folder to look in.",
            metavar="[MODEL] PHOTO FOLDER",
        ),
    ],
    face: Annotated[
        int | None,
        typer.Option(help="Which face of a group photo to look for, from 1 [its central one]."),
    ] = None,
    backend: BackendOpt = "auto",
    spec: SpecOpt = None,
    device: DeviceOpt = "cpu",
    workers: PhotoWorkersOpt = 0,
    json_out: JsonOut = None,
) -> None:
    """The photos of a folder that hold the face of PHOTO, nearest first (every face of a
    group photo looked at); the folder's faces are kept in the cache folder, so the next
    find there looks only at photos added or changed since."""
    import warnings

    from facetrain.inference.saved import split_model
    from facetrain.use.api import Recognizer
    from facetrain.use.compare import face_of

    atomic.output_files(args, **{"--json": json_out})
    model, rest = split_model(args)
    if len(rest) != 2:
        fail("give the photo of the face to look for, then the folder to look in")
    photo, folder = rest
    _check_find(photo, folder)
    fr = Recognizer(open_model_arg(model, device, backend, spec), device)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        try:
            faces, k = fr.faces_to_find(photo, face)
            hits = fr.find_face(faces.embeddings[k], folder, workers)
        except (ValueError, FileNotFoundError) as e:
            fail(str(e))
    skipped = [str(w.message) for w in said]
    for why in skipped:
        console.print(f"skipped {why}", style="yellow", highlight=False)
    if face is None:
        _say_other_faces(photo, faces, k)
    for h in hits:
        print(f"{h['distance']:.4f}\t{_face_shown(h['path'], h['face'])}")
    rule = (f"a face under threshold {fr.threshold:.3f} ({fr.model.pre.distance}) tightened "
            "where the folder's faces crowd, and in the stack this face joins, the folder's "
            "faces stacked as a library stacks them")  # fmt: skip
    console.print(f"found in {counted(len(hits), 'photo')} of {folder}: {rule}",
                  highlight=False)  # fmt: skip
    write_json(json_out, {"photo": photo, "folder": folder, "face": face,
                          "looked_for": face_of(faces, k), "found": hits,
                          "skipped": skipped, "threshold": fr.threshold,
                          "distance": fr.model.pre.distance, "model": fr.model.source})  # fmt: skip


def _check_find(photo: str, folder: str) -> None:
    """`find`'s photo and folder, refused before the model loads (a typo said at once), with
    the command meant where they are something else: a folder to look for, a photo or a
    library's file to look in."""
    from facetrain.use.api import folder_to_look_in

    if os.path.isdir(photo):
        fail(f"{photo} is a folder: find looks for the face of one photo (the faces of a "
             f"folder's photos side by side: facetrain compare {photo})")  # fmt: skip
    if not os.path.exists(photo):
        fail(f"{photo}: no such photo")
    if os.path.isfile(folder):
        with open(folder, "rb") as f:  # a library's file, or a photo (`find a.jpg b.jpg`)
            library = folder.endswith(".db") or f.read(16) == b"SQLite format 3\0"
        instead = (f"the people of a library: facetrain library identify {photo} --db {folder}"
                   if library else f"two photos: facetrain compare {photo} {folder}")  # fmt: skip
        fail(f"{folder} is a file: find looks in a folder of photos ({instead})")
    try:
        folder_to_look_in(folder)
    except FileNotFoundError as e:
        fail(str(e))


def _say_other_faces(photo: str, faces, central: int) -> None:
    """A group photo looked for by its central face: which one, and which faces `--face`
    may pick."""
    from facetrain.use.compare import face_of

    if len(faces.boxes) > 1:
        at = [face_of(faces, k)["box"] for k in range(len(faces.boxes))]
        each = ", ".join(f"{k + 1} at {b[0]:.0f},{b[1]:.0f}" for k, b in enumerate(at))
        console.print(f"{shown(photo)} holds {len(at)} faces ({each}): looked for face "
                      f"{central + 1}, its central one; --face N looks for another",
                      highlight=False)  # fmt: skip


@app.command()
def export(
    model: Annotated[str, typer.Argument(help="Run folder or model.safetensors.")],
    format_: Annotated[str, typer.Option("--format", help="onnx or torchscript.")] = "onnx",
    out: Annotated[Path | None, typer.Option(help="Output file [RUN/model.onnx or .pt].")] = None,
    check: Annotated[
        list[str] | None,
        typer.Option(help="Aligned faces for the parity check: a folder, one a person, a pack."),
    ] = None,
    tolerance: Annotated[float, typer.Option(help="Largest |Δ| accepted.")] = 1e-4,
) -> None:
    """Export to ONNX or TorchScript with the preprocessing inside; check parity."""
    from facetrain.export import export_model

    own = [] if Path(model).is_dir() else [model]  # RUN/model.onnx is the run's own output
    atomic.output_files([*own, *(check or [])], **{"--out": out})
    r = export_model(open_model_arg(model, torch=True), format_, out, check, tolerance)
    if r.ok:
        console.print(
            f"exported {r.path} ({format_}); parity on {r.checked_on}: max |Δ| = "
            f"{r.delta:.2e} (ok, tolerance {tolerance:g})"
        )
        return
    kept = "left as it was" if r.path.exists() else "not written"
    fail(
        f"{r.path}: {kept}: the export's embeddings differ from the model's by up to "
        f"{r.delta:.2e} (--tolerance {tolerance:g}) on {r.checked_on}",
        code=1,
    )


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
        list[str] | None,
        typer.Option(
            help="Faces of people not in DATA: refusals measured on half; all kept "
            "with the classifier, whose rule learns from them where faces crowd."
        ),
    ] = None,
    align: AlignOpt = "auto",
    spec: SpecOpt = None,
    device: DeviceOpt = "cpu",
    json_out: JsonOut = None,
) -> None:
    """Fit a classifier on DATA; print held-out accuracy of all four methods."""
    from facetrain.use.classify import check_settings, save_classifier, train_classifier

    atomic.output_files([*args, *(unknown or [])], **{"--out": out, "--json": json_out})
    check_settings(method, test_fraction)  # before any face is embedded
    fm, data = model_and_inputs(args, device, spec=spec)
    with work_towards(out) as parts, work_towards(_with_strangers(out)) as apart:
        t, groups = faces_of_data(fm, data, align, device, parts)
        strangers = None if not unknown else embed_data(fm, unknown, align, device,
                                                        parts=apart).embeddings  # fmt: skip
        r = train_classifier(fm, t, method, threshold, test_fraction, strangers, groups)
        save_classifier(out, r.classifier)
    for note in r.notes:
        console.print(note)
    clf = r.classifier
    table = Table(title=f"held-out faces, threshold {clf.threshold:.3f} ({clf.threshold_source})")
    for col in ("method", "accuracy (forced)", "accuracy (with unknown)", "strangers refused"):
        table.add_column(col, justify="right")
    for m, f in r.figures.items():
        refused = f"{f['unknown_rejected']:.3f}" if "unknown_rejected" in f else "-"
        table.add_row(m, f"{f['accuracy']:.3f}", f"{f['open_set_accuracy']:.3f}", refused)
    console.print(table)
    if strangers is None:  # the figure that says whether strangers get a name
        console.print("strangers refused: not measured; --unknown FOLDER (faces of people "
                      "not among these) measures it and teaches the rule where faces "
                      "crowd")  # fmt: skip
    people = counted(len(set(t.labels)), "person", "people")
    console.print(f"{method} on {counted(len(t), 'face')} of {people} → {out}")
    write_json(json_out, {"threshold": clf.threshold, "threshold_source": clf.threshold_source,
                          "methods": r.figures})  # fmt: skip


def _with_strangers(out: Path) -> Path:
    """The output whose kept work (`work_towards`) is the strangers' faces of `out`'s."""
    return out.with_name(out.name + ".unknown")


@classify_app.command("predict")
def classify_predict(
    classifier: Annotated[Path, typer.Argument(help="File from `classify train`.")],
    images: Annotated[
        list[str], typer.Argument(help="Photos or aligned faces; a folder: every photo in it.")
    ],
    model: Annotated[
        str | None, typer.Option(help="The model [the one it was trained with].")
    ] = None,
    align: AlignOpt = "auto",
    backend: BackendOpt = "auto",
    spec: SpecOpt = None,
    device: DeviceOpt = "cpu",
    json_out: JsonOut = None,
) -> None:
    """Name every face of each photo, or `unknown` when no known person is close enough."""

    from facetrain.data.listing import photos_in
    from facetrain.use.classify import check_model, load_classifier
    from facetrain.use.embeddings import iter_faces_in_photos

    atomic.output_files([classifier, *images], **{"--json": json_out})
    passed_over: dict[str, str] = {}
    images = photos_in(images, skipped=passed_over)
    try:
        clf = load_classifier(classifier)
    except ValueError as e:
        fail(str(e))
    fm = open_model_arg(model or clf.model, device, backend, spec)
    check_model(clf, fm, str(classifier))
    console.print(f"rule: {clf.rule}")
    results = []
    for path, why in passed_over.items():
        console.print(f"skipped {path}: {why}", style="yellow", highlight=False)
        results.append({"path": path, "name": None, "error": why})
    # the faces, kept until the answers are written (in the cache without --json)
    job = ("classify-predict", Path(classifier).resolve(), fm.source, *map(os.path.abspath, images))
    with work_towards(json_out, *job) as parts:
        for photo in iter_faces_in_photos(fm, images, align=align, device=device, parts=parts):
            results += _named(clf, photo)
        write_json(json_out, results)


def _named(clf, photo) -> list[dict]:
    """Each face of one photo named (or `unknown`), printed a line each; a photo without a
    face is said to be skipped."""
    if photo.error:
        console.print(f"skipped {photo.path}: {photo.error}", style="yellow")
        print(f"(no face)\t-\t{shown(photo.path)}")
        return [{"path": photo.path, "name": None, "error": photo.error}]
    out = []
    for k, (box, r) in enumerate(zip(photo.boxes, clf.predict(photo.embeddings, one_photo=True))):
        where = [] if box is None else [round(float(v), 1) for v in box]
        out.append({"path": photo.path, "face": k, "box": where} | r)
        at = f"#{k + 1} ({', '.join(f'{v:.0f}' for v in where)})" if where else ""
        print(f"{shown(r['name'])}\t{r['distance']:.4f}\t{shown(photo.path)}{at and ' ' + at}")
    return out


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
    from facetrain.use.filter import check_percentile, filter_table, write_outputs

    report_csv = report_csv or out.with_suffix(".csv")
    atomic.output_files(args, **{"--out": out, "--report": report_csv})
    try:
        check_percentile(percentile)  # before the work, not after it
    except ValueError as e:
        fail(str(e))
    if min_images < 1:
        fail(f"--min-images {min_images}: at least 1")
    fm, data = model_and_inputs(args, device, spec=spec)
    with work_towards(out) as parts:
        t = embed_data(fm, data, align, device, parts=parts)
        r = filter_table(t, percentile=percentile, min_images=min_images,
                         distance=fm.pre.distance)  # fmt: skip
        write_outputs(t, r, out, report_csv)
    order = r.distance.argsort()[::-1][:10]
    # one folder above them all is said once in the title, not on every row
    paths = [os.path.abspath(p) for p in t.paths]  # roots given relative and absolute
    top = os.path.commonpath([os.path.dirname(p) for p in paths]) if paths else ""
    table = Table(title=f"farthest from their identity's centre (in {shown(top)})")
    for col in ("distance", "identity", "image"):
        table.add_column(col, overflow="fold")
    for i in order:
        table.add_row(f"{r.distance[i]:.3f}", t.labels[i], shown(os.path.relpath(paths[i], top)))
    console.print(table)
    console.print(
        f"kept {int(r.keep.sum()):,}/{len(t):,} images (cut-off {r.cutoff:.3f}), "
        f"{r.identities_after:,}/{r.identities_before:,} identities with ≥ {min_images}; "
        f"{len(t.skipped):,} unusable → {out}, report {report_csv}"
    )


import_app = typer.Typer(
    help="Models trained elsewhere as facetrain models (weights only; nothing runs).",
    no_args_is_help=True,
)
app.add_typer(import_app, name="import")
ImportOut = Annotated[Path, typer.Option(help="Folder (gets model.safetensors) or .safetensors.")]


def _weights_path(out: Path) -> Path:
    return out if out.suffix == ".safetensors" else out / WEIGHTS


@import_app.command("facenet-pytorch")
def import_facenet(
    file: Annotated[Path, typer.Argument(help="An InceptionResnetV1 state dict (.pt/.pth).")],
    out: ImportOut,
) -> None:
    """facenet-pytorch's InceptionResnetV1 (e.g. their VGGFace2 or CASIA checkpoints)."""
    from facetrain.inference.imports import import_facenet_pytorch

    path = import_facenet_pytorch(file, _weights_path(out))
    console.print(f"imported {file} → {path} (inception_resnet_v1, 160² box crops)")


@import_app.command("arcface-torch")
def import_arcface(
    file: Annotated[Path, typer.Argument(help="arcface_torch's backbone.pth.")],
    out: ImportOut,
    arch: Annotated[str, typer.Option(help="iresnet18, iresnet34, iresnet50 or iresnet100.")],
) -> None:
    """arcface_torch's iresnet backbone (the standard 112² five-point crop)."""
    from facetrain.inference.imports import import_arcface_torch

    path = import_arcface_torch(file, _weights_path(out), arch)
    console.print(f"imported {file} → {path} ({arch}, 112² aligned faces)")
