"""Names that leave with the owner (issue 29, requirement 3): `library export --xmp` writes
MWG face regions that ExifTool reads back, and `library scan --import-xmp` turns such
regions (ours, or another program's) into names."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import BBT, need
from facetrain.cli import app
from helpers import make_model
from test_library_safety import _confirm_all, _names

runner = CliRunner()


def cli(*args) -> str:
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res.output


def _exiftool() -> str:
    """ExifTool's path, or the test skipped: it reads the sidecars as other programs do."""
    exiftool = shutil.which("exiftool")
    if exiftool is None:
        pytest.skip("no exiftool here (make test installs Debian's libimage-exiftool-perl)")
    return exiftool


@need(BBT)
def test_names_leave_in_xmp_and_come_back(photos, tmp_path):
    exiftool = _exiftool()
    model = make_model(tmp_path / "m.safetensors")
    db = tmp_path / "lib.db"
    cli("library", "scan", photos, "--db", db, "--model", model)
    names = _confirm_all(db)  # every face named after its photo's file
    out = cli("library", "export", "--db", db, "--xmp", tmp_path / "xmp")
    sidecars = sorted((tmp_path / "xmp").rglob("*.xmp"))
    assert f"{len(sidecars)} XMP sidecars" in out and len(sidecars) == len(
        {p for ps in names.values() for p in ps})  # fmt: skip

    group = next(s for s in sidecars if s.parent.name == "group")
    read = json.loads(subprocess.run(
        [exiftool, "-j", "-struct", "-RegionInfo", "-PersonInImage", str(group)],
        capture_output=True, text=True, check=True).stdout)[0]  # fmt: skip
    regions = read["RegionInfo"]["RegionList"]
    photo = group.name.removesuffix(".xmp")
    assert sorted(r["Name"] for r in regions) == sorted(names[photo])
    assert all(r["Type"] == "Face" and 0 < r["Area"]["X"] < 1 and 0 < r["Area"]["W"] < 1
               for r in regions)  # fmt: skip
    assert sorted(set(read["PersonInImage"])) == sorted(set(names[photo]))

    # a new library of a copy of the photos, the sidecars beside them: the names come back
    again = tmp_path / "again"
    shutil.copytree(photos, again)
    for s in sidecars:
        shutil.copy(s, again / s.relative_to(tmp_path / "xmp"))
    db2 = tmp_path / "lib2.db"
    out = cli("library", "scan", again, "--db", db2, "--model", model, "--import-xmp")
    assert f"faces named from {len(sidecars)} XMP sidecars" in out
    assert _names(db2) == names

    # a sidecar that is not XMP is listed, not fatal
    first = sorted(again.rglob("*.xmp"))[0]
    first.write_text('<!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>')
    out = cli("library", "scan", again, "--db", tmp_path / "lib3.db", "--model", model,
              "--import-xmp")  # fmt: skip
    assert "sidecar not read" in out and first.name in out


@need(BBT)
def test_regions_another_program_wrote_are_read(photos, tmp_path):
    """ExifTool's own way of writing MWG regions (elements, rdf:parseType="Resource")."""
    exiftool = _exiftool()
    from facetrain.library.xmp import read_regions

    model = make_model(tmp_path / "m.safetensors")
    db = tmp_path / "lib.db"
    cli(
        "library",
        "scan",
        photos / "amy",
        "--db",
        db,
        "--model",
        model,
        "--json",
        tmp_path / "r.json",
    )
    import sqlite3

    con = sqlite3.connect(db)
    path, w, h, x1, y1, x2, y2 = con.execute(
        "SELECT p.path, p.width, p.height, f.x1, f.y1, f.x2, f.y2 FROM faces f JOIN photos p"
        " ON p.id = f.photo_id ORDER BY p.path LIMIT 1").fetchone()  # fmt: skip
    con.close()
    cx, cy, rw, rh = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h
    side = Path(path + ".xmp")
    info = (
        f"{{AppliedToDimensions={{W={w},H={h},Unit=pixel}},RegionList=[{{Area={{W={rw:.4f},"
        f"H={rh:.4f},X={cx:.4f},Y={cy:.4f},Unit=normalized}},Name=Amy Farrah,Type=Face}}]}}"
    )
    subprocess.run([exiftool, "-q", f"-RegionInfo={info}", "-o", str(side)], check=True)
    assert read_regions(side)[0][0] == "Amy Farrah"
    out = cli("library", "scan", photos / "amy", "--db", db, "--import-xmp")
    assert "1 faces named from 1 XMP sidecars" in out
    assert _names(db) == {"Amy Farrah": [Path(path).name]}


@need(BBT)
def test_an_export_removes_the_sidecars_it_wrote_for_photos_no_longer_named(photos, tmp_path):
    """A face's name taken off after an export: the next `export --xmp` removes the sidecar
    it wrote for that photo, and keeps one another program rewrote since (digiKam writes
    its own toolkit name) and every file of the owner's."""
    import sqlite3

    db, out = tmp_path / "lib.db", tmp_path / "xmp"
    cli("library", "scan", photos / "amy", "--db", db, "--model",
        make_model(tmp_path / "m.safetensors"))  # fmt: skip
    names = _confirm_all(db)  # each face named after its photo's file
    cli("library", "export", "--db", db, "--xmp", out)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.xmp" for n in names)
    theirs = out / "amy2.png.xmp"
    theirs.write_text(theirs.read_text().replace('"facetrain"', '"XMP Core 4.4.0-Exiv2"'))
    (out / "amy9.png.xmp").write_text("the owner's own")
    (out / "notes.txt").write_text("the owner's own")

    con = sqlite3.connect(db)
    faces = con.execute(
        "SELECT f.id FROM faces f JOIN photos p ON p.id = f.photo_id"
        " WHERE p.path LIKE '%/amy1.png' OR p.path LIKE '%/amy2.png'"
    ).fetchall()
    con.close()
    for (face,) in faces:
        cli("library", "reject", face, "--db", db)
    res = cli("library", "export", "--db", db, "--xmp", out)
    assert "1 XMP sidecars" in res, res
    assert sorted(p.name for p in out.iterdir()) == [
        "amy2.png.xmp", "amy3.png.xmp", "amy9.png.xmp", "notes.txt"]  # fmt: skip
    assert "Exiv2" in theirs.read_text()
