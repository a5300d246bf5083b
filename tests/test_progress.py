"""Progress where no terminal is: plain lines with count, rate and ETA (a log under nohup or
a cluster scheduler), none for short steps."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from facetrain.progress import PlainProgress, step_task
from helpers import lfw_style, make_faces, small_cfg, write_bin_and_pairs


def test_plain_lines_give_count_rate_and_eta(capsys):
    with PlainProgress(every=0) as bar:
        task = bar.add_task("scan", total=4)
        for _ in range(3):
            bar.advance(task)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("scan 1/4 (25%)") and "/s, elapsed 0:00, ETA 0:0" in lines[0]
    assert lines[-1].startswith("scan 3/4 (75%)")  # where it ended


def test_short_steps_print_nothing(capsys):
    with PlainProgress(every=60) as bar:
        task = bar.add_task("scan", total=1000)
        for _ in range(1000):
            bar.advance(task)
    assert capsys.readouterr().err == ""


def test_a_job_writing_to_a_log_prints_progress_lines(tmp_path):
    src = make_faces(tmp_path / "faces", ids=4, per=4)
    env = os.environ | {"FACETRAIN_PROGRESS_EVERY": "0"}
    r = subprocess.run([sys.executable, "-m", "facetrain", "pack", str(src), str(tmp_path / "p")],
                       capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.startswith("pack ")]
    assert lines and lines[-1].startswith("pack 16/16 (100%)"), r.stderr
    assert "\x1b[" not in r.stderr  # no terminal codes in a log
    # `stats --check` decodes every image (hours for millions): it showed nothing
    r = subprocess.run([sys.executable, "-m", "facetrain", "stats", str(src), "--check"],
                       capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    lines = [x for x in r.stderr.splitlines() if x.startswith("check ")]
    assert r.returncode == 0 and lines[-1].startswith("check 16/16 (100%)"), r.stderr


def test_a_resumed_job_s_rate_counts_this_run_and_no_line_repeats(capsys, monkeypatch):
    """The rate and ETA of a resumed job count only what this process did; the closing
    line is not printed again when nothing moved since the last one."""
    clock = iter([0.0, 0.0, 10.0, 10.0, 20.0, 20.0])  # start, task's; each advance: check, line
    monkeypatch.setattr("facetrain.progress.time.monotonic", lambda: next(clock))
    with PlainProgress(every=5) as bar:
        task = bar.add_task("train", total=200, completed=100)
        bar.advance(task, 10)  # t=10: 10 steps in 10 s
        bar.update(task, note="epoch 3 loss 1.2345")
        bar.advance(task, 10)  # t=20
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "train 110/200 (55%) 1.0/s, elapsed 0:10, ETA 1:30"
    assert lines[1] == "train 120/200 (60%) 1.0/s, elapsed 0:20, ETA 1:20, epoch 3 loss 1.2345"
    assert len(lines) == 2  # where it ended was already said


def test_each_phase_s_rate_and_elapsed_are_its_own(capsys, monkeypatch):
    """A job of phases (a library's clustering: spacing, near pairs, stacks) in a log: the
    second phase's rate counted from the bar's start read 4 faces/s and an ETA of 6 hours
    for a phase done 2 s later, and a phase done early was said to have taken the whole
    job when the closing lines came."""
    clock = iter([0.0, 0.0, 20.0, 20.0, 20.0, 20.0, 25.0, 25.0, 29.0, 29.0, 40.0])
    monkeypatch.setattr("facetrain.progress.time.monotonic", lambda: next(clock))
    with PlainProgress(every=5) as bar:
        first = bar.add_task("spacing", total=100)  # t=0
        bar.advance(first, 100)  # done at t=20; check, line
        second = bar.add_task("pairs", total=90)  # t=20
        bar.advance(second, 45)  # t=25: check, line
        bar.advance(second, 45)  # done at 29; check, no line (every 5 s); the close at 40
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["spacing 100/100 (100%) 5.0/s, elapsed 0:20, ETA 0:00",
                     "pairs 45/90 (50%) 9.0/s, elapsed 0:05, ETA 0:05",
                     "pairs 90/90 (100%) 10.0/s, elapsed 0:09, ETA 0:00"]  # fmt: skip


def test_training_in_a_log_prints_step_loss_rate_and_eta(tmp_path):
    """Training with its output in a file (nohup, a scheduler) says where it is: plain
    lines with the step count, rate, ETA and loss — the demo's log was silent for minutes."""
    src = make_faces(tmp_path / "faces", ids=4, per=4)
    env = os.environ | {"FACETRAIN_PROGRESS_EVERY": "0"}
    cmd = [sys.executable, "-m", "facetrain", "train", "--data", str(src), "--out",
           str(tmp_path / "run"), "--epochs", "2", "--batch-size", "8", "--set",
           "embedding_size=16", "--set", "eval_every=100"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.startswith("train ")]
    assert lines[0].startswith("train 1/4 (25%)") and "/s, elapsed" in lines[0], r.stderr
    assert "ETA" in lines[0] and "epoch 0 loss " in lines[0], lines
    assert lines[-1].startswith("train 4/4 (100%)") and "epoch 1 loss " in lines[-1], lines
    assert len(lines) == len(set(lines)) and "\x1b[" not in r.stderr


def test_verification_during_training_shows_on_the_runs_bar(tmp_path, monkeypatch, capsys):
    """An evaluation embeds whole sets (LFW's pairs: 45 s on 2 cores for nn4.small2) and a
    training log said nothing meanwhile. Now the val split's scoring and each set's
    embedding are tasks of the run's bar while they run, each said up to its total once an
    evaluation."""
    from facetrain.data.packed import pack
    from facetrain.data.split import split
    from facetrain.train.loop import train

    monkeypatch.setenv("FACETRAIN_PROGRESS_EVERY", "0")
    faces = make_faces(tmp_path / "faces", ids=8, per=8)
    lfw = lfw_style(faces, tmp_path / "lfwstyle")
    _, pairs = write_bin_and_pairs(faces, tmp_path)
    split(str(faces), tmp_path / "split", by="image", fraction=0.25)
    pack(str(tmp_path / "split"), tmp_path / "pack", progress=False)
    cfg = small_cfg(tmp_path / "pack", tmp_path / "run", eval_pairs=str(pairs),
                    eval_images=str(lfw))  # fmt: skip
    train(cfg, log=lambda *_: None)
    err = capsys.readouterr().err.splitlines()
    for title in (f"verify on {tmp_path.name}", "score the val split"):
        counts = [re.match(rf"{title} (\d+)/(\d+) \(.*/s, elapsed", x) for x in err
                  if x.startswith(f"{title} ")]  # fmt: skip
        assert counts and all(counts), err
        assert [m[1] == m[2] for m in counts].count(True) == 2, counts  # 2 epochs, 2 ends
    assert sum(x.startswith("train 6/6 (100%)") for x in err) == 1, err  # the run's own bar


def test_a_steps_task_leaves_the_bar_when_it_ends():
    from rich.progress import Progress

    with Progress(disable=True) as bar:
        run = bar.add_task("train", total=10)
        with step_task(bar, "verify on lfw", 3) as advance:
            advance(2)
            assert [(t.description, t.completed) for t in bar.tasks] == [
                ("train", 0), ("verify on lfw", 2)]  # fmt: skip
        assert [t.id for t in bar.tasks] == [run]


def test_embedding_progress_moves_before_the_end(tmp_path):
    """`embed` (and eval, which embeds the same way) advances as faces are read, not once
    a batch of 128 is done: `eval` sat at 0/51 until the end."""
    from helpers import make_model

    src = make_faces(tmp_path / "faces", ids=5, per=8)
    model = make_model(tmp_path / "m.safetensors")
    env = os.environ | {"FACETRAIN_PROGRESS_EVERY": "0"}
    cmd = [sys.executable, "-m", "facetrain", "embed", str(model), str(src), "--out",
           str(tmp_path / "e.npz")]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    counts = [x.split()[1] for x in r.stderr.splitlines() if x.startswith("embed ")]
    assert counts[:3] == ["16/40", "32/40", "40/40"], r.stderr
