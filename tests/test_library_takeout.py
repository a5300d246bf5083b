"""Names that come from Google Photos: `library scan --import-takeout` reads the people
Google Takeout's JSON lists on each photo and names the face of each photo of one person."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from conftest import BBT, need
from facetrain.library.takeout import sidecar_names
from helpers import cli, confirmed_names, make_model


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
    assert confirmed_names(db) == {
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
    assert "Google Takeout JSON not read" in out and "1 name in Google Photos' people" in out


@need(BBT)
@pytest.mark.parametrize("listed", [["Raj", "Leonard", "Howard", "Sheldon"], ["Raj", "Howard"]])
def test_a_group_photos_people_are_named_by_likeness_among_those_listed(tmp_path, listed):
    """A group photo whose JSON lists people named on photos of their own: each of its
    faces is named one of those listed when the library's identify rule, its candidates
    only them, is sure — never a face of someone not listed (Leonard and Sheldon, when the
    list names Raj and Howard only), never the wrong one of them."""

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
    assert report["faces_named"] == 12 + named and len(confirmed_names(db)) == 4, out


def _people(rng, centres: dict, photos: list[list[str]], spread: float = 0.05):
    """Unit embeddings of the faces of `photos` (each a list of the people on it, every
    person near their own centre): (emb, photo index, who)."""
    emb, photo, who = [], [], []
    for k, people in enumerate(photos):
        for p in people:
            v = centres[p] + rng.normal(0, spread, centres[p].shape)
            emb.append(v / np.linalg.norm(v))
            photo.append(k)
            who.append(p)
    return np.array(emb, np.float32), np.array(photo), who


def test_the_face_the_photos_of_someone_never_alone_share():
    """`shared_face`: the stack on the most of the photos listing someone is theirs — on
    every one of them here, with whoever else is there; not with fewer photos than
    `least`, and not when two people are always together (a tie: neither is named)."""
    from facetrain.library.cluster import shared_face

    rng = np.random.default_rng(0)
    centres = {p: v / np.linalg.norm(v) for p, v in zip("URSTV", rng.normal(size=(5, 32)))}
    emb, photo, who = _people(rng, centres, [["U", "R"], ["U", "S", "T"], ["U", "R"], ["U", "V"]])
    got = shared_face(emb, photo, 0.6, "squared_l2")
    assert [who[i] for i in got] == ["U"] * 4 and sorted(photo[got]) == [0, 1, 2, 3]
    assert shared_face(emb, photo, 0.6, "squared_l2", least=5) == []
    emb, photo, who = _people(rng, centres, [["U", "R"], ["R", "U"], ["U", "R", "S"]])
    assert shared_face(emb, photo, 0.6, "squared_l2") == []


def test_someone_never_listed_beside_them_is_not_taken_for_them():
    """A parent no list names, beside a baby on five of the six photos that list the
    baby, whose face is found on three: the parent's stack is the larger there, but it
    is on most of the photos that do not list the baby too, so the baby's is taken."""
    from facetrain.library.cluster import shared_face

    rng = np.random.default_rng(1)
    centres = {p: v / np.linalg.norm(v) for p, v in zip("BRST", rng.normal(size=(4, 32)))}
    baby = [["B", "R"], ["B", "R"], ["B", "S"], ["R"], ["R", "T"], ["R"]]
    emb, photo, who = _people(rng, centres, baby)
    assert [who[i] for i in shared_face(emb, photo, 0.6, "squared_l2")] == ["R"] * 5
    other, other_photo, _ = _people(rng, centres, [["R", "S"], ["R"], ["T"], ["R", "T"]] * 2)
    got = shared_face(emb, photo, 0.6, "squared_l2", elsewhere=(other, other_photo + 10, None))
    assert [who[i] for i in got] == ["B"] * 3
    never = _people(rng, centres, [["S"], ["T"], ["S", "T"]])[:2]
    got = shared_face(emb, photo, 0.6, "squared_l2", elsewhere=(never[0], never[1] + 10, None))
    assert [who[i] for i in got] == ["R"] * 5  # nothing says the parent is someone else


def test_a_look_alike_of_the_only_candidate_is_not_named_when_faces_are_kept_apart():
    """`identify(apart=True)`: with one candidate left, a face is named only when no other
    face of the photo is within the margin of that person too; without it, the nearer of
    two faces alike takes the name."""
    from facetrain.open_set import identify

    a = np.array([[1.0, 0.0, 0.0]], np.float32)
    protos = (a, np.array([7]), {7: "Amy"})
    twins = np.array([[0.98, 0.2, 0.0], [0.97, 0.0, 0.24]], np.float32)
    twins /= np.linalg.norm(twins, axis=1, keepdims=True)
    assert [r["name"] for r in identify(twins, protos, 0.6, margin=0.05)] == ["Amy", "unknown"]
    got = identify(twins, protos, 0.6, margin=0.05, apart=True)
    assert [r["name"] for r in got] == ["unknown", "unknown"]
    alone = np.array([[0.98, 0.2, 0.0], [0.0, 1.0, 0.0]], np.float32)
    alone /= np.linalg.norm(alone, axis=1, keepdims=True)
    got = identify(alone, protos, 0.6, margin=0.05, apart=True)
    assert [r["name"] for r in got] == ["Amy", "unknown"]


