"""Names that leave with the owner (issue 29, requirement 3): `library export --xmp` writes
MWG face regions that ExifTool reads back, and `library scan --import-xmp` turns such
regions (ours, or another program's) into names."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import BBT, need
from helpers import cli, confirm_all, confirmed_names, make_model


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
    names = confirm_all(db)  # every face named after its photo's file
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
    on_it = sorted(n for n, files in names.items() if photo in files)
    assert sorted(r["Name"] for r in regions) == on_it and len(on_it) > 1
    assert all(r["Type"] == "Face" and 0 < r["Area"]["X"] < 1 and 0 < r["Area"]["W"] < 1
               for r in regions)  # fmt: skip
    assert sorted(read["PersonInImage"]) == on_it

    # a new library of a copy of the photos, the sidecars beside them: the names come back
    again = tmp_path / "again"
    shutil.copytree(photos, again)
    for s in sidecars:
        shutil.copy(s, again / s.relative_to(tmp_path / "xmp"))
    db2 = tmp_path / "lib2.db"
    out = cli("library", "scan", again, "--db", db2, "--model", model, "--import-xmp")
    assert f"faces named from {len(sidecars)} XMP sidecars" in out
    assert confirmed_names(db2) == names

    # a sidecar that is not XMP is listed, not fatal
    first = sorted(again.rglob("*.xmp"))[0]
    first.write_text('<!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>')
    out = cli("library", "scan", again, "--db", tmp_path / "lib3.db", "--model", model,
              "--import-xmp")  # fmt: skip
    assert "XMP not read" in out and first.name in out


@need(BBT)
def test_regions_another_program_wrote_are_read(photos, tmp_path):
    """ExifTool's own way of writing MWG regions (elements, rdf:parseType="Resource")."""
    exiftool = _exiftool()
    from facetrain.library.xmp import read_names

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
    assert read_names(side)[0][0][0] == "Amy Farrah"
    out = cli("library", "scan", photos / "amy", "--db", db, "--import-xmp")
    assert "1 face named from 1 XMP sidecar and" in out
    assert confirmed_names(db) == {"Amy Farrah": [Path(path).name]}


@need(BBT)
def test_an_export_removes_the_sidecars_it_wrote_for_photos_no_longer_named(photos, tmp_path):
    """A face's name taken off (or its person hidden) after an export: the next `export
    --xmp` removes the sidecar it wrote for that photo, and keeps one another program
    rewrote since (digiKam writes its own toolkit name) and every file of the owner's."""
    import sqlite3

    db, out = tmp_path / "lib.db", tmp_path / "xmp"
    cli("library", "scan", photos / "amy", "--db", db, "--model",
        make_model(tmp_path / "m.safetensors"))  # fmt: skip
    names = confirm_all(db)  # each face named after its photo's file
    cli("library", "export", "--db", db, "--xmp", out)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.xmp" for n in names)
    theirs = out / "amy2.png.xmp"
    theirs.write_text(theirs.read_text().replace('"facetrain"', '"XMP Core 4.4.0-Exiv2"'))
    (out / "amy9.png.xmp").write_text("the owner's own")
    (out / "notes.txt").write_text("the owner's own")
    os.mkfifo(out / "pipe.xmp")  # never opened: reading a FIFO would wait for ever

    con = sqlite3.connect(db)
    faces = con.execute(
        "SELECT f.id FROM faces f JOIN photos p ON p.id = f.photo_id"
        " WHERE p.path LIKE '%/amy1.png' OR p.path LIKE '%/amy2.png'"
    ).fetchall()
    con.close()
    for (face,) in faces:
        cli("library", "reject", face, "--db", db)
    res = cli("library", "export", "--db", db, "--xmp", out)
    assert "1 XMP sidecar under" in res, res
    assert sorted(p.name for p in out.iterdir()) == [
        "amy2.png.xmp", "amy3.png.xmp", "amy9.png.xmp", "notes.txt", "pipe.xmp"]  # fmt: skip
    assert "Exiv2" in theirs.read_text()

    # a person the owner hides leaves the sidecars too, as they leave `--by-person`
    cli("library", "hide", "amy3.png", "--db", db)
    res = cli("library", "export", "--db", db, "--xmp", out)
    assert "0 XMP sidecars" in res, res
    assert sorted(p.name for p in out.iterdir()) == [
        "amy2.png.xmp", "amy9.png.xmp", "notes.txt", "pipe.xmp"]  # fmt: skip


