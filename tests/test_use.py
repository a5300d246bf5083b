"""Using a trained model: embed, compare, export (+ parity), classify with unknown, filter,
plots and report — each through the CLI, on a model trained here on generated faces."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import BBT, LFW, need, tree_hash
from facetrain.cli import app
from facetrain.data.packed import pack
from facetrain.inference.saved import open_model
from facetrain.train.loop import train
from helpers import (
    Stopper,
    axe_violations,
    chromium_api,
    cli,
    cli_fails,
    lfw_style,
    make_faces,
    side_by_side,
    small_cfg,
    write_bin_and_pairs,
)

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """10 generated identities × 10 faces; a model trained on them; an ONNX export."""
    tmp = tmp_path_factory.mktemp("use")
    faces = make_faces(tmp / "faces", ids=10, per=10)
    lfw = lfw_style(faces, tmp / "lfwstyle")
    _, pairs = write_bin_and_pairs(faces, tmp)
    pack(str(faces), tmp / "pack", progress=False)
    cfg = small_cfg(  # batches of 32: at 16, two people came out 0.006 apart on one CPU
        tmp / "pack",
        tmp / "run",
        epochs=3,
        epoch_size=8,
        batch_size=32,
        input_size=80,
        eval_pairs=str(pairs),
        eval_images=str(lfw),
    )
    train(cfg, log=lambda *_: None)
    out = cli("export", tmp / "run", "--format", "onnx", "--check", faces)
    return {
        "tmp": tmp,
        "faces": faces,
        "run": tmp / "run",
        "pairs": pairs,
        "lfw": lfw,
        "export_output": out,
    }


def test_export_parity_and_onnx_backend(trained, tmp_path):
    run, faces = trained["run"], trained["faces"]
    out = trained["export_output"]
    assert "parity on 64 real faces" in out and "ok" in out
    delta = float(out.split("max |Δ| = ")[1].split()[0])
    assert delta <= 1e-4
    onnx_model = open_model(run / "model.onnx")
    torch_model = open_model(run)
    assert onnx_model.backend == "onnx" and onnx_model.pre == torch_model.pre  # record inside

    cli("embed", run, faces, "--out", tmp_path / "t.npz")
    cli("embed", run, faces, "--out", tmp_path / "o.npz", "--backend", "onnx")
    a, b = np.load(tmp_path / "t.npz"), np.load(tmp_path / "o.npz")
    assert a["embeddings"].shape == (100, 32)
    assert np.abs(a["embeddings"] - b["embeddings"]).max() <= 1e-4
    assert list(a["paths"]) == list(b["paths"])

    cli("export", run, "--format", "torchscript", "--check", faces)
    ts = open_model(run / "model.pt")
    one = sorted(p for p in faces.iterdir() if p.is_dir())[0]  # a folder of faces will do
    out = cli("export", run, "--format", "torchscript", "--check", one, "--out", tmp_path / "1.pt")
    assert f"parity on {len(list(one.iterdir()))} real faces" in out
    assert ts.backend == "torchscript" and ts.pre == torch_model.pre
    # an exported file is a MODEL for eval, like the run folder
    j1, j2 = tmp_path / "r.json", tmp_path / "o.json"
    common = ["--pairs", trained["pairs"], "--images", trained["lfw"]]
    cli("eval", run, *common, "--json", j1, "--out", tmp_path / "ev")
    cli("eval", run / "model.onnx", *common, "--json", j2)
    r1, r2 = json.loads(j1.read_text()), json.loads(j2.read_text())
    assert r1["accuracy"] == r2["accuracy"] and abs(r1["auc"] - r2["auc"]) < 1e-9
    png = Image.open(tmp_path / "ev" / "roc.png")
    assert png.size[0] > 300
    assert (tmp_path / "ev" / "roc.csv").read_text().startswith("set,fpr,tpr")


def test_export_that_fails_parity_leaves_the_earlier_file(trained, tmp_path):
    """An export outside --tolerance exits 1 and writes nothing: a good file of an earlier
    export stays byte for byte, and no half-checked file is left beside it."""
    good = tmp_path / "m.onnx"
    shutil.copy(trained["run"] / "model.onnx", good)  # the fixture's export, checked
    before = good.read_bytes()
    res = runner.invoke(app, ["export", str(trained["run"]), "--out", str(good),
                              "--tolerance", "0"])  # fmt: skip
    delta = float(res.output.split("by up to ")[1].split()[0])
    assert delta > 0  # ONNX Runtime's sums are not torch's to the last bit
    assert res.exit_code == 1 and f"{good}: left as it was" in res.output, res.output
    assert good.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    new = tmp_path / "new.onnx"
    out = cli_fails("export", trained["run"], "--out", new, "--tolerance", "0")
    assert f"{new}: not written" in out and not new.exists()


def test_embed_file_interface_and_bad_images(trained, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(trained["faces"], data)
    (data / "id0" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (data / "empty_person").mkdir()
    before = tree_hash(data)
    out = cli("embed", trained["run"], data, "--out", tmp_path / "e.npz")
    assert "broken.jpg" in out and "skipped 1" in out
    z = np.load(tmp_path / "e.npz")
    assert set(z.files) >= {"embeddings", "paths", "labels"}
    assert len(z["paths"]) == len(z["labels"]) == len(z["embeddings"]) == 100
    assert np.allclose(np.linalg.norm(z["embeddings"], axis=1), 1.0, atol=1e-5)
    assert sorted(set(z["labels"])) == [f"id{i}" for i in range(10)]
    assert tree_hash(data) == before

    empty = tmp_path / "nothing"
    empty.mkdir()
    said = cli_fails("embed", trained["run"], empty, "--out", tmp_path / "x.npz")
    assert "no usable face images" in said
    assert not (tmp_path / "x.npz.partial").exists()  # no work left behind


def test_a_pack_is_data_for_embed_filter_and_the_export_check(trained, tmp_path):
    """`embed RUN PACK` said "no usable face images" (and `export --check PACK` "no usable
    faces"): the pack a user just made was not data. A pack is read from its shards, so it
    works after its photos are gone, and gives what their folder gave."""
    photos = tmp_path / "photos"
    shutil.copytree(trained["faces"], photos)
    pack(str(photos), tmp_path / "pack", progress=False)
    shutil.rmtree(photos)  # the photos moved on; the pack stays
    run = trained["run"]
    cli("embed", run, tmp_path / "pack", "--out", tmp_path / "p.npz")
    cli("embed", run, trained["faces"], "--out", tmp_path / "f.npz")
    p, f = np.load(tmp_path / "p.npz"), np.load(tmp_path / "f.npz")
    assert list(p["paths"]) == [str(photos / Path(x).relative_to(trained["faces"]))
                                for x in f["paths"]]  # fmt: skip
    assert list(p["labels"]) == list(f["labels"]) and len(p["labels"]) == 100
    assert np.abs(p["embeddings"] - f["embeddings"]).max() < 1e-6
    out = cli("export", run, "--format", "onnx", "--check", tmp_path / "pack",
              "--out", tmp_path / "m.onnx")  # fmt: skip
    assert "parity on 64 real faces" in out
    assert "kept 97/100" in cli("filter", run, tmp_path / "pack", "--out", tmp_path / "k.txt",
                                "--percentile", "3")  # fmt: skip


def test_compare_uses_the_models_threshold(trained, tmp_path):
    f = trained["faces"]
    imgs = [f / "id1" / "0.jpg", f / "id1" / "5.jpg", f / "id2" / "0.jpg"]
    out = cli("compare", trained["run"], *imgs, "--json", tmp_path / "c.json")
    r = json.loads((tmp_path / "c.json").read_text())
    d = {(Path(p["a"]).parent.name, Path(p["b"]).parent.name): p for p in r["pairs"]}
    same, diff = d[("id1", "id1")], d[("id1", "id2")]
    assert same["distance"] < diff["distance"]
    assert r["threshold"] == open_model(trained["run"]).pre.threshold
    for p in r["pairs"]:
        assert p["same"] == (p["distance"] < r["threshold"])
    assert "same\t" in out or "different\t" in out


def test_classify_names_known_people_and_refuses_strangers(trained, tmp_path):
    known, strangers = tmp_path / "known", tmp_path / "strangers"
    for i in range(10):
        shutil.copytree(trained["faces"] / f"id{i}", (known if i < 7 else strangers) / f"id{i}")
    clf = tmp_path / "clf.npz"
    cli(
        "classify", "train", trained["run"], known, "--out", clf, "--threshold", "data",
        "--unknown", strangers, "--json", tmp_path / "c.json",
    )  # fmt: skip
    r = json.loads((tmp_path / "c.json").read_text())
    assert set(r["methods"]) == {"svm", "knn", "logreg", "centroid"}
    for m, fig in r["methods"].items():
        assert fig["test_images"] == 21  # 3 of 10 held out for each of 7 people
        assert fig["accuracy"] >= 0.8, (m, fig)
        assert fig["unknown_rejected"] >= 0.8, (m, fig)

    cli(
        "classify", "predict", clf, known / "id3" / "0.jpg", strangers / "id8" / "1.jpg",
        "--json", tmp_path / "p.json",
    )  # fmt: skip
    p = json.loads((tmp_path / "p.json").read_text())
    assert p[0]["name"] == "id3" and p[1]["name"] == "unknown"
    assert p[1]["distance"] >= p[1]["threshold"] > p[0]["distance"]
    # a folder stands for the photos in it (it said "Is a directory")
    (strangers / "id8" / "linked").symlink_to(known / "id3", target_is_directory=True)
    said = cli("classify", "predict", clf, strangers / "id8", "--json", tmp_path / "f.json")
    f = json.loads((tmp_path / "f.json").read_text())
    linked = str(strangers / "id8" / "linked")  # passed over, and said (it was silent)
    assert f"skipped {linked}: a link to a folder" in " ".join(said.split())
    assert f[0]["path"] == linked and f[0]["name"] is None and "not followed" in f[0]["error"]
    f = f[1:]
    assert [r["path"] for r in f] == sorted(
        str(x) for x in (strangers / "id8").iterdir() if x.name != "linked"
    )
    assert sum(r["name"] == "unknown" for r in f) >= 0.8 * len(f)

    # hostile finding 17: photos without a usable face are reported, not a traceback
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    out = cli("classify", "predict", clf, tmp_path / "broken.jpg")
    assert "(no face)" in out and "broken.jpg" in out

    # a classifier made with one model refuses another model's embeddings
    other = tmp_path / "other"
    shutil.copytree(trained["run"], other)
    from facetrain.inference.record import Preprocess, save_model
    from facetrain.inference.saved import load_model

    net, pre = load_model(other)
    save_model(other / "model.safetensors", net, Preprocess(**(pre.__dict__ | {"flip": "none"})))
    msg = cli_fails("classify", "predict", clf, known / "id3" / "0.jpg", "--model", other)
    assert "another model or preprocessing" in msg
    msg = cli_fails("classify", "train", trained["run"], known, "--out", clf, "--threshold", "-1")
    assert "--threshold '-1': a finite number from 0 to 4, the largest squared_l2" in msg


def test_the_classifier_comparison_holds_out_a_share_of_each_identity():
    """Per identity of two images or more, round(fraction × n) of them (at least one, never
    all) held out, the same ones for the same seed; identities of one image train."""
    from collections import Counter

    from facetrain.use.classify import holdout_split

    rng = np.random.default_rng(3)
    labels = [f"p{int(x)}" for x in rng.integers(0, 400, 3000)]
    train, test = holdout_split(labels, 0.2, seed=1)
    assert sorted(train.tolist() + test.tolist()) == list(range(3000))
    n, held = Counter(labels), Counter(labels[i] for i in test)
    for name, total in n.items():
        want = 0 if total < 2 else min(total - 1, max(1, round(0.2 * total)))
        assert held[name] == want, name
    again, other = holdout_split(labels, 0.2, seed=1), holdout_split(labels, 0.2, seed=2)
    assert np.array_equal(again[1], test) and not np.array_equal(other[1], test)
    assert [len(x) for x in holdout_split([], 0.2)] == [0, 0]


def test_classify_threshold_is_the_models_the_datas_or_a_number_and_says_which():
    """`classify train --threshold`: auto takes the model's calibrated threshold, else
    validates one on the labelled faces; a number is taken as given; anything else, or a
    number that cannot be a distance, is refused by name."""
    from facetrain.inference.record import Preprocess
    from facetrain.use.classify import ClassifyError, choose_threshold

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4, 16))
    emb = np.repeat(centres, 5, axis=0) + 0.05 * rng.standard_normal((20, 16))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    labels = [f"p{i}" for i in np.repeat(np.arange(4), 5)]
    calibrated = Preprocess("m", 16, 112, threshold=0.42, threshold_source="LFW")
    bare = Preprocess("m", 16, 112)

    assert choose_threshold("auto", calibrated, emb, labels) == (0.42, "the model's (LFW)")
    value, said = choose_threshold("auto", bare, emb, labels)
    d = ((emb[:, None] - emb[None]) ** 2).sum(-1)
    same = np.equal.outer(np.array(labels), np.array(labels))
    assert said == "validated on DATA's pairs"
    assert d[same].max() < value < d[~same].min()  # between the people, as the data says
    assert choose_threshold("data", calibrated, emb, labels)[0] == value
    assert choose_threshold("0.7", calibrated, emb, labels) == (0.7, "given")
    for how, why in (("model", "no calibrated threshold"), ("near", "auto, model, data or"),
                     ("-1", "a finite number"), ("nan", "a finite number"),
                     ("4.5", "every two faces would be one person")):  # fmt: skip
        with pytest.raises(ClassifyError, match=why):
            choose_threshold(how, bare, emb, labels)
    with pytest.raises(ClassifyError, match="no identity has two images"):
        choose_threshold("data", bare, emb[::5], labels[::5])


@need(BBT)
def test_classify_answers_every_face_of_a_group_photo(tmp_path):
    """Issue 28 (4): predict names each face of a group photo, a stranger stays unknown;
    train learns from the face of a group photo that is like the person's other photos,
    says which, and refuses a group photo with none of them."""
    ref, known = BBT / "reference", tmp_path / "known"
    for who in ("amy", "penny", "sheldon", "howard"):
        shutil.copytree(ref / who, known / who, ignore=shutil.ignore_patterns(f"{who}5.png"))
    side_by_side(
        known / "penny" / "party.jpg", ref / "raj" / "raj1.png", ref / "penny" / "penny5.png"
    )
    side_by_side(
        known / "amy" / "strangers.jpg", ref / "raj" / "raj2.png", ref / "stuart" / "stuart1.png"
    )
    clf = tmp_path / "clf.npz"
    out = cli("classify", "train", known, "--out", clf, "--test-fraction", "0.25")
    assert "learnt from face 2 of 2" in out and "party.jpg" in out
    assert "refused" in out and "strangers.jpg" in out and "none like amy" in out
    assert "strangers refused: not measured; --unknown FOLDER" in " ".join(out.split())

    group = side_by_side(tmp_path / "group.jpg", ref / "sheldon" / "sheldon5.png",
                          ref / "stuart" / "stuart2.png", ref / "amy" / "amy5.png")  # fmt: skip
    out = cli("classify", "predict", clf, group, "--json", tmp_path / "p.json")
    p = sorted(json.loads((tmp_path / "p.json").read_text()), key=lambda r: r["box"][0])
    assert [r["name"] for r in p] == ["sheldon", "unknown", "amy"]
    assert all(len(r["box"]) == 4 for r in p) and [r["face"] for r in p] != [0, 0, 0]
    assert "rule:" in out and f"{p[0]['threshold']:.3f}" in out
    # one person is named on one face of a photo at most, as the library names a photo
    twice = side_by_side(tmp_path / "twice.jpg", ref / "amy" / "amy5.png",
                          ref / "amy" / "amy5.png")  # fmt: skip
    cli("classify", "predict", clf, twice, "--json", tmp_path / "t.json")
    t = json.loads((tmp_path / "t.json").read_text())
    assert sorted(r["name"] for r in t) == ["amy", "unknown"], t


def test_a_disk_that_fills_midway_keeps_the_work_for_the_same_command(
    trained, tmp_path, monkeypatch
):
    """The full-disk error says to free some space and run the same command again, which
    goes on from where it stopped: the parts written before the disk filled are kept (they
    were removed as for a refusal, and the run began again from the first image)."""
    import errno

    from facetrain.inference import parts as kept
    from facetrain.inference.embedder import FaceEmbedder

    monkeypatch.setattr(kept, "PART", 16)
    out, parts = tmp_path / "e.npz", tmp_path / "e.npz.partial"
    full = OSError(errno.ENOSPC, "No space left on device")
    stop = Stopper(monkeypatch, FaceEmbedder, "embed_source", lambda self, s, **kw: s.n_images,
                   raises=full)  # fmt: skip
    stop.reset(2)
    said = runner.invoke(app, ["embed", str(trained["run"]), str(trained["faces"]), "--out",
                               str(out)])  # fmt: skip
    assert said.exit_code == 2 and "free some space, then run the same command" in said.output
    assert len(list(parts.glob("part-*.npz"))) == 2 and not out.exists()
    stop.reset()
    said = cli("embed", trained["run"], trained["faces"], "--out", out)
    assert "going on from an earlier run: 32 of 100 images" in " ".join(said.split())
    assert stop.calls == [16, 16, 16, 16, 4] and not parts.exists()


def test_embed_stopped_midway_goes_on_from_its_last_part(trained, tmp_path, monkeypatch):
    """Embedding a large dataset is a long job: stopped (as by kill -9) between two parts,
    the same command goes on from the last part kept, embeds only the rest, and writes what
    one whole run writes; the work kept beside the output goes once it is written. Work of
    another kind (another alignment here) is never mixed in."""
    from facetrain.inference import parts as kept
    from facetrain.inference.embedder import FaceEmbedder

    monkeypatch.setattr(kept, "PART", 16)
    faces, out, whole = trained["faces"], tmp_path / "e.npz", tmp_path / "whole.npz"
    parts = tmp_path / "e.npz.partial"
    stop = Stopper(
        monkeypatch, FaceEmbedder, "embed_source", lambda self, source, **kw: source.n_images
    )
    stop.reset(3)
    stopped = runner.invoke(app, ["embed", str(trained["run"]), str(faces), "--out", str(out)])
    assert stopped.exit_code == 130  # interrupted
    assert len(list(parts.glob("part-*.npz"))) == 3 and not out.exists()
    stop.reset()
    said = cli("embed", trained["run"], faces, "--out", out)
    assert "going on from an earlier run: 48 of 100 images" in " ".join(said.split())
    assert stop.calls == [16, 16, 16, 4] and not parts.exists()  # only the parts not kept
    stop.reset()
    cli("embed", trained["run"], faces, "--out", whole)
    a, b = np.load(out), np.load(whole)
    assert np.array_equal(a["embeddings"], b["embeddings"])
    assert list(a["paths"]) == list(b["paths"]) and list(a["labels"]) == list(b["labels"])

    stop.reset(2)  # stopped again; then asked with another alignment: begun anew
    stopped = runner.invoke(app, ["embed", str(trained["run"]), str(faces), "--out", str(out)])
    assert stopped.exit_code == 130  # interrupted
    stop.reset()
    cli("embed", trained["run"], faces, "--out", out, "--align", "never")
    assert stop.calls == [16] * 6 + [4] and not parts.exists()
    mine = tmp_path / "mine.npz.partial"  # a folder of the owner's where the work would go
    mine.mkdir()
    (mine / "notes.txt").write_text("the owner's")
    said = cli_fails("embed", trained["run"], faces, "--out", tmp_path / "mine.npz")
    assert "not such work" in said and (mine / "notes.txt").read_text() == "the owner's"
    broken = tmp_path / "broken" / "someone"  # refused once embedded: no work left behind
    broken.mkdir(parents=True)
    for k in range(2):
        (broken / f"{k}.jpg").write_bytes(b"\xff\xd8\xff not a photo")
    said = cli_fails("filter", trained["run"], broken.parent, "--out", tmp_path / "c.txt")
    assert "no usable face images" in said and not (tmp_path / "c.txt.partial").exists()
    stop.reset()  # outputs that cannot be written are refused before any work
    said = cli_fails("embed", trained["run"], faces, "--out", tmp_path / "e.txt")
    assert "embeddings are written as .npz" in said and stop.calls == []
    said = cli_fails("filter", trained["run"], faces, "--out", tmp_path / "c.txt",
                     "--percentile", "100")  # fmt: skip
    assert "percentile 100.0: must be in [0, 100)" in said and stop.calls == []


def test_eval_stopped_midway_goes_on_from_its_last_part(trained, tmp_path, monkeypatch):
    """`eval` is a long job on a CPU (raw photos are detected first): stopped between two
    parts (as by kill -9), the same command goes on from the last part kept in its output
    folder and writes the metrics one whole run writes; the work kept goes once they are
    written."""
    from facetrain.inference import parts as kept
    from facetrain.inference.embedder import FaceEmbedder

    monkeypatch.setattr(kept, "PART", 8)
    stop = Stopper(
        monkeypatch, FaceEmbedder, "embed_source", lambda self, source, **kw: source.n_images
    )
    common = ["eval", str(trained["run"]), "--pairs", str(trained["pairs"]), "--images",
              str(trained["lfw"]), "--flip", "none"]  # fmt: skip
    stop.reset(2)
    stopped = runner.invoke(app, [*common, "--out", str(tmp_path / "ev")])
    assert stopped.exit_code == 130  # interrupted
    [work] = (tmp_path / "ev").glob("*.partial")
    assert len(list(work.glob("part-*.npz"))) == 2
    assert not (tmp_path / "ev" / "metrics.json").exists()
    stop.reset()
    said = cli(*common, "--out", tmp_path / "ev")
    assert "going on from an earlier run: 16 of 25 images" in " ".join(said.split())
    assert stop.calls == [8, 1] and not work.exists()  # the 25 photos the pairs name
    cli(*common, "--out", tmp_path / "whole")
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("ev", "whole"))
    assert a == b and 0 < a["accuracy"] <= 1


def test_jobs_with_no_output_folder_keep_their_work_in_the_cache(trained, tmp_path,
                                                                 monkeypatch):  # fmt: skip
    """`eval-populations` of a family's folder, and `eval` of a weights file without
    --out, embed as long as `embed` does but have no output folder beside them: stopped
    (as by kill -9) they began again from the first photo. Their work is kept in the
    cache folder (never beside the photos) and the same command goes on from it, prints
    what one whole run prints, and leaves nothing there once done."""
    from facetrain.inference import parts as kept
    from facetrain.inference.embedder import FaceEmbedder

    monkeypatch.setattr(kept, "PART", 16)
    monkeypatch.setenv("FACETRAIN_CACHE", str(tmp_path / "cache"))
    work = tmp_path / "cache" / "work"
    stop = Stopper(
        monkeypatch, FaceEmbedder, "embed_source", lambda self, source, **kw: source.n_images
    )
    run, faces = trained["run"], trained["faces"]
    before = tree_hash(faces)
    stop.reset(3)
    assert runner.invoke(app, ["eval-populations", str(run), str(faces)]).exit_code == 130
    [parts] = work.glob("eval-populations-*")
    assert len(list(parts.glob("part-*.npz"))) == 3
    stop.reset()
    said = cli("eval-populations", run, faces, "--json", tmp_path / "a.json")
    assert "going on from an earlier run: 48 of 100 images" in " ".join(said.split())
    assert stop.calls == [16, 16, 16, 4] and not any(work.iterdir())
    cli("eval-populations", run, faces, "--json", tmp_path / "b.json")
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "b.json"))
    assert a == b and a["sets"][0]["faces"] == 100

    weights = run / "model.safetensors"  # not a run folder: no eval/ to keep the work in
    common = ["eval", str(weights), "--pairs", str(trained["pairs"]), "--images",
              str(trained["lfw"]), "--flip", "none"]  # fmt: skip
    stop.reset(1)
    assert runner.invoke(app, [*common, "--json", str(tmp_path / "x.json")]).exit_code == 130
    [parts] = work.glob("eval-*")
    stop.reset()
    said = cli(*common, "--json", tmp_path / "e.json")
    assert "going on from an earlier run: 16 of 25 images" in " ".join(said.split())
    assert stop.calls == [9] and not any(work.iterdir()) and tree_hash(faces) == before
    cli(*common, "--json", tmp_path / "f.json")
    e, f = (json.loads((tmp_path / n).read_text()) for n in ("e.json", "f.json"))
    assert e == f and 0 < e["accuracy"] <= 1


def test_a_second_job_on_the_same_kept_work_is_refused_naming_the_first(trained, tmp_path,
                                                                        monkeypatch):  # fmt: skip
    """Two runs of one job (the same `eval-populations` in two terminals, the same `embed
    --out`) shared one folder of kept work, and the first to end removed it under the
    other. While one holds it, the other is refused before any work, naming it; once the
    first has ended (even by kill -9), the next goes on."""
    from facetrain.inference.parts import kept_in_cache
    from facetrain.lock import held

    monkeypatch.setenv("FACETRAIN_CACHE", str(tmp_path / "cache"))
    run, faces, out = trained["run"], trained["faces"], tmp_path / "e.npz"
    with held(tmp_path / "e.npz.partial.lock", "x"):  # as a running `embed` holds it
        said = cli_fails("embed", run, faces, "--out", out)
    assert "the work kept in" in said and "e.npz.partial is in use by process" in said
    assert not out.exists() and not (tmp_path / "e.npz.partial").exists()
    parts = kept_in_cache("eval-populations", str(run), faces.resolve())
    with held(parts.with_name(parts.name + ".lock"), "x"):
        said = cli_fails("eval-populations", run, faces)
    assert "is in use by process" in said
    cli("embed", run, faces, "--out", out)  # the lock of a process gone is taken over
    assert out.exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "cache", "e.npz"]  # fmt: skip


def test_classify_stopped_midway_goes_on_from_its_last_part(trained, tmp_path, monkeypatch):
    """Fitting a classifier on many photos, and naming every face of many, are long jobs:
    stopped between two parts (as by kill -9), the same command goes on from the last part
    kept, looks at only the rest, and writes what one whole run writes. Photos are looked
    at two at a time here (PHOTOS_AT_ONCE)."""
    from facetrain.inference import parts as kept
    from facetrain.use import embeddings

    monkeypatch.setattr(kept, "PART", 16)
    monkeypatch.setattr(embeddings, "PHOTOS_AT_ONCE", 2)
    known, strangers = tmp_path / "known", tmp_path / "strangers"
    for i in range(10):
        shutil.copytree(trained["faces"] / f"id{i}", (known if i < 7 else strangers) / f"id{i}")
    stop = Stopper(
        monkeypatch, embeddings, "every_face", lambda embedder, load, images, *a: list(images)
    )

    def looked_at() -> int:
        return sum(len(images) for images in stop.calls)

    clf, parts = tmp_path / "clf.npz", tmp_path / "clf.npz.partial"

    def train_args(out):
        return ["classify", "train", str(trained["run"]), str(known), "--out", str(out),
                "--unknown", str(strangers)]  # fmt: skip

    stop.reset(20)  # after 40 photos
    assert runner.invoke(app, train_args(clf)).exit_code == 130  # interrupted
    assert len(list(parts.glob("part-*.npz"))) == 2 and not clf.exists()
    stop.reset()
    said = cli(*train_args(clf))
    assert "going on from an earlier run: 32 of 70 photos looked at" in " ".join(said.split())
    assert looked_at() == 70 - 32 and not parts.exists()
    assert not (tmp_path / "clf.npz.unknown.partial").exists()
    cli(*train_args(tmp_path / "whole.npz"))
    a, b = np.load(clf), np.load(tmp_path / "whole.npz")
    assert sorted(a.files) == sorted(b.files)
    assert all(np.array_equal(a[k], b[k]) for k in a.files)

    photos = [str(known / "id3"), str(strangers / "id8")]  # 20 photos
    stop.reset(9)  # after 18 photos
    stopped = runner.invoke(app, ["classify", "predict", str(clf), *photos, "--json",
                                  str(tmp_path / "p.json")])  # fmt: skip
    assert stopped.exit_code == 130 and not (tmp_path / "p.json").exists()
    stop.reset()
    said = cli("classify", "predict", clf, *photos, "--json", tmp_path / "p.json")
    assert "going on from an earlier run: 16 of 20 photos looked at" in " ".join(said.split())
    assert looked_at() == 4 and not (tmp_path / "p.json.partial").exists()
    cli("classify", "predict", clf, *photos, "--json", tmp_path / "whole.json")
    p, whole = (json.loads((tmp_path / f).read_text()) for f in ("p.json", "whole.json"))
    assert p == whole and len(p) == 20 and all(r["distance"] >= 0 for r in p)

    monkeypatch.setenv("FACETRAIN_CACHE", str(tmp_path / "cache"))  # without --json: kept there
    stop.reset(9)
    assert runner.invoke(app, ["classify", "predict", str(clf), *photos]).exit_code == 130
    stop.reset()
    said = cli("classify", "predict", clf, *photos)
    assert "going on from an earlier run: 16 of 20 photos looked at" in " ".join(said.split())
    assert looked_at() == 4 and not any((tmp_path / "cache" / "work").iterdir())

    def answers(out: str) -> list[str]:
        return [line for line in out.splitlines() if "\t" in line]

    assert len(answers(said)) == 20  # every answer, as one whole run gives
    assert answers(said) == answers(cli("classify", "predict", clf, *photos))


def test_answers_go_to_stdout_as_they_come_while_the_bar_is_on_the_terminal(trained, tmp_path):
    """`classify predict` answers photo after photo under its progress bar. With the bar
    on a terminal (stderr) and the answers sent to a file, every answer lands in the file
    (rich brought them to the bar's terminal, and the file stayed empty)."""
    import os
    import pty
    import subprocess
    import sys
    import threading

    clf = tmp_path / "clf.npz"
    cli("classify", "train", trained["run"], trained["faces"], "--out", clf)
    screen, tty = pty.openpty()
    shown = []  # what reaches the terminal, read as it comes so the child never blocks

    def read_screen():
        while True:
            try:
                chunk = os.read(screen, 65536)
            except OSError:
                return
            if not chunk:
                return
            shown.append(chunk)

    reader = threading.Thread(target=read_screen, daemon=True)
    reader.start()
    photos = sorted(str(p) for p in (trained["faces"] / "id3").iterdir())
    with open(tmp_path / "names.tsv", "w") as out:
        r = subprocess.run([sys.executable, "-m", "facetrain", "classify", "predict", str(clf),
                            *photos], stdout=out, stderr=tty, timeout=300)  # fmt: skip
    os.close(tty)
    reader.join(10)
    os.close(screen)
    screen_text = b"".join(shown).decode(errors="replace")
    assert r.returncode == 0, screen_text[-2000:]
    rows = (tmp_path / "names.tsv").read_text().splitlines()
    assert [row.split("\t")[2] for row in rows] == photos
    assert "faces" in screen_text and "id3\t" not in screen_text  # the bar, not the answers


def test_filter_finds_mislabelled_images(trained, tmp_path):
    data = tmp_path / "noisy"
    shutil.copytree(trained["faces"], data)
    intruders = []
    for i in range(3):  # a face of id(i+5) filed under id(i)
        dst = data / f"id{i}" / f"intruder{i}.jpg"
        shutil.copy(trained["faces"] / f"id{i + 5}" / "0.jpg", dst)
        intruders.append(str(dst))
    before = tree_hash(data)
    out_list = tmp_path / "clean.txt"
    said = cli("filter", trained["run"], data, "--out", out_list, "--percentile", "2.9")  # 3 of 103
    # the table names the images under the folder its title says, once
    assert f"(in {data})" in said.replace("\n", "") and "id0/intruder0.jpg" in said
    rows = (tmp_path / "clean.csv").read_text().splitlines()[1:]
    worst = {r.split(",")[0] for r in rows[:3]}
    assert worst == set(intruders)
    kept = out_list.read_text()
    assert all(Path(p).name not in kept for p in intruders)
    assert kept.count("\n") == 1 + 100  # header + every real face
    assert tree_hash(data) == before


@pytest.mark.parametrize("distance", ["squared_l2", "cosine"])
def test_filter_scores_each_image_against_its_identity_s_centre(distance):
    """Each image's distance to the unit mean of its own identity's embeddings, whatever
    the order of the images and however many people (computed in blocks, the centres in
    one pass: a pass a person took an hour at MS-Celeb's size)."""
    from facetrain.distances import pair_distances
    from facetrain.use.embeddings import Table
    from facetrain.use.filter import centre_distances

    rng = np.random.default_rng(1)
    labels = [f"p{int(k)}" for k in rng.integers(0, 40, 500)]  # shuffled, uneven
    emb = rng.normal(size=(500, 8)).astype(np.float32)
    t = Table(emb, [f"{i}.jpg" for i in range(500)], labels)
    got = centre_distances(t, distance, block=64)
    for name in set(labels):
        idx = [i for i, x in enumerate(labels) if x == name]
        c = emb[idx].mean(0) / np.linalg.norm(emb[idx].mean(0))
        want = pair_distances(emb[idx], np.repeat(c[None], len(idx), 0), distance)
        np.testing.assert_allclose(got[idx], want, atol=1e-5)
    assert len(centre_distances(Table(emb[:0], [], []), distance)) == 0


def test_plots_and_report(trained, tmp_path):
    """The curves of two runs; then the two commands a finished run says come next (its
    whole verification on the sets it was checked on, its report page), as it says them."""
    import shlex

    from facetrain.cli.train import _next_steps
    from facetrain.train.config import TrainConfig

    run = trained["run"]
    other = tmp_path / "run2"
    shutil.copytree(run, other)
    cli("plot", run, other, "--out", tmp_path / "curves.png")
    assert Image.open(tmp_path / "curves.png").size[0] > 1000  # 3 panels wide
    cfg = TrainConfig.of(data=["x"], out=str(run), eval_pairs=str(trained["pairs"]),
                         eval_images=str(trained["lfw"]))  # fmt: skip
    said = _next_steps(cfg)
    assert said.startswith("next: facetrain eval ") and " ; facetrain report " in said
    eval_, report = (shlex.split(c)[1:] for c in said.removeprefix("next: ").split(" ; "))
    cli(*eval_)
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    out = cli(*report)
    assert str(run / "report.html") in out.replace("\n", "")
    page = (run / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2  # curves and ROC
    assert f"{metrics['auc']:.4f}" in page and "pairs used" in page
    cli("plot-embeddings", run, trained["faces"], "--out", tmp_path / "tsne.png")
    assert Image.open(tmp_path / "tsne.png").size[0] > 500


def test_a_map_of_some_identities_embeds_only_theirs(trained, tmp_path, monkeypatch):
    """`plot-embeddings MODEL DATA` embedded every face of DATA (a million, for MS1M) and
    then drew the first 20 identities; now only their faces are embedded, from folders or
    from a pack."""
    from facetrain.use import embeddings

    embedded = []
    whole = embeddings.embed_paths
    monkeypatch.setattr(embeddings, "embed_paths", lambda model, paths, labels, **kw: (
        embedded.append(sorted(set(labels))) or whole(model, paths, labels, **kw)))  # fmt: skip
    for data in (trained["faces"], trained["tmp"] / "pack"):
        out = cli("plot-embeddings", trained["run"], data, "--out", tmp_path / "m.png",
                  "--max-identities", "3")  # fmt: skip
        assert "(30 faces, 3 identities)" in out and Image.open(tmp_path / "m.png").size[0] > 500
    assert embedded == [["id0", "id1", "id2"]] * 2


def test_the_report_page_reads_for_everyone(trained, tmp_path):
    """The report page breaks none of axe-core's accessibility rules in Chromium: it names
    its language, has a main region and says in words what each chart shows."""
    from facetrain.evaluate.report import write_report

    chromium, sync_api = chromium_api()
    page_file = write_report(trained["run"], tmp_path / "report.html")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(page_file.as_uri())
        assert page.locator("img").count() >= 1
        assert axe_violations(page) == []
        browser.close()


def test_models_from_elsewhere_and_bad_model_files(trained, tmp_path):
    import onnx

    # an ONNX model without our record: refused with a hint, accepted with a spec
    proto = onnx.load(str(trained["run"] / "model.onnx"))
    del proto.metadata_props[:]
    foreign = tmp_path / "foreign.onnx"
    onnx.save(proto, str(foreign))
    img = trained["faces"] / "id1" / "0.jpg"
    assert "--preprocess" in cli_fails("compare", foreign, img, img)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"input_size": 80, "normalize": "fixed", "threshold": 1.0}))
    cli("embed", foreign, trained["faces"], "--out", tmp_path / "f.npz", "--preprocess", spec)
    cli("embed", trained["run"], trained["faces"], "--out", tmp_path / "t.npz")
    f, t = np.load(tmp_path / "f.npz"), np.load(tmp_path / "t.npz")
    assert np.abs(f["embeddings"] - t["embeddings"]).max() <= 1e-4
    spec.write_text(json.dumps({"input_size": 96}))  # not the size the graph takes
    assert "takes 80x80 inputs" in cli_fails("compare", foreign, img, img, "--preprocess", spec)
    spec.write_text(json.dumps({"input_size": 80, "colour": "bgr"}))
    assert "unknown preprocessing fields" in cli_fails(
        "compare", foreign, img, img, "--preprocess", spec
    )

    (tmp_path / "junk.onnx").write_bytes(b"junk")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    for bad in ("junk.onnx", "junk.pt", "missing.safetensors"):
        cli_fails("compare", tmp_path / bad, img, img)
    cli_fails("embed", trained["run"], trained["faces"], "--out", tmp_path / "x.npz",
              "--backend", "tensorflow")  # fmt: skip
    cli_fails("export", trained["run"] / "model.onnx")  # export needs the weights
    cli_fails("eval", trained["run"], "--pairs", trained["pairs"])  # no --images


