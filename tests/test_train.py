"""Training engine: exact resume after kill -9, schedules, samplers, errors, fine-tuning."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from facetrain.data.packed import PackedDataset, pack
from facetrain.data.sampler import EpochBatches, PKBatches, SamplerError
from facetrain.train.loop import TrainingError, train
from facetrain.train.schedule import Schedule, read_schedule_file
from helpers import lfw_style, make_faces, small_cfg, write_bin_and_pairs


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("faces")
    pack(str(make_faces(tmp / "faces")), tmp / "pack", progress=False)
    return tmp / "pack"


def losses(run: Path) -> list[tuple[int, float]]:
    out = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        d = json.loads(line)
        if "loss" in d and not d.get("epoch_end"):
            out.append((d["step"], d["loss"]))
    return out


def epoch_losses(run: Path) -> list[tuple[int, float]]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [(d["epoch"], d["loss"]) for d in lines if d.get("epoch_end")]


def test_kill_minus_9_then_resume_gives_the_same_losses(packed, tmp_path):
    args = [
        "--data",
        str(packed),
        "--model",
        "nn4_small2",
        "--loss",
        "softmax",
        "--epochs",
        "4",
        "--batch-size",
        "16",
        "--lr",
        "0.05",
        "--set",
        "embedding_size=32",
        "--set",
        "epoch_size=3",
        "--set",
        "log_every=1",
        "--set",
        "threads=1",
        "--set",
        "checkpoint_every_steps=2",
        "--set",
        "center_loss_factor=0.01",
        "--set",
        "keep_probability=0.8",
    ]
    cmd = [sys.executable, "-m", "facetrain", "train"]
    ref, run = tmp_path / "ref", tmp_path / "run"
    subprocess.run([*cmd, *args, "--out", str(ref)], check=True, capture_output=True)
    proc = subprocess.Popen(
        [*cmd, *args, "--out", str(run)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    metrics = run / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline:
        if metrics.exists() and len(losses(run)) >= 5:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_killed = len(losses(run))
    assert 5 <= n_killed < 12, "the kill should land mid-run"
    done = subprocess.run(
        [*cmd, *args, "--out", str(run)], check=True, capture_output=True, text=True
    )
    assert "resuming" in done.stderr  # the killed process's lock was taken over
    assert losses(run) == losses(ref)  # every step's loss, bit for bit
    assert [s for s, _ in losses(run)] == list(range(1, 13))
    assert epoch_losses(run) == epoch_losses(ref)  # each epoch's mean, over all its steps


def test_settings_the_run_will_not_read_are_said_before_it_trains(packed, tmp_path):
    """A setting moved from its default under a choice that never reads it (lr_steps on a
    cosine schedule, a miner without triplets) changed nothing in silence: the run was not
    the one its settings described. Each is named with the choice that reads it."""
    from typer.testing import CliRunner

    from facetrain.cli import app
    from facetrain.train.config import TrainConfig
    from facetrain.train.settings import idle_settings

    cfg = TrainConfig.of(data=["x"], lr_steps=[3], optimizer="adam", momentum=0.5,
                         miner="hardest")  # fmt: skip
    assert idle_settings(cfg) == [
        "lr_steps = [3] does nothing with schedule cosine (it is read with schedule step)",
        "momentum = 0.5 does nothing with optimizer adam (it is read with optimizer sgd or "
        "rmsprop)",
        "miner = 'hardest' does nothing with loss softmax (it is read with loss triplet)",
    ]
    assert idle_settings(cfg.replace(schedule="step", optimizer="sgd", loss="triplet")) == []
    args = ["train", "--data", str(packed), "--out", str(tmp_path / "run"), "--epochs", "1",
            "--set", "embedding_size=32", "--set", "epoch_size=2",
            "--set", "lr_steps=3", "--set", "crop=112"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())
    assert "warning: lr_steps = [3] does nothing with schedule cosine" in said, said
    # a crop no smaller than the faces (FaceNet's 160 of 182, given 112×112 faces)
    assert "warning: crop = 112 does nothing: the faces are 112×112; a crop is smaller" in said
    from facetrain.train.loop import _say_before_training

    said_96: list[str] = []  # a crop smaller than the faces: nothing said of it
    _say_before_training(cfg.replace(data=[str(packed)], crop=96), PackedDataset(packed),
                         said_96.append)  # fmt: skip
    assert said_96 and not any("crop" in m for m in said_96), said_96


def test_a_second_train_on_a_busy_run_folder_says_who_holds_it(packed, tmp_path):
    """One process at a time on a run folder: the second says which process trains there
    and changes nothing (it used to 'resume' alongside and crash the first)."""
    import os

    from typer.testing import CliRunner

    from facetrain.cli import app
    from facetrain.lock import held

    run = tmp_path / "run"
    run.mkdir()
    args = ["train", "--data", str(packed), "--out", str(run), "--epochs", "1",
            "--set", "embedding_size=32", "--set", "epoch_size=2"]  # fmt: skip
    with held(run / ".lock", "x"):  # this test process "trains" there
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 2 and f"in use by process {os.getpid()}" in res.output
        assert "Traceback" not in res.output and sorted(os.listdir(run)) == [".lock"]
    res = CliRunner().invoke(app, args)  # free again: it trains (a bare .lock is no stranger)
    assert res.exit_code == 0, res.output
    assert (run / "model.safetensors").exists()


def test_schedule_file_facenet_format(tmp_path):
    f = tmp_path / "lr.txt"
    f.write_text("# FaceNet-style\n0: 0.1\n3: 0.01  # drop\n5: 0.001\n8: -1\n")
    sched = Schedule("file", entries=read_schedule_file(f))
    assert [sched(e) for e in (0, 2.9, 3, 4.5, 5, 7.99)] == [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    assert sched(8) < 0 and sched(20) < 0  # at and after the last line: its value
    f.write_text("0: 0.1\n2: 0.05\n")
    assert Schedule("file", entries=read_schedule_file(f))(10) == 0.05
    f.write_text("1: 0.1\n")
    with pytest.raises(ValueError, match="epoch 0"):
        read_schedule_file(f)
    for rate in ("nan", "inf", "1e999"):  # not a run of non-finite steps, but the line
        f.write_text(f"0: 0.1\n2: {rate}\n")
        with pytest.raises(ValueError, match=f"{f}:2: the rate must be a number"):
            read_schedule_file(f)
    f.write_bytes(b"\xff\xd8\xff\xe0 a photo given by mistake")
    with pytest.raises(ValueError, match=f"{f}: not a text file of 'epoch: learning_rate'"):
        read_schedule_file(f)


def test_a_schedule_files_stop_ends_the_run_with_its_model(packed, tmp_path):
    """FaceNet's `-1` in a schedule file: the run stops at that epoch, says so, and ends as
    a finished run does (its model written); run again, it trains nothing more."""
    f = tmp_path / "lr.txt"
    f.write_text("0: 0.05\n1: -1\n")
    cfg = small_cfg(packed, tmp_path / "run", epochs=4, schedule="file", schedule_file=str(f))
    said: list[str] = []
    train(cfg, log=said.append)
    assert "the schedule stops training at epoch 1" in said
    assert [step for step, _ in losses(tmp_path / "run")] == [1, 2, 3]  # epoch 0's 3 steps
    assert (tmp_path / "run" / "model.safetensors").exists()
    train(cfg, log=said.append)
    assert [step for step, _ in losses(tmp_path / "run")] == [1, 2, 3]


def test_a_schedule_files_stop_verifies_the_weights_it_leaves(packed, tmp_path):
    """A stop between the epochs `eval_every` verifies: the weights the model holds are
    verified at the stop (their figures are the run's and the checkpoint's), not left with
    an earlier epoch's; run again, even with more --epochs, the model is left as it is;
    with the file changed to go on, the run trains on from where it stopped."""
    binf, _ = write_bin_and_pairs(packed.parent / "faces", tmp_path)
    f, run = tmp_path / "lr.txt", tmp_path / "run"
    f.write_text("0: 0.05\n3: -1\n")
    cfg = small_cfg(packed, run, epochs=6, schedule="file", schedule_file=str(f), eval_every=2,
                    eval_bins=[str(binf)])  # fmt: skip
    said: list[str] = []
    result = train(cfg, log=said.append)
    evals = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [(d["epoch"], d["step"]) for d in evals if d.get("eval") == "syn"]
    assert evals == [(1, 6), (2, 9)]  # epoch 1 by eval_every=2, epoch 2 by the stop
    assert said.index("the schedule stops training at epoch 3") < len(said) - 1
    assert "epoch 2 step 9: syn accuracy" in said[-1]
    state = json.loads((run / "checkpoints" / "step-00000009" / "state.json").read_text())
    assert (state["epoch"], state["eval_due"], state["model_written"]) == (3, None, 9)
    assert state["last_eval"] == result
    model = (run / "model.safetensors").read_bytes()

    def again(epochs: int) -> dict:
        said.clear()
        return train(small_cfg(packed, run, epochs=epochs, schedule="file", schedule_file=str(f),
                               eval_every=2, eval_bins=[str(binf)]), log=said.append)  # fmt: skip

    for epochs in (6, 8):
        assert again(epochs) == result
        assert said == [f"{run}: trained (until its schedule file stopped it) and its "
                        "model.safetensors written, which is left as it is; to train on, "
                        "change the schedule file"]  # fmt: skip
        assert (run / "model.safetensors").read_bytes() == model
    f.write_text("0: 0.05\n3: 0.01\n4: -1\n")  # the owner lets it go on for an epoch
    again(6)
    assert said[0] == f"resuming {run} at epoch 3, batch 0 (step 9)"
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(d["step"], d["lr"]) for d in lines if "lr" in d][-3:] == [(10, 0.01), (11, 0.01),
                                                                       (12, 0.01)]  # fmt: skip
    assert [(d["epoch"], d["step"]) for d in lines if d.get("eval") == "syn"][-1] == (3, 12)
    assert "the schedule stops training at epoch 4" in said
    assert (run / "model.safetensors").read_bytes() != model


def test_a_run_records_its_schedule_files_rates_and_each_change(packed, tmp_path):
    """The file is read at every resume (FaceNet read it every epoch, to change a run's
    course): the rates a run trains by are recorded in it, a change is written to its
    history, and a file gone by a resume leaves the run its recorded rates."""
    f, run = tmp_path / "lr.txt", tmp_path / "run"

    def lrs(epochs: int, said: list) -> list[float]:
        cfg = small_cfg(packed, run, epochs=epochs, schedule="file", schedule_file=str(f))
        train(cfg, log=said.append)
        lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        return [d["lr"] for d in lines if "lr" in d]

    f.write_text("0: 0.05\n5: 0.01\n")
    assert lrs(1, []) == [0.05] * 3
    f.write_text("0: 0.05\n1: 0.02\n")  # the owner changes course
    assert lrs(2, []) == [0.05] * 3 + [0.02] * 3
    history = (run / "revision.txt").read_text().splitlines()
    assert history[1:] == ["resumed with settings epochs=2 (was 1)",
                           "resumed with schedule_file rates=[[0, 0.05], [1, 0.02]] "
                           "(was [[0, 0.05], [5, 0.01]])"]  # fmt: skip
    f.unlink()
    said: list[str] = []
    assert lrs(3, said) == [0.05] * 3 + [0.02] * 6
    assert (f"warning: schedule_file {f}: No such file or directory; the run goes on with "
            f"the rates it recorded ({run / 'schedule.json'})") in said  # fmt: skip
    assert (run / "revision.txt").read_text().splitlines()[1:] == history[1:] + [
        "resumed with settings epochs=3 (was 1)"]  # fmt: skip
    from facetrain.evaluate.report import write_report

    page = write_report(run).read_text()  # the rates it trains by, not an `lr` it ignores
    assert "batch_size <b>16</b>, schedule <b>file: 0: 0.05, 1: 0.02</b></p>" in page
    assert "<li>resumed with schedule_file rates=[[0, 0.05], [1, 0.02]]" in page
    with pytest.raises(TrainingError, match=f"schedule_file {f}: No such file"):
        train(small_cfg(packed, tmp_path / "new", schedule="file", schedule_file=str(f)))


def test_schedules_shapes():
    cos = Schedule("cosine", lr=1.0, epochs=10, warmup_epochs=2)
    assert cos(0) < 0.01 and cos(1) == pytest.approx(0.5, abs=1e-3)
    assert cos(2) == pytest.approx(1.0) and cos(6) == pytest.approx(0.5) and cos(10) == 0.0
    step = Schedule("step", lr=1.0, steps=(3, 6), gamma=0.1)
    assert [step(e) for e in (0, 3, 6)] == pytest.approx([1.0, 0.1, 0.01])
    poly = Schedule("poly", lr=1.0, epochs=4, power=2.0)
    assert poly(2) == pytest.approx(0.25)


def test_samplers():
    labels = np.repeat(np.arange(6), [2, 5, 5, 5, 1, 5])
    s = PKBatches(labels, p=3, k=4, extra=2, seed=1)
    b = s.batch(0, 0)
    assert len(b) == 14 and b == s.batch(0, 0) and b != s.batch(0, 1)
    counts = np.bincount(labels[b[:12]], minlength=6)
    assert sorted(counts[counts > 0]) == [4, 4, 4]
    assert set(labels[b[12:]]).isdisjoint(set(labels[b[:12]]))
    assert len(PKBatches(labels, p=3, k=4, extra=3).batch(0, 0)) == 15  # every other identity
    left = r"extra_identities=4, but only 3 identities are left besides the batch's P=3"
    with pytest.raises(SamplerError, match=left + r" \(--set extra_identities=3 at most\)"):
        PKBatches(labels, p=3, k=4, extra=4)  # (its batches held 15 faces, not the 16 said)
    with pytest.raises(SamplerError, match="more than any identity has"):
        PKBatches(labels, p=2, k=6)
    with pytest.raises(
        SamplerError, match=r"only 4 have .* a batch of 4 x 4 fits \(--batch-size 16"
    ):
        PKBatches(labels, p=5, k=4)
    from facetrain.train.loop import _batch_said  # as a run's first line says them

    assert _batch_said(s, 14) == "14 faces (3 identities × 4, + 2 of other identities)"
    assert _batch_said(PKBatches(labels, p=2, k=5), 12) == (
        "10 faces (2 identities × 5; --batch-size 12 in whole identities)")  # fmt: skip
    e = EpochBatches(10, 4, seed=0, batches_per_epoch=5)
    seen = [i for b in range(5) for i in e.batch(0, b)]
    assert len(seen) == 20 and sorted(seen[:8]) == sorted(set(seen[:8]))
    with pytest.raises(SamplerError, match="larger than the dataset"):
        EpochBatches(10, 11)


def test_clear_errors(tmp_path, packed):
    with pytest.raises(ValueError, match="no such folder"):
        train(small_cfg(tmp_path / "missing", tmp_path / "r1"), log=lambda *_: None)
    one = tmp_path / "one"
    make_faces(one, ids=1, per=4)
    with pytest.raises(TrainingError, match="at least 2 identities"):
        train(small_cfg(one, tmp_path / "r2"), log=lambda *_: None)
    with pytest.raises(SamplerError, match="larger than the dataset"):
        train(small_cfg(packed, tmp_path / "r3", batch_size=1000), log=lambda *_: None)
    with pytest.raises(SamplerError, match="more than any identity"):
        train(
            small_cfg(packed, tmp_path / "r4", loss="triplet", images_per_identity=20),
            log=lambda *_: None,
        )


def test_batches_that_cannot_fit_a_folder_are_refused_before_it_is_packed(tmp_path):
    """A batch larger than the listed faces, or a K no identity has, is said before a
    photo is read, not after the whole folder was packed, and the run folder the start
    made is removed; the labels listed are those the pack then holds."""
    faces = make_faces(tmp_path / "faces", ids=4, per=3)
    (tmp_path / "lr.txt").write_text("0: 0.05\n")  # (its rates are a start's record too)
    cfg = small_cfg(faces, tmp_path / "r1", batch_size=13, schedule="file",
                    schedule_file=str(tmp_path / "lr.txt"))  # fmt: skip
    with pytest.raises(SamplerError, match=r"larger than the dataset \(12 images\)"):
        train(cfg, log=lambda *_: None)
    cfg = small_cfg(faces, tmp_path / "r2", loss="triplet", images_per_identity=4)
    with pytest.raises(SamplerError, match=r"more than any identity has \(max 3\)"):
        train(cfg, log=lambda *_: None)
    for run in ("r1", "r2"):  # not one image read, and no run folder left behind that
        assert not (tmp_path / run).exists()  # reads as a run that has not finished
    (tmp_path / "r3").mkdir()  # a folder the owner made is theirs: kept, with the records
    with pytest.raises(SamplerError, match="larger than the dataset"):
        train(small_cfg(faces, tmp_path / "r3", batch_size=13), log=lambda *_: None)
    assert (tmp_path / "r3" / "config.json").exists()
    (faces / "id3" / "2.jpg").write_bytes(b"not a photo")  # skipped by the pack: 11 kept
    listed = []
    pack(str(faces), tmp_path / "pack", progress=False, before_writing=listed.append)
    ds = PackedDataset(tmp_path / "pack")
    assert listed[0].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert ds.labels.tolist() == listed[0].tolist()[:-1]


def test_images_the_runs_pack_leaves_out_are_said_before_it_trains(tmp_path):
    """Photos of many sizes given to train: its raw pack left out 111 of 120, each with
    why in its skipped.tsv, and the run said only that its batch was larger than the 9
    left. It now says how many it packed and skipped, and why for the first."""
    from PIL import Image

    faces = make_faces(tmp_path / "faces", ids=3, per=6)
    for p in sorted((faces / "id1").iterdir())[:2]:
        Image.open(p).resize((100, 100)).save(p)
    said = []
    train(small_cfg(faces, tmp_path / "run", epochs=1, batch_size=8), log=said.append)
    where = tmp_path / "run" / "pack"
    line = next(m for m in said if m.startswith("packed"))
    assert line.startswith(f"packed 16 of 18 images into {where}; 2 skipped, each with why "
                           f"in {where / 'skipped.tsv'} (the first: {faces / 'id1' / '0.jpg'}: "
                           "100x100 differs from the pack's 112x112")  # fmt: skip
    assert said.index(line) < next(i for i, m in enumerate(said) if m.startswith("training"))
    said.clear()
    train(small_cfg(faces, tmp_path / "run", epochs=2, batch_size=8), log=said.append)
    assert not any(m.startswith("packed") for m in said)  # said once, when it packed


def test_init_from_names_what_it_cannot_start_from(packed, tmp_path):
    """A run started from weights it cannot use stops before training with the reason: the
    same model with another embedding size (torch's own error was a traceback), another
    model, a file that holds no weights, a run that saved none, a path or name that is not."""
    from safetensors.torch import save_file

    from facetrain.models import create_model

    def saved(name: str, size: int) -> Path:
        state = create_model(name, size).state_dict()
        save_file({f"model.{k}": v.contiguous() for k, v in state.items()}, str(tmp_path / name))
        return tmp_path / name

    (tmp_path / "junk").write_bytes(b"not weights")
    (tmp_path / "no-run").mkdir()
    for source, why in (
        (saved("nn4_small2", 128), r"do not fit this run's model \(linear.weight is "
                                   r"\[128, 736\] there, \[32, 736\] here.*embedding_size"),
        (saved("mobilefacenet", 32), r"do not fit this run's model \(missing \d+ \(e.g. "),
        (tmp_path / "junk", "not a weights file"),
        (tmp_path / "no-run", "no checkpoint to initialise from"),
        (tmp_path / "absent.safetensors", "no such weights file or run folder"),
        ("pretrained:nope", "unknown pretrained model 'nope'"),
    ):  # fmt: skip
        with pytest.raises(TrainingError, match=why):
            train(small_cfg(packed, tmp_path / "run", init_from=str(source)), log=lambda *_: None)
        assert not (tmp_path / "run" / "model.safetensors").exists()


def test_a_fine_tune_from_a_run_not_yet_finished_takes_its_network(packed, tmp_path):
    """A run with checkpoints and no final weights (still training, or stopped) has no
    record to read: `init_from` of it alone was refused ("give this run the source's model
    and embedding_size", naming neither). Its config.json says them."""
    from facetrain.train.config import resolve

    src = tmp_path / "src"
    train(small_cfg(packed, src, model="nn4_small2_bn", input_size=80), log=lambda *_: None)
    (src / "model.safetensors").unlink()
    cfg = resolve(None, {"data": [str(packed)], "out": str(tmp_path / "ft")}, None,
                  [f"init_from={src}", "epochs=1", "epoch_size=1", "batch_size=16"])  # fmt: skip
    m = cfg.model
    assert (m.arch, m.embedding_size, m.input_size) == ("nn4_small2_bn", 32, 80)
    said: list[str] = []
    train(cfg, log=said.append)
    assert any(f"from {src}" in line for line in said), said
    assert (tmp_path / "ft" / "model.safetensors").exists()


def test_each_optimizer_moves_the_weights_downhill():
    """Every `optimizer` the settings accept is the torch optimizer of that name, with the
    run's rate and weight decay, and lowers a least-squares loss in 30 steps."""
    from facetrain.train.build import build_optimizer
    from facetrain.train.settings import OPTIMIZERS, OptimSettings

    torch.manual_seed(0)
    x, w = torch.randn(64, 8), torch.randn(8, 1)
    for name in OPTIMIZERS:
        layer = torch.nn.Linear(8, 1)
        lr = 10.0 if name == "adadelta" else 0.05  # Adadelta's rate scales its own step
        opt = build_optimizer(OptimSettings(optimizer=name, lr=lr, weight_decay=1e-4),
                              layer.parameters())  # fmt: skip
        assert type(opt).__name__.lower() == name
        assert opt.param_groups[0]["lr"] == lr and opt.param_groups[0]["weight_decay"] == 1e-4
        losses = []
        for _ in range(30):
            loss = ((layer(x) - x @ w) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < 0.7 * losses[0], (name, losses[0], losses[-1])


def test_faces_of_another_size_without_a_record_are_named_before_training(tmp_path):
    """Photos or crops made elsewhere trained silently, and the model was recorded as
    trained on 112x112 five-point faces, which is how photos are aligned for it later."""
    said: dict[str, list[str]] = {}
    for case, size, record in [("crops", 150, False), ("recorded", 150, True),
                               ("standard", 112, False)]:  # fmt: skip
        data = make_faces(tmp_path / case, ids=2, per=8, size=size)
        if record:
            (data / "align_config.json").write_text(json.dumps({"mode": "box", "size": 150}))
        said[case] = []
        train(small_cfg(data, tmp_path / f"run-{case}", epochs=1, epoch_size=1),
              log=said[case].append)  # fmt: skip
    warned = {case: [m for m in msgs if "no alignment record" in m] for case, msgs in said.items()}
    assert len(warned["crops"]) == 1 and "150x150" in warned["crops"][0]
    assert "facetrain align" in warned["crops"][0]
    assert warned["recorded"] == [] and warned["standard"] == []
    assert all((tmp_path / f"run-{case}" / "model.safetensors").exists() for case in said)
    # what is trained on what is said once, as the run starts, from the pack it made
    meta = json.loads((tmp_path / "run-standard" / "pack" / "meta.json").read_text())
    start = [m for m in said["standard"] if m.startswith("training ")]
    assert len(start) == 1, said["standard"]
    assert f"on {meta['splits']['train']} faces of 2 identities" in start[0], start


@pytest.mark.parametrize("loss", ["triplet", "contrastive", "cosface"])
def test_other_losses_train(packed, tmp_path, loss):
    cfg = small_cfg(packed, tmp_path / loss, loss=loss, images_per_identity=4, batch_size=16)
    said: list[str] = []
    train(cfg, log=said.append)
    made = " (4 identities × 4)" if loss != "cosface" else ""  # P×K: how a batch is made
    assert any(f"an epoch of 16 faces{made}, " in m for m in said), said
    ls = [v for _, v in losses(tmp_path / loss)]
    assert len(ls) == 6 and all(np.isfinite(ls))
    assert (tmp_path / loss / "model.safetensors").exists()
    assert list((tmp_path / loss / "tensorboard").iterdir())


def test_fine_tune_with_other_identities(packed, tmp_path):
    train(small_cfg(packed, tmp_path / "base", loss="arcface"), log=lambda *_: None)
    other = tmp_path / "other"
    make_faces(other, ids=5, per=6)
    msgs = []
    cfg = small_cfg(
        other,
        tmp_path / "ft",
        loss="arcface",
        init_from=str(tmp_path / "base"),
        freeze_backbone_epochs=1,
    )
    train(cfg, log=msgs.append)
    assert any("class centres from its embeddings" in m for m in msgs)  # a new margin head
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "base" / "model.safetensors"))
    b = load_file(str(tmp_path / "ft" / "model.safetensors"))
    first = "model.body.0.0.weight"
    assert not (a[first] == b[first]).all()  # trained on after the frozen epoch


def test_margin_loss_warm_starts_from_a_softmax_run(packed, tmp_path):
    """softmax → ArcFace on the same identities: the softmax rows become the class centres."""
    from facetrain.train import checkpoint

    train(small_cfg(packed, tmp_path / "soft"), log=lambda *_: None)
    msgs = []
    # lr 0: the fine-tune run saves exactly what it started from
    cfg = small_cfg(
        packed, tmp_path / "arc", loss="arcface", epochs=1, lr=0.0, init_from=str(tmp_path / "soft")
    )
    train(cfg, log=msgs.append)
    assert any("class centres from the softmax weights" in m for m in msgs), msgs
    soft = checkpoint.load(tmp_path / "soft", "last")[0]
    arc = checkpoint.load(tmp_path / "arc", "last")[0]
    assert torch.equal(arc["head.weight"], soft["head.fc.weight"])
    assert torch.equal(arc["model.body.0.0.weight"], soft["model.body.0.0.weight"])


def test_margin_loss_accuracy_is_logged_without_the_margin(packed, tmp_path):
    """The logged training accuracy of a margin loss is the plain nearest-class accuracy: with
    the weights frozen (lr 0) it is the same for margin 0.5 and margin 0."""

    def accs(m: float) -> list[float]:
        out = tmp_path / f"m{m}"
        train(small_cfg(packed, out, loss="arcface", margin_m=m, lr=0.0), log=lambda *_: None)
        lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        return [d["acc"] for d in lines if "acc" in d and not d.get("epoch_end")]

    with_margin, without = accs(0.5), accs(0.0)
    assert len(with_margin) == 6 and with_margin == without
    assert sum(with_margin) > 0


def test_margin_warmup_ramps_the_margin_the_loss_sees(packed, tmp_path):
    """--margin-warmup-epochs: with the weights frozen (lr 0) each step's loss depends on the
    margin alone, so the ramped run's loss at a step equals a fixed-margin run's loss at the
    margin the ramp has reached there."""

    from facetrain.evaluate.plots import curves
    from facetrain.run_folder import read_metrics

    def run(name: str, **kw) -> list[dict]:
        out = tmp_path / name
        train(small_cfg(packed, out, loss="arcface", lr=0.0, **kw), log=lambda *_: None)
        lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        return [d for d in lines if "loss" in d and not d.get("epoch_end")]

    ramped = run("ramp", margin_m=0.5, margin_warmup_epochs=2)
    # 3 batches an epoch: step k (0-based) is at epoch k/3, so the margin is 0.5 · (k/3) / 2
    assert [d["margin"] for d in ramped] == pytest.approx([0.5 * k / 6 for k in range(6)])
    steps, margins = curves(read_metrics(tmp_path / "ramp"))["margin (margin_warmup_epochs)"]
    assert list(steps) == list(range(1, 7)) and margins[-1] == pytest.approx(0.5 * 5 / 6)
    fixed = {m: run(f"m{m}", margin_m=m) for m in (0.0, 0.25, 0.5)}
    assert ramped[0]["loss"] == pytest.approx(fixed[0.0][0]["loss"], rel=1e-6)
    assert ramped[3]["loss"] == pytest.approx(fixed[0.25][3]["loss"], rel=1e-6)
    assert all(r["loss"] < f["loss"] for r, f in zip(ramped, fixed[0.5], strict=True))
    with pytest.raises(ValueError, match="margin_warmup_epochs"):
        small_cfg(packed, tmp_path / "x", loss="softmax", margin_warmup_epochs=1).validate()


def test_config_saved_and_loadable(packed, tmp_path):
    from typer.testing import CliRunner

    from facetrain.cli import app

    run = tmp_path / "cfgrun"
    cfg_file = tmp_path / "recipe.toml"
    cfg_file.write_text(
        f'data = "{packed}"\nmodel = "nn4_small2"\nembedding_size = 16\n'
        "epochs = 1\nbatch_size = 16\nepoch_size = 2\nthreads = 1\n"
    )
    res = CliRunner().invoke(
        app, ["train", "--config", str(cfg_file), "--out", str(run), "--lr", "0.01"]
    )
    assert res.exit_code == 0, res.output
    saved = json.loads((run / "config.json").read_text())
    assert saved["embedding_size"] == 16 and saved["lr"] == 0.01 and saved["model"] == "nn4_small2"
    assert (run / "revision.txt").read_text().strip()
    bad = CliRunner().invoke(app, ["train", "--config", str(cfg_file), "--set", "nope=1"])
    assert bad.exit_code == 2 and "--set 'nope=1': unknown setting 'nope' (" in bad.output


def test_code_revision_marks_uncommitted_source(tmp_path, monkeypatch):
    """A run made from edited source must say so: the revision gets '-dirty'."""
    import importlib.util
    import shutil

    repo = tmp_path / "repo"
    target = repo / "src/facetrain/train/config.py"
    target.parent.mkdir(parents=True)
    shutil.copy(Path(__file__).parents[1] / "src/facetrain/train/config.py", target)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    spec = importlib.util.spec_from_file_location("copied_config", target)
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "copied_config", mod)  # dataclasses look it up
    spec.loader.exec_module(mod)
    clean = mod.code_revision()
    assert len(clean) == 40 and not clean.endswith("-dirty")
    (repo / "src/facetrain/extra.py").write_text("x = 1\n")
    assert mod.code_revision() == clean + "-dirty"


