"""A person's photos, the latest first, and the photos two people are on together: from the
terminal (`library photos`), the page's API and the page in a browser."""

from __future__ import annotations

import io
import json
import os
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import SHARED
from facetrain.cli import app
from facetrain.library.dates import (
    between,
    date_text,
    exif_date,
    latest_first,
    name_date,
    period,
)
from facetrain.library.library import Library
from helpers import local_client, page_on

runner = CliRunner()
BBT = SHARED / "photos" / "bbt"


def _dated(path: Path, when: str | None, mtime: datetime) -> None:
    """The photo saved again with EXIF DateTimeOriginal `when` (none: no EXIF), its file
    dated `mtime`."""
    exif = Image.Exif()
    if when is not None:
        exif.get_ifd(0x8769)[36867] = when
    Image.open(path).save(path, exif=exif.tobytes())
    os.utime(path, (mtime.timestamp(), mtime.timestamp()))


@pytest.fixture
def dated_library(tmp_path):
    """Four people's portraits and two group photos, stacked by dlib's model: Sheldon's
    dated by his camera, Penny's only by their files, one group photo by its camera and the other
    by a camera whose clock was never set."""
    if not BBT.exists():
        pytest.skip(f"{BBT} absent (real data not here)")
    photos = tmp_path / "photos"
    copied = datetime(2026, 1, 1)  # the day they were copied: a file date, not a camera's
    for who in ("sheldon", "penny", "leonard", "howard"):
        (photos / who).mkdir(parents=True)
        for k in range(1, 5):
            p = photos / who / f"{who}{k}.png"
            shutil.copy(BBT / "reference" / who / p.name, p)
            camera = f"2020:0{k}:01 12:00:00" if who == "sheldon" else None
            _dated(p, camera, datetime(2016, k, 1) if who == "penny" else copied)
    (photos / "group").mkdir()
    for g, camera in (("bbt1.jpg", "2019:07:14 15:02:33"), ("bbt2.jpg", "0000:00:00 00:00:00")):
        shutil.copy(BBT / "group" / g, photos / "group" / g)
        _dated(photos / "group" / g, camera, datetime(2015, 5, 5, 9, 30))
    db = tmp_path / "lib.db"
    for args in (["scan", str(photos), "--model", "pretrained:dlib_resnet"], ["cluster"]):
        res = runner.invoke(app, ["library", *args, "--db", str(db)])
        assert res.exit_code == 0, res.output
    return db


def _stack_of(lib: Library, portrait: str) -> int:
    """The stack holding the face of this portrait (its file name)."""
    return next(p["id"] for p in lib.people() for f in lib.faces(str(p["id"]))
                if Path(f["path"]).name == portrait)  # fmt: skip


def _photos_in(lib: Library, stack: int) -> set[str]:
    return {f["path"] for f in lib.faces(str(stack))}


def _listed(db: Path, tmp: Path, *people: str) -> tuple[list[str], list[dict]]:
    """`library photos PEOPLE [OPTIONS]`: its lines and its JSON."""
    out = tmp / "photos.json"
    res = runner.invoke(app, ["library", "photos", *people, "--db", str(db), "--json", str(out)])
    assert res.exit_code == 0, res.output
    return res.stdout.splitlines(), json.loads(out.read_text())


