"""Names that come from Google Photos: `library scan --import-takeout` reads the people
Google Takeout's JSON lists on each photo and names the face of each photo of one person."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from PIL import Image, ImageFilter
from typer.testing import CliRunner

from conftest import BBT, need
from facetrain.cli import app
from facetrain.library.takeout import sidecar_names
from helpers import make_model
from test_library_safety import _names

runner = CliRunner()


def cli(*args) -> str:
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res.output


def test_a_photos_json_is_found_by_the_names_takeout_gives_it():
    """Old and new names, each cut to 46 characters before `.json`; a second photo of one
    name numbered after the cut; an edited photo with its original's; a number that is
    part of the owner's own name."""
    assert sidecar_names("IMG_1.jpg") == ["IMG_1.jpg.supplemental-metadata.json", "IMG_1.jpg.json"]
    assert "IMG_1.jpg.supplemental-metadata(1).json" in sidecar_names("IMG_1(1).jpg")
    assert "IMG_1.jpg(1).json" in sidecar_names("IMG_1(1).jpg")
    assert "IMG_1.jpg.json" in sidecar_names("IMG_1-edited.jpg")
    long = "Urlaub in Knaufspesch in der Schneifel (38).JPG"
    assert "Urlaub in Knaufspesch in der Schneifel (38).JP.json" in sidecar_names(long)
    assert sidecar_names("PXL_20240101_123456789.MP.jpg")[0] == (
        "PXL_20240101_123456789.MP.jpg.supplemental-met.json"  # 46 characters, then .json
    )


def _json(path: Path, title: str, *names: str) -> None:
    path.write_text(json.dumps({"title": title, "people": [{"name": n} for n in names],
                                "photoTakenTime": {"timestamp": "1577880000"}}))  # fmt: skip


@need(BBT)
def test_google_photos_people_name_the_face_of_each_photo_of_one_person(photos, tmp_path):
    """Each way Takeout names a JSON is found, and the title where none fits; a photo of
    one person names its one face — not when it shows another face, even one under the
    quality gate (the person named may be theirs: Amy's face was named Leonard); a group
    photo naming people not yet named is left to the stacks; JSON that is not JSON is
    listed; a name of digits alone is not taken; a face the owner confirmed keeps the
    owner's word."""
    from facetrain.library import store
    from facetrain.library.library import Library

    root = tmp_path / "Takeout" / "Google Photos" / "Photos from 2020"
    root.mkdir(parents=True)
    for person in ("amy", "howard", "penny"):
        for p in sorted((photos / person).iterdir()):
            shutil.copy(p, root / p.name)
    shutil.copy(photos / "group" / "bbt1.jpg", root / "bbt1.jpg")
    (root / "howard1.png").rename(root / "howard1(1).png")
    (root / "penny1.png").rename(root / "penny1-edited.png")
    long = "a photo of Penny on the sofa in the living room, 2020.png"
    (root / "penny3.png").rename(root / long)
    _json(root / "amy1.png.json", "amy1.png", "Amy")
    _json(root / "amy2.png.supplemental-metadata.json", "amy2.png", "Amy")
    _json(root / "howard1.png(1).json", "howard1.png", "Howard")
    _json(root / "howard2.png.supplemental-metadata.json", "howard2.png", "12")
    _json(root / "penny1.png.json", "penny1.png", "Penny")
    _json(root / (long[:46] + ".json"), long, "Penny")
    _json(root / "metadata(2).json", "penny2.png", "Penny")  # by its title alone
    _json(root / "bbt1.jpg.json", "bbt1.jpg", "Raj", "Leonard", "Sheldon")  # none named yet
    (root / "amy3.png.json").write_text("{not json")
    pair = Image.new("RGB", (300, 150), (128, 128, 128))  # Amy, and a face blurred past the
    pair.paste(Image.open(BBT / "reference/amy/amy1.png").convert("RGB"), (0, 0))  # gate
    pair.paste(Image.open(BBT / "reference/howard/howard1.png").convert("RGB")
               .filter(ImageFilter.GaussianBlur(6)), (150, 0))  # fmt: skip
    pair.save(root / "pair.png")
    _json(root / "pair.png.json", "pair.png", "Leonard")
    (root / "penny3.png.json").write_text("[" * 100_000)  # no photo of this name now
    _json(root / "howard3.png.json", "howard3.png")  # nobody named on it
    (root / "howard3.png.json").write_text("[" * 100_000)

    db, model = tmp_path / "lib.db", make_model(tmp_path / "m.safetensors")
    cli("library", "scan", root, "--db", db, "--model", model)
    with Library(db) as lib, store.transaction(lib.con):  # the owner's word on penny2
        pid = store.new_person(lib.con)
        store.name_person(lib.con, pid, "Penelope")
        (photo,) = [r for p, r in store.photos_under(lib.con, str(root)).items()
                    if p.endswith("penny2.png")]  # fmt: skip
        (face,) = store.faces_of_photo(lib.con, photo["id"], usable_only=True)
        store.assign(lib.con, [(pid, face["id"])], confirmed=1)
    out = cli(
        "library", "scan", root, "--db", db, "--import-takeout", "--json", tmp_path / "s.json"
    )
    assert _names(db) == {
        "Amy": ["amy1.png", "amy2.png"],
        "Howard": ["howard1(1).png"],
        "Penny": sorted([long, "penny1-edited.png"]),
        "Penelope": ["penny2.png"],
    }
    report = json.loads((tmp_path / "s.json").read_text())["takeout"]
    assert (report["photos"], report["faces_named"], report["several"]) == (9, 5, 2), report
    assert report["names_refused"] == 1
    problems = report["problems"]
    assert sorted(problems) == [str(root / n) for n in ("amy3.png.json", "howard3.png.json")]
    assert "nested too deep" in problems[str(root / "howard3.png.json")]
    assert "5 faces named from Google Photos' people on 9 photos (0 of them on the 2 photos" in out
    assert "Google Takeout JSON not read" in out and "1 names in Google Photos' people" in out


