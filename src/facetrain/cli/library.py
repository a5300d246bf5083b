"""The private photo library: `facetrain library ...`, an adapter over `Library`."""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from facetrain import atomic
from facetrain.cli.common import (
    DeviceOpt,
    JsonOut,
    PhotoWorkersOpt,
    SpecOpt,
    app,
    fail,
    show_first,
    work_towards,
    write_json,
)
from facetrain.progress import console, counted, shown

library_app = typer.Typer(
    help="A private photo library: faces stacked per person, named, recognised.",
    no_args_is_help=True,
)
app.add_typer(library_app, name="library")
DbOpt = Annotated[
    Path,
    typer.Option(
        "--db",
        envvar="FACETRAIN_LIBRARY",
        help="The library's SQLite file (default: $FACETRAIN_LIBRARY).",
    ),  # fmt: skip
]
ModelOpt = Annotated[
    str | None,
    typer.Option(help="The library's model [the one it was made with; new: the default]."),
]
ThresholdOpt = Annotated[float | None, typer.Option(help="[the model's calibrated one]")]


def _read(db: Path, model: str | None = None):
    """The library for a command that only reads it (no lock: alongside a running scan)."""
    return _open(db, model, lock=False)


def _open(db: Path, model: str | None = None, **kw):
    """The library; with --model, that model checked against it (and, when the library's
    model moved, remembered at its new place)."""
    from facetrain.library.library import Library

    lib = Library(db, **kw)
    if model is not None:
        try:
            lib.model(model)
        except BaseException:
            lib.close()
            raise
    return lib


def _spec(spec: Path | None) -> dict | None:
    from facetrain.inference.saved import read_spec

    return read_spec(spec) if spec else None


@library_app.command("scan")
def library_scan(
    db: DbOpt,
    photos: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Folders of photos, each read only, recursively [every folder the "
            "library was scanned from: look for new photos]."
        ),
    ] = None,
    model: ModelOpt = None,
    min_size: Annotated[
        float | None, typer.Option(help="Quality gate: face box side, px [library's; new: 40].")
    ] = None,
    min_score: Annotated[
        float | None, typer.Option(help="Quality gate: detector score [library's; new: 0.95].")
    ] = None,
    min_sharpness: Annotated[
        float | None, typer.Option(help="Quality gate: Laplacian var [library's; new: 15].")
    ] = None,
    spec: SpecOpt = None,
    device: DeviceOpt = "cpu",
    workers: PhotoWorkersOpt = 0,
    import_xmp: Annotated[
        bool, typer.Option("--import-xmp", help="Names from XMP sidecars' face regions.")
    ] = False,
    import_picasa: Annotated[
        bool, typer.Option("--import-picasa", help="Names from Picasa's .picasa.ini face tags.")
    ] = False,
    import_takeout: Annotated[
        bool,
        typer.Option(
            "--import-takeout", help="Names from Google Photos (Google Takeout's JSON files)."
        ),
    ] = False,
    picasa_contacts: Annotated[
        Path | None,
        typer.Option(
            help="Picasa's contacts.xml, for names its .picasa.ini files lack "
            "(implies --import-picasa)."
        ),
    ] = None,
    json_out: JsonOut = None,
) -> None:
    """Find, align and embed every face; new, changed, moved and deleted photos handled."""
    from facetrain.library.library import not_a_folder

    for folder in photos or []:  # every one before the library file is made
        if why := not_a_folder(folder):
            fail(why)
    if picasa_contacts is not None and not picasa_contacts.is_file():
        fail(f"{picasa_contacts}: no such file (Picasa's contacts.xml)")
    if not photos and not db.is_file():
        fail(f"{db}: no library here yet; scan a folder into it first "
             f"(`facetrain library scan FOLDER --db {db}`)")  # fmt: skip
    picasa = (import_picasa or picasa_contacts is not None, picasa_contacts)
    imports = {"xmp": import_xmp, "takeout": import_takeout, "picasa": picasa}
    new = not db.exists()
    made = [d for d in db.absolute().parents if not d.exists()]  # by Library, deepest first
    try:
        with _open(db, create=True) as lib:
            fm = lib.model(model, device, _spec(spec), prefetch=workers <= 1)
            console.print(f"model: {fm.source}")
            quality = lib.gate_of(min_size=min_size, min_score=min_score,
                                  min_sharpness=min_sharpness)  # fmt: skip
            scans = (_scan_each(lib, photos, fm, quality, device, workers) if photos else
                     lib.scan_again(fm, quality, device, workers, on_folder=_scanning,
                                    progress=True))  # fmt: skip
            rows, last = [], None  # the last folder scanned (not left as it was)
            for f, rep in scans:
                rows.append(_scanned(lib, f, rep, imports, db, quality))
                last = last if isinstance(rep, str) else rep
    except BaseException:
        if new:  # a scan that failed before recording any photo leaves no library behind
            _remove_if_empty(db, made)
        raise
    if last is not None and last.to_stack:  # once, after every folder: the count then
        what = ("puts this face in a stack" if last.to_stack == 1
                else f"stacks these {last.to_stack} faces per person")  # fmt: skip
        console.print(f"next: `facetrain library cluster --db {db}` {what}", highlight=False)
    write_json(json_out, rows[0] if photos and len(photos) == 1 else {"folders": rows})