def test_a_person_s_photos_come_latest_first_by_the_camera_s_date_else_the_file_s(
    dated_library, tmp_path
):
    with Library(dated_library) as lib:
        sheldon, penny = _stack_of(lib, "sheldon1.png"), _stack_of(lib, "penny1.png")
        his = {Path(p).name for p in _photos_in(lib, sheldon)}
    assert {"bbt1.jpg", "bbt2.jpg"} < his  # dlib's model finds him on both group photos
    lines, rows = _listed(dated_library, tmp_path, str(sheldon))
    # his camera's order, then the group photos: 2019 by its camera, 2015 by its file
    names = [Path(r["path"]).name for r in rows]
    assert names == [f"sheldon{k}.png" for k in (4, 3, 2, 1)] + ["bbt1.jpg", "bbt2.jpg"]
    assert [r["dated_by"] for r in rows] == ["exif"] * 5 + ["file"]
    assert [line.split("\t")[0] for line in lines] == [
        "2020-04-01 12:00",
        "2020-03-01 12:00",
        "2020-02-01 12:00",
        "2020-01-01 12:00",
        "2019-07-14 15:02",
        "2015-05-05 09:30 (file)",
    ]  # a clock never set dates nothing
    assert [Path(line.split("\t")[1]).name for line in lines] == names
    # a span of time, each end a year, month or day: both ends taken in
    lines, rows = _listed(dated_library, tmp_path, str(sheldon), "--since", "2019",
                          "--until", "2020-02")  # fmt: skip
    assert [Path(r["path"]).name for r in rows] == ["sheldon2.png", "sheldon1.png", "bbt1.jpg"]
    _, rows = _listed(dated_library, tmp_path, str(sheldon), "--until", "2015-05-05")
    assert [Path(r["path"]).name for r in rows] == ["bbt2.jpg"]
    res = runner.invoke(app, ["library", "photos", str(sheldon), "--db", str(dated_library),
                              "--since", "2019-13"])  # fmt: skip
    assert res.exit_code != 0 and "'2019-13': a year, month or day, as 2019" in res.output
    # no camera date at all: the files' own dates order them
    lines, rows = _listed(dated_library, tmp_path, str(penny))
    portraits = [Path(r["path"]).name for r in rows if "/penny/" in r["path"]]
    assert portraits == ["penny4.png", "penny3.png", "penny2.png", "penny1.png"]
    assert all(
        r["dated_by"] == "file" and r["taken"] is None for r in rows if "/penny/" in r["path"]
    )


def test_photos_of_two_people_together_everywhere(dated_library, tmp_path):
    """The photos two people are both on: the terminal, the page's API, and the page's
    "with" buttons in a browser, each against the faces' own photos."""
    with Library(dated_library) as lib:
        sheldon = _stack_of(lib, "sheldon1.png")
        mine = _photos_in(lib, sheldon)
        others = {p["id"]: _photos_in(lib, p["id"]) & mine for p in lib.people()
                  if p["id"] != sheldon and not p["hidden"]}  # fmt: skip
        other = max((o for o in others if others[o]), key=lambda o: (len(others[o]), -o))
        together = others[other]
    assert 0 < len(together) < len(mine)
    lines, rows = _listed(dated_library, tmp_path, str(sheldon), str(other))
    assert {r["path"] for r in rows} == together and len(lines) == len(together)
    for r in rows:  # everyone on the photo is listed, the two asked for among them
        assert {sheldon, other} <= {p["id"] for p in r["people"]}
    assert f"#{other}" in lines[0].split("\t")[2]
    res = runner.invoke(
        app, ["library", "photos", str(sheldon), "Nobody", "--db", str(dated_library)]
    )
    assert res.exit_code != 0 and "no stack or person 'Nobody'" in res.output

    api = local_client(dated_library)
    view = api.get(f"/api/stacks/{sheldon}").json()
    shared = {w["id"]: w["photos"] for w in view["with"]}
    assert shared == {o: len(p) for o, p in others.items() if p}  # every companion, counted
    assert [w["photos"] for w in view["with"]] == sorted(shared.values(), reverse=True)
    assert len(view["photo_dates"]) == len(view["photo_ids"]) == len(mine)
    assert view["photo_dates"][0] == "2020-04-01 12:00"
    both = api.get(f"/api/stacks/{sheldon}/photos", params={"with": other}).json()
    assert len(both["photo_ids"]) == len(together)
    assert api.get(f"/api/stacks/{sheldon}/photos", params={"with": 999999}).status_code == 404
    assert api.get(f"/api/stacks/{sheldon}/photos", params={"with": -1}).status_code == 422

    with page_on(dated_library) as (page, url):
        page.goto(f"{url}/person/{sheldon}")
        page.locator("#photos img").first.wait_for()
        assert page.locator("#photos img").count() == len(mine)
        assert page.locator("#photos img").first.get_attribute("title") == "2020-04-01 12:00"
        page.locator(f"#with .with[data-id='{other}']").click()
        page.wait_for_function(
            "n => document.querySelectorAll('#photos img').length === n", arg=len(together)
        )
        title = page.locator("#photostitle").inner_text()
        assert title == f"Photos with Unnamed #{other} ({len(together)})", title
        page.locator("#with .with[data-id='']").click()  # all the photos again
        page.wait_for_function(
            "n => document.querySelectorAll('#photos img').length === n", arg=len(mine)
        )
        # the years his photos were taken in, as many as each holds; one clicked: those only
        years = page.locator("#years .year").all_inner_texts()
        assert years == ["every year", "2020 · 4", "2019 · 1", "2015 · 1"], years
        page.locator("#years .year[data-year='2020']").click()
        page.wait_for_function("() => document.querySelectorAll('#photos img').length === 4")
        dated = page.locator("#photos img").evaluate_all("l => l.map(i => i.title)")
        assert dated == [f"2020-0{k}-01 12:00" for k in (4, 3, 2, 1)]
        last = page.locator("#photos img").last.get_attribute("data-photo")
        page.locator("#photos img").last.click()  # ‹ › go through that year's photos only:
        page.wait_for_url(f"{url}/photos/{last}")  # his earliest of 2020 is the last of them
        page.locator("#prevphoto").wait_for()
        assert page.locator("#nextphoto").is_hidden()


