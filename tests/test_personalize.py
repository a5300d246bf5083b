"""Personal models (issue 20): an adapter learnt from the owner's named faces — what it
learns, how it is measured, and the library command that keeps it private and reversible."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import SHARED
from facetrain.cli import app
from facetrain.distances import distance_matrix
from facetrain.library import personalize as pz
from helpers import bbt_library, local_client, make_model, name_by_folder, population

BBT = SHARED / "photos" / "bbt"
runner = CliRunner()


def lookalikes(seed: int = 1, d: int = 48, family: int = 6, faces: int = 15, strangers: int = 30):
    """Unit embeddings: a family of lookalikes (near one point) and unrelated strangers."""
    rng = np.random.default_rng(seed)

    def unit(x):
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    base = unit(rng.normal(size=d))
    centres = [unit(base + 0.25 * unit(rng.normal(size=d))) for _ in range(family)]
    centres += [unit(rng.normal(size=d)) for _ in range(strangers)]
    emb, truth = [], []
    for p, c in enumerate(centres):
        for _ in range(faces if p < family else 4):
            emb.append(unit(c + 0.3 * unit(rng.normal(size=d))))
            truth.append(p)
    truth = np.array(truth)
    person = np.where(truth < family, truth, -1)
    return pz.Faces(np.array(emb, np.float32), person, np.arange(len(truth)), truth)


def pair_accuracy(e, labels, thr):
    d = distance_matrix(e, e)
    same, off = labels[:, None] == labels[None, :], ~np.eye(len(e), dtype=bool)
    return ((d < thr) == same)[off].mean()


def test_the_adapter_separates_the_named_lookalikes_on_faces_it_did_not_see():
    faces = lookalikes()
    named = np.flatnonzero(faces.person >= 0)
    train = named[named % 3 != 0]
    test = named[named % 3 == 0]
    person = np.full(len(faces.person), -1)
    person[train] = faces.person[train]
    learn = pz.Faces(faces.emb, person, faces.photo)
    adapter, thr, thr_after = pz.learn(learn, "squared_l2")
    assert thr == pz.fit_threshold(faces.emb[train], faces.person[train], "squared_l2")
    after = adapter.apply(faces.emb)
    assert np.allclose(np.linalg.norm(after, axis=1), 1, atol=1e-5)  # unit in, unit out
    plain = pair_accuracy(faces.emb[test], faces.person[test], thr)
    personal = pair_accuracy(after[test], faces.person[test], thr_after)
    assert personal > plain + 0.01, (plain, personal)
    strangers = np.flatnonzero(faces.person < 0)  # their distances are kept
    d0 = distance_matrix(faces.emb[strangers], faces.emb[strangers])
    d1 = distance_matrix(after[strangers], after[strangers])
    assert np.abs(d1 - d0).mean() < 0.1 * thr
    back = pz.Adapter.from_bytes(adapter.to_bytes())
    assert np.array_equal(back.apply(faces.emb), after)


def test_the_threshold_through_the_adapter_is_fitted_on_a_bounded_sample(monkeypatch):
    """The set-aside faces against every other named face made one matrix of 3 GB at
    50,000 named faces; past `ASIDE_PAIRS` pairs a random sample of the others is used,
    and the threshold found on it is the full one's, near enough to keep its accuracy."""
    faces = lookalikes()
    shapes, real = [], pz.distance_matrix

    def recorded(a, b, distance="squared_l2", **kw):
        if isinstance(a, np.ndarray):  # not the adapter's steps (tensors)
            shapes.append((len(a), len(b)))
        return real(a, b, distance, **kw)

    monkeypatch.setattr(pz, "distance_matrix", recorded)
    full = pz.learn(faces, "squared_l2")[2]
    [(aside, fit)] = shapes
    monkeypatch.setattr(pz, "ASIDE_PAIRS", aside * fit // 2)
    shapes.clear()
    half = pz.learn(faces, "squared_l2")[2]
    assert shapes == [(aside, fit // 2)]
    named = faces.person >= 0
    e, who = faces.emb[named], faces.person[named]
    assert abs(pair_accuracy(e, who, half) - pair_accuracy(e, who, full)) < 0.02
    assert abs(half - full) < 0.15 * full


def test_same_photo_faces_are_pushed_apart():
    """Two faces of one photo are two people: the adapter learns that without any name —
    unnamed lookalikes seen together in photos end up further apart than when the photos
    are not known."""
    faces = lookalikes(seed=2)
    unnamed = np.flatnonzero(faces.person < 0)
    emb = faces.emb.copy()  # strangers 0-4 made lookalikes of each other, unnamed
    group = [unnamed[faces.truth[unnamed] == faces.truth[unnamed][0] + k] for k in range(5)]
    anchor = emb[group[0][0]]
    for g in group:
        emb[g] = anchor + 0.35 * (emb[g] - emb[g].mean(0))
        emb[g] /= np.linalg.norm(emb[g], axis=1, keepdims=True)
    photo = faces.photo.copy()
    pairs = [(group[k][i], group[(k + 1) % 5][i]) for k in range(5) for i in range(4)]
    for a, b in pairs:
        photo[b] = photo[a]
    named = faces.person >= 0
    thr = pz.fit_threshold(emb[named], faces.person[named], "squared_l2")
    a_idx, b_idx = np.array(pairs).T

    def spread(photos):
        e = pz.train_adapter(pz.Faces(emb, faces.person, photos), thr, "squared_l2").apply(emb)
        return ((e[a_idx] - e[b_idx]) ** 2).sum(1).mean()

    plain = ((emb[a_idx] - emb[b_idx]) ** 2).sum(1).mean()
    assert plain < thr  # the plain model would stack them together
    assert spread(photo) > 1.1 * spread(faces.photo), (plain, spread(photo), spread(faces.photo))


def test_the_hold_out_keeps_strangers_and_held_back_faces_out_of_training():
    faces = lookalikes()
    train, held, strangers = pz.holdout(faces, 0.3, np.random.default_rng(0))
    assert len(held) and len(strangers)
    assert (train.person[held] == -1).all() and (train.person[strangers] == -1).all()
    named_people = set(np.unique(train.person[train.person >= 0]).tolist())
    demoted = set(np.unique(faces.person[strangers][faces.person[strangers] >= 0]).tolist())
    assert demoted and not demoted & named_people and len(named_people) >= 2
    assert set(faces.person[held].tolist()) <= named_people  # held back: named people's faces
    r = pz.measure(faces, "squared_l2")
    for k in pz.KEYS[:3]:
        assert 0 <= r[f"{k}_before"] <= 1 and 0 <= r[f"{k}_after"] <= 1
    assert r["identify_accuracy_after"] > r["identify_accuracy_before"], r
    assert isinstance(r["verdict"], str) and r["rounds"] == pz.ROUNDS


def test_too_few_named_faces_says_what_is_missing():
    person = np.array([0] * 7 + [1] * 3 + [-1] * 20)
    with pytest.raises(pz.PersonalizeError, match=r"2 named people with at least 5 .* 1 have"):
        pz.enough(person)
    pz.enough(np.array([0] * 5 + [1] * 5))


def _confirmed(db: Path) -> list:
    con = sqlite3.connect(db)
    sql = (
        "SELECT f.id, f.person_id, p.name FROM faces f JOIN people p ON p.id = f.person_id "
        "WHERE f.confirmed = 1 ORDER BY f.id"
    )
    rows = con.execute(sql).fetchall()
    con.close()
    return rows


def test_library_personalize_measured_private_and_reversible(tmp_path):
    people = ("amy", "penny", "howard", "leonard", "sheldon")
    db, photos = bbt_library(tmp_path, people)
    res = runner.invoke(app, ["library", "personalize", "--db", str(db)])
    assert res.exit_code == 2 and "2 named people with at least 5 confirmed faces" in res.output
    name_by_folder(db, photos, people)
    names_before = _confirmed(db)
    out = tmp_path / "p.json"
    res = runner.invoke(app, ["library", "personalize", "--db", str(db), "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "measured 3 of 3 hold-out rounds" in res.output and "personal adapter on" in res.output
    r = json.loads(out.read_text())
    for k in ("bcubed_f", "identify_accuracy", "stranger_false_name_rate"):
        assert 0 <= r[f"{k}_before"] <= 1 and 0 <= r[f"{k}_after"] <= 1, r
    assert r["named_faces"] >= 25 and r["people"] == 5 and r["stranger_faces"] > 0
    assert _confirmed(db) == names_before  # the owner's word untouched
    beside = {p.name for p in tmp_path.iterdir() if p.is_file()} - {"p.json"}
    assert beside <= {"lib.db", "lib.db.lock", "lib.db-wal", "lib.db-shm"}, beside  # no file
    con = sqlite3.connect(db)  # the adapter lives in the library file, for this model
    sql = "SELECT count(*), sum(active), max(model_hash) FROM adapters"
    ((n, active, digest),) = con.execute(sql)
    assert (n, active) == (1, 1)
    assert digest == con.execute("SELECT value FROM meta WHERE key='model_hash'").fetchone()[0]
    con.close()
    res = runner.invoke(app, ["library", "cluster", "--db", str(db)])
    assert "your personal adapter's" in res.output, res.output
    res = runner.invoke(app, ["library", "identify", str(photos / "amy"), "--db", str(db)])
    assert res.exit_code == 0 and res.output.count("Amy") >= 4, res.output
    res = runner.invoke(app, ["library", "personalize", "--db", str(db), "--off"])
    assert res.exit_code == 0 and "back to the plain model" in res.output
    assert _confirmed(db) == names_before
    res = runner.invoke(app, ["library", "cluster", "--db", str(db)])
    assert "personal adapter" not in res.output, res.output  # the plain model's rule again
    assert "the model's calibrated threshold" in res.output, res.output


def test_a_killed_personalize_resumes_with_the_same_figures(tmp_path, monkeypatch):
    """Finished hold-out rounds are kept in the library: a job killed after its first round
    goes on from the second, and reports what an uninterrupted job reports."""
    from facetrain.library.library import Library

    people = ("amy", "penny", "howard")
    db, photos = bbt_library(tmp_path, people)
    name_by_folder(db, photos, people)
    twin = tmp_path / "twin.db"
    shutil.copy(db, twin)
    with Library(twin) as lib:
        whole = lib.personalize()
    real = pz.measure

    def killed_after_one_round(*a, on_round=None, **k):
        def stop(r, n, runs):
            on_round(r, n, runs)
            raise KeyboardInterrupt  # the process dies here, its round saved

        return real(*a, on_round=stop, **k)

    monkeypatch.setattr(pz, "measure", killed_after_one_round)
    with Library(db) as lib, pytest.raises(KeyboardInterrupt):
        lib.personalize()
    monkeypatch.setattr(pz, "measure", real)
    seen = []
    with Library(db) as lib:
        assert lib.personal() is None  # nothing switched on by the killed job
        again = lib.personalize(on_progress=lambda k, n, resumed=False: seen.append((k, resumed)))
    assert seen[0] == (1, True) and seen[-1] == (3, False)
    keys = [k for k in whole if k.endswith(("_before", "_after"))]
    assert {k: again[k] for k in keys} == {k: whole[k] for k in keys}
    other = make_model(tmp_path / "other.safetensors", seed=3, threshold=0.6, dim=16)
    res = runner.invoke(app, ["library", "migrate", "--db", str(db), "--model", str(other)])
    assert res.exit_code == 0, res.output
    with Library(db) as lib:  # the adapter was learnt for the old model: not used now
        assert lib.personal() is None
        assert lib.cluster()[0].faces > 0


def test_the_web_page_learns_shows_and_goes_back(tmp_path):

    people = ("amy", "penny", "howard")
    db, photos = bbt_library(tmp_path, people)
    client = local_client(db)
    assert "Learn from my names" in client.get("/").text
    assert client.get("/api/personal").json() == {"personal": None}
    r = client.post("/api/personalize")
    assert r.status_code == 400 and "named people" in r.json()["detail"]
    name_by_folder(db, photos, people)
    r = client.post("/api/personalize")
    assert r.status_code == 200 and r.json()["message"].startswith("learnt from ")
    shown = client.get("/api/personal").json()["personal"]
    assert shown["identify_accuracy_before"] is not None and shown["verdict"]
    assert client.post("/api/personalize/off").json()["message"] == "back to the plain model"
    assert client.get("/api/personal").json() == {"personal": None}


def test_the_stacks_figure_is_the_library_s_own_stacks():
    """Issue 28 (5): "stacks right" scores the stacks `library cluster` makes of the whole
    library (its spacing, the names pinned), on the faces whose truth is known — not a
    re-clustering of the measured faces alone at the plain threshold, which in a population
    the model crowds called perfect stacks 0.34."""
    from facetrain.inference.pretrained import DLIB_THRESHOLD as T
    from facetrain.library.cluster import agglomerate
    from facetrain.library.evaluate import scores
    from facetrain.library.personalize import Faces, _figures, holdout, library_stacks

    emb, who = population(6, 12, 0.1, seed=3)  # crowded: people 0.1 apart, threshold 0.19
    faces = Faces(emb, np.where(who < 4, who, -1), np.arange(len(emb)), who)
    train, held, strangers = holdout(faces, 0.3, np.random.default_rng(0))
    both = np.r_[held, strangers]
    labels = library_stacks(emb, train, T, "squared_l2")
    assert (labels[train.person >= 0] == train.person[train.person >= 0]).all()
    fig = _figures(emb, faces, train, held, strangers, "squared_l2", T)
    assert fig["bcubed_f"] == scores(labels[both].tolist(), who[both].tolist())["bcubed_f"]
    alone = agglomerate(emb[both], faces.photo[both], T, "squared_l2")[0]
    assert fig["bcubed_f"] > scores(alone.tolist(), who[both].tolist())["bcubed_f"] + 0.3