@need(BBT)
def test_an_export_never_overwrites_a_sidecar_another_program_wrote(photos, tmp_path):
    """`export --xmp` into the photos' own folder (where darktable and digiKam keep their
    `IMG_1.jpg.xmp`, edits and tags in it) replaced those files with its own. A sidecar
    another program wrote, or rewrote since an export, a link and a FIFO in a sidecar's
    place are now left as they were and counted; facetrain's own are brought up to date."""
    db, out = tmp_path / "lib.db", tmp_path / "mine"
    shutil.copytree(photos / "amy", out)
    shutil.copy(out / "amy1.png", out / "copy.png")  # a copy: its sidecar is written too
    cli("library", "scan", out, "--db", db, "--model", make_model(tmp_path / "m.safetensors"))
    assert sorted(confirm_all(db)) == ["amy1.png", "amy2.png", "amy3.png"]
    (out / "amy1.png.xmp").write_text("darktable's edit history")
    os.symlink(out / "amy1.png.xmp", out / "amy3.png.xmp")
    os.mkfifo(out / "copy.png.xmp")
    res = cli("library", "export", "--db", db, "--xmp", out)
    assert "1 XMP sidecar under" in res and "3 sidecars left as they were" in res, res
    assert (out / "amy1.png.xmp").read_text() == "darktable's edit history"
    assert (out / "amy3.png.xmp").is_symlink() and (out / "copy.png.xmp").is_fifo()
    ours = out / "amy2.png.xmp"
    rewritten = ours.read_text().replace('"facetrain"', '"XMP Core 4.4.0-Exiv2"') + "<!-- ★ -->"
    ours.write_text(rewritten)  # digiKam added a rating
    (out / "amy3.png.xmp").unlink()  # the slot is free again: facetrain's own goes there
    res = cli("library", "export", "--db", db, "--xmp", out)
    assert "1 XMP sidecar under" in res and "3 sidecars left as they were" in res, res
    assert ours.read_text() == rewritten and "facetrain" in (out / "amy3.png.xmp").read_text()


@need(BBT)
def test_every_copy_of_a_named_photo_gets_its_sidecar(photos, tmp_path):
    """The same photo kept in two folders is one photo to the library (the other copy a
    duplicate); each copy gets the sidecar, so another program finds the names beside
    whichever it opens, and both go when the name does."""
    import sqlite3

    lib, db, out = tmp_path / "lib", tmp_path / "lib.db", tmp_path / "xmp"
    for folder, name in (("a", "amy1.png"), ("a", "amy2.png"), ("b", "amy1.png")):
        (lib / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(photos / "amy" / name, lib / folder / name)
    cli("library", "scan", lib, "--db", db, "--model", make_model(tmp_path / "m.safetensors"))
    confirm_all(db)
    res = cli("library", "export", "--db", db, "--xmp", out)
    assert "3 XMP sidecars" in res, res
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.xmp")) == [
        "a/amy1.png.xmp", "a/amy2.png.xmp", "b/amy1.png.xmp"]  # fmt: skip
    assert (out / "a/amy1.png.xmp").read_text() == (out / "b/amy1.png.xmp").read_text()
    assert "amy1.png" in (out / "b/amy1.png.xmp").read_text()  # the name, as confirm_all gave

    con = sqlite3.connect(db)
    (face,) = con.execute(
        "SELECT f.id FROM faces f JOIN photos p ON p.id = f.photo_id"
        " WHERE p.path LIKE '%amy1.png' AND p.status = 'ok'"
    ).fetchone()
    con.close()
    cli("library", "reject", face, "--db", db)
    cli("library", "export", "--db", db, "--xmp", out)
    # the one named photo left keeps its place: below the library's folder, not its own
    assert [str(p.relative_to(out)) for p in out.rglob("*.xmp")] == ["a/amy2.png.xmp"]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_regions_turn_with_the_photo_as_its_pixels_do(tmp_path, orientation):
    """A white box at a known place of a stored 120×80 photo with each EXIF orientation:
    `upright_area` puts it where PIL's turned pixels show it, `stored_area` brings it back."""
    import numpy as np
    from PIL import Image

    from facetrain.data.images import exif_orientation, load_rgb
    from facetrain.library.turns import stored_area, upright_area

    stored = np.zeros((80, 120, 3), np.uint8)
    stored[10:30, 70:100] = 255  # x 70..100, y 10..30
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(tmp_path / "p.png", exif=exif)
    assert exif_orientation(tmp_path / "p.png") == orientation
    up = load_rgb(tmp_path / "p.png")
    ys, xs = np.nonzero(up[:, :, 0] > 127)
    h, w = up.shape[:2]
    seen = ((xs.min() + xs.max() + 1) / 2 / w, (ys.min() + ys.max() + 1) / 2 / h,
            (xs.max() + 1 - xs.min()) / w, (ys.max() + 1 - ys.min()) / h)  # fmt: skip
    area = (85 / 120, 20 / 80, 30 / 120, 20 / 80)
    assert np.allclose(upright_area(area, orientation), seen)
    assert np.allclose(stored_area(seen, orientation), area)


