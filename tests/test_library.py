"""The photo library on real group and portrait photos (../shared/datasets/photos/bbt)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import SHARED, tree_hash
from facetrain.cli import app
from facetrain.inference.record import Preprocess, save_model
from facetrain.library.cluster import agglomerate
from facetrain.library.evaluate import scores
from facetrain.library.library import Library
from facetrain.models import create_model
from helpers import Stopper, cli, cli_fails, confirm_all, local_client, make_model

BBT = SHARED / "photos" / "bbt"
runner = CliRunner()


def faces_table(db: Path) -> list[tuple]:
    con = sqlite3.connect(db)
    rows = con.execute(
        "SELECT p.path, f.x1, f.y1, f.person_id, f.confirmed, f.hidden FROM faces f"
        " JOIN photos p ON p.id = f.photo_id ORDER BY p.path, f.x1"
    ).fetchall()
    con.close()
    return rows


def test_scan_is_incremental_and_never_touches_photos(photos, tmp_path):
    model = make_model(tmp_path / "m.safetensors")
    db = tmp_path / "lib.db"
    before = tree_hash(photos)
    out = cli(
        "library", "scan", photos, "--db", db, "--model", model, "--json", tmp_path / "r.json"
    )
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["new"] == 12 and r["faces"] >= 12 and "12 new" in out
    assert r["to_stack"] == r["usable_faces"] and "next: `facetrain library cluster" in out
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    multi = con.execute("SELECT COUNT(*) FROM faces GROUP BY photo_id ORDER BY 1 DESC").fetchone()
    assert multi[0] >= 3  # a group photo: every face
    con.close()

    cli("library", "scan", photos, "--db", db, "--json", tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["unchanged"] == 12

    # name someone, then move, duplicate, change, delete and break files
    cli("library", "cluster", "--db", db, "--threshold", "0.3")
    con = sqlite3.connect(db)
    pid = con.execute(
        "SELECT f.person_id FROM faces f JOIN photos p ON p.id = f.photo_id WHERE p.path LIKE ?",
        ("%/amy/amy1.png",),
    ).fetchone()[0]
    con.close()
    cli("library", "name", pid, "Amy", "--db", db)
    (photos / "moved").mkdir()
    os.rename(photos / "amy" / "amy1.png", photos / "moved" / "amy1.png")
    shutil.copy(photos / "penny" / "penny1.png", photos / "penny" / "copy.png")
    mirrored = Image.open(photos / "penny" / "penny2.png").transpose(Image.FLIP_LEFT_RIGHT)
    mirrored.save(photos / "penny" / "penny2.png")  # changed content
    os.remove(photos / "howard" / "howard3.png")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    cli("library", "scan", photos, "--db", db, "--json", tmp_path / "r.json")
    r = json.loads((tmp_path / "r.json").read_text())
    assert (r["moved"], r["duplicates"], r["changed"]) == (1, 1, 1)
    assert r["removed"] + r["missing"] == 1  # missing: kept for the names confirmed on it
    assert any("broken.jpg" in p for p in r["problems"])
    assert any("duplicate of" in why for why in r["problems"].values())
    named = [row for row in faces_table(db) if row[0].endswith("moved/amy1.png")]
    assert named and named[0][4] == 1  # the name moved with the photo

    # another model's embeddings are not mixed into this library
    other = make_model(tmp_path / "other.safetensors", seed=1, threshold=0.7)
    other_pre = Preprocess(model="nn4_small2", embedding_size=32, input_size=80, threshold=0.7)
    save_model(other, create_model("nn4_small2", 32), other_pre)
    assert "library migrate" in cli_fails("library", "scan", photos, "--db", db, "--model", other)
    assert tree_hash(photos) != before  # (the test itself edited the folder)


def test_kill_minus_9_mid_scan_loses_nothing(photos, tmp_path):
    model = make_model(tmp_path / "m.safetensors")
    db = tmp_path / "lib.db"
    cmd = [sys.executable, "-m", "facetrain", "library", "scan", str(photos), "--db", str(db),
           "--model", str(model)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            con = sqlite3.connect(db, timeout=5)
            done = con.execute("SELECT COUNT(*) FROM photos").fetchone()[0]
            con.close()
        except sqlite3.Error:
            done = 0
        if done >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 3 <= done < 12, done  # killed mid-way
    out = cli("library", "scan", photos, "--db", db, "--json", tmp_path / "r.json")
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["unchanged"] >= 3 and r["new"] + r["unchanged"] == 12, out
    fresh = tmp_path / "fresh.db"
    cli("library", "scan", photos, "--db", fresh, "--model", model)
    strip = [(p, round(x, 1), round(y, 1)) for p, x, y, *_ in faces_table(db)]
    assert strip == [(p, round(x, 1), round(y, 1)) for p, x, y, *_ in faces_table(fresh)]


def test_cluster_curate_undo_identify_export_eval(photos, tmp_path):
    model = make_model(tmp_path / "m.safetensors")
    db = tmp_path / "lib.db"
    cli("library", "scan", photos, "--db", db, "--model", model)
    # a threshold at which everything would merge: cannot-link still splits group photos
    cli("library", "cluster", "--db", db, "--threshold", "4.0")
    con = sqlite3.connect(db)
    clash = con.execute(
        "SELECT COUNT(*) FROM faces a JOIN faces b ON a.photo_id = b.photo_id AND a.id < b.id"
        " WHERE a.person_id = b.person_id"
    ).fetchone()[0]
    assert clash == 0
    cli("library", "cluster", "--db", db, "--threshold", "0.000001")  # every face alone
    state0 = faces_table(db)

    def stack_of(name):
        return con.execute(
            "SELECT f.person_id FROM faces f JOIN photos p ON p.id = f.photo_id"
            " WHERE p.path LIKE ?", (f"%/{name}",)
        ).fetchone()[0]  # fmt: skip

    a, b, c = stack_of("amy1.png"), stack_of("amy2.png"), stack_of("amy3.png")
    cli("library", "name", a, "Mom", "--db", db)
    cli("library", "merge", "Mom", b, "--db", db)
    cli("library", "merge", "Mom", c, "--db", db)
    assert con.execute("SELECT id FROM faces WHERE person_id = ? LIMIT 1", (c,)).fetchone() is None
    confirmed = con.execute("SELECT COUNT(*) FROM faces WHERE confirmed = 1").fetchone()[0]
    face = con.execute(
        "SELECT f.id FROM faces f JOIN photos p ON p.id = f.photo_id WHERE p.path LIKE ?",
        ("%/amy3.png",),
    ).fetchone()[0]
    cli("library", "reject", face, "--db", db)
    cli("library", "cluster", "--db", db, "--threshold", "4.0")  # everything near Mom joins…
    mom = con.execute("SELECT id FROM people WHERE name = 'Mom'").fetchone()[0]
    assert con.execute("SELECT person_id FROM faces WHERE id = ?", (face,)).fetchone()[0] != mom
    assert (
        con.execute(
            "SELECT COUNT(*) FROM faces WHERE person_id = ? AND confirmed = 1", (mom,)
        ).fetchone()[0]
        == confirmed - 1
    )  # …but the names stay on the confirmed faces, the rejected one stays out
    assert (
        con.execute(
            "SELECT COUNT(*) FROM faces WHERE person_id = ? AND confirmed = 0", (mom,)
        ).fetchone()[0]
        > 0
    )
    a = mom

    # identify: a known photo's face is Mom; a person is given once per photo
    mom_photo = con.execute(
        "SELECT p.path FROM faces f JOIN photos p ON p.id = f.photo_id WHERE f.person_id = ?"
        " AND f.confirmed = 1 LIMIT 1", (int(a),)
    ).fetchone()[0]  # fmt: skip
    group = sorted((photos / "group").iterdir())[0]
    cli("library", "identify", mom_photo, group, "--db", db, "--json", tmp_path / "i.json")
    res = json.loads((tmp_path / "i.json").read_text())
    assert "Mom" in [f["name"] for f in res[0]["faces"]]
    assert [f["name"] for f in res[1]["faces"]].count("Mom") <= 1
    # the rule speaks in the distances' units: limits under the library's spacing (its
    # "under threshold 0.190" beside a named face's 0.8 read as a contradiction)
    assert "named under 1," in res[0]["rule"]
    faces = [f for r in res for f in r["faces"]]
    assert all(f["distance"] < 1 for f in faces if f["name"] != "unknown")
    cli("library", "identify", mom_photo, "--db", db, "--threshold", "0.3",
        "--json", tmp_path / "t.json")  # fmt: skip
    given = json.loads((tmp_path / "t.json").read_text())[0]
    assert "under threshold 0.300" in given["rule"]
    assert all(f["distance"] < 0.3 for f in given["faces"] if f["name"] != "unknown")

    before = tree_hash(photos)
    cli("library", "export", "--db", db, "--by-person", tmp_path / "out")
    links = [p for p in (tmp_path / "out" / "Mom").iterdir() if not p.name.startswith(".")]
    assert links and all(p.is_symlink() and Path(os.readlink(p)).exists() for p in links)
    assert tree_hash(photos) == before

    cli("library", "hide", "Mom", "--db", db)
    # hidden twice, shown twice: the second of each changes nothing, and leaves no step that
    # `undo` would undo in place of the last real change
    assert "is hidden already: nothing to do" in cli("library", "hide", "Mom", "--db", db)
    assert "undone: stack" in cli("library", "undo", "--db", db)
    assert "is shown already: nothing to do" in cli("library", "unhide", "Mom", "--db", db)
    cli("library", "hide", "Mom", "--db", db)
    assert "shown again" in cli("library", "unhide", "Mom", "--db", db)
    assert "undone: stack" in cli("library", "undo", "--db", db, "--steps", "10")
    con.close()
    after = faces_table(db)
    # every curating action undone: no name, no confirmed or hidden face is left
    assert [r[:3] + r[4:] for r in after] == [r[:3] + r[4:] for r in state0]
    assert not [r for r in after if r[4] or r[5]]

    cli("library", "eval", "--db", db, "--truth", photos, "--json", tmp_path / "e.json")
    e = json.loads((tmp_path / "e.json").read_text())
    for k in ("pairwise_precision", "pairwise_recall", "pairwise_f", "bcubed_precision",
              "bcubed_recall", "bcubed_f"):  # fmt: skip
        assert 0.0 <= e[k] <= 1.0


def test_migrate_keeps_names(photos, tmp_path):
    db = tmp_path / "lib.db"
    cli("library", "scan", photos, "--db", db, "--model", make_model(tmp_path / "a.safetensors"))
    cli("library", "cluster", "--db", db, "--threshold", "0.3")
    con = sqlite3.connect(db)
    pid = con.execute("SELECT person_id FROM faces WHERE person_id IS NOT NULL").fetchone()[0]
    cli("library", "name", pid, "Dad", "--db", db)
    named = con.execute("SELECT COUNT(*) FROM faces WHERE confirmed = 1").fetchone()[0]
    new = make_model(tmp_path / "b.safetensors", seed=3, threshold=0.6, dim=16)
    out = cli("library", "migrate", "--db", db, "--model", new)
    assert f"{named} named faces kept" in out
    dim = len(con.execute("SELECT embedding FROM faces LIMIT 1").fetchone()[0]) // 4
    assert dim == 16
    assert (
        con.execute(
            "SELECT COUNT(*) FROM faces f JOIN people p ON p.id = f.person_id WHERE p.name = 'Dad'"
        ).fetchone()[0]
        == named
    )
    cli("library", "cluster", "--db", db)  # the new model's own threshold


def test_a_stopped_migration_goes_on_and_counts_every_photo(photos, tmp_path, monkeypatch):
    """A migration stopped midway (Ctrl-C, a crash) leaves the library refusing other work
    until `migrate` is run again, which reads only the photos left. Its line counted only
    the photos and named faces of the run that ended it; it now counts every photo and
    named face of the migration, as one never stopped says them, with how many photos the
    stopped run had done."""
    from facetrain.library import scan

    first = tmp_path / "lib.db"
    cli("library", "scan", photos, "--db", first, "--model", make_model(tmp_path / "a.safetensors"))
    named = sum(len(v) for v in confirm_all(first).values())
    second = tmp_path / "stopped.db"
    shutil.copy(first, second)
    new = make_model(tmp_path / "b.safetensors", seed=3, dim=16)
    whole = cli("library", "migrate", "--db", first, "--model", new)
    assert f"{named} named faces kept, 0 not found again" in whole and "before it" not in whole

    stop = Stopper(monkeypatch, scan, "_migrate_one", lambda con, scanner, row, *_: row["id"])
    stop.reset(at=5)
    assert CliRunner().invoke(app, ["library", "migrate", "--db", str(second), "--model",
                                    str(new)]).exit_code != 0  # fmt: skip
    assert "migration is unfinished" in cli_fails("library", "people", "--db", second)
    stopped = stop.calls
    stop.reset()
    older = tmp_path / "older.db"  # stopped by a facetrain whose table held the photos alone
    shutil.copy(second, older)
    with sqlite3.connect(older) as con:
        con.executescript("CREATE TABLE m AS SELECT photo_id FROM migrated; DROP TABLE "
                          "migrated; ALTER TABLE m RENAME TO migrated")  # fmt: skip
    assert " (5 of them before it was stopped)" in cli("library", "migrate", "--db", older,
                                                       "--model", new)  # fmt: skip
    again = cli("library", "migrate", "--db", second, "--model", new)
    said = whole.split(" to ", 1)[1].split(": ", 1)[1]  # the named faces kept and lost
    assert f" (5 of them before it was stopped): {said}" in again, (whole, again)
    assert again.split(" to ")[0] == whole.split(" to ")[0]  # `migrated N photos`
    faces = "SELECT p.path, f.x1, f.person_id, f.confirmed FROM faces f JOIN photos p ON " \
            "p.id = f.photo_id ORDER BY p.path, f.x1"  # fmt: skip
    rows = [sqlite3.connect(db).execute(faces).fetchall() for db in (first, second)]
    assert rows[0] == rows[1]
    rest = stop.calls[:7]  # each resumed run read the 7 photos the stopped one had not
    assert stop.calls == rest * 2 and len(set(stopped + rest)) == len(stopped + rest) == 12


def test_bad_libraries(tmp_path):
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    assert "not a facetrain library" in cli_fails("library", "people", "--db", tmp_path / "junk.db")
    assert "no library here" in cli_fails("library", "people", "--db", tmp_path / "none.db")
    from facetrain.library.store import connect, set_meta

    con = connect(tmp_path / "new.db", create=True)
    set_meta(con, "schema_version", "99")
    con.close()
    assert "newer facetrain" in cli_fails("library", "people", "--db", tmp_path / "new.db")


def test_agglomeration_is_order_independent_and_respects_cannot_link():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16))
    emb = np.repeat(centres, 6, 0) + rng.normal(scale=0.15, size=(24, 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    photo = np.arange(24)
    photo[[0, 1]] = 100  # two faces of person 0 in one photo: must be split
    labels, moved = agglomerate(emb, photo, threshold=1.0)
    assert labels[0] != labels[1] and moved in (0, 1)
    perm = rng.permutation(24)
    labels_p, _ = agglomerate(emb[perm], photo[perm], threshold=1.0)
    same = labels[:, None] == labels[None, :]
    same_p = np.empty_like(same)
    same_p[np.ix_(perm, perm)] = labels_p[:, None] == labels_p[None, :]
    assert (same == same_p).all()
    assert len(np.unique(labels)) == 5  # 4 people, the cannot-link face alone


def test_a_group_too_large_for_a_matrix_keeps_one_photos_faces_apart():
    """Past `exact_max` faces a group is clustered over its near pairs, which knows one
    photo's faces as the matrix does (never one person): the face of the photo that the
    rest of the stack is nearer to stays in the stack, the other is left alone, and none is
    moved out afterwards."""
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(2, 16))
    emb = np.repeat(centres, 6, 0) + rng.normal(scale=0.1, size=(12, 16))
    emb[1] = emb[0] + 0.6 * (emb[0] - centres[0])  # the same person, farther from the rest
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    photo = np.arange(12)
    photo[[0, 1]] = 100
    for exact_max in (1, 7000):
        labels, moved = agglomerate(emb, photo, threshold=1.0, exact_max=exact_max)
        assert moved == 0 and labels[0] != labels[1]
        assert (labels[2:6] == labels[0]).all() and (labels == labels[1]).sum() == 1
        assert len(np.unique(labels)) == 3  # two people, and the far face of one photo alone


def test_pairwise_and_bcubed_scores():
    # truth: a a a b b ; stacks: 1 1 2 2 2
    r = scores([1, 1, 2, 2, 2], ["a", "a", "a", "b", "b"])
    assert r["pairwise_precision"] == pytest.approx(2 / 4)  # same-stack pairs (1+3), true 2
    assert r["pairwise_recall"] == pytest.approx(2 / 4)  # same-person pairs (3+1), found 2
    assert r["bcubed_precision"] == pytest.approx((1 + 1 + 1 / 3 + 2 / 3 + 2 / 3) / 5)
    assert r["bcubed_recall"] == pytest.approx((2 / 3 + 2 / 3 + 1 / 3 + 1 + 1) / 5)


def test_split_a_mixed_stack_and_undo(photos, tmp_path):
    db = tmp_path / "lib.db"
    cli("library", "scan", photos, "--db", db, "--model", make_model(tmp_path / "m.safetensors"))
    cli("library", "cluster", "--db", db, "--threshold", "4.0")  # one big stack (+ cannot-link)
    ppl = json.loads(
        (
            cli("library", "people", "--db", db, "--json", tmp_path / "p.json"),
            (tmp_path / "p.json").read_text(),
        )[1]
    )
    big = ppl[0]
    before = faces_table(db)
    out = cli("library", "split", big["id"], "--db", db, "--threshold", "0.3")
    assert "split: kept" in out
    after = json.loads(
        (
            cli("library", "people", "--db", db, "--json", tmp_path / "q.json"),
            (tmp_path / "q.json").read_text(),
        )[1]
    )
    assert len(after) > len(ppl) and after[0]["faces"] < big["faces"]
    cli("library", "undo", "--db", db)
    assert faces_table(db) == before


def test_scan_reads_iphone_formats_and_lists_what_it_cannot(photos, tmp_path):
    """A HEIC and an AVIF copy of a portrait hold the same face as the PNG; a RAW file that
    is no RAW and a broken HEIC are listed with their reasons; nothing in the folder
    changes."""
    portrait = photos / "amy" / "amy1.png"
    phone = tmp_path / "phone"
    phone.mkdir()
    img = Image.open(portrait).convert("RGB")
    img.save(phone / "IMG_0001.HEIC", quality=95)
    img.save(phone / "IMG_0002.avif", quality=95)
    shutil.copy(portrait, phone / "IMG_0003.png")
    (phone / "IMG_0004.CR2").write_bytes(b"II*\x00" + b"\x00" * 64)
    (phone / "IMG_0005.heic").write_bytes(b"\x00\x00\x00\x18ftypheic" + b"\x00" * 32)
    before = tree_hash(phone)
    db, report = tmp_path / "lib.db", tmp_path / "r.json"
    model = make_model(tmp_path / "m.safetensors")
    cli("library", "scan", phone, "--db", db, "--model", model, "--json", report)
    r = json.loads(report.read_text())
    assert r["new"] == 5 and r["faces"] == 3
    why = {Path(k).name: v for k, v in r["problems"].items()}
    assert set(why) == {"IMG_0004.CR2", "IMG_0005.heic"}
    assert (
        why["IMG_0004.CR2"]
        == "unreadable: cannot develop this RAW: Unsupported file format or not RAW file"
    )
    assert why["IMG_0005.heic"].startswith("unreadable")
    con = sqlite3.connect(db)
    sql = "SELECT f.embedding FROM faces f JOIN photos p ON p.id = f.photo_id ORDER BY p.path"
    emb = [np.frombuffer(b, np.float32) for (b,) in con.execute(sql)]
    con.close()
    assert min(float(a @ b) for a in emb for b in emb) > 0.95  # the same face in each format
    assert tree_hash(phone) == before


def test_every_scan_lists_the_files_it_cannot_use_until_they_are_mended(photos, tmp_path):
    """A scan printed its first 20 problems and no word of the rest, and a file that could
    not be read was said once: the next scan found it unchanged and said nothing, though
    the web page's scan tells the owner that `library scan` lists such files. Each scan now
    lists them, with their reason, and says how many it did not print; the counts say how
    many of the files counted (new, unchanged) cannot be used."""
    folder = tmp_path / "to-scan"
    shutil.copytree(photos / "amy", folder)
    for k in range(22):
        (folder / f"broken{k:02d}.jpg").write_bytes(f"not photo {k}".encode())
    db, model = tmp_path / "lib.db", make_model(tmp_path / "m.safetensors")

    def scan(report: Path) -> tuple[str, dict[str, str]]:
        out = cli("library", "scan", folder, "--db", db, "--model", model, "--json", report)
        problems = json.loads(report.read_text())["problems"]
        return out, {Path(k).name: v for k, v in problems.items()}

    out, first = scan(tmp_path / "1.json")
    assert sorted(first) == [f"broken{k:02d}.jpg" for k in range(22)]
    assert out.count("unreadable: ") == 20 and "… and 2 more files to look at" in out, out
    assert "25 new, " in out and "(of these, 22 files cannot be used)" in out, out
    out, again = scan(tmp_path / "2.json")
    assert again == {n: f"{why} (unchanged since the last scan)" for n, why in first.items()}
    assert "… and 2 more files to look at" in out and "22 unchanged" not in out, out
    assert "25 unchanged (of these, 22 files cannot be used)" in out, out
    Image.open(photos / "amy" / "amy1.png").save(folder / "broken00.jpg", quality=90)  # mended
    out, mended = scan(tmp_path / "3.json")
    assert sorted(mended) == sorted(set(first) - {"broken00.jpg"})
    assert "… and 1 more file to look at" in out and "1 changed" in out, out
    assert "(of these, 21 files cannot be used)" in out, out


def test_the_library_model_is_known_by_content_wherever_it_lies(photos, tmp_path, monkeypatch):
    """Stored by absolute path and content hash: a relative --model works from any folder
    later; a moved model is refused with what to do, found again with --model on any
    library command, then remembered; another model with the same preprocessing record is
    refused (its embeddings would not mix)."""
    db = tmp_path / "lib.db"
    make_model(tmp_path / "models" / "m.safetensors")
    monkeypatch.chdir(tmp_path / "models")
    cli("library", "scan", photos, "--db", db, "--model", "m.safetensors")
    monkeypatch.chdir(photos)  # another working folder: the stored path still means it
    one = photos / "amy" / "amy1.png"
    assert "amy1.png" in cli("library", "identify", one, "--db", db, "--threshold", "0.3")
    os.rename(tmp_path / "models" / "m.safetensors", tmp_path / "moved.safetensors")
    out = cli_fails("library", "identify", one, "--db", db)
    assert "--model" in out and "library migrate" in out
    cli("library", "people", "--db", db, "--model", tmp_path / "moved.safetensors")  # found
    assert "amy1.png" in cli("library", "identify", one, "--db", db, "--threshold", "0.3")
    twin = make_model(tmp_path / "twin.safetensors", seed=1)  # same record, other weights
    assert "library migrate" in cli_fails("library", "people", "--db", db, "--model", twin)
    cli("library", "migrate", "--db", db, "--model", twin)
    assert "amy1.png" in cli("library", "identify", one, "--db", db, "--threshold", "0.3")


def test_a_model_measured_again_still_opens_its_libraries(photos, tmp_path):
    """A newer facetrain may measure a model's decisions again (the pretrained models'
    records gained sure_below, a threshold recalibrated): the same weights and the same
    preprocessing are the same model, so a library made before opens as it did — with the
    threshold it was made with — while other preprocessing is still refused."""
    from facetrain.inference.record import load_weights
    from facetrain.library import store
    from facetrain.library.library import Library

    db, model = tmp_path / "lib.db", make_model(tmp_path / "m.safetensors", threshold=0.3)
    cli("library", "scan", photos, "--db", db, "--model", model)
    with Library(db) as lib:  # the record as an older facetrain wrote it
        rec = json.loads(store.get_meta(lib.con, "model"))
        for k in ("sure_below", "sure_source"):
            del rec[k]
        store.set_meta(lib.con, "model", json.dumps({**rec, "threshold_source": "older"}))
        lib.con.commit()
    net, pre = load_weights(model)  # the same weights, measured again
    save_model(model, net, replace(pre, threshold=0.4, sure_below=0.1, sure_source="new"))
    one = photos / "amy" / "amy1.png"
    assert "amy1.png" in cli("library", "identify", one, "--db", db)
    with Library(db) as lib:
        assert lib.threshold() == (0.3, "squared_l2")  # the library's own, as made
    save_model(model, net, replace(pre, input_size=80))  # another preprocessing: refused
    assert "library migrate" in cli_fails("library", "identify", one, "--db", db)


def test_every_library_command_takes_model_and_a_failed_scan_leaves_nothing(photos, tmp_path):
    from typer.main import get_command

    group = get_command(app).commands["library"]
    for name, command in group.commands.items():
        assert "--model" in [o for p in command.params for o in p.opts], name
    db = tmp_path / "new.db"
    cli_fails("library", "scan", photos, "--db", db, "--model", tmp_path / "missing.safetensors")
    assert list(tmp_path.iterdir()) == [photos]  # no empty library left behind
    cli("library", "scan", photos, "--db", db, "--model", make_model(tmp_path / "m.safetensors"))
    umask = os.umask(0o022)
    os.umask(umask)
    assert db.stat().st_mode & 0o777 == 0o666 & ~umask  # a normal file (0644 less umask)


def test_threshold_fitted_to_the_owners_named_people(tmp_path, monkeypatch):
    """A model whose threshold is far off for these faces (10x too strict: every face alone)
    gives correct stacks once two people are named with two faces each: the library fits
    the threshold to their confirmed faces, says so, and re-clusters the unnamed faces."""
    if not BBT.exists():
        pytest.skip(f"{BBT} absent (real data not here)")
    people = ("amy", "penny", "howard", "leonard", "sheldon")
    photos = tmp_path / "photos"
    for who in people:
        (photos / who).mkdir(parents=True)
        for p in sorted((BBT / "reference" / who).iterdir())[:4]:
            shutil.copy(p, photos / who / p.name)
    spec = tmp_path / "far-off.json"
    spec.write_text(json.dumps({"threshold": 0.02}))
    db = tmp_path / "lib.db"
    cli("library", "scan", photos, "--db", db, "--model", "pretrained:dlib_resnet",
        "--preprocess", spec)  # fmt: skip
    out = cli("library", "cluster", "--db", db)
    assert "20 stacks" in out and "model's calibrated threshold" in out

    def stacks() -> dict[str, int]:
        return {Path(r[0]).name: r[3] for r in faces_table(db)}

    for who in ("amy", "penny"):
        for k in (1, 2):
            cli("library", "name", stacks()[f"{who}{k}.png"], who.title(), "--db", db)
    out = cli("library", "cluster", "--db", db)
    assert "fitted to your named people: 4 confirmed faces of 2 people" in out
    thr = float(out.split("at threshold ")[1].split(":")[0])
    assert thr > 5 * 0.02  # the far-off one was not kept
    s = stacks()
    for who in ("amy", "penny"):  # the named people's other faces joined them
        assert {s[f"{who}{k}.png"] for k in (3, 4)} == {s[f"{who}1.png"]}, (who, s)
    report = tmp_path / "eval.json"
    cli("library", "eval", "--db", db, "--truth", photos, "--json", report)
    fitted = json.loads(report.read_text())
    assert fitted["bcubed_f"] >= 0.8 and fitted["stacks"] <= 8, fitted
    cli("library", "cluster", "--db", db, "--threshold", "0.02")  # the far-off one, given
    cli("library", "eval", "--db", db, "--truth", photos, "--json", report)
    assert fitted["bcubed_f"] > json.loads(report.read_text())["bcubed_f"] + 0.2
    from facetrain.library import store
    from facetrain.library.library import Library

    read, read_faces = [], store.read_faces  # the threshold and the plan share one read
    monkeypatch.setattr(store, "read_faces", lambda con, w: read.append(w) or read_faces(con, w))
    with Library(db) as lib:
        _, thr_again, why = lib.cluster()
    assert read.count("named") == 1 and "fitted to your named people" in why
    assert thr_again == pytest.approx(thr)


def test_new_photos_join_their_stacks_at_scan(tmp_path):
    """After a first `cluster`, a scan places new faces in the stacks they belong to (named
    or not) without re-clustering the rest: other faces keep their stacks."""
    if not BBT.exists():
        pytest.skip(f"{BBT} absent (real data not here)")
    photos, db = tmp_path / "photos", tmp_path / "lib.db"
    for who in ("amy", "penny", "sheldon"):
        (photos / who).mkdir(parents=True)
        for k in (1, 2, 3):
            shutil.copy(BBT / "reference" / who / f"{who}{k}.png", photos / who)
    cli("library", "scan", photos, "--db", db, "--model", "pretrained:dlib_resnet")
    cli("library", "cluster", "--db", db)
    before = {Path(r[0]).name: r[3] for r in faces_table(db)}
    assert len({before[f"amy{k}.png"] for k in (1, 2, 3)}) == 1
    cli("library", "name", before["amy1.png"], "Amy", "--db", db)
    for who in ("amy", "sheldon"):
        shutil.copy(BBT / "reference" / who / f"{who}4.png", photos / who)
    report = tmp_path / "r.json"
    out = cli("library", "scan", photos, "--db", db, "--json", report)
    r = json.loads(report.read_text())
    assert (r["new"], r["joined_stacks"], r["new_stacks"]) == (2, 2, 0), out
    after = {Path(r[0]).name: r[3] for r in faces_table(db)}
    assert after["amy4.png"] == before["amy1.png"]
    assert after["sheldon4.png"] == before["sheldon1.png"]
    assert all(after[k] == v for k, v in before.items())  # nothing else moved


@pytest.mark.parametrize("distance, threshold", [("squared_l2", 0.9), ("cosine", 0.25)])
def test_clustering_by_groups_equals_the_dense_method(distance, threshold):
    """The near-pairs groups give the dense method's partition exactly, and so does the
    linkage over each group's near pairs (forced on every group)."""
    from facetrain.linkage import dense_clusters

    rng = np.random.default_rng(1)
    centres = rng.normal(size=(40, 32))
    emb = np.repeat(centres, 8, 0) + rng.normal(scale=0.4, size=(320, 32))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    photo = np.arange(320)
    dense = dense_clusters(emb, photo, threshold, distance)
    grouped, _ = agglomerate(emb, photo, threshold, distance)
    assert ((dense[:, None] == dense) == (grouped[:, None] == grouped)).all()
    assert 10 < len(np.unique(grouped)) < 300  # a partition with something to get right
    linked, _ = agglomerate(emb, photo, threshold, distance, exact_max=1)
    assert ((dense[:, None] == dense) == (linked[:, None] == linked)).all()


