"""Shared fixtures: where the real data lives, and small generated images."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _share_the_cores() -> None:
    """pytest-xdist's workers share the machine: each computes on its share of the cores
    (two workers on two cores: a thread each), in-process and in what it starts, unless
    OMP_NUM_THREADS says otherwise. torch's default, a thread a core in every worker, spins
    against the other worker: tests/test_models.py with tests/test_distill.py took 82 s
    on 2 cores against 39 s. Before torch is imported, which reads it then. The cores are
    the ones facetrain itself counts (`devices.cores_to_use`: affinity, a container's
    quota)."""
    from facetrain.devices import cores_to_use

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cores_to_use() // workers)))


_share_the_cores()
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
LFW_RAW = SHARED / "lfw-raw-sample"
LFW = SHARED / "lfw"
MINI_TRAIN = SHARED / "mini-train"
BBT = SHARED / "photos" / "bbt"


def need(path: Path):
    """Skip (cleanly, with the reason) when a shared dataset is absent."""
    return pytest.mark.skipif(not path.exists(), reason=f"{path} absent (real data not here)")


def save_rgb(path: Path, h: int = 40, w: int = 40, seed: int = 0, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, format=fmt)
    return path


def tree_hash(root: Path) -> str:
    """Hash of every path, mode and content below root (symlinks by their target)."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames) + sorted(dirnames):
            p = Path(dirpath) / name
            h.update(str(p.relative_to(root)).encode())
            if p.is_symlink():
                h.update(os.readlink(p).encode())
            elif p.is_file():
                h.update(str(p.stat().st_mode).encode())
                h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture
def lfw_raw_subset(tmp_path: Path) -> Path:
    """A list file of 24 real photos of lfw-raw-sample (skips when absent)."""
    if not LFW_RAW.exists():
        pytest.skip(f"{LFW_RAW} absent (real data not here)")
    from facetrain.data.listing import iter_samples, write_list

    samples = list(iter_samples(str(LFW_RAW)))[:24]
    out = tmp_path / "subset.txt"
    write_list(out, samples)
    return out


@pytest.fixture
def photos(tmp_path) -> Path:
    """A private copy: 3 group photos and 3 people × 3 portraits."""
    return copy_photos(tmp_path / "photos")


def copy_photos(dst: Path) -> Path:
    """`photos` into dst (skips when the real photos are absent)."""
    if not BBT.exists():
        pytest.skip(f"{BBT} absent (real data not here)")
    (dst / "group").mkdir(parents=True)
    for p in sorted((BBT / "group").iterdir())[:3]:
        shutil.copy(p, dst / "group" / p.name)
    for person in ("amy", "howard", "penny"):
        (dst / person).mkdir()
        for p in sorted((BBT / "reference" / person).iterdir())[:3]:
            shutil.copy(p, dst / person / p.name)
    return dst


def pytest_collection_modifyitems(items: list) -> None:
    """The slow tests first (`-m slow`: a couple of minutes each on 2 cores): started last,
    the longest keeps one core busy while the other has nothing left to do."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
