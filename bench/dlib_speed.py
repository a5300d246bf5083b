"""Faces/s of facetrain's port of dlib's ResNet against dlib itself, on the same chips.

Both embed the same 150x150 chips (dlib's own chips of lfw-raw-sample where the data is
here, else random pixels: the time does not depend on them) at batch 1 and batch 64, in
one run; the ratio port/dlib is printed for each, the last line for batch 64.

    .venv/bin/python bench/dlib_speed.py [--faces 128] [--threads N]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from facetrain.devices import cpu_name
from facetrain.inference.dlib_oracle import DlibPipeline
from facetrain.inference.saved import load_model


def rate(fn, chips: list[np.ndarray], batch: int, repeat: int = 2) -> float:
    """Faces per second, the best of `repeat` passes over the chips."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for i in range(0, len(chips), batch):
            fn(chips[i : i + batch])
        best = min(best, time.perf_counter() - t0)
    return len(chips) / best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--faces", type=int, default=128)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    chips = [rng.integers(0, 256, (150, 150, 3), dtype=np.uint8) for _ in range(args.faces)]
    dlib_net = DlibPipeline()
    net = load_model("pretrained:dlib_resnet")[0]

    @torch.inference_mode()
    def port(batch):
        x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float()
        return net.embed(x).numpy()

    port(chips[:2])
    dlib_net.descriptors(chips[:2])  # warm-up
    print(
        f"{cpu_name()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    )
    for batch in (1, 64):
        theirs = rate(dlib_net.descriptors, chips, batch)
        ours = rate(port, chips, batch)
        with padding_every_add():
            before = rate(port, chips, batch)
        print(
            f"batch {batch:2d}: dlib {theirs:7.1f} faces/s, facetrain port {ours:7.1f} faces/s, "
            f"ratio {ours / theirs:.2f}x; the port padding every add (before 2026-12-04) "
            f"{before:7.1f} faces/s, ratio {ours / before:.2f}x"
        )


@contextlib.contextmanager
def padding_every_add():
    """The port as it was: every shortcut add zero-padded, also where shapes match."""
    from facetrain.models import dlib_resnet

    def padded(a, b):
        c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))
        pad = [(0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]) for t in (a, b)]
        return F.pad(a, pad[0]) + F.pad(b, pad[1])

    kept = dlib_resnet._add_padded
    dlib_resnet._add_padded = padded
    try:
        yield
    finally:
        dlib_resnet._add_padded = kept


if __name__ == "__main__":
    main()