def test_verification_and_val_split_during_training(tmp_path):
    faces = make_faces(tmp_path / "faces", ids=8, per=8)
    lfw = lfw_style(faces, tmp_path / "lfwstyle")
    bin_path, pairs = write_bin_and_pairs(faces, tmp_path)
    from facetrain.data.split import split

    split(str(faces), tmp_path / "split", by="image", fraction=0.25)
    pack(str(tmp_path / "split"), tmp_path / "pack", progress=False)
    cfg = small_cfg(
        tmp_path / "pack",
        tmp_path / "run",
        eval_pairs=str(pairs),
        eval_images=str(lfw),
        eval_bins=[str(bin_path)],
        ema_decay=0.9,
        accumulate=2,
    )
    said: list[str] = []
    result = train(cfg, log=said.append)
    lines = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    # each epoch says itself in a log, as metrics.jsonl records it: loss, val split, sets
    text = "\n".join(said)
    ends = [d for d in lines if d.get("epoch_end")]
    assert len(ends) == 2
    for d in ends:
        assert f"epoch {d['epoch']} step {d['step']}: mean loss {d['loss']:.4f} in " in text
    for d in [d for d in lines if "eval" in d]:
        name = "val split" if d["eval"] == "val_split" else d["eval"]
        assert f"epoch {d['epoch']} step {d['step']}: {name} accuracy {d['accuracy']:.4f}" in text
    evals = {d["eval"] for d in lines if "eval" in d}
    assert evals == {"val_split", "syn", tmp_path.name}  # a pairs set is named by its folder
    lfw_lines = [d for d in lines if d.get("eval") == tmp_path.name]
    assert len(lfw_lines) == 2 and lfw_lines[-1]["pairs_used"] == 16
    assert all(k in lfw_lines[-1] for k in ("accuracy", "val", "auc", "eer"))
    assert result["accuracy"] == lfw_lines[-1]["accuracy"]
    assert (tmp_path / "run/checkpoints/best").exists()
    val = [d for d in lines if d.get("eval") == "val_split"]
    assert 0.0 <= val[-1]["accuracy"] <= 1.0 and val[-1]["loss"] > 0

    # without a verification set, the saved threshold is validated on the val split's pairs
    from facetrain.evaluate.verification import labelled_threshold
    from facetrain.inference.saved import open_model
    from facetrain.use.embeddings import embed_dataset

    train(small_cfg(tmp_path / "pack", tmp_path / "run2"), log=lambda *_: None)
    fm = open_model(tmp_path / "run2")
    assert "val split" in fm.pre.threshold_source
    t = embed_dataset(fm, [str(tmp_path / "split" / "val.txt")], progress=False)
    assert len(t) == 16 and fm.pre.threshold == labelled_threshold(
        t.embeddings, t.labels, "squared_l2"
    )