def test_a_run_still_training_is_named_as_one_not_taken_for_photos(trained, tmp_path):
    """`compare RUN a.jpg b.jpg` on a run still training took RUN for a folder of photos
    ("no photo in this folder"); `eval RUN` said "no model here (expected a run folder…)"
    of a run folder. Both say now that the run has not finished."""
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "revision.txt", "metrics.jsonl"):
        shutil.copy(trained["run"] / name, run / name)
    img = trained["faces"] / "id1" / "0.jpg"
    said = [cli_fails("compare", run, img, img), cli_fails("embed", run, img, "--out",
            tmp_path / "e.npz"), cli_fails("eval", run, "--pairs", trained["pairs"],
            "--images", trained["lfw"])]  # fmt: skip
    for out in said:
        assert "this run has not finished: no model.safetensors yet" in " ".join(out.split())
    assert not (tmp_path / "e.npz").exists() and not (run / "eval").exists()
    # a folder of photos is still photos, and the finished run its model
    assert "same" in cli("compare", trained["faces"] / "id1", img)
    assert "same" in cli("compare", trained["run"], img, img)


@pytest.mark.skipif(not LFW.exists(), reason="../shared/datasets absent")
def test_raw_photos_are_aligned_like_the_models_training_faces(trained):
    """lfw-raw-sample photos aligned on the fly match ../shared/datasets/lfw's aligned faces
    (made with the same template; facenet-pytorch's MTCNN there, our batched one here, whose
    landmarks differ by a pixel or two) far more closely than any other person's face."""
    from conftest import LFW_RAW
    from facetrain.inference.sources import Images

    names = sorted(p.name for p in LFW_RAW.iterdir() if p.is_dir())[:12]
    raw = [str(next((LFW_RAW / n).iterdir())) for n in names]
    aligned = [str(LFW / n / Path(p).name) for n, p in zip(names, raw)]
    on_the_fly = Images(raw, {"mode": "similarity", "size": 112}, "auto")
    shared = Images(aligned, {"mode": "similarity", "size": 112}, "auto")
    a = [on_the_fly.load(i) for i in range(len(raw))]
    b = [shared.load(i) for i in range(len(raw))]
    assert all(x is not None and x.shape == (112, 112, 3) for x in a + b)
    same = [np.abs(x.astype(float) - y).mean() for x, y in zip(a, b)]
    other = [np.abs(a[i].astype(float) - b[(i + 1) % len(b)]).mean() for i in range(len(a))]
    assert np.median(same) < 12.0 and np.median(same) < 0.2 * np.median(other), (same, other)