@need(BBT)
@pytest.mark.parametrize("listed", [["Raj", "Leonard", "Howard", "Sheldon"], ["Raj", "Howard"]])
def test_a_group_photos_people_are_named_by_likeness_among_those_listed(tmp_path, listed):
    """A group photo whose JSON lists people named on photos of their own: each of its
    faces is named one of those listed when the library's identify rule, its candidates
    only them, is sure — never a face of someone not listed (Leonard and Sheldon, when the
    list names Raj and Howard only), never the wrong one of them."""
    from test_library_safety import _names as names_of

    root = tmp_path / "takeout"
    root.mkdir()
    people = ("raj", "leonard", "howard", "sheldon")
    for person in people:
        for p in sorted((BBT / "reference" / person).iterdir())[:3]:
            shutil.copy(p, root / p.name)
            _json(root / (p.name + ".json"), p.name, person.capitalize())
    shutil.copy(BBT / "group" / "bbt1.jpg", root / "bbt1.jpg")  # Raj, Leonard, Howard, Sheldon
    _json(root / "bbt1.jpg.json", "bbt1.jpg", *listed)
    db = tmp_path / "lib.db"
    out = cli(
        "library", "scan", root, "--db", db, "--import-takeout", "--json", tmp_path / "s.json"
    )
    report = json.loads((tmp_path / "s.json").read_text())["takeout"]
    con = sqlite3.connect(db)
    faces = con.execute(
        "SELECT f.x1, CASE WHEN f.confirmed = 1 THEN pe.name END FROM faces f JOIN photos p"
        " ON p.id = f.photo_id LEFT JOIN people pe ON pe.id = f.person_id"
        " WHERE p.path LIKE '%bbt1.jpg' AND f.usable = 1 ORDER BY f.x1"
    ).fetchall()
    con.close()
    assert len(faces) == 4, faces
    got = [name for _, name in faces]
    truth = [p.capitalize() for p in people]
    assert all(g is None or (g == t and t in listed) for g, t in zip(got, truth)), got
    named = sum(g is not None for g in got)
    assert named >= len(listed) - 1 and report["by_likeness"] == named, (got, report)
    assert report["faces_named"] == 12 + named and len(names_of(db)) == 4, out