def test_a_split_by_identity_is_measured_by_its_pairs(tmp_path):
    """Split by identity (`split --by identity`, the identity-safe split), the val split
    holds no one the classifier trains on: its accuracy there was 0.0000 at every epoch,
    whatever was learnt. Those identities are measured by verification of their own pairs,
    and the shipped threshold comes from them; so is a metric loss's whole val split."""
    from facetrain.data.split import split
    from facetrain.inference.saved import open_model

    faces = make_faces(tmp_path / "faces", ids=8, per=8)
    split(str(faces), tmp_path / "split", by="identity", fraction=0.25)
    pack(str(tmp_path / "split"), tmp_path / "pack", progress=False)
    said: list[str] = []
    train(small_cfg(tmp_path / "pack", tmp_path / "run"), log=said.append)
    lines = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert {d["eval"] for d in lines if "eval" in d} == {"val_unseen"}
    unseen = [d for d in lines if d.get("eval") == "val_unseen"]
    # 2 identities of 8 held out: their 2 x 28 same pairs and as many different ones
    assert len(unseen) == 2 and unseen[-1]["pairs_used"] == 112
    assert 0.5 <= unseen[-1]["accuracy"] <= 1.0
    assert any("16 images of identities not trained on" in m for m in said), said
    assert any(m.startswith("training ") and "of 6 identities" in m for m in said), said
    assert "val_unseen" in open_model(tmp_path / "run").pre.threshold_source

    # a metric loss has no classifier: a split by image was measured by nothing
    split(str(faces), tmp_path / "by-image", by="image", fraction=0.25)
    pack(str(tmp_path / "by-image"), tmp_path / "pack2", progress=False)
    said.clear()
    train(small_cfg(tmp_path / "pack2", tmp_path / "triplet", loss="triplet",
                    images_per_identity=4), log=said.append)  # fmt: skip
    lines = [json.loads(x) for x in (tmp_path / "triplet/metrics.jsonl").read_text().splitlines()]
    assert {d["eval"] for d in lines if "eval" in d} == {"val_pairs"}
    assert any("16 images: measured by verification" in m for m in said), said