@pytest.mark.parametrize("distance, threshold", [("squared_l2", 0.9), ("cosine", 0.25)])
def test_the_neighbour_index_finds_what_comparing_every_pair_finds(distance, threshold,
                                                                   monkeypatch):  # fmt: skip
    """Past 50,000 faces an IVF index proposes the neighbours (`facetrain/neighbours.py`);
    forced on 6,000 faces of 300 people in families of five lookalikes (neighbourhoods
    that straddle the index's lists), it finds ≥ 99.9% of the near pairs — none that are
    not — and the spacing and stacks that comparing every pair gives. (Searching one list
    per face instead of `NPROBE` loses 1–15% of the pairs and fails here.) One index of a library
    kept for many photos' searches finds what each photo's own index found."""
    from facetrain import neighbours
    from facetrain.library.cluster import local_scales, near_pairs

    rng = np.random.default_rng(2)
    family = np.repeat(rng.normal(size=(60, 32)), 5, 0)
    centres = family + rng.normal(scale=0.5, size=(300, 32))
    emb = np.repeat(centres, 20, 0) + rng.normal(scale=0.3, size=(6000, 32))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    photo = np.arange(6000) // 2  # two faces a photo: the spacing must skip the other
    s_exact = local_scales(emb, photo, distance)
    g_exact = near_pairs(emb, threshold, distance, scale=s_exact)
    stacks = agglomerate(emb, photo, threshold, distance, scale=s_exact)[0]
    monkeypatch.setattr(neighbours, "EXACT_SEARCH", 1000)
    s_index = local_scales(emb, photo, distance)
    assert np.isclose(s_index, s_exact, rtol=1e-5).mean() >= 0.999
    g_index = near_pairs(emb, threshold, distance, scale=s_exact)
    found = g_exact.astype(bool).multiply(g_index.astype(bool))
    assert g_exact.nnz > 100_000 and found.nnz == g_index.nnz >= 0.999 * g_exact.nnz
    assert abs(g_exact.multiply(found) - g_index.multiply(found)).max() < 1e-5  # float32
    indexed = agglomerate(emb, photo, threshold, distance, scale=s_index)[0]
    assert 100 < len(np.unique(stacks)) < 3000  # a partition with something to get right
    assert scores(indexed.tolist(), [str(x) for x in stacks])["bcubed_f"] > 0.999
    # a namer's photos, each searched against one index of the library kept for them all,
    # find the spacing each photo's own search of the library joined with it found
    monkeypatch.setattr(neighbours, "DUE", 0)  # the index due at the first search
    index = neighbours.index_of(emb[100:], distance)
    for q in (np.arange(0, 3), np.arange(40, 42)):
        joined = local_scales(np.concatenate([emb[q], emb[100:]]),
                              np.concatenate([np.full(len(q), -1), photo[100:]]), distance,
                              rows=len(q))  # fmt: skip
        kept = neighbours.kth_in(emb[q], np.full(len(q), -1), emb[100:], photo[100:], distance,
                                 3, index)  # fmt: skip
        assert np.allclose(kept, joined, rtol=1e-5), (kept, joined)


