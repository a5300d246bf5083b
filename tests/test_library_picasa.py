"""Names that come from Picasa: `library scan --import-picasa` reads the face tags of the
`.picasa.ini` Picasa 3 left in every folder, with the names of its `[Contacts2]` section or
of Picasa's `contacts.xml`, and gives them to the faces the library found."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import BBT, need
from facetrain.cli import app
from facetrain.library import curate, picasa
from facetrain.library.turns import stored_area
from helpers import cli, make_model

runner = CliRunner()


def rect64(area: tuple) -> str:
    """A (cx, cy, w, h) as Picasa writes it: left, top, right, bottom in 16 bits each, the
    leading zeros left out."""
    cx, cy, w, h = area
    edges = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    return "".join(f"{round(min(max(v, 0), 1) * 65535):04x}" for v in edges).lstrip("0")


def test_a_picasa_ini_is_read_as_picasa_writes_it():
    """rect64 with its leading zeros left out, names from `[Contacts2]` (`Name;email;`),
    contacts without a name and nobody's faces counted unnamed, an older ini in the Windows
    code page, and lines no ini reader takes."""
    text = (
        "[Picasa]\nname=Summer 2009\n[Contacts2]\n"
        "a1b2c3d4e5f60718=Jos\xe9 Garc\xeda;jose@example.org;\n5e5e5e5e5e5e5e5e=;;\n"
        "[IMG_0001.JPG]\nfaces=rect64(3f845bcb59418507),a1b2c3d4e5f60718;"
        "rect64(8000400090005000),ffffffffffffffff;rect64(a0004000b0005000),5e5e5e5e5e5e5e5e\n"
        "backuphash=1234\n[IMG_0002.JPG]\nstar=yes\n[IMG_0001.JPG]\nrotate=rotate(1)\n%odd line\n"
    )
    ini = picasa.sections(text)
    tags = picasa.named_faces(ini, picasa.contacts(ini))
    assert list(tags) == ["IMG_0001.JPG"]  # a photo without faces has no tags
    (name, (cx, cy, w, h)), = tags["IMG_0001.JPG"]["regions"]  # fmt: skip
    assert name == "Jos\xe9 Garc\xeda" and tags["IMG_0001.JPG"]["unnamed"] == 2
    left, top, right, bottom = (v / 65535 for v in (0x3F84, 0x5BCB, 0x5941, 0x8507))
    assert (cx, cy, w, h) == pytest.approx(((left + right) / 2, (top + bottom) / 2,
                                            right - left, bottom - top))  # fmt: skip
    assert picasa.area("8507") == pytest.approx((0.0, 0x8507 / 65535 / 2, 0.0, 0x8507 / 65535))


def test_old_inis_in_the_windows_code_page_and_binary_files(tmp_path):
    old = tmp_path / ".picasa.ini"
    old.write_bytes("[Contacts2]\nab=Ren\xe9e;;\n".encode("cp1252"))
    assert picasa.contacts(picasa.read_ini(old)) == {"ab": "Ren\xe9e"}
    old.write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0")
    with pytest.raises(ValueError, match="not a Picasa ini"):
        picasa.read_ini(old)


def test_tags_that_fit_a_photo_two_ways_up_are_left():
    """Two faces side by side at mid height: tags turned half a turn fit them as well as
    upright, each on the other face, so which way up Picasa measured cannot be told. One
    face higher than the other: upright alone fits them both."""
    photo = {"width": 400, "height": 200}

    def face(i, cx, cy):
        return {"id": i, "x1": cx - 20, "y1": cy - 20, "x2": cx + 20, "y2": cy + 20}

    tags = [("Ann", (0.25, 0.5, 0.1, 0.2)), ("Bob", (0.75, 0.5, 0.1, 0.2))]
    level = [face(1, 100, 100), face(2, 300, 100)]
    assert curate.turned_to_fit(level, photo, tags, [1, 6, 3, 8]) is None
    fit = curate.turned_to_fit(level, photo, tags, [1])  # no turn to doubt
    assert [f["id"] for f in curate.placed(level, photo, fit)] == [1, 2]
    tags = [("Ann", (0.25, 0.3, 0.1, 0.2)), ("Bob", (0.75, 0.5, 0.1, 0.2))]
    apart = [face(1, 100, 60), face(2, 300, 100)]
    fit = curate.turned_to_fit(apart, photo, tags, [1, 6, 3, 8])
    assert [f["id"] for f in curate.placed(apart, photo, fit)] == [1, 2]


def _faces(db: Path) -> list[tuple]:
    """(photo file, face id, box normalised (cx, cy, w, h), confirmed name or None) of
    every face that passes the gate, by photo and left to right."""
    con = sqlite3.connect(db)
    rows = con.execute(
        "SELECT p.path, f.id, f.x1, f.y1, f.x2, f.y2, p.width, p.height, "
        "CASE WHEN f.confirmed = 1 THEN pe.name END FROM faces f "
        "JOIN photos p ON p.id = f.photo_id LEFT JOIN people pe ON pe.id = f.person_id "
        "WHERE f.usable = 1 ORDER BY p.path, f.x1"
    ).fetchall()
    con.close()
    return [(Path(p).name, i, ((x1 + x2) / 2 / W, (y1 + y2) / 2 / H, (x2 - x1) / W,
             (y2 - y1) / H), name) for p, i, x1, y1, x2, y2, W, H, name in rows]  # fmt: skip


def _write_ini(
    folder: Path, faces: list[tuple], turn: int = 1, upper: bool = False, rotate: int = 0
) -> dict:
    """A `.picasa.ini` as Picasa would leave it for the faces found: boxes a tenth
    smaller than ours, measured on the photo as stored (`turn`: its EXIF orientation) —
    every face named but the last of each photo (nobody) — and Picasa's own turn of it,
    `rotate=rotate(k)`. {face id: its name}."""
    lines, contacts, want = [], {}, {}
    for photo in dict.fromkeys(f[0] for f in faces):
        mine = [f for f in faces if f[0] == photo]
        tags = []
        for k, (_, i, (cx, cy, w, h), _) in enumerate(mine):
            cid = "ffffffffffffffff"
            if k < len(mine) - 1:
                cid = f"{i:016x}"
                contacts[cid] = want[i] = f"{photo} #{k}"
            tags.append(f"rect64({rect64(stored_area((cx, cy, w * 0.9, h * 0.9), turn))}),{cid}")
        lines += [f"[{photo.upper() if upper else photo}]", "faces=" + ";".join(tags)]
        lines += [f"rotate=rotate({rotate})"] if rotate else []
    head = ["[Contacts2]"] + [f"{c}={n};;" for c, n in contacts.items()]
    (folder / ".picasa.ini").write_text("\n".join(head + lines) + "\n", encoding="utf-8")
    return want


@need(BBT)
def test_picasa_tags_name_the_faces_of_group_photos(photos, tmp_path):
    """Every named tag names the face it marks, nobody's faces stay unnamed, a section
    whose name differs from the file's in case only counts (Windows wrote it), a folder
    with no ini is passed by, and the owner's own word is kept on a second import."""
    db, model = tmp_path / "lib.db", make_model(tmp_path / "m.safetensors")
    group = photos / "group"
    cli("library", "scan", group, "--db", db, "--model", model)
    faces = _faces(db)
    assert len({f[0] for f in faces}) == 3 and len(faces) >= 8, faces
    want = _write_ini(group, faces, upper=True)
    out = cli(
        "library", "scan", photos, "--db", db, "--import-picasa", "--json", tmp_path / "s.json"
    )
    got = {i: name for _, i, _, name in _faces(db) if name}
    assert got == want
    report = json.loads((tmp_path / "s.json").read_text())["picasa"]
    assert (report["faces_named"], report["unnamed"], report["photos"]) == (len(want), 3, 3)
    assert f"{len(want)} faces named from Picasa's tags on 3 photos in 1 folder (" in out, out

    first = next(iter(want))  # the owner says it is someone of another photo, then imports again
    other = next(n for n in want.values() if n.split(" #")[0] != want[first].split(" #")[0])
    cli("library", "move", str(first), other, "--db", db)
    cli("library", "scan", photos, "--db", db, "--import-picasa")
    got = {i: name for _, i, _, name in _faces(db) if name}
    assert got == want | {first: other}