def _scan_each(lib, folders: list[Path], fm, quality, device: str, workers: int):
    """(folder, its scan report) for each folder given, in turn, said as it starts when
    there are several; a folder given twice is scanned once."""
    once: dict[str, Path] = {}
    for f in folders:
        once.setdefault(os.path.realpath(f), f)
    once = list(once.values())
    for k, folder in enumerate(once):
        if len(once) > 1:
            console.print(f"scanning {folder} ({k + 1} of {len(once)} folders)", highlight=False)
        yield str(folder), lib.scan(folder, fm, quality, device, workers, progress=True)


def _scanned(lib, folder: str, rep, imports: dict, db: Path, quality) -> dict:
    """One folder's scan shown as it ends (with the names imported from it, as asked), or
    why it was left as it was; its row of the JSON."""
    if isinstance(rep, str):
        console.print(f"{folder}: {rep}: its photos were left as they were", style="yellow",
                      highlight=False)  # fmt: skip
        return {"folder": folder, "left": rep}
    extra = _imported(lib, folder, imports)
    _show_scan(rep, folder, db, quality)
    _show_imported(extra)
    return {"folder": folder} | asdict(rep) | extra


def _scanning(folder: str, k: int, n: int) -> None:
    which = f" ({k + 1} of {n} folders)" if n > 1 else ""
    console.print(f"looking for new photos in {folder}{which}", highlight=False)


def _imported(lib, folder: str, imports: dict) -> dict:
    """The names of other programs read from `folder`, as the scan was asked to."""
    picasa, contacts = imports["picasa"]
    return ({"xmp": lib.import_xmp(folder)} if imports["xmp"] else {}) | (
        {"takeout": lib.import_takeout(folder)} if imports["takeout"] else {}) | (
        {"picasa": lib.import_picasa(folder, contacts)} if picasa else {})  # fmt: skip


def _show_imported(extra: dict) -> None:
    shows = {"xmp": _show_xmp, "picasa": _show_picasa, "takeout": _show_takeout}
    for key in ("xmp", "picasa", "takeout"):
        if key in extra:
            shows[key](extra[key])


def _show_takeout(out: dict) -> None:
    _show_problems(out["problems"], "Google Takeout JSON")
    console.print(f"{counted(out['faces_named'], 'face')} named from Google Photos' people on "
                  f"{counted(out['photos'], 'photo')} ({out['by_likeness']} of them on the "
                  f"{counted(out['several'], 'photo')} that name several people or show "
                  "several faces, by likeness among the people listed, and "
                  f"{out['by_company']} of people never alone on a photo, by the face the "
                  "photos listing them share; faces you confirmed kept their names)")  # fmt: skip
    _show_refused(out["names_refused"], "Google Photos' people")


