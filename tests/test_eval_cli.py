"""`facetrain eval`: a trained model's own preprocessing, the JSON interface, clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from facetrain.cli import app
from facetrain.data.packed import pack
from facetrain.inference.saved import load_model
from facetrain.train.loop import train
from helpers import lfw_style, make_faces, small_cfg, write_bin_and_pairs

runner = CliRunner()


def test_eval_reproduces_the_training_evaluation(tmp_path):
    faces = make_faces(tmp_path / "faces", ids=8, per=8)
    lfw = lfw_style(faces, tmp_path / "lfwstyle")
    bin_path, pairs = write_bin_and_pairs(faces, tmp_path)
    pack(str(faces), tmp_path / "pack", progress=False)
    cfg = small_cfg(
        tmp_path / "pack",
        tmp_path / "run",
        crop=104,
        eval_pairs=str(pairs),
        eval_images=str(lfw),
        input_size=80,
    )
    trained = train(cfg, log=lambda *_: None)

    model, pre = load_model(tmp_path / "run")
    assert pre.model == "nn4_small2" and pre.input_size == 80 and pre.embedding_size == 32
    assert pre.threshold == trained["threshold"] and pre.crop == 104

    out = tmp_path / "eval.json"
    res = runner.invoke(
        app,
        [
            "eval",
            str(tmp_path / "run"),
            "--pairs",
            str(pairs),
            "--images",
            str(lfw),
            "--bin",
            str(bin_path),
            "--json",
            str(out),
            "--folds-csv",
            str(tmp_path / "folds.csv"),
        ],
    )
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    for k in (
        "accuracy",
        "accuracy_std",
        "val",
        "val_std",
        "far",
        "auc",
        "eer",
        "threshold",
        "pairs_used",
        "pairs_missing",
    ):
        assert k in r, k
    assert r["accuracy"] == trained["accuracy"]  # the same preprocessing as in training
    assert r["pairs_used"] == 16 and r["pairs_missing"] == 0
    assert set(r["sets"]) == {tmp_path.name, "syn"} and set(r["tar_at_far"]) == {
        "0.1",
        "0.01",
        "0.001",
        "0.0001",
    }
    # 2 official folds for the pairs file; 10 contiguous folds for the .bin set
    assert len((tmp_path / "folds.csv").read_text().splitlines()) == 1 + 2 + 10

    # images read by 3 threads ahead of the model: the same figures
    threaded = tmp_path / "threaded.json"
    args = ["eval", str(tmp_path / "run"), "--pairs", str(pairs), "--images", str(lfw)]
    res = runner.invoke(
        app, [*args, "--bin", str(bin_path), "--workers", "3", "--json", str(threaded)]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(threaded.read_text()) == r

    # a pairs file naming images that are not there: reported, not a traceback
    gone = sorted(p.name for p in lfw.iterdir())[0]
    shutil.rmtree(lfw / gone)
    res = runner.invoke(
        app,
        [
            "eval",
            str(tmp_path / "run"),
            "--pairs",
            str(pairs),
            "--images",
            str(lfw),
            "--json",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    absent = [p for p, why in r.get("unusable_images", {}).items() if why == "no such file"]
    assert r["pairs_missing"] > 0 and absent  # each image named, with why
    assert {(Path(p).parent.name, Path(p).parent.parent) for p in absent} == {(gone, lfw)}
    assert "no such file" in res.output


def test_eval_bad_inputs(tmp_path):
    bogus = tmp_path / "model.safetensors"
    bogus.write_text("not weights")
    cases = [
        ["eval", str(bogus), "--bin", str(tmp_path / "x.bin")],
        ["eval", str(tmp_path / "nowhere"), "--bin", str(tmp_path / "x.bin")],
        ["eval", str(bogus)],
        ["eval", str(bogus), "--pairs", str(tmp_path / "p.txt")],
    ]
    for args in cases:
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and "error:" in res.output, (args, res.output)
        assert "Traceback" not in res.output


def test_embed_with_reading_threads_gives_the_same_embeddings(tmp_path):
    """Raw photos aligned on the fly by 2 threads ahead of the model (one shared detector)
    and by the threads `--workers` left out chooses: the same embeddings. A negative count
    is refused, naming it, before anything is read."""
    import numpy as np
    import pytest

    from conftest import LFW_RAW
    from helpers import make_model

    if not LFW_RAW.exists():
        pytest.skip(f"{LFW_RAW} absent (real data not here)")
    photos = tmp_path / "raw"
    for p in sorted(LFW_RAW.rglob("*.jpg"))[:12]:
        (photos / p.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(p, photos / p.parent.name / p.name)
    model = make_model(tmp_path / "m.safetensors")
    tables = []
    for workers in ("0", "2"):
        out = tmp_path / f"e{workers}.npz"
        res = runner.invoke(app, ["embed", str(model), str(photos), "--out", str(out),
                                  "--workers", workers])  # fmt: skip
        assert res.exit_code == 0, res.output
        tables.append(np.load(out))
    assert list(tables[0]["paths"]) == list(tables[1]["paths"]) and len(tables[0]["paths"]) >= 10
    np.testing.assert_allclose(tables[0]["embeddings"], tables[1]["embeddings"], atol=1e-5)
    out = tmp_path / "refused.npz"
    res = runner.invoke(app, ["embed", str(model), str(photos), "--out", str(out),
                              "--workers", "-1"])  # fmt: skip
    assert res.exit_code == 2 and "--workers -1: 1 or more" in res.output and not out.exists()


class Colours(torch.nn.Module):
    """Each face's mean colour, `spread` from one point: identities are colours."""

    def __init__(self, spread: float):
        super().__init__()
        self.spread = spread

    def embed(self, x, normalize=False):
        z = torch.zeros(len(x), 8)
        z[:, 0] = 1.0
        z[:, 1:4] = self.spread * x.mean((2, 3))
        return z


