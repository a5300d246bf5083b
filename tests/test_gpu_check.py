"""`make gpu-check`'s CPU dry run: the GPU proof's script keeps working where no GPU is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"


def test_the_gpu_check_dry_run_passes_every_stage(tmp_path):
    r = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "dry run (no GPU)" in r.stdout and "0 of 3 stages failed" in r.stdout
    results = json.loads((tmp_path / "gpu_check.json").read_text())
    paths = results["b_device_paths"]
    assert paths["data_on_device_raw"]["steps"] == 4 and paths["align"]["inputs"] == 16
    assert results["c_training_run"]["steps"] == 4