@need(BBT)
def test_a_turned_photos_sidecar_holds_its_faces_where_they_are_stored(tmp_path):
    """A portrait stored on its side with EXIF orientation 6, as phones write it: the
    exported region lies on the face where the stored pixels hold it (MWG applies regions
    to the stored image), its dimensions are the stored ones, and the names come back on
    import."""
    import re

    import numpy as np
    from PIL import Image

    from facetrain.inference.compiled import open_for_use
    from facetrain.library.scan import Scanner

    root, db = tmp_path / "photos", tmp_path / "lib.db"
    root.mkdir()
    upright = Image.open(BBT / "reference" / "amy" / sorted(
        p.name for p in (BBT / "reference" / "amy").iterdir())[0]).convert("RGB")  # fmt: skip
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # orientation 6 turns it back
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(root / "amy.jpg", exif=exif, quality=95)
    model = make_model(tmp_path / "m.safetensors")
    cli("library", "scan", root, "--db", db, "--model", model)
    names = confirm_all(db)
    cli("library", "export", "--db", db, "--xmp", tmp_path / "xmp")
    text = (tmp_path / "xmp" / "amy.jpg.xmp").read_text()
    dims = re.search(r'stDim:w="(\d+)" stDim:h="(\d+)"', text).groups()
    assert tuple(map(int, dims)) == stored.size
    x, y, w, h = (float(v) for v in re.search(
        r'stArea:x="([\d.]+)" stArea:y="([\d.]+)" stArea:w="([\d.]+)" stArea:h="([\d.]+)"',
        text).groups())  # fmt: skip
    W, H = stored.size
    region = ((x - w / 2) * W, (y - h / 2) * H, (x + w / 2) * W, (y + h / 2) * H)
    x1, y1, x2, y2 = (round(v) for v in Scanner(open_for_use(str(model))).faces_of(
        np.asarray(upright))[0]["box"])  # fmt: skip
    mask = np.zeros((upright.height, upright.width), np.uint8)  # the face, turned as the photo
    mask[max(y1, 0) : y2, max(x1, 0) : x2] = 255
    face = Image.fromarray(mask).transpose(Image.Transpose.ROTATE_90).getbbox()
    ix = max(0.0, min(region[2], face[2]) - max(region[0], face[0]))
    iy = max(0.0, min(region[3], face[3]) - max(region[1], face[1]))
    union = (region[2] - region[0]) * (region[3] - region[1]) + (
        (face[2] - face[0]) * (face[3] - face[1])) - ix * iy  # fmt: skip
    assert ix * iy / union > 0.8, (region, face)

    shutil.copy(tmp_path / "xmp" / "amy.jpg.xmp", root / "amy.jpg.xmp")
    out = cli("library", "scan", root, "--db", tmp_path / "again.db", "--model", model,
              "--import-xmp")  # fmt: skip
    assert "1 face named from 1 XMP sidecar and" in out
    assert confirmed_names(tmp_path / "again.db") == names


MICROSOFT = """<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF
 xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about=""
 xmlns:MP="http://ns.microsoft.com/photo/1.2/"
 xmlns:MPRI="http://ns.microsoft.com/photo/1.2/t/RegionInfo#"
 xmlns:MPReg="http://ns.microsoft.com/photo/1.2/t/Region#"><MP:RegionInfo
 rdf:parseType="Resource"><MPRI:Regions><rdf:Bag><rdf:li rdf:parseType="Resource">
 <MPReg:PersonDisplayName>{name}</MPReg:PersonDisplayName>
 <MPReg:Rectangle>{x:.5f}, {y:.5f}, {w:.5f}, {h:.5f}</MPReg:Rectangle>
 </rdf:li></rdf:Bag></MPRI:Regions></MP:RegionInfo></rdf:Description></rdf:RDF></x:xmpmeta>"""