def test_eval_says_when_its_grid_cannot_tell_the_pairs_apart(tmp_path):
    """A model that puts every face within 0.01 of the others (early in training) got
    accuracy 0.5 and AUC 0.5 from the protocol's 0.01 threshold steps, beside a ROC that
    separates the pairs: the figures now come with why."""
    import numpy as np

    from facetrain.evaluate.model_eval import evaluate_set, summary_line
    from facetrain.evaluate.sets import pairs_set
    from facetrain.inference.record import Preprocess
    from facetrain.inference.saved import FaceModel

    faces = make_faces(tmp_path / "faces", ids=8, per=8)
    lfw = lfw_style(faces, tmp_path / "lfwstyle")
    _, pairs = write_bin_and_pairs(faces, tmp_path)
    pre = Preprocess(model="colours", embedding_size=8, input_size=32)
    s = pairs_set(str(pairs), str(lfw))
    got = {}
    for spread in (1e-3, 10.0):
        fm = FaceModel.of_module(Colours(spread), pre, "test")
        got[spread], (fpr, tpr) = evaluate_set(fm, s, progress=False)
        got[spread]["exact_auc"] = float(np.trapezoid(tpr, fpr))
    near, apart = got[1e-3], got[10.0]
    assert near["accuracy"] == 0.5 and near["auc"] == 0.5  # the grid's figures
    assert near["exact_auc"] > 0.9 and apart["exact_auc"] == near["exact_auc"]  # one order
    assert (
        "100% of the different people's pairs are nearer than the protocol's first "
        "threshold step (0.01)" in near["note"]
    )
    assert f"AUC {near['exact_auc']:.4f}" in summary_line("lfw", near)
    assert "note" not in apart and apart["accuracy"] > 0.8


def test_pairs_dropped_unevenly_say_what_chance_is(tmp_path):
    """A partial copy of a pairs file's images left mostly same-person pairs: accuracy's
    chance was then far above 50% with nothing beside the figures to say so."""
    from facetrain.evaluate.model_eval import evaluate_set
    from facetrain.evaluate.sets import pairs_set
    from facetrain.inference.record import Preprocess
    from facetrain.inference.saved import FaceModel

    faces = make_faces(tmp_path / "faces", ids=8, per=8)
    lfw = lfw_style(faces, tmp_path / "lfwstyle")
    _, pairs = write_bin_and_pairs(faces, tmp_path)
    fm = FaceModel.of_module(Colours(10.0), Preprocess(model="colours", embedding_size=8,
                                                       input_size=32), "test")  # fmt: skip
    whole, _ = evaluate_set(fm, pairs_set(str(pairs), str(lfw)), progress=False)
    assert whole["pairs_missing"] == 0 and "note" not in whole
    for who in sorted(p.name for p in lfw.iterdir())[:3]:  # 6 of the 8 different pairs
        (lfw / who / f"{who}_0002.jpg").unlink()
    part, _ = evaluate_set(fm, pairs_set(str(pairs), str(lfw)), progress=False)
    assert part["pairs_used"] == 10 and part["pairs_missing"] == 6
    assert part["note"] == (
        "the 6 pairs dropped left 80% of the 10 pairs used same-person "
        "pairs: 'same' said of every pair scores 80% accuracy, not 50%"
    )


