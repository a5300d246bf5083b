"""The named parts of a training run, each checked on one batch, without a whole run."""

from __future__ import annotations

import json

import pytest
import torch

from facetrain.data.packed import pack
from facetrain.run_folder import read_metrics
from facetrain.train import checkpoint
from facetrain.train.distributed import Dist
from facetrain.train.evaluator import preprocess_for
from facetrain.train.loop import setup
from facetrain.train.objective import build_objective
from facetrain.train.records import truncate_metrics
from facetrain.train.state import (
    Checkpointer,
    NonFiniteGuard,
    TrainingError,
    TrainState,
    finite_weights,
)
from helpers import make_faces, small_cfg


@pytest.fixture(scope="module")
def tiny_pack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("parts")
    pack(str(make_faces(tmp / "faces", ids=4, per=4)), tmp / "pack", progress=False)
    return tmp / "pack"


def batch(n=8, d=32, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    raw = torch.randn(n, d, generator=g, requires_grad=True)
    return raw, torch.arange(n) % classes, g


# --- the non-finite guard --------------------------------------------------------------


def test_the_guard_skips_then_rolls_back_then_gives_up():
    guard = NonFiniteGuard(max_in_a_row=3, max_rollbacks=2)
    assert [guard(f) for f in (True, False, False, True, False)] == [
        "ok", "skip", "skip", "ok", "skip",
    ]  # fmt: skip
    assert [guard(False) for _ in range(5)] == ["skip", "rollback", "skip", "skip", "rollback"]
    assert guard.rollbacks == 2
    with pytest.raises(TrainingError, match="still non-finite after 2 rollbacks"):
        for _ in range(3):
            guard(False)


def test_finite_weights_sees_one_nan():
    m = torch.nn.Linear(3, 2)
    assert finite_weights({"m": m})
    with torch.no_grad():
        m.weight[1, 2] = float("nan")
    assert not finite_weights({"m": m})


# --- the objective ---------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["softmax", "arcface", "cosface", "triplet", "contrastive"])
def test_every_objective_gives_a_finite_loss_with_gradients(loss, tmp_path):
    cfg = small_cfg(tmp_path, tmp_path / "r", loss=loss, center_loss_factor=0.01)
    obj = build_objective(cfg.objective, cfg.model.embedding_size, num_classes=4)
    raw, y, g = batch()
    value, extra = obj(raw, y, g)
    value.backward()
    assert torch.isfinite(value) and raw.grad.abs().sum() > 0
    assert set(extra) == {"triplet": {"triplets"}, "contrastive": {"pairs"}}.get(loss, {"acc"})
    assert (obj.head is None) == (loss in ("triplet", "contrastive"))


def test_the_margin_ramp_is_set_by_training_time(tmp_path):
    cfg = small_cfg(tmp_path, tmp_path / "r", loss="arcface", margin_m=0.4,
                    margin_warmup_epochs=2.0)  # fmt: skip
    obj = build_objective(cfg.objective, cfg.model.embedding_size, num_classes=4)
    assert obj.at(0.0) == {"margin": 0.0}
    assert obj.at(1.0) == {"margin": pytest.approx(0.2)}
    assert obj.at(5.0) == {"margin": pytest.approx(0.4)} and obj.head.margin.m == 0.4


def test_center_loss_moves_its_centres_towards_the_batch(tmp_path):
    cfg = small_cfg(tmp_path, tmp_path / "r", center_loss_factor=1.0, center_loss_alfa=0.5)
    obj = build_objective(cfg.objective, cfg.model.embedding_size, num_classes=4)
    raw, y, g = batch()
    before, _ = obj(raw.detach(), y, g)
    after, _ = obj(raw.detach(), y, g)
    assert after < before  # the centres moved half way to the samples


def test_the_prelogits_norm_penalty_adds_the_factor_times_the_mean_norm(tmp_path):
    """FaceNet's prelogits norm: the loss grows by factor × the batch's mean p-norm, and its
    gradient pulls every prelogit vector towards the origin."""
    raw, y, g = batch()
    losses, grads = [], []
    for factor in (0.0, 0.5):
        cfg = small_cfg(tmp_path, tmp_path / "r", prelogits_norm_factor=factor,
                        prelogits_norm_p=2.0)  # fmt: skip
        torch.manual_seed(0)  # the same head for both
        obj = build_objective(cfg.objective, cfg.model.embedding_size, num_classes=4)
        x = raw.detach().clone().requires_grad_(True)
        value, _ = obj(x, y, torch.Generator().manual_seed(0))
        value.backward()
        losses.append(value.detach())
        grads.append(x.grad)
    norms = (raw.detach().abs() + 1e-4).norm(dim=1)
    assert losses[1] - losses[0] == pytest.approx(0.5 * float(norms.mean()), rel=1e-5)
    extra = grads[1] - grads[0]  # the penalty's own gradient: along each vector, outwards
    assert ((extra * raw.detach()).sum(1) > 0).all()


def test_distillation_adds_the_gap_between_the_two_similarity_matrices(tmp_path):
    """distill_pairwise: beside each face's cosine to its teacher embedding, the student is
    held to the teacher's similarities between the batch's faces; a face the teacher could
    not embed (NaN) is left out of both."""
    raw, _, g = batch(n=6)
    teacher = torch.nn.functional.normalize(torch.randn(6, 32, generator=g), dim=1)
    teacher[2] = float("nan")
    values = []
    for w in (0.0, 2.0):
        cfg = small_cfg(tmp_path, tmp_path / "r", loss="distill", teacher="t",
                        distill_pairwise=w)  # fmt: skip
        obj = build_objective(cfg.objective, 32, num_classes=6, teacher=teacher)
        values.append(obj(raw.detach(), teacher, g)[0])
    keep = torch.tensor([True, True, False, True, True, True])
    own, t = torch.nn.functional.normalize(raw.detach()[keep], dim=1), teacher[keep]
    assert values[0] == pytest.approx(float((1 - (own * t).sum(1)).mean()), rel=1e-5)
    gap = float((own @ own.T - t @ t.T).pow(2).mean())
    assert values[1] - values[0] == pytest.approx(2.0 * gap, rel=1e-5) and gap > 0


# --- checkpoints -----------------------------------------------------------------------


def test_a_checkpoint_restores_weights_optimizer_and_state(tmp_path):
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    state = TrainState(epoch=2, batch=3, step=17, best=0.5, lr_scale=0.25)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    ck = Checkpointer(tmp_path, {"model": model}, opt, scaler, state, Dist(), "r")
    ck.save()
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    momentum = opt.state_dict()["state"][0]["momentum_buffer"].clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    opt.step()
    state.step, state.lr_scale = 99, 1.0
    assert ck.load()["step"] == 17
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    assert torch.equal(opt.state_dict()["state"][0]["momentum_buffer"], momentum)
    assert (state.step, state.lr_scale, state.epoch) == (17, 0.25, 2)


def test_a_damaged_pointer_file_falls_back_and_names_no_folder_outside(tmp_path):
    """checkpoints/last holding bytes that are not UTF-8 stopped the resume with a
    UnicodeDecodeError, and the next save too; a pointer edited to name a path ('../..')
    was followed. Such a pointer names nothing now: the resume takes `previous`, and the
    next save keeps the checkpoints the pointers name."""
    root = tmp_path / "checkpoints"
    for step in (1, 2):
        checkpoint.save(tmp_path, f"step-{step:08d}", {"w": torch.full((2,), float(step))},
                        {"step": step})  # fmt: skip
    for damaged in (b"\xff\xfe", b"../../elsewhere", b"step-00000002/../.."):
        (root / "last").write_bytes(damaged)
        tensors, meta = checkpoint.load(tmp_path)
        assert meta["step"] == 1 and tensors["w"].tolist() == [1.0, 1.0]  # `previous`
    checkpoint.save(tmp_path, "step-00000003", {"w": torch.zeros(2)}, {"step": 3})
    assert sorted(p.name for p in root.iterdir()) == ["last", "previous", "step-00000001",
                                                      "step-00000003"]  # fmt: skip
    assert checkpoint.load(tmp_path)[1]["step"] == 3


# --- the run folder --------------------------------------------------------------------


def test_metrics_are_read_past_torn_and_foreign_lines_and_cut_back_on_resume(tmp_path):
    lines = [json.dumps({"step": s, "loss": 1.0 / s}) for s in (1, 2, 3, 4)]
    (tmp_path / "metrics.jsonl").write_text(
        "\n".join([lines[0], "[1, 2]", lines[1], "not json", lines[2], lines[3][:9]]) + "\n"
    )
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3]
    truncate_metrics(tmp_path, 2)
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]