def _side_by_side(paths: list[Path], out: Path) -> None:
    """One photo of several people: their portraits side by side on grey."""
    im = Image.new("RGB", (150 * len(paths), 150), (128, 128, 128))
    for k, p in enumerate(paths):
        im.paste(Image.open(p).convert("RGB"), (150 * k, 0))
    im.save(out)


@need(BBT)
def test_someone_never_alone_on_a_photo_is_named_by_the_photos_their_lists_share(tmp_path):
    """Raj is never alone on a photo: his face is the one the four photos that list him
    share, each with another person named on their own photos; Stuart and Bernadette are
    always together, so which face is whose cannot be told from the lists: neither of
    them is named, and no face is named wrong."""
    root = tmp_path / "takeout"
    root.mkdir()
    ref = BBT / "reference"
    others = ("amy", "howard", "penny", "leonard")
    for person in others:
        p = ref / person / f"{person}1.png"
        shutil.copy(p, root / p.name)
        _json(root / (p.name + ".json"), p.name, person.capitalize())
    for k, person in enumerate(others, start=2):
        name = f"raj_with_{person}.png"
        _side_by_side([ref / "raj" / f"raj{k}.png", ref / person / f"{person}{k}.png"], root / name)
        _json(root / (name + ".json"), name, "Raj", person.capitalize())
    for k in (1, 2, 3):
        name = f"couple{k}.png"
        pair = [ref / "stuart" / f"stuart{k}.png", ref / "bernadette" / f"bernadette{k}.png"]
        _side_by_side(pair, root / name)
        _json(root / (name + ".json"), name, "Stuart", "Bernadette")
    db = tmp_path / "lib.db"
    cli("library", "scan", root, "--db", db, "--import-takeout", "--json", tmp_path / "s.json")
    report = json.loads((tmp_path / "s.json").read_text())["takeout"]
    got = confirmed_names(db)
    assert got.get("Raj") == sorted(f"raj_with_{p}.png" for p in others), got
    assert "Stuart" not in got and "Bernadette" not in got, got
    for person in others:  # each named on their own photo, and by likeness beside Raj
        assert got[person.capitalize()] == [f"{person}1.png", f"raj_with_{person}.png"], got
    assert report["by_company"] == 4 and report["faces_named"] == 12, report


def test_a_face_nearer_someone_not_listed_is_not_named_the_one_listed():
    """`Namer.name(among=…)`: a face near Amy's prototypes but nearer Bernadette's is not
    named Amy because only Amy is listed on its photo (a stranger, or a list that missed
    someone); a face nearest Amy is."""
    from facetrain.library.curate import Namer

    amy, bern = np.array([1.0, 0.0, 0.0]), np.array([0.8, 0.6, 0.0])
    protos = (np.stack([amy, bern]).astype(np.float32), np.array([1, 2]), {1: "Amy", 2: "Bern"})
    namer = Namer(protos, threshold=0.6, distance="squared_l2", margin=0.0, why="test")
    faces = np.array([[0.9, 0.44, 0.0], [0.99, 0.1, 0.0]], np.float32)
    faces /= np.linalg.norm(faces, axis=1, keepdims=True)
    assert [r["name"] for r in namer.name(faces[:1], among={1})] == ["unknown"]
    assert [r["name"] for r in namer.name(faces[1:], among={1})] == ["Amy"]
    assert [r["name"] for r in namer.name(faces[:1])] == ["Bern"]


@need(BBT)
def test_a_list_longer_than_any_photo_is_listed_and_left(tmp_path):
    """A JSON naming a thousand people on one photo (a crafted file: each name would cost
    a query on every round) is listed with its reason and left; the other photos' names
    are taken."""
    root = tmp_path / "takeout"
    root.mkdir()
    for person in ("amy", "howard"):
        shutil.copy(BBT / "reference" / person / f"{person}1.png", root / f"{person}1.png")
    _json(root / "amy1.png.json", "amy1.png", "Amy")
    _json(root / "howard1.png.json", "howard1.png", "Howard", *(f"x{k}" for k in range(1000)))
    db = tmp_path / "lib.db"
    out = cli(
        "library", "scan", root, "--db", db, "--import-takeout", "--json", tmp_path / "s.json"
    )
    report = json.loads((tmp_path / "s.json").read_text())["takeout"]
    assert confirmed_names(db) == {"Amy": ["amy1.png"]}
    assert report["problems"] == {str(root / "howard1.png"): "lists 1001 people, more than 200"}
    assert "lists 1001 people" in out and report["faces_named"] == 1