def test_verification_during_training_says_so_too(tmp_path):
    """The training log read "accuracy 0.5000" for such a model, and nothing more."""
    from facetrain.inference.record import Preprocess
    from facetrain.train.evaluator import Evaluator
    from facetrain.train.settings import EvalSettings

    faces = make_faces(tmp_path / "faces", ids=8, per=8)
    lfw = lfw_style(faces, tmp_path / "lfwstyle")
    _, pairs = write_bin_and_pairs(faces, tmp_path)
    pre = Preprocess(model="colours", embedding_size=8, input_size=32)
    said, logged = [], []
    ev = Evaluator(EvalSettings(pairs=str(pairs), images=str(lfw)), pre, [], "cpu", "run",
                   said.append, logged.append)  # fmt: skip
    state = SimpleNamespace(step=3, best=0.0, last_eval=None)
    for spread in (1e-3, 10.0):
        ev(Colours(spread), SimpleNamespace(classifies=False), state, epoch=0)
    near, apart = said
    assert "accuracy 0.5000" in near and "\n  note: 100% of the different people's" in near
    assert "note" not in apart and "accuracy 1.0000" in apart
    assert [r["accuracy"] for r in logged] == [0.5, 1.0]
    assert near.endswith(logged[0]["note"]) and "note" not in logged[1]  # metrics.jsonl too

    from facetrain.evaluate.report import write_report

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps(logged[0]) + "\n")
    page = write_report(run).read_text()
    assert "100% of the different people&#x27;s pairs are nearer" in page  # the report says it


def test_eval_out_never_overwrites_a_folder_of_the_users(tmp_path):
    """`eval --out ~/experiments/x` wrote metrics.json, folds.csv, roc.csv and roc.png over
    files of those names from elsewhere; now such a folder is refused before any work, and
    an evaluation's own folder (or one a cut-short evaluation left parts in) is reused."""
    from facetrain.atomic import OutputError
    from facetrain.evaluate.model_eval import evaluate_model
    from facetrain.inference.record import Preprocess
    from facetrain.inference.saved import FaceModel

    faces = make_faces(tmp_path / "faces", ids=8, per=8)
    lfw = lfw_style(faces, tmp_path / "lfwstyle")
    _, pairs = write_bin_and_pairs(faces, tmp_path)
    fm = FaceModel.of_module(Colours(10.0), Preprocess(model="colours", embedding_size=8,
                                                       input_size=32), "test")  # fmt: skip
    mine, notes = tmp_path / "mine", tmp_path / "notes"
    mine.mkdir(), notes.mkdir()
    (mine / "metrics.json").write_text('{"loss": 0.1}')
    (mine / "roc.csv").write_text("my own")
    (notes / "notes.txt").write_text("mine")
    for out, why in [(mine, "not the metrics of a facetrain evaluation"),
                     (notes, "not empty and not an evaluation folder"),
                     (lfw / "eval", "inside the input")]:  # fmt: skip
        with pytest.raises(OutputError, match=why):
            evaluate_model(fm, [(str(pairs), str(lfw))], out=out, on_set=None)
    assert (mine / "roc.csv").read_text() == "my own" and not (lfw / "eval").exists()
    assert sorted(p.name for p in notes.iterdir()) == ["notes.txt"]
    ours = tmp_path / "ours"
    (ours / f"{tmp_path.name}.partial").mkdir(parents=True)  # a cut-short one's parts
    for _ in range(2):  # then its own folder again
        ev = evaluate_model(fm, [(str(pairs), str(lfw))], out=ours)
        saved = json.loads((ours / "metrics.json").read_text())
        assert saved["accuracy"] == next(iter(ev.results.values()))["accuracy"] > 0.8
    assert sorted(p.name for p in ours.iterdir()) == ["folds.csv", "metrics.json", "roc.csv",
                                                      "roc.png"]  # fmt: skip