@pytest.mark.parametrize(
    "text, when",
    [
        ("2019:07:14 15:02:33", datetime(2019, 7, 14, 15, 2, 33)),
        ("2019-07-14T15:02", datetime(2019, 7, 14, 15, 2)),
        ("2019:07:14", datetime(2019, 7, 14)),
        ("2019:07:14 15:02:33+02:00", datetime(2019, 7, 14, 15, 2, 33)),
        ("0000:00:00 00:00:00", None),  # a camera whose clock was never set
        ("    :  :     :  :  ", None),
        ("2019:02:30 10:00:00", None),  # no such day
        ("1700:01:01 00:00:00", None),  # before photography
        ("", None),
        (None, None),
    ],
)
def test_exif_dates_as_cameras_write_them(text, when):
    assert exif_date(text) == when


@pytest.mark.parametrize(
    "name, when, timed",
    [
        ("IMG_20190412_153012.jpg", datetime(2019, 4, 12, 15, 30, 12), True),  # Android
        ("PXL_20210101_123456789.jpg", datetime(2021, 1, 1, 12, 34, 56), True),  # Pixel, ms
        ("IMG-20190412-WA0001.jpg", datetime(2019, 4, 12), False),  # WhatsApp: the day
        ("Screenshot_2019-04-12-15-30-12.png", datetime(2019, 4, 12, 15, 30, 12), True),
        ("Screenshot 2019-04-12 at 15.30.12.png", datetime(2019, 4, 12, 15, 30, 12), True),
        ("2019-04-12 15.30.12.jpg", datetime(2019, 4, 12, 15, 30, 12), True),  # Dropbox
        ("signal-2019-04-12-153012.jpg", datetime(2019, 4, 12, 15, 30, 12), True),
        ("1985-06-01 wedding.jpg", datetime(1985, 6, 1), False),  # a scan the owner named
        ("IMG_20190412_996012.jpg", datetime(2019, 4, 12), False),  # no such time: the day
        ("IMG_1234.JPG", None, False),
        ("P1010203.JPG", None, False),
        ("1234567890.jpg", None, False),  # a number, not a date
        ("20191301.jpg", None, False),  # month 13
        ("2019-04-31.jpg", None, False),  # no such day
        ("2019-0412.jpg", None, False),  # the separators differ
        ("17990101.jpg", None, False),  # before photography
    ],
)
def test_dates_in_file_names_as_phones_and_messengers_write_them(name, when, timed):
    assert name_date(f"/photos/{name}") == (when, timed if when else False)


def test_a_pixel_s_file_name_time_is_utc_and_shown_local(monkeypatch):
    """A Pixel names its photos by UTC; other phones and EXIF by the local time."""
    import time

    monkeypatch.setenv("TZ", "Asia/Tokyo")  # UTC+9, no daylight saving
    time.tzset()
    try:
        assert name_date("PXL_20210101_203456789.jpg") == (datetime(2021, 1, 2, 5, 34, 56), True)
        assert name_date("IMG_20210101_203456.jpg") == (datetime(2021, 1, 1, 20, 34, 56), True)
        assert name_date("PXL_20210101.jpg") == (datetime(2021, 1, 1), False)  # a day stays
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_date_in_the_file_name_comes_before_the_file_s_own_but_not_the_camera_s():
    """A photo a messenger stripped of its EXIF keeps its name's date; its file is dated
    the day it was received or copied."""
    copied = datetime(2026, 1, 1).timestamp()
    rows = [{"id": 1, "path": "/p/IMG-20190412-WA0001.jpg", "taken": None, "mtime": copied},
            {"id": 2, "path": "/p/IMG_20180101_101010.jpg", "taken": "2020:01:01 10:00:00",
             "mtime": copied},
            {"id": 3, "path": "/p/Screenshot 2021-05-06 at 07.08.09.png", "taken": None,
             "mtime": copied},
            {"id": 4, "path": "/p/scan.jpg", "taken": None, "mtime": copied}]  # fmt: skip
    order = latest_first(rows)
    assert [r["id"] for r in order] == [4, 3, 2, 1]
    assert [date_text(r) for r in order] == [
        "2026-01-01 00:00 (file)", "2021-05-06 07:08 (file name)", "2020-01-01 10:00",
        "2019-04-12 (file name)"]  # fmt: skip