@pytest.mark.parametrize("exact_search", [50_000, 500])
def test_spacing_among_two_sets_is_the_spacing_of_both_joined(exact_search, monkeypatch):
    """`neighbours.scales_among`, the named faces' spacing among themselves and the library
    (the namer's: it searches one index of the library it keeps for every photo), is the
    spacing of both sets joined — the named faces, also in the library, counted twice as
    the namer counts them; every pair compared, and with an index proposing neighbours."""
    from facetrain import neighbours
    from facetrain.library.cluster import local_scales
    from facetrain.neighbours import scales_among

    rng = np.random.default_rng(5)
    emb = np.repeat(rng.normal(size=(100, 16)), 20, 0) + rng.normal(scale=0.4, size=(2000, 16))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    photo = np.arange(2000) // 2
    named = np.arange(0, 2000, 7)
    monkeypatch.setattr(neighbours, "EXACT_SEARCH", exact_search)
    both, bphoto = np.concatenate([emb[named], emb]), np.concatenate([photo[named], photo])
    joined = local_scales(both, bphoto, "squared_l2", rows=len(named))
    index = neighbours.index_of(emb, "squared_l2")
    assert (index is None) == (exact_search > len(emb))
    among = scales_among(emb[named], photo[named], emb, photo, "squared_l2", index=index)
    assert np.isfinite(among).all() and among.min() > 0
    assert np.isclose(among, joined, rtol=1e-5).mean() >= (1.0 if index is None else 0.99)
    # counted once (the library alone) is wider: the twice-counted rule is what is kept
    once = local_scales(emb, photo, "squared_l2")[named]
    assert (among <= once + 1e-5).all() and (among < once - 1e-5).mean() > 0.1