def _show_xmp(out: dict) -> None:
    _show_problems(out["problems"], "XMP")
    console.print(f"{counted(out['faces_named'], 'face')} named from "
                  f"{counted(out['sidecars'], 'XMP sidecar')} and the XMP inside "
                  f"{counted(out['embedded'], 'photo')} "
                  f"({counted(out['regions_without_face'], 'region')} matched no face found "
                  "here; faces you confirmed kept their names)")  # fmt: skip
    if out["listed"]:
        console.print(f"{out['listed']} of those photos list their people with no place "
                      "(Iptc4xmpExt:PersonInImage): "
                      f"{counted(out['by_likeness'], 'face')} named by likeness among the "
                      f"people listed and {out['by_company']} by the face the photos listing "
                      "someone share, as with Google Photos' lists")  # fmt: skip
    _show_refused(out["names_refused"], "XMP")


def _show_picasa(out: dict) -> None:
    _show_problems(out["problems"], "Picasa tags")
    for path in out["unclear"]:
        console.print(f"Picasa tags left: they fit the faces of {path} more than one way up",
                      style="yellow", highlight=False)  # fmt: skip
    console.print(f"{counted(out['faces_named'], 'face')} named from Picasa's tags on "
                  f"{counted(out['photos'], 'photo')} in {counted(out['folders'], 'folder')} "
                  f"({counted(out['unnamed'], 'face')} Picasa had no name for; "
                  f"{counted(out['regions_without_face'], 'tag')} matched no face found "
                  "here; faces you confirmed kept their names)")  # fmt: skip
    _show_refused(out["names_refused"], "Picasa's tags")


def _show_problems(problems: dict[str, str], what: str) -> None:
    """Each file an import could not read, and why."""
    for path, why in problems.items():
        console.print(f"{what} not read: {path}: {why}", style="yellow", highlight=False)


def _show_refused(n: int, where: str) -> None:
    from facetrain.library.names import MAX_NAME

    if n:
        console.print(f"{counted(n, 'name')} in {where} not taken: a name is one line of printable "
                      f"text, at most {MAX_NAME} characters, not digits alone",
                      style="yellow")  # fmt: skip


def _show_scan(rep, photos: Path, db: Path, quality) -> None:
    """What a scan did, in words: its problems first, then the counts."""
    show_first([f"{why}: {path}" for path, why in rep.problems.items()], "more file",
               tail=" to look at (`--json FILE` lists every one, and why)")  # fmt: skip
    unusable = f" (of these, {counted(rep.unusable, 'file')} cannot be used)"
    console.print(
        f"scanned {photos}: {rep.new} new, {rep.changed} changed, {rep.moved} moved, "
        f"{counted(rep.duplicates, 'duplicate')}, {rep.removed} removed, "
        f"{rep.unchanged} unchanged{unusable if rep.unusable else ''}; "
        f"{counted(rep.faces, 'face')} found ({rep.usable_faces} pass"
        f"{'es' if rep.usable_faces == 1 else ''} the quality gate) → {db}",
    )
    if rep.raw_pairs:
        console.print(f"{counted(rep.raw_pairs, 'camera RAW file')} left to the picture of "
                      "the same name beside it (RAW + JPEG: one photo)")  # fmt: skip
    if rep.gate_changed:
        again = rep.searched_again
        console.print(
            f"{_gate_line(quality)}, kept with the library; {counted(rep.regated, 'face')} judged "
            "again by it"
            + (f", {counted(again, 'photo')} searched again for smaller faces" if again else "")
        )
    if rep.turned:
        console.print(f"{counted(rep.turned, 'changed photo')} turned or mirrored by a viewer: "
                      "faces and names turned with them")  # fmt: skip
    if rep.back:
        console.print(f"{counted(rep.back, 'photo')} recorded missing back in place, with "
                      "faces and names")  # fmt: skip
    if rep.missing:
        console.print(
            f"{counted(rep.missing, 'photo')} gone from their folder, kept for the faces you "
            "named on them: scan the folder they moved to and they come back (`library "
            "forget-missing` forgets them)"
        )
    if rep.joined_stacks or rep.new_stacks:
        console.print(f"{counted(rep.joined_stacks, 'new face')} joined their stacks, "
                      f"{counted(rep.new_stacks, 'new stack')} (`library cluster` "
                      "re-clusters everything unconfirmed)")  # fmt: skip


