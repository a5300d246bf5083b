"""Distillation: a student learns a teacher's embeddings from faces nobody labelled."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from facetrain.cli import app
from facetrain.inference.record import Preprocess, save_model
from facetrain.inference.saved import load_model
from facetrain.models import create_model
from facetrain.run_folder import read_metrics
from facetrain.train.loop import train
from helpers import make_faces, small_cfg

runner = CliRunner()


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A fixed network with a preprocessing record: what the student must imitate."""
    torch.manual_seed(7)
    net = create_model("nn4_small2", 32).eval()
    path = tmp_path_factory.mktemp("teacher") / "teacher.safetensors"
    return save_model(path, net, Preprocess(model="nn4_small2", embedding_size=32, input_size=96))


@pytest.fixture(scope="module")
def flat(tmp_path_factory):
    """Unlabelled faces: one flat folder, plus a file that is not an image."""
    root = tmp_path_factory.mktemp("flat")
    src = make_faces(root / "ids", ids=4, per=6)
    for k, p in enumerate(sorted(src.glob("*/*.jpg"))):
        (root / "faces").mkdir(exist_ok=True)
        p.rename(root / "faces" / f"{k:03d}.jpg")
    (root / "faces" / "broken.jpg").write_bytes(b"not a jpeg")
    return root / "faces"


def cached(run):
    """The teacher's embeddings kept in a run folder, in the order of its training faces."""
    parts = sorted((run / "teacher").glob("part-*.npz"))
    assert parts and (run / "teacher" / "work.json").is_file()
    return np.concatenate([np.load(p)["embeddings"] for p in parts])


def cfg_for(data, out, teacher, **kw):
    base = dict(loss="distill", teacher=str(teacher), embedding_size=32, input_size=80,
                lr=0.05, epochs=3, batch_size=8, epoch_size=3, flip=False)  # fmt: skip
    return small_cfg(data, out, **(base | kw))


def test_the_student_moves_towards_the_teacher(flat, teacher, tmp_path):
    said = []
    train(cfg_for(flat, tmp_path / "run", teacher, epochs=4), log=said.append)
    lines = [d for d in read_metrics(tmp_path / "run") if "cos" in d]
    assert lines[-1]["cos"] > lines[0]["cos"] + 0.05, [d["cos"] for d in lines]
    emb = cached(tmp_path / "run")
    assert emb.shape == (24, 32) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert any("embedding 24 faces once" in s for s in said)
    skipped = (tmp_path / "run" / "pack" / "skipped.tsv").read_text()
    assert "broken.jpg" in skipped  # the unreadable file: skipped with its reason
    net, pre = load_model(tmp_path / "run")
    assert pre.input_size == 80 and pre.embedding_size == 32


def test_the_teacher_sees_its_faces_in_its_own_preprocessing(flat, teacher, tmp_path):
    """The cached embedding of a face equals the teacher embedding that face alone."""
    import facetrain

    train(cfg_for(flat, tmp_path / "run", teacher, epochs=1), log=lambda *_: None)
    emb = cached(tmp_path / "run")
    paths = (tmp_path / "run" / "pack" / "paths.txt").read_text().split()
    first = np.asarray(Image.open(paths[0]).convert("RGB"))
    direct = facetrain.load(str(teacher)).embed([first], align="never")[0]
    assert np.abs(emb[0] - direct).max() < 1e-5


def test_a_smaller_student_gets_a_projection_that_export_leaves_out(flat, teacher, tmp_path):
    train(cfg_for(flat, tmp_path / "run", teacher, embedding_size=16), log=lambda *_: None)
    from safetensors.torch import load_file

    weights = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert not any(k.startswith("head") for k in weights)
    assert load_model(tmp_path / "run")[1].embedding_size == 16
    from facetrain.train import checkpoint

    tensors, _ = checkpoint.load(tmp_path / "run")
    assert tensors["head.weight"].shape == (32, 16)  # the projection, kept for resuming


def test_a_resumed_distillation_gives_the_same_losses(flat, teacher, tmp_path):
    flat_lr = {"schedule": "constant"}  # the same rate whatever the number of epochs
    train(cfg_for(flat, tmp_path / "a", teacher, epochs=3, **flat_lr), log=lambda *_: None)
    train(cfg_for(flat, tmp_path / "b", teacher, epochs=1, **flat_lr), log=lambda *_: None)
    (tmp_path / "b" / "teacher" / "part-000000.npz").unlink()  # as if killed while caching
    train(cfg_for(flat, tmp_path / "b", teacher, epochs=3, **flat_lr), log=lambda *_: None)

    def losses(run):
        lines = [d for d in read_metrics(run) if "cos" in d]
        return [d["step"] for d in lines], [d["loss"] for d in lines]

    (steps_a, a), (steps_b, b) = losses(tmp_path / "a"), losses(tmp_path / "b")
    assert steps_a == steps_b == list(range(1, 10))
    assert a == pytest.approx(b, rel=1e-6)


@pytest.mark.parametrize(
    "teacher_arg, words",
    [("nope.safetensors", "teacher nope.safetensors"), ("pretrained:nobody", "unknown pretrained")],
)
def test_a_teacher_that_cannot_be_opened_is_one_clear_error(flat, tmp_path, teacher_arg, words):
    args = ["train", "--data", str(flat), "--out", str(tmp_path / "r"), "--loss", "distill",
            "--set", f"teacher={teacher_arg}", "--set", "input_size=80", "--model", "nn4_small2",
            "--batch-size", "8"]  # fmt: skip
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and words in r.output and "Traceback" not in r.output
    assert not (tmp_path / "r" / "pack").exists()  # said before the faces were packed