def test_the_head_has_a_row_for_each_identity_trained_on(tmp_path, monkeypatch):
    """Split by identity, the held-out identities had head and centre rows that could
    never be named, only pushed away: 8 rows for 6 identities, and a loss of 6 classes
    measured as of 8. A run begun that way goes on that way, exactly, when resumed."""
    from safetensors.torch import load_file

    from facetrain.data.split import split
    from facetrain.train import loop

    faces = make_faces(tmp_path / "faces", ids=8, per=8)
    split(str(faces), tmp_path / "split", by="identity", fraction=0.25)
    pack(str(tmp_path / "split"), tmp_path / "pack", progress=False)

    def rows(run: Path) -> tuple[int, int]:
        last = (run / "checkpoints/last").read_text().strip()
        t = load_file(str(run / "checkpoints" / last / "state.safetensors"))
        return t["head.fc.weight"].shape[0], t["centers.centers"].shape[0]

    def cfg(run: Path, **kw):
        return small_cfg(tmp_path / "pack", tmp_path / run, center_loss_factor=0.01,
                         checkpoint_every_steps=1, **kw)  # fmt: skip

    train(cfg("run"), log=lambda *_: None)
    assert rows(tmp_path / "run") == (6, 6)
    # the first loss is that of 6 classes: at most a little above log(6), well below log(8)
    assert losses(tmp_path / "run")[0][1] < (np.log(6) + np.log(8)) / 2

    every = lambda ds, run: (ds.num_classes, None)  # noqa: E731 (the layout of before)
    monkeypatch.setattr(loop, "head_rows", every)
    train(cfg("ref"), log=lambda *_: None)

    def stop_after_epoch_0(line: str) -> None:
        if line.startswith("epoch 0 step 3: mean loss"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg("old"), log=stop_after_epoch_0)
    assert rows(tmp_path / "old") == (8, 8) and len(losses(tmp_path / "old")) == 3
    monkeypatch.undo()
    train(cfg("old"), log=lambda *_: None)
    assert rows(tmp_path / "old") == (8, 8)
    assert losses(tmp_path / "old") == losses(tmp_path / "ref")  # bit for bit

    # a new run started from that one (init_from) keeps its rows of the 6 trained on
    started = []
    real = loop.init_from

    def init_from(src, model, objective):
        what = real(src, model, objective)
        started.append(objective.head.fc.weight.clone())
        return what

    monkeypatch.setattr(loop, "init_from", init_from)
    said: list[str] = []
    train(cfg("fine", init_from=str(tmp_path / "old"), epochs=1), log=said.append)
    assert any("initialised backbone and head from" in m for m in said), said
    old = tmp_path / "old/checkpoints"
    pointer = old / ("best" if (old / "best").exists() else "last")
    was = load_file(str(old / pointer.read_text().strip() / "state.safetensors"))
    trained = PackedDataset(tmp_path / "pack", split="train").labels_held
    assert len(trained) == 6 and torch.equal(started[0], was["head.fc.weight"][trained])