def _remove_if_empty(db: Path, made: list[Path]) -> None:
    """A library that holds nothing is removed, and the folders made for it (`made`,
    deepest first) with it when nothing else is in them."""
    from facetrain.library.files import LibraryFiles
    from facetrain.library.library import Library

    if db.is_file():
        with Library(db, migrating_ok=True) as lib:
            if not lib.is_empty():
                return
        for f in LibraryFiles.of(db).files():
            f.unlink(missing_ok=True)
    for d in made:
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()


@library_app.command("forget-missing")
def library_forget_missing(
    db: DbOpt,
    model: ModelOpt = None,
    yes: Annotated[bool, typer.Option("--yes", help="Forget them (else: only list them).")] = False,
    json_out: JsonOut = None,
) -> None:
    """Forget the photos gone from disk that were kept for the faces you named on them:
    their faces and thumbnails go, the names stay. Lists them first; --yes forgets."""
    with _open(db, model) as lib:
        gone = lib.forget_missing() if yes else lib.missing()
    show_first([f"back at its place, kept: {shown(path)}" for path in gone["back"]],
               "more photo", tail=" back at its place", style=None)  # fmt: skip
    show_first([f"missing: {shown(path)}" for path in gone["photos"]], "more photo",
               tail=" missing", style=None)  # fmt: skip
    names = ", ".join(f"{shown(n)} ({k})" for n, k in sorted(gone["names"].items()))
    n = len(gone["photos"])
    what = f"{counted(n, 'missing photo')}, {counted(gone['faces'], 'face')}"
    what += f"; named: {names}" if names else ""
    if not n:
        console.print("no missing photos: nothing to forget")
    elif yes:
        console.print(f"forgot {what} (the names are kept)", highlight=False)
    else:
        console.print(f"{what}: nothing forgotten yet; `--yes` forgets them (it cannot be "
                      "undone; your photos are not touched)", highlight=False)  # fmt: skip
    write_json(json_out, gone | {"forgotten": yes and n > 0})


@library_app.command("cluster")
def library_cluster(db: DbOpt, model: ModelOpt = None, threshold: ThresholdOpt = None) -> None:
    """Stack unnamed faces per person; named people stay and attract their new faces."""
    with _open(db, model) as lib:
        r, thr, why = lib.cluster(threshold, progress=True)
    console.print(
        f"{counted(r.faces, 'face')} → {counted(r.stacks, 'stack')} "
        f"({counted(r.matched_to_named, 'cluster')} joined named people, {r.kept} stayed the "
        f"stacks they were, {counted(r.new_stacks, 'new stack')}; "
        f"{counted(r.split_for_cannot_link, 'face')} moved apart: same photo) at threshold "
        f"{thr:.3f}: {why}",
        highlight=False,
    )


@library_app.command("people")
def library_people(db: DbOpt, model: ModelOpt = None, json_out: JsonOut = None) -> None:
    """Stacks, largest first: id, name, faces, photos; below them, the quality gate and
    the folders a scan with no folder looks in."""
    from facetrain.library.store import LibraryError
    from facetrain.progress import stdout_console as out

    with _read(db, model) as lib:
        rows, folders = lib.people(), lib.folders()
        try:
            gate = _gate_line(lib.gate_of()) + " (`library scan --min-size …` changes it)"
        except LibraryError as e:
            gate = str(e)
    table = Table(title=counted(len(rows), "stack"))
    for col in ("stack", "name", "faces", "photos", "confirmed", "hidden"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["id"]), r["name"] or "", str(r["faces"]), str(r["photos"]),
                      str(r["confirmed"]), "yes" if r["hidden"] else "")  # fmt: skip
    out.print(table)
    out.print(gate, highlight=False)
    if folders:
        out.print(f"folders: {', '.join(folders)} (`library scan` with no folder looks for new "
                  "photos in them)", highlight=False)  # fmt: skip
    write_json(json_out, rows)