def test_a_span_of_time_leaves_out_the_photos_it_cannot_date():
    rows = latest_first([{"id": 1, "taken": "2019:12:31 23:59:59", "mtime": None},
                         {"id": 2, "taken": "2020:01:01 00:00:00", "mtime": None},
                         {"id": 3, "taken": None, "mtime": None}])  # fmt: skip
    assert [r["id"] for r in between(rows, "2019", "2019")] == [1]
    assert [r["id"] for r in between(rows, "2019-12-31", None)] == [2, 1]
    assert [r["id"] for r in between(rows, None, None)] == [2, 1, 3]  # no span: every one
    assert period("2019-12") == (datetime(2019, 12, 1), datetime(2020, 1, 1))
    for bad in ("19", "2019-04-31", "last year", "0000"):
        with pytest.raises(ValueError, match="a year, month or day"):
            period(bad)
    # the last day, month and year there are: no moment after them (an OverflowError was a
    # traceback)
    for last in ("9999", "9999-12", "9999-12-31"):
        assert period(last)[1] == datetime.max
    assert [r["id"] for r in between(rows, "2019", "9999-12-31")] == [2, 1]
    with pytest.raises(ValueError, match="from 2021 to 2019: 2021 begins after 2019 ends"):
        between(rows, "2021", "2019")


def test_undated_photos_come_last_in_the_order_they_were_scanned():
    rows = [{"id": 3, "taken": None, "mtime": None}, {"id": 1, "taken": None, "mtime": None},
            {"id": 2, "taken": "2001:01:01 00:00:00", "mtime": 4e9},
            {"id": 4, "taken": "bad", "mtime": 1e9}]  # fmt: skip
    order = latest_first(rows)
    # 4's file says September 2001; 2's camera January 2001 (its file's 2096 is not asked)
    assert [r["id"] for r in order] == [4, 2, 1, 3]
    assert [r["dated_by"] for r in order] == ["file", "exif", "", ""]


