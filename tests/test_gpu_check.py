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


RECIPES = Path(__file__).resolve().parents[1] / "bench" / "gpu_recipes.py"


def test_the_gpu_recipes_dry_run_trains_side_by_side_and_stops_at_the_deadline(tmp_path):
    """bench/gpu_recipes.py on the CPU: two recipes (one with its own `@` settings) trained
    at once on generated faces, each finished model written in half precision; a rerun with
    no time left stops what has not finished and says so (exit 1)."""
    recipes = ["recipes/scratch-b256-40.toml", "recipes/scratch-iresnet18-cosface-30.toml@amp=bf16"]
    cmd = [sys.executable, str(RECIPES), "--dry-run", "--out", str(tmp_path / "out"),
           "--work", str(tmp_path / "work"), *recipes]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                       cwd=RECIPES.parents[1])  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = json.loads((tmp_path / "out" / "gpu_recipes.json").read_text())
    assert [(x["recipe"], x["end"], x["steps"]) for x in rows] == [
        ("scratch-b256-40", "finished", 2),
        ("scratch-iresnet18-cosface-30", "finished", 2),
    ]
    run = tmp_path / "work" / "scratch-iresnet18-cosface-30"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["amp"] == "bf16" and cfg["model"] == "iresnet18"
    assert (tmp_path / "out" / "scratch-b256-40.safetensors").stat().st_size > 1_000_000
    late = [*cmd[:-2], "--work", str(tmp_path / "late"), "--deadline-s", "0", recipes[0]]
    r = subprocess.run(late, capture_output=True, text=True, timeout=300, cwd=RECIPES.parents[1])
    assert r.returncode == 1 and "stopped at the deadline" in r.stdout, r.stdout[-2000:]


def test_the_gpu_bundle_joins_many_files_into_one_and_back(tmp_path):
    sys.path.insert(0, str(SCRIPT.parent))
    from gpu_bundle import join, unbundle

    src = tmp_path / "datasets"
    files = {f"a/p{i}/{j}.jpg": bytes([i, j]) * (i + j) for i in range(3) for j in range(4)}
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    join(src, tmp_path)
    unbundle(tmp_path, tmp_path / "back")
    for rel, data in files.items():
        assert (tmp_path / "back" / "datasets" / rel).read_bytes() == data