def _gate_line(quality) -> str:
    return (f"quality gate: faces of {quality.min_size:g} px or more, detector score "
            f"{quality.min_score:g}, sharpness {quality.min_sharpness:g}")  # fmt: skip


def _curate(db: Path, model: str | None, action: str, *args) -> None:
    with _open(db, model) as lib:
        console.print(getattr(lib, action)(*args), highlight=False)


@library_app.command("name")
def library_name(
    stack: Annotated[str, typer.Argument(help="Stack id or current name.")],
    name: Annotated[str, typer.Argument(help="The person's name.")],
    db: DbOpt,
    model: ModelOpt = None,
) -> None:
    """Name a stack (a name already used merges the stack into that person)."""
    _curate(db, model, "name", stack, name)


@library_app.command("merge")
def library_merge(
    into: Annotated[str, typer.Argument(help="Stack to keep.")],
    other: Annotated[str, typer.Argument(help="Stack merged into it.")],
    db: DbOpt,
    model: ModelOpt = None,
) -> None:
    """Merge stack OTHER into INTO."""
    _curate(db, model, "merge", into, other)


@library_app.command("split")
def library_split(
    stack: Annotated[str, typer.Argument(help="Stack id or name.")],
    db: DbOpt,
    model: ModelOpt = None,
    threshold: Annotated[float | None, typer.Option(help="[0.7 × the model's]")] = None,
) -> None:
    """Sub-cluster a stack that mixes people."""
    _curate(db, model, "split", stack, threshold)


@library_app.command("reject")
def library_reject(
    face: Annotated[int, typer.Argument(help="Face id (see `library faces`).")],
    db: DbOpt,
    model: ModelOpt = None,
) -> None:
    """Not this person: the face leaves its stack and is never put back."""
    _curate(db, model, "reject", face)


@library_app.command("hide")
def library_hide(
    stack: Annotated[str, typer.Argument()], db: DbOpt, model: ModelOpt = None
) -> None:
    """Hide a stack (strangers, posters): its faces are left out from now on."""
    _curate(db, model, "hide", stack)


@library_app.command("unhide")
def library_unhide(
    stack: Annotated[str, typer.Argument()], db: DbOpt, model: ModelOpt = None
) -> None:
    """Show a hidden stack again."""
    _curate(db, model, "unhide", stack)


@library_app.command("move")
def library_move(
    face: Annotated[int, typer.Argument(help="Face id (see `library faces`).")],
    to: Annotated[
        str, typer.Argument(help="Stack id or name it belongs to (a new name: a new person).")
    ],
    db: DbOpt,
    model: ModelOpt = None,
) -> None:
    """This face is that person: move it there (confirmed); a name no one has yet makes
    that person."""
    _curate(db, model, "move", face, to)


@library_app.command("undo")
def library_undo(
    db: DbOpt,
    model: ModelOpt = None,
    steps: Annotated[int, typer.Option(help="How many actions.")] = 1,
) -> None:
    """Undo the last curating actions (name, merge, split, reject, hide)."""
    with _open(db, model) as lib:
        done = lib.undo(steps)
    console.print("\n".join(f"undone: {d}" for d in done) or "nothing to undo", highlight=False)


@library_app.command("faces")
def library_faces(
    stack: Annotated[str, typer.Argument(help="Stack id or name.")],
    db: DbOpt,
    model: ModelOpt = None,
) -> None:
    """The faces of a stack: face id, photo, box (ids for `reject`)."""
    with _read(db, model) as lib:
        faces = lib.faces(stack)
    for f in faces:
        box = ",".join(f"{f[k]:.0f}" for k in ("x1", "y1", "x2", "y2"))
        print(f"{f['id']}\t{'confirmed' if f['confirmed'] else 'guess'}\t{shown(f['path'])}\t{box}")


