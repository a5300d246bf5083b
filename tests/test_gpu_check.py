"""`make gpu-check`'s CPU dry run: the GPU proof's script keeps working where no GPU is."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import BBT, SHARED, need

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"
SRC = SCRIPT.parents[1] / "src"


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
    half = "scratch-iresnet18-050-cosface-b256-30"
    # (its own setting: not amp=bf16, which took 27 of the test's 37 s on a CPU without bf16
    # kernels; bf16 training is tested in test_train)
    recipes = ["recipes/scratch-b256-40.toml", f"recipes/{half}.toml@lr=0.3"]
    cmd = [sys.executable, str(RECIPES), "--dry-run", "--out", str(tmp_path / "out"),
           "--work", str(tmp_path / "work"), *recipes]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                       cwd=RECIPES.parents[1])  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = json.loads((tmp_path / "out" / "gpu_recipes.json").read_text())
    assert sorted((x["recipe"], x["end"], x["steps"]) for x in rows) == [  # as they ended
        ("scratch-b256-40", "finished", 2),
        (half, "finished", 2),
    ]
    cfg = json.loads((tmp_path / "work" / half / "config.json").read_text())
    assert cfg["lr"] == 0.3 and cfg["model"] == "iresnet18_050"
    assert (tmp_path / "out" / "scratch-b256-40.safetensors").stat().st_size > 1_000_000
    # the half-width IResNet comes back from a lent GPU (files over 16 MB do not)
    assert 11e6 < (tmp_path / "out" / f"{half}.safetensors").stat().st_size < 16e6
    with zipfile.ZipFile(tmp_path / "out" / "runs.zip") as z:  # each run's logs and machine
        machine = json.loads(z.read(f"{half}/machine.json"))
        assert {f"{half}/{n}" for n in ("metrics.jsonl", "config.json")} <= set(z.namelist())
    assert machine["torch"] and machine["cpu_kernels"]
    late = [*cmd[:-2], "--work", str(tmp_path / "late"), "--deadline-s", "0", recipes[0]]
    r = subprocess.run(late, capture_output=True, text=True, timeout=300, cwd=RECIPES.parents[1])
    assert r.returncode == 1 and "stopped at the deadline" in r.stdout, r.stdout[-2000:]


def test_distillation_recipes_share_one_pass_of_their_teacher(tmp_path):
    """Two students of one teacher (a small model file here): the teacher embeds the faces
    once, both runs train on the same cached targets, and both are evaluated."""
    import torch

    from facetrain.inference.record import Preprocess, save_model
    from facetrain.models import create_model

    torch.manual_seed(0)
    net = create_model("nn4_small2", 32).eval()
    pre = Preprocess(model="nn4_small2", embedding_size=32, input_size=80)
    teacher = save_model(tmp_path / "teacher.safetensors", net, pre)
    recipes = [
        f"recipes/distill-nn4-dlib.toml@teacher={teacher}",
        f"recipes/distill-iresnet18-dlib.toml@teacher={teacher},embedding_size=32",
    ]
    cmd = [sys.executable, str(RECIPES), "--dry-run", "--out", str(tmp_path / "out"),
           "--work", str(tmp_path / "work"), *recipes]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                       cwd=RECIPES.parents[1])  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.count("faces once") == 1, r.stdout[-3000:]  # one teacher pass
    parts = [tmp_path / "work" / n / "teacher" / "part-000000.npz"
             for n in ("distill-nn4-dlib", "distill-iresnet18-dlib")]  # fmt: skip
    assert (parts[0].read_bytes() == parts[1].read_bytes()) and len(parts[0].read_bytes()) > 1000
    for n in ("distill-nn4-dlib", "distill-iresnet18-dlib"):
        log = (tmp_path / "work" / f"{n}.log").read_text()
        assert "faces once" not in log  # the run found its targets made
    rows = json.loads((tmp_path / "out" / "gpu_recipes.json").read_text())
    assert sorted((x["recipe"], x["end"]) for x in rows) == [
        ("distill-iresnet18-dlib", "finished"), ("distill-nn4-dlib", "finished")]  # fmt: skip


def test_a_run_that_trained_all_its_epochs_is_given_grace_at_the_deadline(tmp_path):
    """Only a run still writing its model waits past the deadline; one with epochs to go
    (or with nothing logged yet) is stopped at it."""
    sys.path.insert(0, str(RECIPES.parent))
    from gpu_recipes import _all_epochs_done

    (tmp_path / "config.json").write_text(json.dumps({"epochs": 2}))
    assert not _all_epochs_done(tmp_path)  # nothing logged
    lines = [{"epoch": 0, "step": 5, "loss": 1.0}, {"epoch": 0, "epoch_end": True, "loss": 1.0}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert not _all_epochs_done(tmp_path)  # one epoch of two
    lines.append({"epoch": 1, "epoch_end": True, "loss": 0.5})
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert _all_epochs_done(tmp_path)


def test_a_teacher_travels_in_half_precision_with_its_record(tmp_path):
    """bench/gpu_bundle.py --teacher: half the bytes, the same record, the same embeddings
    to half precision's rounding."""
    import numpy as np
    import torch

    from facetrain.inference.record import Preprocess, save_model
    from facetrain.inference.saved import load_model
    from facetrain.models import create_model

    sys.path.insert(0, str(SCRIPT.parent))
    from gpu_bundle import half_teacher

    torch.manual_seed(0)
    pre = Preprocess(model="nn4_small2", embedding_size=32, input_size=80, threshold=0.9)
    full = save_model(tmp_path / "t.safetensors", create_model("nn4_small2", 32).eval(), pre)
    half = half_teacher(str(full), tmp_path / "carry")
    assert half.name == "t-fp16.safetensors"
    assert half.stat().st_size < 0.6 * full.stat().st_size
    (a, pa), (b, pb) = load_model(full), load_model(half)
    assert pa == pb
    x = torch.rand(4, 3, 80, 80) * 255
    with torch.no_grad():
        cos = (a.embed(x) * b.embed(x)).sum(1).numpy()
    assert np.all(cos > 0.999)


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