def test_a_large_library_s_cluster_run_says_how_far_each_phase_is(tmp_path, monkeypatch,
                                                                   capsys):  # fmt: skip
    """1,000,000 faces stacked in 6 minutes with nothing on the screen. Now each phase —
    the index of the faces, the spacing, the near pairs, the stacks of each connected
    group — has its bar (in a log: lines with count and ETA) for a library past
    `CLUSTER_BAR_FROM` faces, counting up to every face; the stacks are the same."""
    import re

    from facetrain import neighbours
    from facetrain.library import library
    from helpers import add_embedded, embedded_library, population

    emb, _ = population(150, 20, 0.6, seed=3)
    monkeypatch.setattr(neighbours, "EXACT_SEARCH", 1000)  # the index, as past 50,000 faces
    monkeypatch.setattr(neighbours, "QUERY_BLOCK", 700)
    monkeypatch.setattr(library, "CLUSTER_BAR_FROM", 3000)
    monkeypatch.setenv("FACETRAIN_PROGRESS_EVERY", "0")  # a line each time a phase moves
    lib = embedded_library(tmp_path / "lib.db", emb)
    reports = []
    for progress in (False, True):
        capsys.readouterr()
        reports.append(lib.cluster(progress=progress)[0])
        err = capsys.readouterr().err
        said = re.findall(r"^(spacing|near pairs|stacks) (\d+)/(\d+) ", err, re.M)
    # the index is built once, before the first search: its own line before and after
    assert re.findall(r"^indexing the faces (\d+)/(\d+) ", err, re.M) == [
        ("0", "3000"),
        ("3000", "3000"),
    ]
    first, again = reports  # the same stacks: each one stays the stack it was
    assert first.stacks == again.stacks == again.kept == first.new_stacks > 100
    phases = {p: [int(d) for q, d, _ in said if q == p] for p in ("spacing", "near pairs",
                                                                     "stacks")}  # fmt: skip
    assert {int(t) for *_, t in said} == {3000}
    assert phases["spacing"] == phases["near pairs"] == [0, 700, 1400, 2100, 2800, 3000]
    assert len(phases["stacks"]) > 50 and phases["stacks"][-1] == 3000
    assert phases["stacks"] == sorted(set(phases["stacks"]))  # up, never back
    monkeypatch.setattr(library, "CLUSTER_BAR_FROM", 3001)  # a smaller library: no bar
    lib.cluster(progress=True)
    assert not re.search(r"^(spacing|near pairs|stacks) ", capsys.readouterr().err, re.M)
    # a scan's new faces, stacked with the stacks they come near, show the same bars
    monkeypatch.setattr(library, "CLUSTER_BAR_FROM", 3100)
    add_embedded(lib, population(5, 20, 0.6, seed=4)[0], range(5000, 5100))
    joined, new = lib.stack_new(progress=True)
    said = re.findall(r"^(spacing|near pairs|stacks) (\d+)/(\d+) ", capsys.readouterr().err,
                      re.M)  # fmt: skip
    last = {p: (int(d), int(t)) for p, d, t in said}  # each phase's last line: all done
    assert joined + new > 0 and set(last) == {"spacing", "near pairs", "stacks"}
    assert all(d == t >= 100 for d, t in last.values()), last