def test_a_large_val_split_is_scored_on_a_fixed_sample(tmp_path, monkeypatch):
    """The classifier was scored on every val image at every evaluation: a tenth of a
    million-face set is 100,000 images each time. At most MAX_SCORED are, the same ones
    each time, and the log says how many of how many."""
    from facetrain.data.split import split
    from facetrain.train import evaluator

    faces = make_faces(tmp_path / "faces", ids=4, per=8)
    split(str(faces), tmp_path / "split", by="image", fraction=0.25)
    pack(str(tmp_path / "split"), tmp_path / "pack", progress=False)
    monkeypatch.setattr(evaluator, "MAX_SCORED", 5)
    scored = []
    real = evaluator.validation_split
    monkeypatch.setattr(evaluator, "validation_split",
                        lambda *a: scored.append(a[5].tolist()) or real(*a))  # fmt: skip
    said: list[str] = []
    train(small_cfg(tmp_path / "pack", tmp_path / "run"), log=said.append)
    assert any("scored on 5 of the val split's 8 images" in m for m in said), said
    assert len(scored) == 2 and scored[0] == scored[1] and len(scored[0]) == 5


def test_the_threshold_without_a_set_embeds_a_sample_of_the_val_split(tmp_path, monkeypatch):
    """Without a verification set the saved threshold is validated on the val split's pairs.
    Every val image was decoded at once only to read its label, then embedded: gigabytes
    and an unbounded wait at the end of a run on a large set. Now at most MAX_SCORED images
    are, the same ones each time, and the threshold is theirs."""
    from facetrain.data.split import split
    from facetrain.evaluate.verification import labelled_threshold
    from facetrain.inference.feed import embed
    from facetrain.inference.record import Preprocess
    from facetrain.inference.sources import Arrays
    from facetrain.models import create_model
    from facetrain.train import evaluator

    faces = make_faces(tmp_path / "faces", ids=6, per=8)
    split(str(faces), tmp_path / "split", by="image", fraction=0.5)
    pack(str(tmp_path / "split"), tmp_path / "pack", progress=False)
    val = PackedDataset(tmp_path / "pack", split="val")
    monkeypatch.setattr(evaluator, "MAX_SCORED", 12)
    decoded: list[int] = []
    batch = val.batch
    monkeypatch.setattr(val, "batch", lambda ids, *a: decoded.extend(ids) or batch(ids, *a))
    torch.manual_seed(0)
    net, pre = create_model("nn4_small2", 16).eval(), Preprocess("nn4_small2", 16, 96)
    t = evaluator.val_threshold(net, pre, val, "cpu", "run")
    assert len(val) == 24 and len(decoded) == len(set(decoded)) == 12
    assert decoded == evaluator.sampled(np.arange(24)).tolist()  # the same ones each time
    faces = batch(list(decoded))[0].permute(0, 2, 3, 1).numpy()  # (the unwatched reader)
    emb = embed(net, Arrays(list(faces)), size=96, normalize=pre.normalize)
    assert t == labelled_threshold(emb, val.labels[decoded].tolist(), "squared_l2")