@library_app.command("photos")
def library_photos(
    people: Annotated[
        list[str], typer.Argument(help="Stack ids or names: the photos they are all on.")
    ],
    db: DbOpt,
    model: ModelOpt = None,
    link_to: Annotated[
        Path | None,
        typer.Option(help="Also make an album here: a folder of links to these photos."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="Only those taken from this year, month or day on (2019, 2019-07, 2019-07-14)."
        ),
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Only those taken up to the end of this year, month or day.")
    ] = None,
    json_out: JsonOut = None,
) -> None:
    """The photos of a person, or of several together, the latest first: date, photo,
    everyone on it (tab-separated; the date is the camera's, else the file name's or the
    file's, marked so)."""
    from facetrain.library.dates import date_text
    from facetrain.library.export import link_album

    with _read(db, model) as lib:
        photos = lib.photos(people, who=True, since=since, until=until)
    if link_to is not None:
        n = link_album(link_to, photos)
        console.print(f"{counted(n, 'link')} in {link_to} (the photos stay where they are)",
                      highlight=False)  # fmt: skip
    for p in photos:
        who = ", ".join(x["name"] or f"#{x['id']}" for x in p["people"] if not x["hidden"])
        print(f"{date_text(p) or '-'}\t{shown(p['path'])}\t{shown(who)}")
    together = " and ".join(people)
    when = (f" from {since}" if since else "") + (f" to {until}" if until else "")
    console.print(f"{counted(len(photos), 'photo')} of {together}{when}"
                  + (", the latest first" if photos else ""), highlight=False)  # fmt: skip
    write_json(json_out, [p | {"date": p["date"] and p["date"].isoformat()} for p in photos])


@library_app.command("identify")
def library_identify(
    photos: Annotated[list[Path], typer.Argument(help="Photos to recognise.")],
    db: DbOpt,
    model: ModelOpt = None,
    threshold: ThresholdOpt = None,
    margin: Annotated[float, typer.Option(help="Required gap to the runner-up.")] = 0.05,
    device: DeviceOpt = "cpu",
    workers: PhotoWorkersOpt = 0,
    json_out: JsonOut = None,
) -> None:
    """Name every face in new photos from the named people, or say unknown. Each photo is
    answered as it is looked at; that work is kept until the answers are all given (and
    the --json file written), so a stopped run goes on."""
    atomic.output_files([db, *photos], **{"--json": json_out})
    results = []
    job = ("library-identify", Path(db).resolve(), model, *(p.resolve() for p in photos))
    with _read(db) as lib, work_towards(json_out, *job) as parts:
        if not any(p["name"] for p in lib.people()):
            console.print("no named people yet: every face is unknown", style="yellow")
        for r in lib.identified(photos, threshold, margin, device, model, workers=workers,
                                parts=parts):  # fmt: skip
            _answer(r)
            results.append(r)
        write_json(json_out, results)
    if results:  # stderr: stdout stays one line a face for scripts
        console.print(f"rule: {results[0]['rule']}", highlight=False)
        _say_unnamed_stacks(results, db)


def _say_unnamed_stacks(results: list[dict], db) -> None:
    """Faces left `unknown` because a stack not named yet is nearer: which stacks, and how
    to have such faces named."""
    stacks = sorted({f["unnamed_stack"] for r in results for f in r["faces"]
                     if "unnamed_stack" in f})  # fmt: skip
    if stacks:
        faces = sum("unnamed_stack" in f for r in results for f in r["faces"])
        shown_ids = ", ".join(map(str, stacks[:8])) + (", …" if len(stacks) > 8 else "")
        console.print(f"{counted(faces, 'unknown face')} look like stacks you "
                      f"have not named ({shown_ids}): name them (`facetrain library name "
                      f"{stacks[0]} NAME --db {db}`) and run again to have such faces named",
                      highlight=False)  # fmt: skip