@need(BBT)
@pytest.mark.parametrize("measured", ["stored", "shown", "shown by Picasa"])
def test_picasa_tags_of_a_turned_photo_find_their_faces(photos, tmp_path, measured):
    """A group photo stored on its side (EXIF orientation 6): its tags name the right
    faces whichever way up they were measured — on the pixels as stored, as shown, or as
    Picasa showed it after its own turn (`rotate(1)`, a quarter clockwise: the file kept)."""
    db, model = tmp_path / "lib.db", make_model(tmp_path / "m.safetensors")
    folder = tmp_path / "turned"
    folder.mkdir()
    im = Image.open(photos / "group" / "bbt1.jpg").transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned back a quarter: upright
    im.save(folder / "bbt1.jpg", exif=exif.tobytes(), quality=95)
    cli("library", "scan", folder, "--db", db, "--model", model)
    faces = _faces(db)
    assert len(faces) >= 3, faces
    turn, rotate = {"stored": (6, 0), "shown": (1, 0), "shown by Picasa": (8, 1)}[measured]
    want = _write_ini(folder, faces, turn=turn, rotate=rotate)
    out = cli("library", "scan", folder, "--db", db, "--import-picasa")
    assert {i: name for _, i, _, name in _faces(db) if name} == want, out


@need(BBT)
def test_what_cannot_be_read_is_named_and_the_rest_imported(photos, tmp_path):
    """An ini that is not one is listed with its reason while another folder's names are
    imported; names from Picasa's `contacts.xml` fill in those an ini lacks; a contacts
    file that does not exist stops the scan before it starts."""
    db, model = tmp_path / "lib.db", make_model(tmp_path / "m.safetensors")
    group = photos / "group"
    cli("library", "scan", photos, "--db", db, "--model", model)
    want = _write_ini(group, _faces(db))
    text = (group / ".picasa.ini").read_text()
    head, body = text.split("\n[", 1)
    (group / ".picasa.ini").write_text("[" + body)  # no [Contacts2]: contacts.xml has them
    contacts = tmp_path / "contacts.xml"
    contacts.write_text("<contacts>" + "".join(
        f'<contact id="{line.split("=")[0]}" name="{line.split("=")[1][:-2]}" display="x"/>'
        for line in head.splitlines()[1:]) + "</contacts>", encoding="utf-8")  # fmt: skip
    (photos / "amy" / "picasa.ini").write_bytes(b"\0\1\2binary")
    out = cli("library", "scan", photos, "--db", db, "--picasa-contacts", contacts)
    assert "Picasa tags not read" in out and "amy/picasa.ini" in out, out
    assert {i: name for _, i, _, name in _faces(db) if name} == want

    res = runner.invoke(app, ["library", "scan", str(photos), "--db", str(db),
                              "--picasa-contacts", str(tmp_path / "none.xml")])  # fmt: skip
    assert res.exit_code != 0 and "none.xml: no such file" in res.output, res.output