@need(BBT)
def test_names_inside_the_photos_are_read_mwg_and_microsoft(photos, tmp_path):
    """Photos whose names another program wrote into the file itself (no sidecar): MWG
    regions (Lightroom, digiKam, Picasa) and Windows Photo Gallery's `MPReg` rectangles
    are read by `library scan --import-xmp`, like a sidecar's. Only sidecars were read:
    no name came in."""
    import sqlite3

    from PIL import Image

    from facetrain.library.xmp import sidecar

    root = tmp_path / "mine"
    root.mkdir()
    for name in ("amy1", "amy2"):
        Image.open(photos / "amy" / f"{name}.png").convert("RGB").save(root / f"{name}.jpg")
    model = make_model(tmp_path / "m.safetensors")
    cli("library", "scan", root, "--db", tmp_path / "boxes.db", "--model", model)
    con = sqlite3.connect(tmp_path / "boxes.db")
    boxes = {Path(p).stem: (w, h, (x1, y1, x2, y2)) for p, w, h, x1, y1, x2, y2 in con.execute(
        "SELECT p.path, p.width, p.height, f.x1, f.y1, f.x2, f.y2 FROM faces f"
        " JOIN photos p ON p.id = f.photo_id")}  # fmt: skip
    con.close()
    w, h, box = boxes["amy1"]
    xmp = {"amy1": sidecar(w, h, [("Amy Farrah", box)])}
    w, h, (x1, y1, x2, y2) = boxes["amy2"]
    xmp["amy2"] = MICROSOFT.format(name="Amy F. Fowler", x=x1 / w, y=y1 / h, w=(x2 - x1) / w,
                                   h=(y2 - y1) / h)  # fmt: skip
    for name, text in xmp.items():
        im = Image.open(root / f"{name}.jpg")
        im.save(root / f"{name}.jpg", quality=95, xmp=text.encode())
    db = tmp_path / "lib.db"
    out = cli("library", "scan", root, "--db", db, "--model", model, "--import-xmp")
    assert "2 faces named from 0 XMP sidecars and the XMP inside 2 photos" in out, out
    assert confirmed_names(db) == {"Amy Farrah": ["amy1.jpg"], "Amy F. Fowler": ["amy2.jpg"]}


def _people_only(*names: str) -> str:
    """An XMP sidecar that lists people with no regions, as osxphotos writes Apple Photos'
    names (and Photo Mechanic its "person shown")."""
    items = "".join(f"<rdf:li>{n}</rdf:li>" for n in names)
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="osxphotos">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about=""'
        ' xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/">'
        f"<Iptc4xmpExt:PersonInImage><rdf:Bag>{items}</rdf:Bag></Iptc4xmpExt:PersonInImage>"
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
    )


@need(BBT)
def test_people_listed_with_no_place_name_the_face_of_a_photo_of_one(photos, tmp_path):
    """XMP that lists the people on a photo but not where (`PersonInImage`, Apple Photos'
    names as osxphotos exports them): a portrait's one face is named; a group photo's
    faces only by likeness among those listed (here, people not named yet: none). They
    were not read at all."""
    db = tmp_path / "lib.db"
    cli("library", "scan", photos, "--db", db, "--model", make_model(tmp_path / "m.safetensors"))
    (photos / "amy" / "amy1.png.xmp").write_text(_people_only("Amy Farrah"))
    (photos / "penny" / "penny1.png.xmp").write_text(_people_only("Penny", "Leonard"))
    (photos / "group" / "bbt1.jpg.xmp").write_text(_people_only("Raj", "Sheldon"))
    out = cli("library", "scan", photos, "--db", db, "--import-xmp", "--json", tmp_path / "s.json")
    assert confirmed_names(db) == {"Amy Farrah": ["amy1.png"]}, out
    report = json.loads((tmp_path / "s.json").read_text())["xmp"]
    assert (report["listed"], report["several"], report["faces_named"]) == (3, 2, 1), report
    assert "3 of those photos list their people with no place" in out, out
