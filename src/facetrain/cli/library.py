"""The private photo library: `facetrain library ...`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from facetrain.cli.common import DeviceOpt, JsonOut, SpecOpt, app, fail, open_model_arg, write_json
from facetrain.progress import console

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
    fm = open_model_arg(source, device, spec=spec)  # a new library without one: the default
    try:
        check_model(con, asdict(fm.pre), fm.source, str(db_path))
    except LibraryError as e:
        fail(str(e))
    return fm


def _threshold(con, given: float | None) -> tuple[float, str]:
    """The threshold (given, else the model's) and the distance it is measured in: always
    the library model's distance, also for a given threshold."""
    from facetrain.library.db import model_record

    rec = model_record(con) or {}
    distance = rec.get("distance", "squared_l2")
    if given is not None:
        return given, distance
    if rec.get("threshold") is None:
        fail("the library's model has no calibrated threshold; pass --threshold")
    return float(rec["threshold"]), distance


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
    write_json(json_out, asdict(rep))


@library_app.command("cluster")
def library_cluster(
    db: DbOpt,
    threshold: Annotated[float | None, typer.Option(help="[the model's calibrated one]")] = None,
) -> None:
    """Stack unnamed faces per person; named people stay and attract their new faces."""
    from facetrain.library.cluster import cluster

    con = _library(db)
    thr, distance = _threshold(con, threshold)
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
    write_json(json_out, rows)


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
    thr, distance = _threshold(con, threshold)
    if threshold is None:
        thr *= 0.7
    _curate(db, split, stack, thr, distance)


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
    thr, distance = _threshold(con, threshold)
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
    write_json(json_out, results)


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
    write_json(json_out, r | {"left_out": left})


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
    fm = open_model_arg(model, device, spec=spec)
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
    from facetrain.extras import require

    require("fastapi", "web", "library serve")
    uvicorn = require("uvicorn", "web", "library serve")
    from facetrain.library.web import create_app

    _library(db).close()
    if host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]warning:[/] serving on {host}: other machines can see your library")
    console.print(f"library {db}: open http://{host}:{port}/  (Ctrl-C stops)")
    uvicorn.run(create_app(db), host=host, port=port, log_level="warning")