def test_a_resume_past_a_damaged_config_json_rewrites_it_and_says_so(tmp_path):
    """config.json edited by hand into something that is not a table of settings stopped a
    resume with JSONDecodeError. Now the resume writes it anew, the run's history says the
    settings before were unknown, and a later resume compares against the new record."""
    from facetrain.train.records import record_config

    run = tmp_path / "r"
    (run / "checkpoints" / "last").mkdir(parents=True)
    (run / "revision.txt").write_text("abc123\n")
    cfg = small_cfg(tmp_path / "faces", run)
    for damaged in ('{"model":', "[1]"):
        (run / "config.json").write_text(damaged)
        said = record_config(run, cfg)
        assert said and str(run / "config.json") in said and "holds this resume's" in said
        assert json.loads((run / "config.json").read_text()) == cfg.flat()
    history = (run / "revision.txt").read_text().splitlines()
    assert history[0] == "abc123" and len(history) == 3
    assert all(h.startswith("resumed with settings unknown: ") for h in history[1:])
    assert record_config(run, cfg.replace(epochs=5)) is None
    assert (run / "revision.txt").read_text().splitlines()[-1] == (
        "resumed with settings epochs=5 (was 2)"
    )


def test_a_history_or_metrics_log_that_is_not_utf8_does_not_stop_a_resume(tmp_path):
    """revision.txt and metrics.jsonl with bytes that are not UTF-8 (a copy from another
    system, a disk error) stopped a resume with UnicodeDecodeError, and the report too."""
    from facetrain.evaluate.report import write_report
    from facetrain.train.records import record_config, record_revision

    run = tmp_path / "r"
    (run / "checkpoints" / "last").mkdir(parents=True)
    cfg = small_cfg(tmp_path / "faces", run)
    (run / "config.json").write_text(json.dumps(cfg.flat()))
    (run / "revision.txt").write_bytes(b"abc\xff123\n")
    (run / "metrics.jsonl").write_bytes(b'\xff\xfe\n{"step": 1, "loss": 2.0}\n{"step": 2}\n')
    record_revision(run / "revision.txt", "def456")
    assert record_config(run, cfg.replace(epochs=3)) is None
    truncate_metrics(run, 1)
    assert [r["step"] for r in read_metrics(run)] == [1]
    assert (run / "revision.txt").read_text(errors="replace").splitlines()[1:] == [
        "resumed with def456", "resumed with settings epochs=3 (was 2)"]  # fmt: skip
    assert "abc\ufffd123" in write_report(run).read_text()