def test_the_page_s_namer_keeps_its_index_and_each_thread_its_own(tmp_path, monkeypatch):
    """The web page's "who is this?" namer, made again after the owner names a stack,
    searches the index it built before (the library's faces did not change); a namer made
    plainly builds one. `keep()` is each thread's own: a look for new photos clustering in
    one thread never empties the index another thread keeps."""
    import threading

    from facetrain import neighbours
    from facetrain.library import store
    from facetrain.library.web import _namer_keeping
    from helpers import embedded_library

    rng = np.random.default_rng(5)
    emb = rng.normal(size=(600, 16))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    monkeypatch.setattr(neighbours, "EXACT_SEARCH", 100)
    monkeypatch.setattr(neighbours, "DUE", 0)  # due at the first search
    built = []
    build = neighbours._build
    monkeypatch.setattr(neighbours, "_build", lambda *a: built.append(1) or build(*a))
    page = _namer_keeping({})
    with embedded_library(tmp_path / "lib.db", emb, threshold=0.6) as lib:
        for k, first in enumerate((1, 16)):  # the owner names a stack; the page names again
            with store.transaction(lib.con):
                pid = store.new_person(lib.con)
                store.name_person(lib.con, pid, f"p{k}")
                store.assign(lib.con, [(pid, f) for f in range(first, first + 5)], confirmed=1)
            kept = page(lib).name(emb[[7]])
        assert len(built) == 1 and lib.namer().name(emb[[7]]) == kept and len(built) == 2
    built.clear()
    inside, done = threading.Event(), threading.Event()

    def first() -> None:  # keeps an index of some faces across another thread's keep()
        with neighbours.keep():
            neighbours.index_of(emb[:300], "squared_l2").for_search(1)
            inside.set()
            done.wait(10)
            neighbours.index_of(emb[:300], "squared_l2").for_search(1)

    def second() -> None:
        inside.wait(10)
        with neighbours.keep():
            neighbours.index_of(emb[300:], "squared_l2").for_search(1)
        done.set()

    threads = [threading.Thread(target=f) for f in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert len(built) == 2  # one index each: the first thread's was never emptied
    assert getattr(neighbours._state, "kept", None) is None  # nothing left kept here


def test_namers_of_one_library_share_one_index_within_keep(tmp_path, monkeypatch):
    """An import names by likeness in rounds, a new namer each round: within
    `neighbours.keep()` they search one index of the library's faces (naming changes
    none of them, and the faces are read in face order whatever their names), and name
    as namers with indexes of their own do; outside it, each builds its own."""
    from facetrain import neighbours
    from facetrain.library import store
    from helpers import embedded_library

    rng = np.random.default_rng(4)
    centres = rng.normal(size=(40, 16))
    emb = np.repeat(centres, 15, 0) + rng.normal(scale=0.3, size=(600, 16))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    lib = embedded_library(tmp_path / "lib.db", emb, threshold=0.6)
    monkeypatch.setattr(neighbours, "EXACT_SEARCH", 100)
    built = []
    build = neighbours._build
    monkeypatch.setattr(neighbours, "_build", lambda *a: built.append(1) or build(*a))

    def named_by_rounds() -> list:
        """Two rounds: a person named on faces 1..5, then one on 16..20 too, each round's
        namer naming faces of them (each as a photo of its own) and of someone else."""
        out = []
        for first in (1, 16):
            with store.transaction(lib.con):
                pid = store.person_named(lib.con, f"p{first}") or store.new_person(lib.con)
                store.name_person(lib.con, pid, f"p{first}")
                store.assign(lib.con, [(pid, f) for f in range(first, first + 5)], confirmed=1)
            namer = lib.namer()
            out.append([namer.name(emb[[i]])[0]["name"] for i in (7, 8, 22, 23, 400)])
        return out

    with lib:
        with neighbours.keep():
            kept = named_by_rounds()
        assert len(built) == 1  # the second namer found the first one's index
        with store.transaction(lib.con):
            lib.con.execute("UPDATE faces SET person_id = NULL, confirmed = 0")
            lib.con.execute("DELETE FROM people")
        built.clear()
        own = named_by_rounds()
        assert len(built) == 2
    assert kept == own == [["p1", "p1", "unknown", "unknown", "unknown"],
                           ["p1", "p1", "p16", "p16", "unknown"]]  # fmt: skip


def test_a_name_typed_or_imported_two_ways_is_one_person(tmp_path):
    """Unicode writes "Zoë" two ways (ë one character, or e and its accent, as a Mac's file
    names keep it) and a Hangul name as syllables or as their letters: each is one person
    however it comes — typed by the owner, in another program's face regions, or looked
    up — and a library that kept a name the other way before (or with spaces the library
    now trims) finds it in its normal form when opened."""
    import unicodedata

    from facetrain.library import store
    from facetrain.library.curate import name_regions
    from facetrain.library.library import Library
    from helpers import embedded_library

    nfd = lambda s: unicodedata.normalize("NFD", s)  # noqa: E731
    zoe, kim = "Zo\u00eb", "\uae40\ubbfc\uc9c0"  # Zoë, 김민지 (NFC)
    assert nfd(zoe) != zoe and nfd(kim) != kim
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(6, 8)).astype(np.float32)
    db = tmp_path / "lib.db"
    with embedded_library(db, emb) as lib, store.transaction(lib.con):
        for face in range(1, 7):
            store.assign(lib.con, [(store.new_person(lib.con), face)])
    with Library(db) as lib:
        lib.name("1", nfd(zoe))  # the owner, from a Mac's file name
        lib.name("2", zoe)  # the owner again: the same person, so the stacks merge
        lib.name("3", f"  Mary   Ann {nfd(kim)} ")
        photo = dict(store.photo(lib.con, 4)) | {"width": 9, "height": 9}
        got = name_regions(lib.con, photo, [(kim, (0.3, 0.3, 0.5, 0.5))], "a sidecar")
        assert got["faces_named"] == 1
        people = {p["name"]: p["faces"] for p in lib.people() if p["name"]}
        assert people == {zoe: 2, f"Mary Ann {kim}": 1, kim: 1}
        assert lib.stack(nfd(zoe)) == lib.stack(zoe) and lib.stack(f"Mary Ann {nfd(kim)}")
        # a library named before: its name kept the other way is found once it is opened
        with store.transaction(lib.con):
            lib.con.execute("UPDATE people SET name = ? WHERE name = ?", (nfd(zoe), zoe))
            lib.con.execute("UPDATE people SET name = ? WHERE name = ?", (nfd(kim), kim))
            lib.con.execute("UPDATE people SET name = ? WHERE name = ?",
                            (f" Mary  Ann {kim}", f"Mary Ann {kim}"))  # fmt: skip
            store.set_meta(lib.con, "names", "nfc")  # as the NFC-only migration left it
    with Library(db) as lib:
        assert {p["name"] for p in lib.people() if p["name"]} == {zoe, kim, f"Mary Ann {kim}"}
        lib.name("5", kim)
        assert {p["name"]: p["faces"] for p in lib.people() if p["name"]}[kim] == 2
        lib.name("6", f"Mary  Ann {kim}")  # typed with two spaces: the same person, merged
        assert {p["name"]: p["faces"] for p in lib.people() if p["name"]}[f"Mary Ann {kim}"] == 2


def test_a_burst_of_named_copies_does_not_stop_a_person_being_named(tmp_path):
    """Three copies of one named photo (a burst, an edit, a re-saved copy) are one picture,
    not three neighbours: they narrowed that face's spacing to nothing, every pair's limit
    with it too, and the person — measured on average over their faces — was never named
    again (bench/copies.py: 100% → 50% of two people's new faces)."""
    from facetrain.library import store
    from helpers import embedded_library

    rng = np.random.default_rng(4)
    centres = rng.normal(size=(40, 16))
    emb = np.repeat(centres, 15, 0) + rng.normal(scale=0.3, size=(600, 16))
    burst = emb[0] + rng.normal(scale=1e-4, size=(3, 16))  # 3 more shots of face 1's photo
    emb = np.concatenate([emb, burst])
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    with embedded_library(tmp_path / "lib.db", emb, threshold=0.6) as lib:
        with store.transaction(lib.con):
            pid = store.new_person(lib.con)
            store.name_person(lib.con, pid, "p1")
            store.assign(lib.con, [(pid, f) for f in (1, 2, 3, 4, 5, 601, 602, 603)], confirmed=1)
        namer = lib.namer()
        named = [namer.name(emb[[i]])[0]["name"] for i in range(6, 15)]
        strangers = [namer.name(emb[[i]])[0]["name"] for i in range(15, 600, 15)]
    assert named.count("p1") >= 7, named
    assert strangers.count("p1") == 0


def test_scan_with_workers_records_what_one_process_records(photos, tmp_path, monkeypatch):
    """By default, with enough photos to analyse (AUTO_FROM, lowered here) and two cores:
    photos analysed in two spawned processes, recorded here in order; same faces, boxes
    and embeddings as one process, and a copy inside the same scan is still recorded as a
    duplicate."""
    from facetrain.inference import processes
    from facetrain.library import scan

    shutil.copy(photos / "amy" / "amy1.png", photos / "amy" / "again.png")
    model = make_model(tmp_path / "m.safetensors")
    monkeypatch.setattr(processes, "AUTO_FROM", 4)
    monkeypatch.setenv("FACETRAIN_THREADS", "2")
    pools = Stopper(monkeypatch, scan, "worker_pool", lambda scanner, n: n)
    tables, embs = [], []
    for workers in ("1", "the default"):
        db, report = tmp_path / f"lib{workers}.db", tmp_path / f"r{workers}.json"
        given = ["--workers", workers] if workers == "1" else []
        cli("library", "scan", photos, "--db", db, "--model", model, *given, "--json", report)
        r = json.loads(report.read_text())
        assert (r["new"], r["duplicates"]) == (12, 1), r
        tables.append([(p, round(x, 3), round(y, 3)) for p, x, y, *_ in faces_table(db)])
        con = sqlite3.connect(db)
        embs.append(np.stack([np.frombuffer(b, np.float32) for (b,) in con.execute(
            "SELECT embedding FROM faces ORDER BY id")]))  # fmt: skip
        con.close()
    assert pools.calls == [2]  # --workers 1: this process; the default: one a core
    assert tables[0] == tables[1]
    np.testing.assert_allclose(embs[0], embs[1], atol=1e-3)  # one thread vs several: rounding