@need(BBT)
def test_imported_names_keep_the_librarys_rules(photos, tmp_path):
    """Names another program wrote follow the rules the owner's own do: one line of
    printable text of at most 200 characters, not digits alone (it reads as a stack id),
    spaces around it dropped; a face keeps the first name a tag gives it; a person has one
    face in a photo. Any name was taken as written: a 300-character name, an escape
    sequence, "12"; and a second tag on a face or a person's second face took it too."""
    from facetrain.library import store
    from facetrain.library.library import Library

    db, model = tmp_path / "lib.db", make_model(tmp_path / "m.safetensors")
    cli("library", "scan", photos / "group", "--db", db, "--model", model)
    faces = _faces(db)
    photo = max({f[0] for f in faces}, key=lambda p: sum(f[0] == p for f in faces))
    mine = [f for f in faces if f[0] == photo][:5]
    assert len(mine) == 5, faces
    names = [" Leonard ", "12", "\x1b[2Jx", "Penny", "Penny"]
    tags = [(n, f[2]) for n, f in zip(names, mine)]
    tags += [("x" * 300, mine[1][2]), ("Sheldon", mine[0][2])]
    with Library(db) as lib:
        row = next(r for p, r in store.photos_under(lib.con, str(photos)).items()
                   if p.endswith(photo))  # fmt: skip
        counts = curate.name_regions(lib.con, row, tags)
    assert counts == {"faces_named": 2, "regions_without_face": 0, "names_refused": 3}
    got = {i: name for _, i, _, name in _faces(db) if name}
    assert got == {mine[0][1]: "Leonard", mine[3][1]: "Penny"}

    lines = ["[Contacts2]", "01=Raj;;", "02=\x1b]8;;evil\x1b\\;;", f"[{photo}]",
             f"faces=rect64({rect64(mine[1][2])}),01;rect64({rect64(mine[2][2])}),02"]  # fmt: skip
    (photos / "group" / ".picasa.ini").write_text("\n".join(lines) + "\n")
    out = cli("library", "scan", photos / "group", "--db", db, "--import-picasa")
    assert "1 name in Picasa's tags not taken" in out and "1 face named" in out, out