def test_eval_populations_measures_and_records_a_models_sure_below(trained, tmp_path):
    """A model a user trains has no sure_below: `eval-populations` measures it on folders
    of identities (the 1% of different people's pairs, the most crowded folder's), and
    `--record` writes it into the model, so that `compare` marks an unsure "same"."""
    import math

    from facetrain.distances import distance_matrix

    run, faces = tmp_path / "run", trained["faces"]
    shutil.copytree(trained["run"], run)  # the module's run stays as it was
    assert open_model(run).pre.sure_below is None
    out = cli("eval-populations", run, faces, "--record", "--json", tmp_path / "p.json")
    r = json.loads((tmp_path / "p.json").read_text())
    cli("embed", run, faces, "--out", tmp_path / "e.npz")  # the same faces, measured here
    z = np.load(tmp_path / "e.npz")
    d = distance_matrix(z["embeddings"], z["embeddings"], open_model(run).pre.distance)
    iu = np.triu_indices(len(d), 1)
    other = (z["labels"][:, None] != z["labels"][None, :])[iu]
    assert r["sure_below"] == math.floor(np.quantile(d[iu][other], 0.01) * 1000) / 1000
    assert "recorded in" in out and open_model(run).pre.sure_below == r["sure_below"]
    imgs = [faces / "id1" / "0.jpg", faces / "id1" / "5.jpg", faces / "id2" / "0.jpg"]
    cli("compare", run, *imgs, "--json", tmp_path / "c.json")
    pairs = json.loads((tmp_path / "c.json").read_text())["pairs"]
    assert all(p["sure"] is not None for p in pairs)  # measured now: each "same" says how sure
    refused = cli_fails("eval-populations", "pretrained:dlib_resnet", faces, "--record")
    assert "--record writes into a facetrain weights file" in refused