@need(BBT)
def test_the_scan_bundle_scans_there_with_what_it_carries(tmp_path):
    """bench/gpu_bundle.py --scan, then bench/scan_devices.py as the lent machine runs it:
    MTCNN's weights are found in the bundle (on PYTHONPATH, never imported), the default
    model travels in half precision, and the faces found are a plain `library scan`'s."""
    sys.path.insert(0, str(SCRIPT.parent))
    from gpu_bundle import scan_bundle

    shared = tmp_path / "shared"
    shutil.copytree(BBT, shared / "photos" / "bbt")
    for person in sorted((SHARED / "populations" / "east-asian-idols").iterdir())[:3]:
        shutil.copytree(person, shared / "populations" / "ea" / person.name)
    photos = sum(1 for p in shared.rglob("*") if p.is_file())
    scan_bundle(shared, tmp_path / "carry")
    env = os.environ | {"PYTHONPATH": f"{SRC}{os.pathsep}{tmp_path / 'carry' / 'site'}"}
    where = subprocess.run([sys.executable, "-c", "from facetrain.align.weights import "
                            "weights_folder; print(weights_folder())"], env=env,
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert Path(where.strip()) == tmp_path / "carry" / "site" / "facenet_pytorch" / "data"
    cmd = [sys.executable, str(SCRIPT.parent / "scan_devices.py"), str(tmp_path / "carry" /
           "scan-photos"), "--model", str(tmp_path / "carry" / "dlib_resnet-fp16.safetensors"),
           "--setting", "cpu:2", "--out", str(tmp_path / "out")]  # fmt: skip
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    [row] = json.loads((tmp_path / "out" / "scan_devices.json").read_text())["rows"]
    plain = tmp_path / "plain.json"
    subprocess.run([sys.executable, "-m", "facetrain", "library", "scan", str(shared), "--db",
                    str(tmp_path / "plain.db"), "--json", str(plain)], check=True,
                   capture_output=True)  # fmt: skip
    rep = json.loads(plain.read_text())
    assert row["photos"] == rep["new"] == photos
    assert (row["faces"], row["usable"]) == (rep["faces"], rep["usable_faces"])
    assert row["photos_per_s"] > 0 and "| cpu:2 |" in r.stdout