def test_the_preprocessing_record_comes_from_the_aligned_data(tmp_path):
    (tmp_path / "faces").mkdir()
    rec = {"mode": "box", "size": 160, "margin": 32}
    (tmp_path / "faces" / "align_config.json").write_text(json.dumps(rec))
    cfg = small_cfg(tmp_path / "faces", tmp_path / "r", normalize="per_image", eval_flip="none")
    pre = preprocess_for(cfg, 96)
    assert pre.alignment == rec and pre.input_size == 96 and pre.normalize == "per_image"
    assert pre.flip == "none" and pre.threshold is None  # set when the run ends


# --- a rollback that cannot help ends the run ------------------------------------------


def test_a_rollback_to_a_checkpoint_with_nan_weights_is_an_error_not_a_loop(tiny_pack, tmp_path):
    """`train --lr nan` used to roll back 1,256 times: the checkpoint held NaN weights."""
    run = setup(small_cfg(tiny_pack, tmp_path / "r"), Dist(), log=lambda *_: None)
    with torch.no_grad():
        next(run.model.parameters()).fill_(float("nan"))
    run.ckpt.save()
    run.metrics = type("Null", (), {"emit": lambda self, line: None})()
    with pytest.raises(TrainingError, match="already holds non-finite weights"):
        run.bad_step("rollback", epoch=0)
    assert checkpoint.load(tmp_path / "r") is not None


def test_metrics_deleted_during_a_run_start_again_with_a_warning(tmp_path):
    """Hostile finding 37: training wrote into the unlinked metrics.jsonl and the finished
    run had none, with no warning."""
    from facetrain.train.records import MetricsLog

    said = []
    m = MetricsLog(tmp_path, "", 0, log=said.append)
    m.emit({"step": 1, "loss": 1.0})
    (tmp_path / "metrics.jsonl").unlink()
    m.emit({"step": 2, "loss": 0.5})
    m.close()
    assert (tmp_path / "metrics.jsonl").read_text().strip() == '{"step": 2, "loss": 0.5}'
    assert any("was deleted while training" in s and "step 2" in s for s in said)