def test_nonfinite_steps_skipped_then_rolled_back(packed, tmp_path):
    cfg = small_cfg(packed, tmp_path / "nan", epochs=3, max_nonfinite=2, checkpoint_every_steps=1)
    import facetrain.train.objective as loop  # where the loss is computed

    real = loop.cross_entropy
    calls = {"n": 0}

    def poisoned(logits, y, smoothing=0.0):
        calls["n"] += 1
        loss = real(logits, y, smoothing)
        return loss * float("nan") if calls["n"] in (4, 5) else loss

    loop.cross_entropy = poisoned
    try:
        train(cfg, log=lambda *_: None)
    finally:
        loop.cross_entropy = real
    lines = [json.loads(x) for x in (tmp_path / "nan/metrics.jsonl").read_text().splitlines()]
    assert sum(1 for d in lines if d.get("skipped") == "nonfinite") == 2
    rb = [d for d in lines if d.get("rollback")]
    assert len(rb) == 1 and rb[0]["lr_scale"] == 0.5
    assert all(np.isfinite(d["loss"]) for d in lines if d.get("loss") is not None)


def _register_tiny():
    """A BatchNorm-free model, so micro-batches see exactly what the whole batch sees."""
    import torch
    from torch import nn

    from facetrain.models.registry import Embedder, register_model

    class Tiny(Embedder):
        input_size = 16

        def __init__(self, embedding_size=8, dropout=0.0):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, 2, 1)
            self.fc = nn.Linear(4 * 8 * 8, embedding_size)

        def embed_raw(self, x):
            return self.fc(torch.relu(self.conv(x)).flatten(1))

    @register_model
    def tiny_test_model(embedding_size=8, **kw):
        return Tiny(embedding_size, **kw)


def test_gradient_accumulation_equals_the_full_batch(packed, tmp_path):
    from safetensors.torch import load_file

    _register_tiny()
    common = dict(
        model="tiny_test_model",
        embedding_size=8,
        epochs=1,
        epoch_size=1,
        flip=False,
        optimizer="sgd",
        momentum=0.0,
        weight_decay=0.0,
        lr=0.5,
    )
    train(small_cfg(packed, tmp_path / "a1", accumulate=1, **common), log=lambda *_: None)
    train(small_cfg(packed, tmp_path / "a4", accumulate=4, **common), log=lambda *_: None)
    a = load_file(str(tmp_path / "a1/model.safetensors"))
    b = load_file(str(tmp_path / "a4/model.safetensors"))
    import torch

    from facetrain.models import create_model

    torch.manual_seed(0)  # the loop's seed: the weights before the step
    before = create_model("tiny_test_model", 8).state_dict()
    for k in a:
        assert torch_allclose(a[k], b[k]), k
    assert not torch_allclose(a["model.fc.weight"], before["fc.weight"])  # a real step


def torch_allclose(x, y):
    import torch

    return torch.allclose(x, y, atol=1e-6, rtol=1e-5)


def test_bf16_autocast_and_channels_last_on_cpu(packed, tmp_path):
    _register_tiny()
    cfg = small_cfg(
        packed,
        tmp_path / "bf16",
        model="tiny_test_model",
        embedding_size=8,
        amp="bf16",
        channels_last=True,
        epochs=1,
    )
    train(cfg, log=lambda *_: None)
    ls = [v for _, v in losses(tmp_path / "bf16")]
    assert len(ls) == 3 and all(np.isfinite(ls))
    with pytest.raises(ValueError, match="fp16 needs a GPU"):
        train(small_cfg(packed, tmp_path / "fp16", amp="fp16"), log=lambda *_: None)


def test_a_run_stopped_while_it_verifies_resumes_with_that_verification(tmp_path, monkeypatch):
    """A failure while a run verifies (a GPU out of memory, a kill) cost the epoch it had
    just trained: its checkpoint was written after the verification. The checkpoint now
    comes first and owes the verification, which a resume does before training on: the
    same lines and figures as a run never stopped, no step trained twice."""
    import facetrain.train.evaluator as evaluator
    from facetrain.data.split import split
    from facetrain.train.checkpoint import load

    faces = make_faces(tmp_path / "faces", ids=8, per=8)
    bin_path, _ = write_bin_and_pairs(faces, tmp_path)
    split(str(faces), tmp_path / "split", by="image", fraction=0.25)
    pack(str(tmp_path / "split"), tmp_path / "pack", progress=False)
    cfg = dict(epochs=2, eval_bins=[str(bin_path)])
    train(small_cfg(tmp_path / "pack", tmp_path / "ref", **cfg), log=lambda *_: None)
    calls, real = [], evaluator.evaluate_set

    def out_of_memory_at_the_second(*a, **kw):
        calls.append(1)
        if len(calls) == 2:  # epoch 1's, after its val split line was written
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore")
        return real(*a, **kw)

    monkeypatch.setattr(evaluator, "evaluate_set", out_of_memory_at_the_second)
    run = tmp_path / "run"
    said = r"out of cpu memory while verifying epoch 1 \(CUDA out of memory. Tried to allocate "
    with pytest.raises(TrainingError, match=said + r"2.00 GiB\)\. Its checkpoint at step 6 is "):
        train(small_cfg(tmp_path / "pack", run, **cfg), log=lambda *_: None)
    _, meta = load(run)
    assert (meta["step"], meta["epoch"], meta["eval_due"]) == (6, 2, 1)  # its steps kept
    assert not (run / "model.safetensors").exists()
    monkeypatch.undo()
    said: list[str] = []
    result = train(small_cfg(tmp_path / "pack", run, **cfg), log=said.append)
    assert "step 6); verifying epoch 1 first (it was cut short)" in "\n".join(said)

    def lines(r):
        rows = [json.loads(x) for x in (r / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in d.items() if k != "seconds"} for d in rows]

    assert lines(run) == lines(tmp_path / "ref")  # every loss and figure, once each
    assert [d["step"] for d in lines(run) if d.get("eval") == "syn"] == [3, 6]
    assert result == json.loads(json.dumps(load(tmp_path / "ref")[1]["last_eval"]))
    _, meta = load(run)
    assert meta["eval_due"] is None and meta["last_eval"] == result
    ref_model = (tmp_path / "ref" / "model.safetensors").read_bytes()
    assert (run / "model.safetensors").read_bytes() == ref_model


def test_a_run_out_of_memory_says_what_is_kept_and_goes_on_in_parts(packed, tmp_path, monkeypatch):
    """A device out of memory while training was torch's traceback: now where it happened,
    that the last checkpoint is kept, and the setting that goes on in less memory."""
    from facetrain.train.loop import Run

    calls, real = [], Run.gradients

    def out_of_memory_at_the_fourth(self, *a):
        calls.append(1)
        if len(calls) == 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return real(self, *a)

    monkeypatch.setattr(Run, "gradients", out_of_memory_at_the_fourth)
    cfg = dict(checkpoint_every_steps=2)
    with pytest.raises(TrainingError, match=r"out of cpu memory while training epoch 1, step 4 "
                       r"\(CUDA .*\)\. Its last checkpoint is kept: run the same command with "
                       r"--set accumulate=2 \(the same batches, in 2 parts\)"):  # fmt: skip
        train(small_cfg(packed, tmp_path / "run", **cfg), log=lambda *_: None)
    monkeypatch.undo()
    said: list[str] = []
    train(small_cfg(packed, tmp_path / "run", accumulate=2, **cfg), log=said.append)
    assert "resuming" in said[0] and "(step 3)" in said[0], said[0]
    assert [s for s, _ in losses(tmp_path / "run")] == list(range(1, 7))

    def a_batch_larger_than_the_machine(self, *a):  # the CPU allocator's own error
        torch.empty(1 << 50, dtype=torch.uint8)  # 1 PiB: refused at once, a RuntimeError

    monkeypatch.setattr(Run, "gradients", a_batch_larger_than_the_machine)
    with pytest.raises(TrainingError, match=r"out of cpu memory while training epoch 0, step 1 "
                       r"\(.*can't allocate memory.*\)\. It had no checkpoint yet: run the "
                       r"same command with --set accumulate=2"):  # fmt: skip
        train(small_cfg(packed, tmp_path / "cpu"), log=lambda *_: None)

    import facetrain.train.loop as loop

    def a_network_larger_than_the_machine(*a, **kw):  # made before any step: a traceback
        return torch.empty(1 << 50, dtype=torch.uint8)

    monkeypatch.setattr(loop, "create_model", a_network_larger_than_the_machine)
    with pytest.raises(TrainingError, match=r"new: out of cpu memory while making the run's "
                       r"network, head and optimizer \(.*can't allocate memory.*\); nothing "
                       r"was trained\. Choose a smaller --model"):  # fmt: skip
        train(small_cfg(packed, tmp_path / "new"), log=lambda *_: None)
    assert not (tmp_path / "new").exists()  # no run folder left behind
    monkeypatch.undo()
    monkeypatch.setattr(loop, "build_objective", a_network_larger_than_the_machine)  # a head
    with pytest.raises(TrainingError, match=r"run: out of cpu memory while making .*; its "
                       "checkpoints are kept"):  # fmt: skip
        train(small_cfg(packed, tmp_path / "run", epochs=3), log=lambda *_: None)