def _answer(r: dict) -> None:
    """One photo's answer: a line a face on stdout (photo, name, distance, box), or why
    there is none."""
    if "error" in r:
        console.print(f"skipped {r['photo']}: {r['error']}", style="yellow", highlight=False)
    for f in r["faces"]:
        d = "-" if f["distance"] is None else f"{f['distance']:.3f}"
        print(f"{shown(r['photo'])}\t{shown(f['name'])}\t{d}\t"
              + ",".join(f"{v:.0f}" for v in f["box"]))  # fmt: skip
    if not r["faces"] and "error" not in r:
        print(f"{shown(r['photo'])}\t(no face)")


@library_app.command("export")
def library_export(
    db: DbOpt,
    by_person: Annotated[
        Path | None, typer.Option("--by-person", help="Folder to fill with links.")
    ] = None,
    xmp: Annotated[
        Path | None,
        typer.Option(help="Folder for XMP sidecars (MWG face regions) of the named faces."),
    ] = None,
    model: ModelOpt = None,
    unnamed: Annotated[bool, typer.Option(help="Also unnamed stacks (--by-person).")] = False,
) -> None:
    """A folder per person of links to the original photos (never moved or copied), and
    XMP sidecars other photo programs read the names from (digiKam, Lightroom, Immich)."""
    if by_person is None and xmp is None:
        fail("say what to export: --by-person FOLDER, --xmp FOLDER, or both")
    with _read(db, model) as lib:
        if by_person is not None:
            counts = lib.export(by_person, unnamed)
            console.print(
                f"{counted(sum(counts.values()), 'link')} in {counted(len(counts), 'folder')} "
                f"under {by_person}",
            )
        if xmp is not None:
            r = lib.export_xmp(xmp)
            console.print(f"{counted(r['written'], 'XMP sidecar')} under {xmp} (place each "
                          "beside its photo, named like it plus .xmp)")  # fmt: skip
            if r["kept"]:
                console.print(f"{counted(len(r['kept']), 'sidecar')} left as they were: "
                              f"another program wrote them (e.g. {shown(r['kept'][0])}); "
                              "facetrain never overwrites one",
                              style="yellow", highlight=False)  # fmt: skip


@library_app.command("eval")
def library_eval(
    db: DbOpt,
    truth: Annotated[Path, typer.Option(help="A folder per person of their photos.")],
    model: ModelOpt = None,
    json_out: JsonOut = None,
) -> None:
    """Pairwise and BCubed precision/recall/F of the stacks against folder labels."""
    with _read(db, model) as lib:
        r, left = lib.evaluate(truth)
    console.print(
        f"{counted(r['faces'], 'face')} of {counted(r['people'], 'person', 'people')} in "
        f"{counted(r['stacks'], 'stack')}: pairwise P "
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
    workers: PhotoWorkersOpt = 0,
) -> None:
    """Re-embed the library with another model, keeping every name."""
    from facetrain.inference.compiled import open_for_use

    fm = open_for_use(model, device, "auto", _spec(spec))
    with _open(db, migrating_ok=True) as lib:
        r = lib.migrate(fm, device, workers)
    before = r["photos_before"]
    console.print(
        f"migrated {counted(r['photos'], 'photo')} to {fm.source}"
        f"{f' ({before:,} of them before it was stopped)' if before else ''}: "
        f"{counted(r['confirmed_faces_kept'], 'named face')} kept, "
        f"{r['confirmed_faces_lost']:,} not found again; run `library cluster` next"
    )
    if r["confirmed_faces_waiting"]:
        console.print(f"{counted(r['confirmed_faces_waiting'], 'named face')} on photos "
                      "missing or unreadable now: kept, with their names, and embedded by the "
                      "new model when a scan finds their photo again", style="yellow")  # fmt: skip