def test_a_resumed_run_says_its_data_changed(tmp_path):
    """Hostile finding 30: a run resumed after identities were deleted and added went on
    with its first snapshot without a word."""
    import shutil

    from facetrain.train.config import TrainConfig
    from facetrain.train.loop import train
    from helpers import make_faces

    faces = make_faces(tmp_path / "faces", ids=4, per=4)
    base = dict(data=[str(faces)], out=str(tmp_path / "run"), model="nn4_small2",
                embedding_size=32, batch_size=8, epoch_size=2, threads=1)  # fmt: skip
    said = []
    train(TrainConfig.of(**base, epochs=1), log=said.append)
    assert not any("data changed" in s for s in said)
    shutil.rmtree(faces / "id3")
    shutil.copytree(faces / "id0", faces / "id9")
    said.clear()
    train(TrainConfig.of(**base, epochs=2), log=said.append)
    assert any("the data changed since this run started" in s for s in said)
    shutil.rmtree(faces)  # the data gone (scratch space cleared): the snapshot holds it
    said.clear()
    train(TrainConfig.of(**base, epochs=3), log=said.append)
    assert any(f"{faces}: no such folder or list file; the run goes on with its snapshot" in s
               for s in said)  # fmt: skip
    assert checkpoint.load(tmp_path / "run")[1]["epoch"] == 3
    for damaged in ("{bad", "[1]"):  # the run's own snapshot damaged: named, with the way out
        (tmp_path / "run" / "pack" / "meta.json").write_text(damaged)
        with pytest.raises(TrainingError, match="the run's snapshot of its data; remove"):
            train(TrainConfig.of(**base, epochs=3), log=said.append)


def test_a_start_refused_after_packing_binds_no_data_to_its_run_folder(tmp_path):
    """A first start refused after its pack was made (a batch the packed data cannot fill:
    a photo listed could not be read), then the same --out with other data: the run
    trained on the first command's data, with only a warning that the data had changed. A
    run that never trained has no snapshot to keep."""
    from facetrain.data.packed import PackedDataset
    from facetrain.data.sampler import SamplerError
    from facetrain.train.config import TrainConfig
    from facetrain.train.loop import train
    from helpers import make_faces

    first = make_faces(tmp_path / "first", ids=4, per=4)
    (first / "id3" / "0.jpg").write_bytes(b"not a photo")  # listed: 4 of 4 identities fit
    other = make_faces(tmp_path / "other", ids=5, per=4)
    base = dict(out=str(tmp_path / "run"), model="nn4_small2", embedding_size=32, epochs=1,
                loss="triplet", batch_size=16, threads=1)  # fmt: skip
    with pytest.raises(SamplerError, match="only 3 have"):  # once packed, 3 of them
        train(TrainConfig.of(data=[str(first)], **base), log=lambda *_: None)
    assert (tmp_path / "run" / "pack" / "meta.json").exists()
    said = []
    train(TrainConfig.of(data=[str(other)], **base), log=said.append)
    assert any("packed from other data by a start that never trained" in s for s in said)
    assert not any("data changed" in s for s in said)
    assert PackedDataset(tmp_path / "run" / "pack", split=None).num_classes == 5


def test_a_checkpoint_the_disk_cannot_hold_is_an_os_error_and_leaves_the_last_one(
    tmp_path, monkeypatch
):
    """safetensors' own writer raised its SafetensorError on a full disk: a traceback, not
    the one line every full disk gets. It is now the OSError it reports, the half folder
    is removed, and `last` still names the checkpoint before."""
    import errno
    from pathlib import Path

    from safetensors import SafetensorError

    w = {"w": torch.arange(6.0)}
    checkpoint.save(tmp_path, "step-1", w, {"step": 1})

    def full(tensors, filename, metadata=None):  # as the writer fails on a full tmpfs
        Path(filename).write_bytes(b"half a file")
        raise SafetensorError(
            "Error while serializing: I/O error: No space left on device (os error 28)"
        )

    monkeypatch.setattr(checkpoint, "save_file", full)
    with pytest.raises(OSError) as e:
        checkpoint.save(tmp_path, "step-2", w, {"step": 2})
    assert e.value.errno == errno.ENOSPC
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last", "step-1"]
    tensors, meta = checkpoint.load(tmp_path)
    assert meta["step"] == 1 and torch.equal(tensors["w"], w["w"])
