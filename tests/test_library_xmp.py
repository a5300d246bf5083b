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
