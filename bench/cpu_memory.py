"""Networks on a CPU with glibc's default malloc against the freed memory kept
(`devices.keep_freed_memory`), for the CPU jobs that run a network batch after batch:

1. embedding faces with the default model compiled for ONNX Runtime (`embed`, `compare`,
   `eval` of a `pretrained:` model: `compiled.embed_source`);
2. embedding faces with a trained model in PyTorch (`eval`, `embed`, `filter`, `classify`,
   verification during training: `inference.feed.embed`), with its flip, at 128 faces a
   forward pass (the batch before) and at `feed.CPU_BATCH`;
3. a training step (forward, softmax head, backward, SGD), at batch 64.

Each variant runs in a fresh process (malloc's settings are a process's), on random faces of
the model's input size (the arithmetic does not depend on the pixels), with every core; the
variants of a group alternate round after round, and each row's ratio is its median against
the first row's. `sys` is the kernel's share: the pages of each freed activation handed back
and faulted in again, zeroed.

    .venv/bin/python bench/cpu_memory.py [--models nn4_small2 mobilefacenet iresnet18_050]
        [--faces 256] [--steps 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys

from facetrain.devices import cpu_name


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


def embed_compiled(model: str, keep: bool, batch: int, n: int) -> dict:
    """Faces a second of a pretrained model compiled for ONNX Runtime (`compiled.embed_source`,
    `compiled.BATCH` faces a call), after one warm-up call."""
    import numpy as np

    from facetrain import devices
    from facetrain.inference import compiled
    from facetrain.inference.sources import Arrays

    if not keep:
        devices.keep_freed_memory = lambda limit=0: None
    fm = compiled.open_for_use(model)
    size = fm.pre.input_size
    faces = list(np.random.default_rng(0).integers(0, 256, (n, size, size, 3), np.uint8))
    compiled.embed_source(fm, Arrays(faces[:batch]))
    return _timed(lambda: compiled.embed_source(fm, Arrays(faces)), n)


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
    return {"per_s": n / (b.elapsed - a.elapsed), "sys": b.system - a.system,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip


def run_variant(job: str, model: str, keep: bool, batch: int, n: int) -> dict:
    """One variant in a fresh process."""
    args = [sys.executable, __file__, "--variant", json.dumps([job, model, keep, batch, n])]
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["nn4_small2", "mobilefacenet", "iresnet18_050"])
    ap.add_argument("--pretrained", default="pretrained:dlib_resnet")
    ap.add_argument("--faces", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.variant:
        job, model, keep, batch, n = json.loads(a.variant)
        jobs = {"embed": embed_faces, "embed onnx": embed_compiled, "train": train_steps}
        print(json.dumps(jobs[job](model, keep, batch, n)))
        return
    from facetrain.inference.compiled import BATCH
    from facetrain.inference.feed import CPU_BATCH

    os.environ["FACETRAIN_THREADS"] = str(len(os.sched_getaffinity(0)))  # not the load's
    print(f"{cpu_name()}, {os.cpu_count()} cores, every core; {a.faces} faces, "
          f"{a.steps} steps of 64; medians of {a.rounds} alternated rounds")  # fmt: skip
    print("| job | model | malloc | batch | per s | ratio | rounds | sys s | peak MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    groups = [("embed onnx", a.pretrained, [(False, BATCH), (True, BATCH)], a.faces)]
    for model in a.models:
        groups += [("embed", model, [(False, 128), (True, 128), (True, CPU_BATCH)], a.faces),
                   ("train", model, [(False, 64), (True, 64)], a.steps)]  # fmt: skip
    for job, model, rows, n in groups:
        runs = [[run_variant(job, model, keep, batch, n) for keep, batch in rows]
                for _ in range(a.rounds)]  # fmt: skip
        base = statistics.median(r[0]["per_s"] for r in runs)
        for k, (keep, batch) in enumerate(rows):
            _row(job, model, keep, batch, [r[k] for r in runs], base)


def _row(job: str, model: str, keep: bool, batch: int, runs: list[dict], base: float) -> None:
    """A variant's median, its ratio to the baseline's median, and the spread of rounds."""
    per_s = [r["per_s"] for r in runs]
    med = statistics.median(per_s)
    print(f"| {job} | {model} | {'kept' if keep else 'default'} | {batch} | {med:.1f} | "
          f"{med / base:.2f}x | {min(per_s):.1f}–{max(per_s):.1f} | "
          f"{statistics.median(r['sys'] for r in runs):.1f} | "
          f"{max(r['peak_mb'] for r in runs):.0f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