def test_a_teacher_without_a_preprocessing_record_is_one_clear_error(flat, tmp_path):
    """Weights saved by plain safetensors carry no record of how to feed the network."""
    from safetensors.torch import save_file

    bare = tmp_path / "bare.safetensors"
    save_file({"model.w": torch.zeros(2)}, str(bare))
    args = ["train", "--data", str(flat), "--out", str(tmp_path / "r"), "--loss", "distill",
            "--set", f"teacher={bare}", "--model", "nn4_small2", "--batch-size", "8"]  # fmt: skip
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert f"teacher {bare}" in r.output and "no facetrain preprocessing record" in r.output
    assert not (tmp_path / "r" / "pack").exists()


def test_distill_needs_a_teacher_and_a_teacher_needs_distill(flat, tmp_path):
    r = runner.invoke(app, ["train", "--data", str(flat), "--loss", "distill"])
    assert r.exit_code == 2 and "loss distill and teacher=MODEL go together" in r.output


def test_a_folder_without_faces_is_one_clear_error(teacher, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no faces")
    args = ["train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "r"),
            "--loss", "distill", "--set", f"teacher={teacher}"]  # fmt: skip
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and "empty: no images to pack (a folder of face photos)" in r.output
    assert not (tmp_path / "r").exists()  # refused before a run folder was made


def test_centred_targets_are_the_teachers_embeddings_less_their_mean(flat, teacher, tmp_path):
    from facetrain.train.config import TrainConfig
    from facetrain.train.distributed import Dist
    from facetrain.train.loop import setup

    cfg = cfg_for(flat, tmp_path / "run", teacher, distill_center=True)
    assert isinstance(cfg, TrainConfig)
    run = setup(cfg, Dist(), log=lambda *_: None)
    raw = cached(tmp_path / "run")
    want = raw - raw.mean(0)
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    assert np.allclose(run.objective.teacher.numpy(), want, atol=1e-3)  # float32 centring
    cos_raw = (raw @ raw.T)[np.triu_indices(len(raw), 1)].mean()
    cos_centred = (want @ want.T)[np.triu_indices(len(want), 1)].mean()
    assert cos_centred < cos_raw  # the faces spread out


def test_a_teacher_cache_put_in_a_new_folder_is_used_not_refused(flat, teacher, tmp_path):
    """Several runs share one teacher pass (bench/gpu_recipes.py): a folder holding only a
    copied `teacher/` is a run folder to start in, and its embeddings are not made again."""
    import shutil

    train(cfg_for(flat, tmp_path / "a", teacher, epochs=1), log=lambda *_: None)
    shutil.copytree(tmp_path / "a" / "teacher", tmp_path / "b" / "teacher")
    part = tmp_path / "b" / "teacher" / "part-000000.npz"
    with np.load(part) as z:  # marked: the run must learn these, not new ones
        np.savez(part, embeddings=z["embeddings"] * -1, problems=z["problems"])
    said = []
    train(cfg_for(flat, tmp_path / "b", teacher, epochs=1), log=said.append)
    assert not any("embedding 24 faces once" in s for s in said)
    cos = [[d["cos"] for d in read_metrics(tmp_path / r) if "cos" in d][0] for r in "ab"]
    assert cos[1] == pytest.approx(-cos[0], abs=1e-5)  # the same first step, targets negated
    (tmp_path / "c" / "teacher").mkdir(parents=True)  # no meta.json: not facetrain's
    (tmp_path / "c" / "teacher" / "notes.txt").write_text("mine")
    with pytest.raises(Exception, match="not a facetrain run folder"):
        train(cfg_for(flat, tmp_path / "c", teacher, epochs=1), log=lambda *_: None)


def test_a_teacher_cache_of_the_earlier_layout_is_made_again(flat, teacher, tmp_path):
    """A run folder whose teacher cache an earlier facetrain wrote (meta.json, part-NNNNN.npy)
    resumes: the old cache is replaced by the one resumable embedding's, never mixed in."""
    train(cfg_for(flat, tmp_path / "a", teacher, epochs=1), log=lambda *_: None)
    old = tmp_path / "b" / "teacher"
    old.mkdir(parents=True)
    (old / "meta.json").write_text("{}")
    np.save(old / "part-00000.npy", np.zeros((24, 32), np.float32))
    said = []
    train(cfg_for(flat, tmp_path / "b", teacher, epochs=1), log=said.append)
    assert any("embedding 24 faces once (0 done before)" in s for s in said)
    assert sorted(p.name for p in old.iterdir()) == ["part-000000.npz", "work.json"]
    assert np.array_equal(cached(tmp_path / "b"), cached(tmp_path / "a"))


def test_the_teachers_pass_over_aligned_faces_needs_no_detector(flat, teacher, tmp_path,
                                                                 monkeypatch):  # fmt: skip
    """Aligned training faces are taken or re-warped, never detected: the teacher's pass runs
    where the detector's package is missing (the lent GPU machine had none)."""
    monkeypatch.setitem(__import__("sys").modules, "facenet_pytorch", None)  # import fails
    train(cfg_for(flat, tmp_path / "run", teacher, epochs=1), log=lambda *_: None)
    emb = cached(tmp_path / "run")
    assert emb.shape == (24, 32) and np.isfinite(emb).all()