def test_workers_chosen_for_the_photos_and_the_machine(monkeypatch):
    """`--workers 0` (the default): one process a core on a CPU (FACETRAIN_THREADS when
    set), no more than the memory available holds or there are photos; this process alone
    for fewer than AUTO_FROM photos or on a GPU. A number given is kept, at most one a
    photo; a negative one is refused, naming the option."""
    from facetrain import devices
    from facetrain.inference.processes import AUTO_FROM, WORKER_MEMORY, workers_for
    from facetrain.library.library import LibraryError, _check_workers

    monkeypatch.setenv("FACETRAIN_THREADS", "3")
    monkeypatch.setattr(devices, "memory_available", lambda: 10 * WORKER_MEMORY)
    assert workers_for(0, "cpu", AUTO_FROM) == 3
    assert workers_for(0, "cpu", AUTO_FROM - 1, more=500) == 1  # not yet known to be worth it
    assert workers_for(0, "cuda", 1000) == workers_for(0, "cuda:1", 1000) == 1
    monkeypatch.setenv("FACETRAIN_THREADS", "64")
    assert workers_for(0, "cpu", AUTO_FROM, more=100) == 10  # what the memory holds
    monkeypatch.setattr(devices, "memory_available", lambda: 100 * WORKER_MEMORY)
    assert workers_for(0, "cpu", AUTO_FROM) == AUTO_FROM  # one a photo at most
    monkeypatch.setattr(devices, "memory_available", lambda: WORKER_MEMORY - 1)
    assert workers_for(0, "cpu", 1000) == 1
    monkeypatch.setattr(devices, "memory_available", lambda: None)  # not known: the cores
    assert workers_for(0, "cpu", 1000) == 64
    monkeypatch.delenv("FACETRAIN_THREADS")
    assert workers_for(0, "cpu", 1000) == len(os.sched_getaffinity(0))
    monkeypatch.undo()
    assert devices.memory_available() > WORKER_MEMORY  # this machine's, read
    assert (workers_for(5, "cpu", 3), workers_for(5, "cpu", 3, more=9), workers_for(1, "cpu", 99),
            workers_for(2, "cuda", 99)) == (3, 5, 1, 2)  # fmt: skip
    with pytest.raises(LibraryError, match="--workers -1: 1 or more, or 0"):
        _check_workers(-1)


def test_a_worker_that_cannot_open_the_model_says_so(tmp_path):
    """A model the workers cannot open (gone from disk since this process opened it) is a
    clear error from the first photo, not a pool starting failed workers forever."""
    from types import SimpleNamespace

    from facetrain.errors import FacetrainError
    from facetrain.inference.processes import model_pool, worker

    pre = Preprocess("iresnet18", 64, 112)
    gone = SimpleNamespace(source=str(tmp_path / "gone.safetensors"), pre=pre, backend="torch")
    said = "a worker process could not open the model"
    with model_pool(gone, "cpu", 2, dict) as pool, pytest.raises(FacetrainError, match=said):
        pool.apply_async(worker).get(timeout=120)


def test_identify_with_workers_names_what_one_process_names(photos, tmp_path):
    """`library identify --workers 2` analyses the photos as a scan does, in two processes:
    the same names, boxes and distances, in the order given, as one process; a file that
    is not a photo is listed with its reason, and the others go on."""

    model = make_model(tmp_path / "m.safetensors")
    db = tmp_path / "lib.db"
    cli("library", "scan", photos, "--db", db, "--model", model)
    confirm_all(db)  # each photo's faces are a person named after the file
    (photos / "amy" / "notes.jpg").write_text("not a photo")
    got = []
    for workers in (1, 2):
        out = tmp_path / f"id{workers}.json"
        cli("library", "identify", photos / "amy", photos / "group", "--db", db,
            "--workers", workers, "--json", out)  # fmt: skip
        got.append(json.loads(out.read_text()))
    assert [r["photo"] for r in got[0]] == [r["photo"] for r in got[1]]
    bad = [r for r in got[0] if "error" in r]
    assert [Path(r["photo"]).name for r in bad] == ["notes.jpg"]
    for a, b in zip(*got):
        assert [(f["name"], f["box"]) for f in a["faces"]] == [
            (f["name"], f["box"]) for f in b["faces"]]  # fmt: skip
        np.testing.assert_allclose([f["distance"] or 0 for f in a["faces"]],
                                   [f["distance"] or 0 for f in b["faces"]], atol=1e-3)  # fmt: skip
    portraits = [(Path(r["photo"]).name, f["name"]) for r in got[0] for f in r["faces"]
                 if Path(r["photo"]).parent.name == "amy"]  # fmt: skip
    assert len(portraits) == 3 and all(p == n for p, n in portraits), portraits  # as named


def test_identify_answers_as_it_goes_and_a_stopped_run_goes_on(photos, tmp_path, monkeypatch):
    """`library identify` answers each photo as it is looked at; with --json, a run stopped
    between two parts (as by kill -9) goes on from the last part kept, looks at only the
    rest, and writes what one whole run writes. A reader of the answers that goes away
    (`| head`) ends it quietly: no error, no trace."""
    from facetrain.inference import parts as kept
    from facetrain.library import scan

    monkeypatch.setattr(kept, "PART", 2)
    model = make_model(tmp_path / "m.safetensors")
    db = tmp_path / "lib.db"
    cli("library", "scan", photos, "--db", db, "--model", model)
    confirm_all(db)
    stop = Stopper(monkeypatch, scan, "_analyse", lambda path, *a: path)
    out, parts = tmp_path / "i.json", tmp_path / "i.json.partial"
    args = ["library", "identify", photos / "amy", photos / "group", "--db", db, "--json", out]

    stop.reset(3)
    stopped = runner.invoke(app, [str(a) for a in args])
    assert stopped.exit_code == 130 and not out.exists()
    assert len(list(parts.glob("part-*.npz"))) == 1
    first = sorted((photos / "amy").iterdir())[0]
    assert f"{first}\tamy" in stopped.output  # answered before the run was stopped
    stop.reset()
    said = cli(*args)
    assert "going on from an earlier run: 2 of 6 photos looked at" in " ".join(said.split())
    assert stop.calls == [str(p) for p in sorted((photos / "amy").iterdir())[2:]] + [
        str(p) for p in sorted((photos / "group").iterdir())]  # fmt: skip
    assert not parts.exists()
    cli(*args[:-1], tmp_path / "whole.json")
    got, whole = (json.loads((tmp_path / f).read_text()) for f in ("i.json", "whole.json"))
    assert got == whole and len(got) == 6
    assert sum(f["name"] != "unknown" for r in got for f in r["faces"]) >= 3

    monkeypatch.setenv("FACETRAIN_CACHE", str(tmp_path / "cache"))  # without --json: kept there
    stop.reset(3)
    stopped = runner.invoke(app, [str(a) for a in args[:-2]])
    assert stopped.exit_code == 130 and f"{first}\tamy" in stopped.output
    stop.reset()
    said = cli(*args[:-2])
    assert "going on from an earlier run: 2 of 6 photos looked at" in " ".join(said.split())
    assert len(stop.calls) == 4 and not any((tmp_path / "cache" / "work").iterdir())

    def answers(out: str) -> list[str]:
        return [line for line in out.splitlines() if line.startswith(str(photos))]

    assert answers(said) == answers(cli(*args[:-2]))  # every answer, as one whole run gives

    cmd = [sys.executable, "-m", "facetrain", *map(str, args[:-2])]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # gone before the first answer, as `| head -0` would be
    said = proc.stderr.read()
    assert proc.wait() == 1 and "error" not in said and "Traceback" not in said, said


def test_a_scan_with_workers_leaves_the_model_to_them(photos, tmp_path):
    """With the default (compiled) model and --workers 2, the workers load the model and the
    process writing the library never does (no ONNX Runtime there: a tenth of a second and
    a core's worth of loading saved at the start); the faces are those one process finds."""
    reports = []
    for workers in (1, 2):
        db, report = tmp_path / f"lib{workers}.db", tmp_path / f"r{workers}.json"
        code = ("import sys\nfrom facetrain.cli import main\n"
                f"sys.argv = ['facetrain', 'library', 'scan', {str(photos)!r}, '--db', "
                f"{str(db)!r}, '--workers', '{workers}', '--json', {str(report)!r}]\n"
                "try:\n    main()\nexcept SystemExit:\n    pass\n"
                "print('onnxruntime' in sys.modules)")  # fmt: skip
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout.strip().splitlines()[-1] == str(workers == 1), r.stdout
        reports.append(json.loads(report.read_text()))
    assert reports[0] == reports[1] and reports[0]["faces"] >= 12, reports


def test_a_library_is_changed_by_one_process_at_a_time(photos, tmp_path):
    """A second scan (or any change) while another process holds the library says who holds
    it and exits cleanly; readers and the web page's views go on; the web page's changes get
    409; once free, it works (a dead holder's lock is simply taken over by the OS)."""

    from facetrain.library.files import LibraryFiles
    from facetrain.lock import held

    db = tmp_path / "lib.db"
    model = make_model(tmp_path / "m.safetensors")
    cli("library", "scan", photos, "--db", db, "--model", model)
    cli("library", "cluster", "--db", db, "--threshold", "0.3")
    before = faces_table(db)
    web = local_client(db)
    stack = web.get("/api/people").json()[0]["id"]
    with held(LibraryFiles.of(db).lock, "x"):  # this test process is "scanning"
        for args in (["scan", photos], ["cluster"], ["name", stack, "Zed"], ["undo"]):
            out = cli_fails("library", *args, "--db", db)
            assert f"in use by process {os.getpid()}" in out, args
        assert "stacks" in cli("library", "people", "--db", db)  # reading goes on
        assert web.get("/api/people").status_code == 200
        r = web.post(f"/api/stacks/{stack}/hide")
        assert r.status_code == 409 and "in use" in r.json()["detail"]
    assert faces_table(db) == before  # nothing changed meanwhile
    cli("library", "name", stack, "Zed", "--db", db)