@library_app.command("personalize")
def library_personalize(
    db: DbOpt,
    model: ModelOpt = None,
    off: Annotated[bool, typer.Option("--off", help="Back to the plain model.")] = False,
    anyway: Annotated[
        bool, typer.Option("--anyway", help="Switch the adapter on even where it measures worse.")
    ] = False,
    json_out: JsonOut = None,
) -> None:
    """Learn from the faces you named: a private adapter on the library's model (kept in
    the library), measured on faces held back from it first, and switched on (unnamed faces
    re-clustered) only where it helps."""
    with _open(db, model) as lib:
        if off:
            r = lib.personalize_off()
            console.print("back to the plain model" + (
                f"; unnamed faces re-clustered into {counted(r['stacks'], 'stack')}"
                if r["switched_off"]
                else " (no personal adapter was on)"))  # fmt: skip
        else:
            start = time.monotonic()

            def show(k: int, n: int, resumed: bool = False) -> None:
                if resumed:
                    console.print(f"resumed after {k} of {n} hold-out rounds", highlight=False)
                    return
                took = time.monotonic() - start
                console.print(f"measured {k} of {n} hold-out rounds, {took:.0f} s; "
                              f"ETA {took / k * (n - k) + took / k:.0f} s with the final fit",
                              highlight=False)  # fmt: skip

            r = lib.personalize(on_progress=show, anyway=anyway)
            _show_personal(r)
    write_json(json_out, r)


def _show_personal(r: dict) -> None:
    table = Table(
        title=f"learnt from {counted(r['named_faces'], 'named face')} of "
        f"{counted(r['people'], 'person', 'people')}; measured on "
        f"{counted(r['held_back_faces'], 'held-back face')}, {counted(r['rounds'], 'round')}"
    )
    for col in ("", "before", "after"):
        table.add_column(col)
    for key, label in (
        ("bcubed_f", "stacks (BCubed F)"),
        ("identify_accuracy", "identify accuracy"),
        ("stranger_false_name_rate", "strangers given a name"),
    ):
        b, a = r[f"{key}_before"], r[f"{key}_after"]
        table.add_row(label, "n/a" if b is None else f"{b:.3f}", "n/a" if a is None else f"{a:.3f}")
    console.print(table)
    console.print(f"measured: {r['verdict']}", highlight=False)
    if r["personalized"]:
        if r.get("kept_one_switched_on"):
            console.print("the adapter kept off just now, switched on as it was measured "
                          "(nothing learnt again)", highlight=False)  # fmt: skip
        console.print(
            f"personal adapter on; {counted(r['stacks'], 'stack')} now at threshold "
            f"{r['threshold_now']:.3f} (`library personalize --off` to go back)"
        )
        return
    from facetrain.library.personalize import worse

    why = "measured worse" if worse(r) else "measured no better"
    console.print(f"personal adapter kept off ({why} on your own faces): the library decides "
                  "as before (`library personalize --anyway` to use it all the same)",
                  style="yellow", highlight=False)  # fmt: skip


def _check_port(host: str, port: int) -> None:
    """Refuse a port already taken, before announcing an address that would not answer."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            fail(f"cannot serve on {host}:{port} ({e.strerror or e}); choose another --port")


@library_app.command("serve")
def library_serve(
    db: DbOpt,
    model: ModelOpt = None,
    host: Annotated[
        str, typer.Option(help="Address to bind (local only by default).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port, 1–65535.")] = 8765,
) -> None:
    """The stacks in your browser: name, merge, split, reject, hide, undo."""
    from facetrain.extras import require

    require("fastapi", "web", "library serve")
    uvicorn = require("uvicorn", "web", "library serve")
    from facetrain.library.web import create_app

    _open(db, model).close()
    _check_port(host, port)
    if host not in ("127.0.0.1", "localhost", "::1"):
        console.print(
            f"warning: serving on {host}: other machines can see your library", style="yellow"
        )
    if host in ("0.0.0.0", "::"):
        console.print("warning: every interface: any Host header is answered", style="yellow")
    console.print(f"library {db}: open http://{host}:{port}/  (Ctrl-C stops)")
    uvicorn.run(create_app(db, host), host=host, port=port, log_level="warning")