def test_a_classifier_measures_its_known_faces_once_and_names_each_photo_as_a_fresh_one():
    """`classify predict` names a photo at a time; the known faces' spacing, measured for
    the first photo, serves the next ones, which are named as by a classifier just loaded."""
    import numpy as np

    from facetrain.use.classify import Classifier

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 32))
    known = np.repeat(centres, 5, 0) + 0.1 * rng.normal(size=(30, 32))
    labels = [f"p{k}" for k in range(6) for _ in range(5)]
    photos = [np.concatenate([centres[[k]], rng.normal(size=(1, 32))]) + 0.1 * rng.normal(
        size=(2, 32)) for k in range(6)]  # fmt: skip

    def fresh() -> Classifier:
        return Classifier("knn", known, labels, 5.0, "squared_l2", "given",
                          context=rng.normal(size=(10, 32))).fit()  # fmt: skip

    kept = fresh()
    context = kept.context
    named = [kept.predict(p, one_photo=True) for p in photos]
    among = kept.among
    assert all(kept.among is among for _ in photos)  # measured once
    alone = []
    for p in photos:
        c = fresh()
        c.context = context
        alone.append(c.predict(p, one_photo=True))
    assert named == alone
    assert [r[0]["name"] for r in named] == [f"p{k}" for k in range(6)]  # each photo's own
    assert all(r[1]["name"] == "unknown" for r in named)  # and a stranger beside them