def test_one_index_serves_the_spacing_and_the_pairs_of_one_cluster_run(monkeypatch):
    """Past 50,000 faces the spacing and the near pairs search the same faces: within
    `neighbours.keep(once=True)` (what Library.cluster does) the index is built once, not twice,
    and the results are the same."""
    from facetrain import neighbours
    from facetrain.library.cluster import local_scales, near_pairs

    rng = np.random.default_rng(3)
    emb = rng.normal(size=(3000, 16)).astype(np.float32)
    photo = np.arange(3000)
    monkeypatch.setattr(neighbours, "EXACT_SEARCH", 1000)
    builds, build = [], neighbours._build
    monkeypatch.setattr(neighbours, "_build", lambda e, d: builds.append(d) or build(e, d))

    def both():
        s = local_scales(emb.copy(), photo, "squared_l2")
        return s, near_pairs(emb.copy(), 20.0, "squared_l2", scale=s)

    s1, g1 = both()
    assert len(builds) == 2
    with neighbours.keep(once=True):
        s2, g2 = both()
        local_scales(emb, photo, "cosine")  # another distance: another index
    assert len(builds) == 2 + 2 and getattr(neighbours._state, "kept", None) is None
    assert np.array_equal(s1, s2) and (g1 != g2).nnz == 0


def test_a_few_faces_searched_among_many_build_no_index(monkeypatch):
    """Past 50,000 faces an index proposes the neighbours, but building it costs what
    comparing some 4·√N faces with every one does: a find's face, or a look's few new
    faces and the stacks they come near, built one each time (5 s at 100,000 faces). Up to
    4·√N query faces are now compared with every face — the exact distances — and more build
    the index; a namer's, shared by its photos, is built once their searches have cost as
    much (`neighbours.WhenDue`); a few new faces restacked build none."""
    from facetrain import neighbours
    from facetrain.distances import distance_matrix
    from facetrain.library.cluster import FaceSet, agglomerate, local_scales, restack_near

    rng = np.random.default_rng(8)
    centres = rng.normal(size=(150, 16))
    emb = np.repeat(centres, 20, 0) + rng.normal(scale=0.3, size=(3000, 16))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    photo = np.arange(3000)
    monkeypatch.setattr(neighbours, "EXACT_SEARCH", 1000)
    builds, build = [], neighbours._build
    monkeypatch.setattr(neighbours, "_build", lambda e, d: builds.append(len(e)) or build(e, d))
    few = emb[:200] + 0.01  # under 4·√3000 ≈ 219 faces: every pair compared
    got = neighbours.nearest_in(few, np.full(200, -1), emb, photo, "squared_l2", 3)
    truth = np.sort(distance_matrix(few, emb, "squared_l2"), axis=1)[:, :3]
    assert builds == [] and np.allclose(got, truth, rtol=1e-5, atol=1e-6)
    many = emb[:250] + 0.01
    neighbours.nearest_in(many, np.full(250, -1), emb, photo, "squared_l2", 3)
    assert builds == [3000]
    # a namer's index, shared by its photos' searches, is built once they are due: three
    # searches of one face cost 3 x (1 + SEARCH_COST 30) < 2·√3000 ≈ 110 faces compared,
    # the fourth makes it due, and the searches after it use it
    due = neighbours.index_of(emb, "squared_l2")
    for k in range(4):
        assert builds == [3000] and due.index is None
        one = neighbours.nearest_in(emb[[k]] + 0.01, np.full(1, -1), emb, photo, "squared_l2", 3,
                                    due)  # fmt: skip
        assert np.allclose(one, truth[[k]], rtol=1e-5, atol=1e-6)
    assert builds == [3000, 3000] and due.index is not None
    kept = neighbours.nearest_in(few, np.full(200, -1), emb, photo, "squared_l2", 3, due)
    assert len(builds) == 2 and np.isclose(kept, truth, rtol=1e-5).mean() > 0.9
    # a look's 10 new faces: the stacks they come near restacked, with no index built
    old = agglomerate(
        emb[:2990],
        photo[:2990],
        0.6,
        "squared_l2",
        scale=local_scales(emb[:2990], photo[:2990], "squared_l2"),
    )[0]
    builds.clear()
    person = np.r_[old, np.full(10, -1)]
    plan = restack_near(FaceSet(np.arange(3000), emb, photo), person, np.zeros(3000, bool),
                        set(), 0.6)  # fmt: skip
    assert builds == [] and sum(len(ids) for _, ids in plan.to_person) >= 10
    # classify predict: the known faces' spacing measured once (an index), then each
    # photo's faces among them with none
    from facetrain.open_set import Among

    among = Among.of(emb, np.zeros((0, 16), np.float32), 0.6, "squared_l2")
    assert len(builds) > 0
    builds.clear()
    for photo_faces in (emb[[5, 900]] + 0.01, emb[[77]] + 0.01):
        among.limits(photo_faces)
    assert builds == []


