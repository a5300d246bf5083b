"""The demo with nothing at hand: people drawn on the spot (nothing downloaded), found by the
detector on every skin tone drawn, paired to verify on; and the whole demo on them."""

from __future__ import annotations

import dataclasses

import numpy as np

from facetrain import demo
from facetrain.data import drawn
from facetrain.evaluate.verification import read_pairs


def test_drawn_people_are_found_on_every_skin_tone():
    """Cartoons, yet the detector must find them for the demo to align, train and verify:
    at least 9 photos of 10 on each skin tone drawn, the darkest included (5 of 10 there
    before the drawings had light on the face and a camera's exposure)."""
    import facetrain

    fr, rng = facetrain.load(), np.random.default_rng(5)
    found = []
    for skin in drawn.SKINS:
        p = dataclasses.replace(drawn.person(rng), skin=skin.astype(float))
        found.append(sum(len(fr.faces(np.asarray(drawn.photo(p, rng)))) == 1 for _ in range(10)))
    assert min(found) >= 9, found


def test_drawing_again_gives_the_same_photos_and_keeps_those_there(tmp_path):
    """A stopped demo goes on: photos already drawn are kept as they are, a missing one is
    drawn again exactly as it was, and the same seed draws the same people elsewhere."""
    a = drawn.draw_people(tmp_path / "a", people=3, photos=2, seed=4)
    b = drawn.draw_people(tmp_path / "b", people=3, photos=2, seed=4, lfw_names=True)
    files = sorted(a.rglob("*.jpg"))
    assert len(files) == 6 and sorted(f.read_bytes() for f in files) == sorted(
        f.read_bytes() for f in b.rglob("*.jpg"))  # fmt: skip
    gone, kept = files[3], files[0]
    was, when = gone.read_bytes(), kept.stat().st_mtime_ns
    gone.unlink()
    drawn.draw_people(a, people=3, photos=2, seed=4)
    assert gone.read_bytes() == was and kept.stat().st_mtime_ns == when
    assert [p.name for p in sorted(b.iterdir())] == [p.name for p in sorted(a.iterdir())]
    assert sorted(f.name for f in (b / "person_4_0000").iterdir()) == [
        "person_4_0000_0001.jpg", "person_4_0000_0002.jpg"]  # fmt: skip


def test_drawn_pairs_name_only_faces_that_are_there(tmp_path):
    """Alignment misses a drawn face now and then: the pairs are made of the faces there, so
    none names a missing image; same-person pairs are of one person, the others of two."""
    faces = drawn.draw_people(tmp_path / "f", people=6, photos=3, seed=1, lfw_names=True)
    (faces / "person_1_0002" / "person_1_0002_0002.jpg").unlink()  # as if not aligned
    pairs = read_pairs(drawn.write_pairs(faces, tmp_path / "pairs.txt", folds=3, per_fold=5),
                       faces)  # fmt: skip
    assert len(pairs.issame) == 30 and not pairs.missing
    same = [a.split("/")[-2] == b.split("/")[-2] for a, b in zip(pairs.path1, pairs.path2)]
    assert same == pairs.issame.tolist()
    assert not any("person_1_0002_0002" in p for p in pairs.path1 + pairs.path2)


def test_the_demo_runs_end_to_end_on_drawn_people(tmp_path, monkeypatch):
    """With no FACETRAIN_DEMO_DATA and no ../shared (a user's machine, offline or not), the
    demo downloads nothing: it draws people, prepares, trains, evaluates on other drawn
    people and writes its report page; run again, it goes on from what it made."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FACETRAIN_DEMO_DATA", raising=False)
    monkeypatch.setattr(demo, "shared_dataset", lambda name: None)
    monkeypatch.setattr(demo, "DRAWN", (16, 4))
    monkeypatch.setattr(demo, "DRAWN_TEST", (8, 3))
    monkeypatch.setattr(drawn, "SIZE", 160)
    demo.main()
    out = tmp_path / "demo-output"
    assert len(list((out / "drawn").rglob("*.jpg"))) == 64
    metrics = (out / "run" / "eval" / "metrics.json").read_text()
    assert '"accuracy"' in metrics and (out / "run" / "report.html").exists()
    weights = (out / "run" / "model.safetensors").read_bytes()
    photos = {f: f.stat().st_mtime_ns for f in (out / "drawn").rglob("*.jpg")}
    evaluated = (out / "run" / "eval" / "metrics.json").stat().st_mtime_ns
    demo.main()  # again: nothing drawn, trained or evaluated anew
    assert {f: f.stat().st_mtime_ns for f in (out / "drawn").rglob("*.jpg")} == photos
    assert (out / "run" / "model.safetensors").read_bytes() == weights
    assert (out / "run" / "eval" / "metrics.json").stat().st_mtime_ns == evaluated
    (out / "run" / "model.safetensors").touch()  # a model written after: evaluated again
    demo.main()
    assert (out / "run" / "eval" / "metrics.json").stat().st_mtime_ns > evaluated