def test_a_photo_opens_large_with_everyone_on_it_boxed(dated_library):
    """A photo of a person's page, clicked: the photo large, at its own URL, each face on it
    boxed and labelled with its stack, left to right, each label a link to that person.
    FACETRAIN_SCREENSHOTS=DIR saves docs/library.md's picture of it."""
    with Library(dated_library) as lib:
        sheldon = _stack_of(lib, "sheldon1.png")
        stacks = {f["id"]: p["id"] for p in lib.people() for f in lib.faces(str(p["id"]))}
    api = local_client(dated_library)
    view = api.get(f"/api/stacks/{sheldon}").json()
    group = view["photo_ids"][4]  # bbt1.jpg: the first group photo, by date
    photo = api.get(f"/api/photos/{group}").json()
    assert photo["name"] == "bbt1.jpg" and photo["date"] == "2019-07-14 15:02"
    faces = photo["faces"]
    assert len(faces) >= 3 and [f["box"][0] for f in faces] == sorted(f["box"][0] for f in faces)
    for f in faces:  # each face's stack is the stack that lists it
        assert (f["stack"] or {}).get("id") == stacks.get(f["id"]), f
    assert sheldon in [f["stack"]["id"] for f in faces if f["stack"]]
    assert all(f["stack"] is None for f in faces if not f["usable"])  # under the gate: no stack
    assert api.get("/api/photos/999999").status_code == 404
    for body, code in (({}, 422), ({"to": sheldon, "name": "x"}, 422), ({"name": "123"}, 400)):
        assert api.post(f"/api/faces/{faces[0]['id']}/move", json=body).status_code == code
    big = api.get(f"/photo/{group}.jpg", params={"size": 1600}).content
    assert max(Image.open(io.BytesIO(big)).size) > 480  # larger than the page's thumbnails
    on = [f["stack"]["id"] for f in faces if f["stack"] and f["stack"]["id"] != sheldon]
    other = max(on, key=lambda s: (list(stacks.values()).count(s), -s))  # not left empty
    assert list(stacks.values()).count(other) > 1

    with page_on(dated_library) as (page, url):
        page.goto(f"{url}/person/{sheldon}")
        # his photos one after another, the latest first, by the arrow keys; Esc: back
        first, second = view["photo_ids"][:2]
        page.locator(f"#photos img[data-photo='{first}']").click()
        page.wait_for_url(f"{url}/photos/{first}")
        assert page.locator("#prevphoto").is_hidden() and page.locator("#nextphoto").is_visible()
        page.keyboard.press("ArrowRight")
        page.wait_for_url(f"{url}/photos/{second}")
        page.wait_for_function("t => document.querySelector('#whotitle').textContent === t",
                               arg="sheldon3.png")  # fmt: skip
        assert page.locator("#prevphoto").is_visible()
        page.keyboard.press("Escape")
        page.wait_for_url(f"{url}/person/{sheldon}")
        page.locator(f"#photos img[data-photo='{group}']").click()
        page.wait_for_url(f"{url}/photos/{group}")
        page.wait_for_function("n => document.querySelectorAll('.wbox').length === n",
                               arg=len(faces))  # fmt: skip
        assert page.locator("#whotitle").inner_text() == "bbt1.jpg"
        assert page.locator("#whonote").inner_text().startswith("2019-07-14 15:02")
        if os.environ.get("FACETRAIN_SCREENSHOTS"):  # blurred: the shared set's photo
            page.add_style_tag(content="img{filter:blur(9px)}")
            page.screenshot(path=f"{os.environ['FACETRAIN_SCREENSHOTS']}/library-photo.png")
        labels = page.locator(".wbox span").all_inner_texts()
        assert f"Unnamed #{sheldon} (guess)" in labels
        assert labels.count("too small or blurred") == sum(not f["usable"] for f in faces)
        page.locator(f"#wholist a[data-stack='{other}']").first.click()
        page.wait_for_url(f"{url}/person/{other}")
        page.go_back()  # the browser's back button returns to the photo
        page.wait_for_function("n => document.querySelectorAll('.wbox').length === n",
                               arg=len(faces))  # fmt: skip
        # curated from the photo: "not them", then "move to…" that person (confirmed)
        face = next(f["id"] for f in faces if (f["stack"] or {}).get("id") == other)
        row = page.locator(f"#wholist li[data-face='{face}']")
        row.locator(".reject").click()
        page.wait_for_function("t => document.querySelector('#status').textContent"
                               ".includes(t)", arg="removed from stack")  # fmt: skip
        assert (
            page.locator(f"#wholist li[data-face='{face}']").inner_text().startswith("in no stack")
        )
        assert face not in api.get(f"/api/stacks/{other}").json()["face_ids"]
        box = page.locator(f"#wholist li[data-face='{face}'] input.move")
        box.fill(f"Unnamed #{other}")
        box.press("Enter")
        page.wait_for_function(  # "removed" said "moved" too: wait for the new label
            "t => [...document.querySelectorAll('.wbox span')].some(s => s.textContent === t)",
            arg=f"Unnamed #{other}",
        )
        assert face in api.get(f"/api/stacks/{other}").json()["confirmed_ids"]
        assert "moved" in page.locator("#status").inner_text()
        # a name no one has: that person is made, with this face
        box = page.locator(f"#wholist li[data-face='{face}'] input.move")
        box.fill("Uncle Bob")
        box.press("Enter")
        page.wait_for_function(
            "t => [...document.querySelectorAll('.wbox span')].some(s => s.textContent === t)",
            arg="Uncle Bob",
        )
        assert "new person" in page.locator("#status").inner_text()
        assert page.url.endswith(f"/photos/{group}")  # still on the photo