def test_suggestions_are_the_stacks_nearest_on_average(tmp_path):
    """ "Same person?": the k stacks nearest a stack by the mean distance between their
    faces, nearest first, as the whole matrix gives it; a stack sharing a photo with it is
    never suggested (two faces of one photo are two people), nor one farther than 2
    thresholds (the stacks of one person lay within 1.72: bench/suggestions.py)."""
    from facetrain.distances import distance_matrix
    from facetrain.library import store
    from facetrain.library.library import SUGGEST_WITHIN
    from helpers import embedded_library

    rng = np.random.default_rng(0)
    emb = rng.normal(size=(60, 8))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    photo = list(range(60))
    photo[30] = 0  # the first face of stack 6 is in the first photo of stack 0
    d = distance_matrix(emb[:5], emb).mean(0)
    means = sorted((d[5 * j : 5 * j + 5].mean(), j) for j in range(1, 12) if j != 6)
    for threshold, k in ((2.0, 4), (means[2][0] / SUGGEST_WITHIN + 1e-4, 5)):  # 3 near
        with embedded_library(tmp_path / f"{k}.db", emb, threshold, photo) as lib:
            with store.transaction(lib.con):
                pids = [store.new_person(lib.con) for _ in range(12)]
                store.assign(lib.con, [(pids[i // 5], i + 1) for i in range(60)])
            got = lib.suggestions(pids[0], k=k)
        want = [(m, pids[j]) for m, j in means if m < SUGGEST_WITHIN * threshold][:k]
        assert len(want) == (4 if k == 4 else 3)
        assert [s["id"] for s in got] == [p for _, p in want]
        np.testing.assert_allclose([s["distance"] for s in got], [m for m, _ in want], rtol=1e-6)
        assert {s["faces"] for s in got} == {5}


def test_identify_in_a_library_not_scanned_yet_says_to_scan_first(tmp_path):
    """A library made from Python and not scanned into yet said "the library's model has
    no calibrated threshold; pass --threshold", a fix that fixed nothing."""
    from facetrain.library.library import Library
    from facetrain.library.store import LibraryError

    photo = SHARED / "photos" / "bbt" / "reference" / "amy" / "amy1.png"
    lib = Library(tmp_path / "lib.db", create=True)
    with lib, pytest.raises(LibraryError, match="holds no faces yet.*library scan"):
        lib.identify([photo])


def test_a_library_in_a_folder_not_made_yet_is_made_there(photos, tmp_path):
    """`library scan PHOTOS --db new/family.db` said "no library here (run `facetrain
    library scan` first)" to the scan itself: the folder is made now, as other outputs'
    are. A first scan that fails leaves neither the library nor the folders it made."""
    model = make_model(tmp_path / "m.safetensors")
    where = tmp_path / "libs" / "family"
    msg = cli_fails("library", "scan", photos / "amy", "--db", where / "l.db", "--model",
                    tmp_path / "absent.safetensors")  # fmt: skip
    assert "absent.safetensors" in msg and "no library here" not in msg, msg
    assert not (tmp_path / "libs").exists()
    (tmp_path / "notes").write_text("the user's file")
    msg = cli_fails("library", "scan", photos / "amy", "--db", tmp_path / "notes" / "l.db")
    assert "l.db: its folder cannot be made (File exists: " in msg, msg
    cli("library", "scan", photos / "amy", "--db", where / "l.db", "--model", model)
    with Library(where / "l.db") as lib:
        assert not lib.is_empty()


def test_scan_with_no_folder_looks_for_new_photos_in_every_folder_it_holds(photos, tmp_path):
    """`library scan` with no folder: every folder scanned into the library (one inside
    another is that one) is scanned again, new photos found. A folder not there, or
    listing no photo while the library holds some from it (a drive not mounted), is left
    as it was, saying so: nothing is forgotten. The photos are never touched."""
    model, db = make_model(tmp_path / "m.safetensors"), tmp_path / "lib.db"
    card = tmp_path / "card"
    card.mkdir()
    shutil.copy(BBT / "reference" / "sheldon" / "sheldon1.png", card)
    assert "no library here yet" in cli_fails("library", "scan", "--db", db)
    assert not db.exists()
    for folder in (photos / "amy", card, photos, photos / "group"):
        cli("library", "scan", folder, "--db", db, "--model", model)
    with Library(db) as lib:
        assert lib.folders() == sorted([str(photos), str(card)])
    shown = cli("library", "people", "--db", db).replace("\n", "")
    assert "folders: " in shown and str(photos) in shown and str(card) in shown
    before = tree_hash(photos)
    shutil.copy(BBT / "reference" / "amy" / "amy4.png", photos / "amy")
    shutil.copy(BBT / "reference" / "sheldon" / "sheldon2.png", card)
    report = tmp_path / "r.json"
    out = cli("library", "scan", "--db", db, "--json", report)
    rows = {r["folder"]: r for r in json.loads(report.read_text())["folders"]}
    assert {f: (r["new"], r["unchanged"]) for f, r in rows.items()} == {
        str(photos): (1, 12), str(card): (1, 1)}, out  # fmt: skip
    assert f"looking for new photos in {card}" in out.replace("\n", "")
    kept = faces_table(db)
    assert any(p.endswith("sheldon2.png") for p, *_ in kept)
    shutil.move(card, tmp_path / "unplugged")
    out = cli("library", "scan", "--db", db, "--json", report)
    assert "not there now" in out and faces_table(db) == kept
    card.mkdir()  # the mount point of a drive not mounted: there, and empty
    out = cli("library", "scan", "--db", db, "--json", report)
    assert "lists no photo now" in out and faces_table(db) == kept
    assert {"folder": str(card), "left": "lists no photo now (a drive not mounted?)"} in (
        json.loads(report.read_text())["folders"])  # fmt: skip
    card.rmdir()  # the card's photos were moved: scanned where they are now, the library
    cli("library", "scan", tmp_path / "unplugged", "--db", db)  # forgets the old folder
    with Library(db) as lib:
        assert lib.folders() == sorted([str(photos), str(tmp_path / "unplugged")])
    assert [Path(p).parent for p, *_ in faces_table(db) if "sheldon" in p] == [
        tmp_path / "unplugged"] * 2  # fmt: skip
    assert tree_hash(photos) != before  # the new photo, and nothing else changed:
    (photos / "amy" / "amy4.png").unlink()
    assert tree_hash(photos) == before
    for record in (None, "{not json", '{"a": 1}', "[3]"):  # made before; damaged
        with sqlite3.connect(db) as con:
            con.execute("DELETE FROM meta WHERE key = 'folders'")
            if record is not None:
                con.execute("INSERT INTO meta VALUES ('folders', ?)", (record,))
        con.close()
        assert "remembers no folder yet" in cli_fails("library", "scan", "--db", db)
        assert "folders:" not in cli("library", "people", "--db", db)


def test_scan_takes_several_folders_at_once(photos, tmp_path):
    """`library scan ~/Pictures /media/card` said "unexpected extra argument": one folder a
    command. Several are scanned in turn, each said as it starts and remembered; a folder
    given twice is scanned once; one that is not a folder is refused before any is read."""
    model, db = make_model(tmp_path / "m.safetensors"), tmp_path / "lib.db"
    card = tmp_path / "card"
    card.mkdir()
    shutil.copy(BBT / "reference" / "sheldon" / "sheldon1.png", card)
    said = cli_fails("library", "scan", photos, tmp_path / "nowhere", "--db", db)
    assert f"{tmp_path / 'nowhere'}: no such folder" in said and not db.exists()
    said = cli_fails("library", "scan", photos, card / "sheldon1.png", "--db", db)
    assert "sheldon1.png: a file, not a folder of photos" in said and not db.exists()
    report = tmp_path / "r.json"
    out = cli("library", "scan", photos, card, f"{card}/", "--db", db, "--model", model,
              "--json", report).replace("\n", "")  # fmt: skip
    assert f"scanning {card} (2 of 2 folders)" in out
    assert out.count("next: `facetrain library cluster") == 1  # once, after the last
    rows = json.loads(report.read_text())["folders"]
    assert [(r["folder"], r["new"]) for r in rows] == [(str(photos), 12), (str(card), 1)]
    with Library(db) as lib:
        assert lib.folders() == sorted([str(photos), str(card)])
    assert len({p for p, *_ in faces_table(db)}) == 13


def test_camera_raw_photos_are_scanned_and_raw_plus_jpeg_is_one_photo(tmp_path):
    """A camera RAW (DNG) of a group photo gives the faces its JPEG gives, at the same
    places, with its camera's date; a RAW beside a picture of the same name (a camera set
    to RAW + JPEG) is that photo once, left to the picture; a RAW an older facetrain
    recorded as not read is read now."""
    from facetrain.library import store
    from helpers import write_dng

    if not BBT.exists():
        pytest.skip(f"{BBT} absent (real data not here)")
    photos, jpegs = tmp_path / "photos", tmp_path / "jpegs"
    photos.mkdir(), jpegs.mkdir()
    group = [
        np.asarray(Image.open(BBT / "group" / g).convert("RGB")) for g in ("bbt1.jpg", "bbt2.jpg")
    ]
    write_dng(group[0], photos / "IMG_0001.DNG", "2021:05:06 07:08:09")
    shutil.copy(BBT / "group" / "bbt2.jpg", photos / "IMG_0002.JPG")
    write_dng(group[1], photos / "img_0002.nef")  # its RAW, named in another case
    shutil.copy(BBT / "group" / "bbt1.jpg", jpegs / "IMG_0001.JPG")
    out = cli("library", "scan", photos, "--db", tmp_path / "lib.db")
    assert "1 camera RAW file left to the picture of the same name" in out
    cli("library", "scan", jpegs, "--db", tmp_path / "jpegs.db")

    def faces(db, name):
        with Library(db) as lib:
            row = next(
                r for r in lib.con.execute("SELECT * FROM photos") if r["path"].endswith(name)
            )
            boxes = [[f[k] for k in ("x1", "y1", "x2", "y2")]
                     for f in store.faces_of_photo(lib.con, row["id"]) if f["usable"]]  # fmt: skip
            paths = [r["path"] for r in lib.con.execute("SELECT path FROM photos")]
            return row, np.array(sorted(boxes)), paths

    raw, raw_boxes, paths = faces(tmp_path / "lib.db", "IMG_0001.DNG")
    _, jpeg_boxes, _ = faces(tmp_path / "jpegs.db", "IMG_0001.JPG")
    assert sorted(Path(p).name for p in paths) == ["IMG_0001.DNG", "IMG_0002.JPG"]
    assert raw["status"] == "ok" and raw["taken"] == "2021:05:06 07:08:09"
    assert (raw["width"], raw["height"]) == (group[0].shape[1], group[0].shape[0])
    assert len(raw_boxes) == len(jpeg_boxes) >= 4  # the same faces, at the same places
    assert np.abs(raw_boxes - jpeg_boxes).max() < 0.1 * (jpeg_boxes[:, 2] - jpeg_boxes[:, 0]).min()
    # a library that recorded the RAW as not read (before RAWs were developed) reads it now
    with Library(tmp_path / "lib.db") as lib, store.transaction(lib.con):
        lib.con.execute("DELETE FROM faces WHERE photo_id = ?", (raw["id"],))
        store.set_status(lib.con, raw["id"], "unsupported")
    cli("library", "scan", photos, "--db", tmp_path / "lib.db")
    again, again_boxes, _ = faces(tmp_path / "lib.db", "IMG_0001.DNG")
    assert again["status"] == "ok" and np.array_equal(again_boxes, raw_boxes)


def test_a_face_moved_to_a_name_no_one_has_makes_that_person(tmp_path):
    """ "Move to… Uncle Bob" for a stranger of a group photo the owner knows: a name no one
    has makes that person, with that face confirmed, in one action that one undo takes
    back; the same name in another case, an empty name and an id no stack has are refused,
    saying why."""
    from facetrain.library import store
    from facetrain.library.store import LibraryError
    from helpers import embedded_library

    emb = np.random.default_rng(6).normal(size=(6, 8)).astype(np.float32)
    with embedded_library(tmp_path / "lib.db", emb) as lib:
        with store.transaction(lib.con):
            amy = store.new_person(lib.con)
            store.assign(lib.con, [(amy, f) for f in (1, 2, 3)])
        lib.name(str(amy), "Amy")
        said = lib.move(5, "  Uncle   Bob ")
        bob = lib.stack("Uncle Bob")
        assert said == f"face 5 moved to new person {bob}"
        assert lib.faces("Uncle Bob") and [f["id"] for f in lib.faces("Uncle Bob")] == [5]
        assert store.confirmed_ids(lib.con, bob) == [5]
        for bad, why in (("uncle bob", "but 'Uncle Bob'"), ("  ", "cannot be empty"),
                         ("98765", "no stack or person '98765'")):  # fmt: skip
            with pytest.raises(LibraryError, match=why):
                lib.move(6, bad)
        assert lib.move(6, "Uncle Bob") == f"face 6 moved to stack {bob}"
        lib.undo(2)
        assert {p["name"] for p in lib.people()} == {"Amy"}  # Uncle Bob went with the undo
        assert store.face_person(lib.con, 5) == (True, None)


def test_read_faces_gives_columns_and_one_matrix_across_chunks(tmp_path, monkeypatch):
    """The faces clustering and naming read come as arrays (no row object a face holding
    its embedding beside the matrix: 1,282 MB against 675 at a million faces) and one
    writable matrix, the same whichever size the chunks are; a face whose embedding is
    not the size of the others is named."""
    from facetrain.library import store
    from helpers import embedded_library

    rng = np.random.default_rng(0)
    emb = rng.normal(size=(11, 8)).astype(np.float32)
    lib = embedded_library(tmp_path / "lib.db", emb, photo=[0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    with store.transaction(lib.con):
        pid = store.new_person(lib.con)
        store.assign(lib.con, [(pid, 2), (pid, 5)], confirmed=1)
        store.assign(lib.con, [(pid, 7)])
    got, cols = store.read_faces(lib.con, "compared")
    assert np.array_equal(got, emb) and got.flags.writeable
    assert cols.id.tolist() == list(range(1, 12)) and cols.photo.tolist()[:3] == [1, 1, 2]
    assert cols.person.tolist() == [-1, pid, -1, -1, pid, -1, pid, -1, -1, -1, -1]
    assert cols.confirmed.tolist() == [i in (2, 5) for i in range(1, 12)]
    assert len(cols[cols.confirmed]) == 2 and cols[cols.confirmed].id.tolist() == [2, 5]

    # chunks of 3 faces: the same matrix and columns
    monkeypatch.setattr(store, "_CHUNK", 3)
    again, cols3 = store.read_faces(lib.con, "compared")
    assert np.array_equal(again, emb) and np.array_equal(cols3.person, cols.person)

    lib.con.execute("UPDATE faces SET embedding = ? WHERE id = 9", (emb[8, :4].tobytes(),))
    with pytest.raises(store.LibraryError, match="face 9: its embedding is not the size"):
        store.read_faces(lib.con, "compared")
    lib.close()