def test_the_same_command_on_a_finished_run_leaves_its_model(packed, tmp_path, monkeypatch):
    """Run again after it finished (the command that resumes), a run wrote model.safetensors
    anew from its checkpoint, dropping what was recorded in it since: `eval-populations
    --record`'s sure_below, which the library's decisions read. Now it is left as it is;
    a model whose writing was cut short, or is missing, is still written."""
    import dataclasses

    import facetrain.train.loop as loop
    from facetrain.inference.record import load_weights, read_record, save_model

    run, said = tmp_path / "run", []
    train(small_cfg(packed, run, epochs=1), log=lambda *_: None)
    net, pre = load_weights(run / "model.safetensors")
    save_model(run / "model.safetensors", net, dataclasses.replace(pre, sure_below=0.123))
    recorded = (run / "model.safetensors").read_bytes()
    train(small_cfg(packed, run, epochs=1), log=said.append)
    assert f"{run}: trained (1 epoch) and its model.safetensors written, which is left" in said[-1]
    assert not any("resuming" in line or "training" in line for line in said), said
    assert (run / "model.safetensors").read_bytes() == recorded

    def cut_short(*a, **kw):
        raise KeyboardInterrupt  # a kill while the longer run writes its model

    monkeypatch.setattr(loop, "export_weights", cut_short)
    with pytest.raises(KeyboardInterrupt):
        train(small_cfg(packed, run, epochs=2), log=lambda *_: None)
    monkeypatch.undo()
    assert (run / "model.safetensors").read_bytes() == recorded  # the first epoch's, stale
    train(small_cfg(packed, run, epochs=2), log=lambda *_: None)
    assert read_record(run / "model.safetensors").sure_below is None  # the two epochs' model
    (run / "model.safetensors").unlink()
    train(small_cfg(packed, run, epochs=2), log=lambda *_: None)
    assert (run / "model.safetensors").is_file()


def test_eval_every_steps(tmp_path):
    faces = make_faces(tmp_path / "faces", ids=8, per=8)
    bin_path, _ = write_bin_and_pairs(faces, tmp_path)
    pack(str(faces), tmp_path / "pack", progress=False)
    cfg = small_cfg(
        tmp_path / "pack", tmp_path / "run", epochs=1, eval_every_steps=2, eval_bins=[str(bin_path)]
    )
    train(cfg, log=lambda *_: None)
    lines = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert [d["step"] for d in lines if d.get("eval") == "syn"] == [2, 3]


def test_compile_matches_eager(packed, tmp_path):
    _register_tiny()
    common = dict(model="tiny_test_model", embedding_size=8, epochs=1)
    train(small_cfg(packed, tmp_path / "eager", **common), log=lambda *_: None)
    train(small_cfg(packed, tmp_path / "compiled", compile=True, **common), log=lambda *_: None)
    a = [v for _, v in losses(tmp_path / "eager")]
    b = [v for _, v in losses(tmp_path / "compiled")]
    assert len(a) == len(b) == 3
    np.testing.assert_allclose(a, b, rtol=1e-4)


def test_gradient_clipping_bounds_the_step(packed, tmp_path):
    import torch
    from safetensors.torch import load_file

    from facetrain.models import create_model

    _register_tiny()
    common = dict(
        model="tiny_test_model",
        embedding_size=8,
        epochs=1,
        epoch_size=1,
        optimizer="sgd",
        momentum=0.0,
        weight_decay=0.0,
        lr=0.5,
    )
    train(small_cfg(packed, tmp_path / "clip", clip_grad=1e-6, **common), log=lambda *_: None)
    train(small_cfg(packed, tmp_path / "free", **common), log=lambda *_: None)
    torch.manual_seed(0)
    before = create_model("tiny_test_model", 8).state_dict()
    clipped = load_file(str(tmp_path / "clip/model.safetensors"))
    free = load_file(str(tmp_path / "free/model.safetensors"))
    step_clipped = max((clipped[f"model.{k}"] - v).abs().max().item() for k, v in before.items())
    step_free = max((free[f"model.{k}"] - v).abs().max().item() for k, v in before.items())
    assert step_clipped <= 0.5 * 1e-6 * 1.01  # lr x total grad norm bounds every coordinate
    assert step_free > 1e-3


def test_data_on_device_path_runs_on_cpu(tmp_path):
    """The GPU data path (decode + augment where training runs) is the same computation:
    on a CPU it gives exactly the default path's losses, for raw and encoded packs."""
    faces = make_faces(tmp_path / "faces", ids=6, per=6)
    pack(str(faces), tmp_path / "enc", store="encoded", progress=False)
    ds = PackedDataset(tmp_path / "enc")
    a, b = ds.batch([0, 5, 9]), ds.batch([0, 5, 9], "cpu")
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    runs = {}
    for flag in (False, True):
        cfg = small_cfg(
            tmp_path / "enc", tmp_path / f"run{flag}", data_on_device=flag, crop=100, rotate=5.0,
            color_jitter=0.2, grayscale=0.2,
        )  # fmt: skip
        train(cfg, log=lambda *_: None)
        runs[flag] = losses(tmp_path / f"run{flag}")
    assert runs[True] == runs[False] and len(runs[True]) == 6


def test_ema_forgets_the_initialisation_early():
    """The EMA's decay warms up: after 300 steps the average is made of trained weights, not
    of the random start (with a flat 0.999 the start kept 74% of the average, and such an
    EMA model embedded every LFW face to nearly the same vector)."""
    import copy

    from facetrain.models import create_model
    from facetrain.train.build import ema_update

    torch.manual_seed(0)
    model = create_model("nn4_small2", 16)
    start = copy.deepcopy(model)
    ema = copy.deepcopy(model)
    trained = create_model("nn4_small2", 16)  # stands for the weights training reached
    for step in range(300):
        with torch.no_grad():
            for p, q in zip(model.parameters(), trained.parameters()):
                p.lerp_(q, 0.05)
        ema_update(ema, model, 0.999, step)

    def gap(a, b):
        return sum((p - q).norm() ** 2 for p, q in zip(a.parameters(), b.parameters()))

    assert gap(ema, model) < 0.01 * gap(start, model)
    # once warm, the decay is the configured one: one step moves the average by 1 - decay
    before = copy.deepcopy(ema)
    ema_update(ema, model, 0.5, 10_000)
    p0, p1, m = next(before.parameters()), next(ema.parameters()), next(model.parameters())
    assert torch.allclose(p1, 0.5 * p0 + 0.5 * m, atol=1e-6)
    assert all(torch.equal(b, c) for b, c in zip(ema.buffers(), model.buffers()))


