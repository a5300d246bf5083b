"""Progress where no terminal is: plain lines with count, rate and ETA (a log under nohup or
a cluster scheduler), none for short steps."""

from __future__ import annotations

import os
import subprocess
import sys

from facetrain.progress import PlainProgress
from helpers import make_faces


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