def test_a_kept_part_damaged_on_disk_is_done_again(tmp_path):
    """Work kept towards an output (an embedding stopped midway, a distillation's teacher
    cache) whose part file was cut short or damaged on disk failed every later run with a
    BadZipFile traceback until the folder was found and deleted; that part is done again
    and the others are read back."""
    from facetrain.inference.parts import PART, _read_part, _write_part, in_parts

    made = []

    def make(ids, advance):
        made.append(ids.start)
        advance(len(ids))
        yield np.full((len(ids), 4), ids.start, np.float32), {ids.start: "no face"}

    def run():
        kept = in_parts(PART + 10, tmp_path / "w", {"model": "m"}, make, _write_part,
                        _read_part, progress=False)  # fmt: skip
        return [(e.tolist(), why) for e, why in kept]

    first = run()
    assert made == [0, PART] and first[1][1] == {PART: "no face"}
    made.clear()
    assert run() == first and made == []
    part = tmp_path / "w" / "part-000001.npz"
    for damaged in (part.read_bytes()[:200], b"garbage"):
        part.write_bytes(damaged)
        made.clear()
        assert run() == first and made == [PART]


def test_find_keeps_each_faces_stack_and_stacks_again_only_what_changed(tmp_path, monkeypatch):
    """The folder's stacks are kept with its faces: a later find stacks only the faces of
    photos added since, with the stacks they come near — the same stacks as stacking the
    whole folder again — and the stacks that lost a face (a photo gone or changed) are
    stacked again; the others keep their stack (no model: faces drawn round 6 people)."""
    from facetrain.library.cluster import with_new_faces
    from facetrain.use.find_cache import FolderCache

    monkeypatch.setenv("FACETRAIN_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    unit = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    emb = unit(unit(rng.normal(size=(6, 16))).repeat(6, 0) + 0.04 * rng.normal(size=(36, 16)))
    paths = [str(tmp_path / f"p{i:02d}.jpg") for i in range(36)]  # person i // 6
    for p in paths:
        Path(p).write_bytes(b"x")

    def look(listed: list[str], faces=None, rule="0.19") -> tuple[np.ndarray, np.ndarray]:
        """What find does: faces of the photos not known, then the stacks."""
        cache = FolderCache.open("model", tmp_path, 16)
        todo = cache.missing(listed)
        faces = emb if faces is None else faces
        cache.put({p: (faces[paths.index(p)][None], np.zeros((1, 4))) for p in todo})
        e, _, owner = cache.rows(listed)
        before = cache.stacks(listed, rule)
        stacks = with_new_faces(e, owner, before, 0.19, "squared_l2")
        cache.set_stacks(listed, stacks, rule)
        cache.save(listed)
        assert same_partition(stacks, with_new_faces(e, owner, np.full(len(e), -1), 0.19))
        return before, stacks

    before, stacks = look(paths[::2])  # every other photo
    assert (before == -1).all() and len(set(stacks)) == 6
    before, stacks = look(paths)  # the others added: only they are new
    assert ((before == -1) == np.isin(np.arange(36), np.arange(1, 36, 2))).all()
    assert same_partition(stacks, np.arange(36) // 6)
    before, _ = look(paths)  # nothing changed: nothing stacked again
    assert (before >= 0).all()
    assert (look(paths, rule="0.25")[0] == -1).all()  # another threshold: all again
    assert (look(paths)[0] == -1).all() and (look(paths)[0] >= 0).all()
    gone = paths[:3] + paths[4:]  # a photo of person 0 gone: that stack alone again
    before, _ = look(gone)
    assert ((before == -1) == (np.arange(35) < 5)).all()
    moved = emb.copy()
    moved[20] = emb[30]  # person 3's photo now shows person 5: stacked with them
    Path(paths[20]).write_bytes(b"changed")
    before, stacks = look(gone, moved)
    person = np.array([paths.index(p) for p in gone]) // 6
    assert ((before == -1) == (person == 3)).all()  # the stack it left
    at = [gone.index(paths[k]) for k in (20, 30, 18)]
    assert stacks[at[0]] == stacks[at[1]] != stacks[at[2]]


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Two labellings that put the same faces together."""
    return bool(((a[:, None] == a[None, :]) == (b[:, None] == b[None, :])).all())