def test_photos_together_make_an_album_of_links(dated_library, tmp_path):
    """`library photos A B --link-to DIR`: a folder of links to the photos both are on,
    nothing moved or copied; made again it holds exactly the photos asked for then; a folder
    that is not such an album is refused and left as it was."""
    with Library(dated_library) as lib:
        sheldon, penny = _stack_of(lib, "sheldon1.png"), _stack_of(lib, "penny1.png")
        his = _photos_in(lib, sheldon)
    album = tmp_path / "album"
    res = runner.invoke(app, ["library", "photos", str(sheldon), "--db", str(dated_library),
                              "--link-to", str(album)])  # fmt: skip
    assert res.exit_code == 0 and f"{len(his)} links in {album}" in res.output
    links = {p.name: os.readlink(p) for p in album.iterdir() if p.is_symlink()}
    assert set(links.values()) == his and all(Path(t).is_file() for t in links.values())
    (album / "notes.txt").write_text("mine")  # the owner's own file in it stays
    res = runner.invoke(app, ["library", "photos", str(penny), "--db", str(dated_library),
                              "--link-to", str(album)])  # fmt: skip
    assert res.exit_code == 0
    with Library(dated_library) as lib:
        hers = _photos_in(lib, penny)
    assert {os.readlink(p) for p in album.iterdir() if p.is_symlink()} == hers
    assert (album / "notes.txt").read_text() == "mine"
    mine = tmp_path / "holiday"
    mine.mkdir()
    (mine / "IMG_1.jpg").write_bytes(b"the owner's")
    res = runner.invoke(app, ["library", "photos", str(penny), "--db", str(dated_library),
                              "--link-to", str(mine)])  # fmt: skip
    assert res.exit_code != 0 and "not an album facetrain made" in res.output
    assert [p.name for p in mine.iterdir()] == ["IMG_1.jpg"]


@pytest.mark.parametrize("orientation", [1, 6])
def test_a_thumbnail_is_cut_from_a_photo_decoded_no_larger_than_it_needs(tmp_path, orientation):
    """A face shown at 112 px is cut from its 12-megapixel JPEG decoded at 1/4 (its DCT's
    own scaling), a photo shown at 480 px from 1/8 — the same place either way, turned
    photos too; a PNG is decoded whole."""
    import numpy as np

    from facetrain.data.images import load_rgb, to_jpeg
    from facetrain.library import store
    from helpers import embedded_library

    rng = np.random.default_rng(0)
    upright = np.kron(rng.integers(0, 256, (75, 100, 3)), np.ones((40, 40, 1))).astype(np.uint8)
    im = Image.fromarray(upright)  # 4000 x 3000, squares of 40 px: a misplaced cut shows
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = im.transpose(Image.Transpose.ROTATE_90) if orientation == 6 else im
    stored.save(tmp_path / "p.jpg", quality=95, exif=exif.tobytes())
    im.save(tmp_path / "p.png")
    assert np.abs(load_rgb(tmp_path / "p.jpg").astype(int) - upright).mean() < 3
    with embedded_library(tmp_path / "lib.db", np.eye(2, 8, dtype=np.float32)) as lib:
        with store.transaction(lib.con):
            for pid, name in ((1, "p.jpg"), (2, "p.png")):
                lib.con.execute("UPDATE photos SET path = ?, width = 4000, height = 3000 "
                                "WHERE id = ?", (str(tmp_path / name), pid))  # fmt: skip
                lib.con.execute("UPDATE faces SET x1 = 1234, y1 = 777, x2 = 1634, y2 = 1177 "
                                "WHERE photo_id = ?", (pid,))  # fmt: skip
        assert lib.photo(1, 112 / 600)[1] == 0.25 and lib.photo(2, 112 / 600)[1] == 1.0
        assert lib.photo(1, 480 / 4000)[0].shape[:2] == (375, 500)
        for face in (1, 2):
            whole = _pixels(to_jpeg(lib.face_crop(face), 112))
            small = _pixels(lib.face_thumbnail(face))
            assert whole.shape == small.shape == (112, 112, 3)
            # resampled otherwise: 9.8 here; a cut 4 px off in the photo is 18.7
            assert np.abs(whole.astype(int) - small).mean() < 14, face
        shown = _pixels(lib.photo_jpeg(1))
        assert shown.shape == (360, 480, 3)
        want = _pixels(to_jpeg(upright, 480))
        assert np.abs(shown.astype(int) - want).mean() < 8


def _pixels(jpeg: bytes):
    import numpy as np

    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
