"""Many processes through torchrun (gloo on CPU): ranks in sync, one writer, elastic resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from facetrain.data.packed import pack
from facetrain.data.sampler import PKBatches
from facetrain.train import checkpoint
from facetrain.train.distributed import shard
from helpers import make_faces

TORCHRUN = Path(sys.executable).with_name("torchrun")
COMMON = [
    "--model", "nn4_small2", "--batch-size", "16", "--set", "epoch_size=3",
    "--set", "embedding_size=32", "--set", "input_size=80", "--set", "log_every=1",
]  # fmt: skip


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("ddp")
    pack(str(make_faces(tmp / "faces", ids=10, per=8)), tmp / "pack", progress=False)
    return tmp / "pack"


def launch(nproc: int, *args) -> str:
    """`facetrain train` in `nproc` processes; torchrun's own temporary folders (it leaves
    a torchelastic_* folder behind each launch) in one removed afterwards."""
    if nproc == 1:
        cmd = [sys.executable, "-m", "facetrain", "train"]
    else:
        cmd = [str(TORCHRUN), "--standalone", f"--nproc_per_node={nproc}", "-m", "facetrain"]
        cmd.append("train")
    with tempfile.TemporaryDirectory(prefix="facetrain-ddp-") as tmp:
        env = dict(os.environ, OMP_NUM_THREADS="1", TMPDIR=tmp)
        res = subprocess.run(
            cmd + [str(a) for a in args], capture_output=True, text=True, env=env, timeout=300
        )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    return out


def steps(run: Path) -> list[int]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [x["step"] for x in lines if "loss" in x and not x.get("epoch_end")]


def checkpoint_meta(run: Path) -> dict:
    return checkpoint.load(run)[1]


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed")
def test_two_processes_stay_in_sync_then_resume_with_one(packed, tmp_path):
    run = tmp_path / "run"
    out = launch(2, "--data", packed, "--out", run, "--loss", "softmax", "--epochs", "1", *COMMON)
    assert "2 processes finished in sync" in out
    assert out.count("run folder:") == 1  # rank 0 speaks for the job
    assert steps(run) == [1, 2, 3]  # one writer: each step logged once
    assert checkpoint_meta(run)["world_size"] == 2
    assert not list(run.glob("*.tmp")) and (run / "model.safetensors").exists()

    out = launch(1, "--data", packed, "--out", run, "--loss", "softmax", "--epochs", "2", *COMMON)
    assert "checkpointed with 2 processes, now 1" in out
    assert steps(run) == [1, 2, 3, 4, 5, 6]
    assert checkpoint_meta(run)["world_size"] == 1


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed")
def test_partial_fc_run_on_two_processes_resumes_on_one(packed, tmp_path):
    run = tmp_path / "pfc"
    pfc = ["--loss", "arcface", "--set", "partial_fc=true", "--set", "sample_rate=0.5",
           "--set", "margin_s=16", *COMMON]  # fmt: skip
    out = launch(1, "--data", packed, "--out", run, "--epochs", "1", *pfc)
    one = checkpoint.load(run)[0]["head.weight"]
    assert one.shape == (10, 32)

    out = launch(2, "--data", packed, "--out", run, "--epochs", "2", *pfc)
    assert "checkpointed with 1 processes, now 2" in out and "in sync" in out
    both = checkpoint.load(run)[0]
    assert both["head.weight"].shape == (10, 32)  # the shards saved whole
    assert not np.allclose(both["head.weight"].numpy(), one.numpy())  # and trained
    assert steps(run) == [1, 2, 3, 4, 5, 6]


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed")
def test_partial_fc_shards_start_from_a_softmax_run(packed, tmp_path):
    """Each rank takes its own rows of the softmax weights as its shard of the centres."""
    soft, arc = tmp_path / "soft", tmp_path / "arc"
    launch(1, "--data", packed, "--out", soft, "--loss", "softmax", "--epochs", "1", *COMMON)
    out = launch(
        2, "--data", packed, "--out", arc, "--epochs", "1", "--lr", "0",  # saves its start
        "--loss", "arcface", "--set", "partial_fc=true", "--set", f"init_from={soft}", *COMMON,
    )  # fmt: skip
    assert "class centres from the softmax weights" in out
    a, b = (checkpoint.load(run)[0] for run in (soft, arc))
    assert torch.equal(b["head.weight"], a["head.fc.weight"])  # the shards, saved whole


def test_pk_batches_shard_into_whole_identities():
    labels = np.repeat(np.arange(12), 5)
    sampler = PKBatches(labels, p=4, k=3, seed=1)
    batch = sampler.batch(0, 0)
    parts = [shard(batch, r, 2) for r in range(2)]
    assert parts[0] + parts[1] == batch
    for part in parts:
        ids = labels[part]
        assert all((ids == i).sum() == 3 for i in set(ids))  # K images of each identity


def test_cloud_platform_flags_and_environment(packed, tmp_path):
    """A platform launches `facetrain train` unchanged: folders come from the environment
    (FACETRAIN_*) or the UCloud-style flags."""
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        FACETRAIN_DATA_DIR=str(packed.parent),
        FACETRAIN_OUTPUT_DIR=str(tmp_path / "output"),
        FACETRAIN_LOG_DIR=str(tmp_path / "logs"),
        FACETRAIN_WORK_DIR=str(tmp_path / "work"),
        FACETRAIN_NUM_GPUS="0",
    )
    cmd = [sys.executable, "-m", "facetrain", "train", "--data", packed.name, "--loss", "softmax",
           "--epochs", "1", *COMMON]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    run = tmp_path / "output" / "run"
    assert (run / "model.safetensors").exists() and steps(run) == [1, 2, 3]
    assert list((tmp_path / "logs").glob("events.out.tfevents.*"))
    assert not (run / "tensorboard").exists() and (tmp_path / "work").is_dir()
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["data"] == [str(packed)] and cfg["device"] == "cpu"

    env["FACETRAIN_NUM_GPUS"] = "2"
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2 and "no CUDA device" in res.stdout + res.stderr
