"""PyTorch on a CPU with glibc's default malloc against the freed memory kept
(`devices.keep_freed_memory`), for the two CPU jobs that run a network batch after batch:

1. embedding faces with a trained model (`eval`, `embed`, `filter`, `classify`, verification
   during training: `inference.feed.embed`), with its flip, at 128 faces a forward pass (the
   batch before) and at `feed.CPU_BATCH`;
2. a training step (forward, softmax head, backward, SGD), at batch 64.

Each variant runs in a fresh process (malloc's settings are a process's), on random faces of
the model's input size (the arithmetic does not depend on the pixels), with every core; each
row's ratio is against the first row of its model, measured in the same run. `sys` is the
kernel's share: the pages of each freed activation handed back and faulted in again, zeroed.

    .venv/bin/python bench/cpu_memory.py [--models nn4_small2 mobilefacenet iresnet18_050]
        [--faces 512] [--steps 4]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys


def embed_faces(model: str, keep: bool, batch: int, n: int) -> dict:
    """Faces a second through `feed.embed`, after one warm-up batch."""
    import numpy as np
    import torch

    from facetrain import devices
    from facetrain.inference import feed
    from facetrain.inference.record import Preprocess
    from facetrain.inference.saved import FaceModel
    from facetrain.inference.sources import Arrays
    from facetrain.models import create_model

    if not keep:  # feed.embed keeps freed memory itself: not in the baseline
        devices.keep_freed_memory = lambda limit=0: None
    torch.manual_seed(0)
    net = create_model(model, 128)
    size = net.input_size
    pre = Preprocess(model, 128, size, alignment={"mode": "similarity", "size": size})
    fm = FaceModel.of_module(net, pre, model)
    faces = list(np.random.default_rng(0).integers(0, 256, (n, size, size, 3), np.uint8))

    def embed(k: int) -> None:
        feed.embed(fm, Arrays(faces[:k]), size=size, normalize="fixed", batch=batch)

    embed(batch)  # warm-up
    return _timed(lambda: embed(n), n)


def train_steps(model: str, keep: bool, batch: int, steps: int) -> dict:
    """Images a second of SGD steps, after two warm-up steps."""
    import torch
    import torch.nn.functional as F

    from facetrain.devices import keep_freed_memory
    from facetrain.models import create_model

    if keep:
        keep_freed_memory()
    torch.manual_seed(0)
    net = create_model(model, 128)
    head = torch.nn.Linear(128, 600)
    opt = torch.optim.SGD([*net.parameters(), *head.parameters()], lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, net.input_size, net.input_size)
    y = torch.randint(0, 600, (batch,))

    def step() -> None:
        F.cross_entropy(head(net(x)), y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step(), step()
    return _timed(lambda: [step() for _ in range(steps)], steps * batch)


def _timed(work, n: int) -> dict:
    a = os.times()
    work()
    b = os.times()
    wall = b.elapsed - a.elapsed
    return {"per_s": n / wall, "wall": wall, "user": b.user - a.user,
            "sys": b.system - a.system,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip


def run_variant(job: str, model: str, keep: bool, batch: int, n: int) -> dict:
    """One variant in a fresh process."""
    args = [sys.executable, __file__, "--variant", json.dumps([job, model, keep, batch, n])]
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["nn4_small2", "mobilefacenet", "iresnet18_050"])
    ap.add_argument("--faces", type=int, default=512)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.variant:
        job, model, keep, batch, n = json.loads(a.variant)
        print(json.dumps((embed_faces if job == "embed" else train_steps)(model, keep, batch, n)))
        return
    from facetrain.inference.feed import CPU_BATCH

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch threads: all; {a.faces} faces, {a.steps} steps of 64")  # fmt: skip
    print("| job | model | malloc | batch | per s | ratio | wall s | user s | sys s | peak MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for model in a.models:
        for job, rows in (("embed", [(False, 128), (True, 128), (True, CPU_BATCH)]),
                          ("train", [(False, 64), (True, 64)])):  # fmt: skip
            base = None
            for keep, batch in rows:
                n = a.faces if job == "embed" else a.steps
                r = run_variant(job, model, keep, batch, n)
                base = base or r["per_s"]
                print(f"| {job} | {model} | {'kept' if keep else 'default'} | {batch} | "
                      f"{r['per_s']:.1f} | {r['per_s'] / base:.2f}x | {r['wall']:.1f} | "
                      f"{r['user']:.1f} | {r['sys']:.1f} | {r['peak_mb']:.0f} |",
                      flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