def test_a_resume_keeps_the_config_the_run_started_with(packed, tmp_path):
    run = tmp_path / "r"
    train(small_cfg(packed, run, epochs=1), log=lambda *_: None)
    first = (run / "config.json").read_text()
    for said in ("resuming", "trained (2 epochs)"):  # extended twice the same way: one line
        msgs = []
        train(small_cfg(packed, run, epochs=2, threads=2), log=msgs.append)
        assert any(said in m for m in msgs), msgs
    assert (run / "config.json").read_text() == first
    assert json.loads(first)["epochs"] == 1
    history = (run / "revision.txt").read_text().splitlines()
    assert history[1:] == ["resumed with settings epochs=2 (was 1), threads=2 (was 1)"]
    assert len(losses(run)) == 6  # the second epoch was trained (3 batches each)
    msgs = []  # asked for fewer epochs than it has: what it did, not what it was asked
    train(small_cfg(packed, run, epochs=1, threads=2), log=msgs.append)
    assert msgs == [f"{run}: trained (2 epochs) and its model.safetensors written, which is "
                    "left as it is; to train on, give more --epochs"]  # fmt: skip
    # a fresh run in a folder without a checkpoint writes its own config
    (run / "checkpoints" / "last").unlink()
    train(small_cfg(packed, run, epochs=1, lr=0.01), log=lambda *_: None)
    assert json.loads((run / "config.json").read_text())["lr"] == 0.01


def test_a_run_records_its_machine_and_a_resume_on_another_says_so(packed, tmp_path, monkeypatch):
    """The same pinned run gave 0.7697 and 0.7787 on two machines that both call themselves
    'AMD EPYC': a run records what it started on (versions, processor and the instruction
    set torch's kernels use), and a resume elsewhere is written to its history, once."""
    import facetrain.train.loop as loop
    from facetrain.devices import describe
    from facetrain.evaluate.report import write_report

    run = tmp_path / "r"
    train(small_cfg(packed, run, epochs=1), log=lambda *_: None)
    here = json.loads((run / "machine.json").read_text())
    assert here == describe("cpu") | {"processes": 1}
    assert here["torch"] == torch.__version__
    assert here["cpu_kernels"] == torch.backends.cpu.get_cpu_capability()
    assert here["cpu"] and here["python"]
    gpu = describe("cuda")["gpu"]  # a GPU that cannot say what it is does not stop a run
    assert ("(sm_" in gpu) if torch.cuda.is_available() else gpu.startswith("unknown (")
    other = "AVX2" if here["cpu_kernels"] == "AVX512" else "AVX512"  # CI's may be either
    elsewhere = here | {"cpu": "Other CPU (family 1, model 2)", "cpu_kernels": other}
    monkeypatch.setattr(loop, "describe", lambda device: elsewhere)
    monkeypatch.setattr(loop, "code_revision", lambda: "newer-code")
    for _ in range(2):  # resumed twice on the other machine, with newer code: a line each
        train(small_cfg(packed, run, epochs=2), log=lambda *_: None)
    assert json.loads((run / "machine.json").read_text()) == here  # what it started on
    history = (run / "revision.txt").read_text().splitlines()
    assert history[1:] == [
        "resumed with newer-code",
        "resumed with settings epochs=2 (was 1)",
        f"resumed on cpu='Other CPU (family 1, model 2)' (was {here['cpu']!r}), "
        f"cpu_kernels={other!r} (was {here['cpu_kernels']!r})",
    ]  # and no second `resumed with newer-code`: a machine line is not a code revision
    page = write_report(run).read_text()
    assert f"trained on {here['cpu']}, {here['cpu_kernels']} kernels, torch " in page
    # a run from before machine.json: the resume's machine is recorded, and said to be so
    (run / "machine.json").unlink()
    train(small_cfg(packed, run, epochs=3), log=lambda *_: None)
    assert json.loads((run / "machine.json").read_text()) == elsewhere
    assert (run / "revision.txt").read_text().splitlines()[-1] == (
        "resumed on unknown: the run's start was not recorded (before machine.json); it holds "
        "this resume's now"
    )


def test_a_resume_keeps_the_revision_the_run_started_from(tmp_path):
    from facetrain.train.records import record_revision

    rev = tmp_path / "revision.txt"
    record_revision(rev, "aaa")
    record_revision(rev, "aaa")  # resumed with the same code: nothing to add
    record_revision(rev, "bbb-dirty")
    record_revision(rev, "bbb-dirty")
    assert rev.read_text().splitlines() == ["aaa", "resumed with bbb-dirty"]


def test_a_damaged_newest_checkpoint_is_named_and_the_one_before_used(packed, tmp_path):
    """Two checkpoint generations (hostile findings: a truncated newest checkpoint made
    resume impossible; deleting it left `last` naming it; metrics were then duplicated)."""
    from facetrain.train.config import TrainConfig

    run = tmp_path / "run"
    base = dict(data=[str(packed)], out=str(run), model="nn4_small2", embedding_size=32,
                batch_size=16, epoch_size=3, lr=0.05, log_every=1, threads=1,
                checkpoint_every_steps=2)  # fmt: skip
    train(TrainConfig.of(**base, epochs=2), log=lambda *_: None)
    ckpts = run / "checkpoints"
    last, previous = [(ckpts / p).read_text().strip() for p in ("last", "previous")]
    assert last != previous and (ckpts / previous).is_dir()
    damaged = ckpts / last / "state.safetensors"
    damaged.write_bytes(damaged.read_bytes()[:1000])  # truncated
    said = []
    train(TrainConfig.of(**base, epochs=3), log=said.append)
    assert any("damaged" in m and last in m for m in said), said
    resumed_at = int(previous.split("-")[1])
    assert any(f"(step {resumed_at})" in m for m in said), said
    steps = [s for s, _ in losses(run)]
    assert steps == sorted(set(steps)) and steps[-1] == 9  # cut back, never duplicated

    # the newest folder deleted outright: the pointer names nothing, the one before is used
    import shutil

    shutil.rmtree(ckpts / (ckpts / "last").read_text().strip())
    said.clear()
    train(TrainConfig.of(**base, epochs=4), log=said.append)
    assert any("gone" in m for m in said) and [s for s, _ in losses(run)][-1] == 12

    # every checkpoint deleted: the run starts over, its metrics too (never duplicated)
    shutil.rmtree(ckpts)
    train(TrainConfig.of(**base, epochs=1), log=lambda *_: None)
    assert [s for s, _ in losses(run)] == [1, 2, 3]


def test_all_finite_sees_one_bad_value_among_many_tensors():
    """The one-sync finite check of every gradient: any inf or NaN in any tensor (of any
    dtype) is found; large finite values are not mistaken for overflow."""
    from facetrain.train.state import all_finite

    grads = [torch.randn(64, 32), torch.randn(7), torch.randn(3, 3).half(), torch.full((5,), 1e30)]
    assert all_finite(grads)
    for k, bad in ((0, float("inf")), (2, float("nan")), (1, float("-inf"))):
        g = [t.clone() for t in grads]
        g[k].view(-1)[-1] = bad
        assert not all_finite(g), (k, bad)


def test_a_run_records_its_threads_and_repeats_on_the_same_count(packed, tmp_path):
    """The demo's figure moved between two fresh runs: CPU float sums depend on how many
    threads share them. A run records the count it used (config.json), the same settings
    on the same count give every loss bit for bit, another count gives other losses, and
    the demo pins its count."""
    from facetrain.demo import DEMO_RECIPE
    from facetrain.train.config import resolve

    args = ["--data", str(packed), "--model", "nn4_small2", "--epochs", "1", "--batch-size",
            "16", "--set", "embedding_size=32", "--set", "epoch_size=4", "--set",
            "log_every=1", "--set", "input_size=72"]  # fmt: skip
    cmd = [sys.executable, "-m", "facetrain", "train"]
    runs = {"a": [], "b": [], "one": ["--set", "threads=1"]}
    for name, extra in runs.items():
        subprocess.run([*cmd, *args, *extra, "--out", str(tmp_path / name)], check=True,
                       capture_output=True, env=os.environ | {"OMP_NUM_THREADS": "2"})  # fmt: skip
    threads = {n: json.loads((tmp_path / n / "config.json").read_text())["threads"] for n in runs}
    assert threads == {"a": 2, "b": 2, "one": 1}
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    assert losses(tmp_path / "a") != losses(tmp_path / "one")
    assert resolve(DEMO_RECIPE, {}).platform.threads == 2
