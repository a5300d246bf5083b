"""Images/s of the loader training uses (`data.loader.TrainLoader`: the sampler's batch for
(epoch, step), decoded from the pack, augmented, in the training process) vs torchvision
ImageFolder + PIL through a torch DataLoader with 0 and 2 worker processes, one run.

Both read the same aligned faces (../shared/datasets/mini-train, or --data, a folder per
identity) with the same augmentation (random horizontal flip, (x - 127.5) / 128) into
float32 batches of --batch-size. The packs are made once before timing (a one-off
preparation step), raw-pixel and encoded.

    .venv/bin/python bench/loader.py [--data DIR] [--limit N] [--workers 0 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torchvision import datasets, transforms

from facetrain.data.augment import Augment
from facetrain.data.listing import iter_samples, write_list
from facetrain.data.loader import TrainLoader
from facetrain.data.packed import PackedDataset, pack
from facetrain.data.sampler import EpochBatches
from facetrain.devices import cpu_name

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "mini-train"


def rate(dataset, batch_size: int, workers: int, epochs: int) -> float:
    """ImageFolder through a torch DataLoader: images/s after a warm-up epoch."""
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
        persistent_workers=workers > 0,
    )  # fmt: skip
    n = 0
    for x, _ in loader:  # warm-up epoch: page cache, worker start-up
        n += len(x)
    t0, n = time.perf_counter(), 0
    for _ in range(epochs):
        for x, _ in loader:
            n += len(x)
    return n / (time.perf_counter() - t0)


def rate_train(ds: PackedDataset, batch_size: int, epochs: int, device: str | None = None):
    """TrainLoader as the training loop drives it: images/s after a warm-up epoch."""
    sampler = EpochBatches(len(ds), batch_size, seed=0)
    data = TrainLoader(ds, sampler, Augment(flip=True), ds[0][0].shape[-1], device)
    sync = torch.cuda.synchronize if (device or "").startswith("cuda") else (lambda: None)

    def epoch(e: int) -> int:
        gen, n = torch.Generator().manual_seed(e), 0
        for b in range(len(data)):
            n += len(data.batch(data.indices(e, b), gen)[0])
        return n

    epoch(0)
    sync()
    t0 = time.perf_counter()
    n = sum(epoch(e) for e in range(1, epochs + 1))
    sync()
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--limit", type=int, default=4000, help="images to use (0 = all)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if not os.path.isdir(args.data):
        raise SystemExit(f"{args.data}: not found (see ../shared/datasets/README.md)")
    torch.set_num_threads(1)  # a loader's job runs beside training; give both one core each

    with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp:
        samples = list(iter_samples(args.data))
        if args.limit:
            samples = [samples[i] for i in np.linspace(0, len(samples) - 1, args.limit).astype(int)]
        # the same images for both: a folder of symlinks for ImageFolder, a pack for us
        folder = Path(tmp) / "folder"
        for s in samples:
            dst = folder / s.identity / Path(s.path).name
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(os.path.abspath(s.path))
        write_list(Path(tmp) / "list.txt", samples)
        pack(str(Path(tmp) / "list.txt"), Path(tmp) / "pack", progress=False)
        pack(str(Path(tmp) / "list.txt"), Path(tmp) / "enc", store="encoded", progress=False)

        base_tf = transforms.Compose(
            [
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),  # PIL → float 0..1
                transforms.Normalize([127.5 / 255] * 3, [128 / 255] * 3),
            ]
        )
        baseline = datasets.ImageFolder(str(folder), transform=base_tf)
        ours = PackedDataset(Path(tmp) / "pack", split="train")
        enc = PackedDataset(Path(tmp) / "enc", split="train")
        assert len(baseline) == len(ours) == len(enc) == len(samples)

        print(f"machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}")
        print(f"images: {len(samples)} from {args.data}, batch {args.batch_size}")
        o_rates, e_rates = [], []
        for _ in range(args.rounds):
            o_rates.append(rate_train(ours, args.batch_size, args.epochs))
            e_rates.append(rate_train(enc, args.batch_size, args.epochs))
        o, e = float(np.median(o_rates)), float(np.median(e_rates))
        for w in args.workers:
            b = float(np.median([rate(baseline, args.batch_size, w, args.epochs)
                                 for _ in range(args.rounds)]))  # fmt: skip
            print(f"ImageFolder+PIL, {w} workers {b:6.0f} img/s | TrainLoader raw pack {o:6.0f} "
                  f"img/s ratio {o / b:.2f}x | encoded pack {e:6.0f} img/s ratio {e / b:.2f}x "
                  f"(medians of {args.rounds})")  # fmt: skip
        if torch.cuda.is_available():
            name = torch.cuda.get_device_name()
            for label, ds in (("raw", ours), ("encoded", enc)):
                g = rate_train(ds, args.batch_size, args.epochs, "cuda")
                c = o if label == "raw" else e
                print(f"GPU data path ({name}), {label} pack: decode+augment on CPU {c:7.0f} img/s"
                      f" | on GPU {g:7.0f} img/s  ratio {g / c:.2f}x")  # fmt: skip
        else:
            print("GPU data path: not measured (no CUDA device here)")


if __name__ == "__main__":
    main()
