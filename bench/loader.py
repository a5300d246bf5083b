"""Images/s of PackedDataset + batch augmentation vs torchvision ImageFolder + PIL, one run.

Both read the same aligned faces (../shared/datasets/mini-train, or --data, a folder per
identity) with the same augmentation (random horizontal flip, (x - 127.5) / 128) into
float32 batches of --batch-size through a torch DataLoader with the same worker count
(ImageFolder: the usual per-sample loader; PackedDataset: `ds.loader()`, whole batches per
worker call). The pack is made once before timing (a one-off preparation step) with the
default raw-pixel store.

    .venv/bin/python bench/loader.py [--data DIR] [--limit N] [--workers 0 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torchvision import datasets, transforms

from facetrain.data.augment import Augment
from facetrain.data.listing import iter_samples, write_list
from facetrain.data.packed import PackedDataset, pack

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "mini-train"


def rate(dataset, batch_size: int, workers: int, epochs: int) -> float:
    if isinstance(dataset, PackedDataset):
        loader = dataset.loader(batch_size, shuffle=True, num_workers=workers)
    else:
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


def rate_direct(ds: PackedDataset, batch_size: int, device: str, epochs: int) -> float:
    """Whole batches straight from the pack, decoded and augmented on `device` (the GPU
    data path of `--set data_on_device=true`), in the training process."""
    order = np.random.default_rng(0).permutation(len(ds))
    batches = [order[i : i + batch_size].tolist() for i in range(0, len(ds), batch_size)]
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for b in batches[:3]:  # warm-up: nvJPEG/kernels initialised
        ds.batch(b, device)
    sync()
    t0, n = time.perf_counter(), 0
    for _ in range(epochs):
        for b in batches:
            n += len(ds.batch(b, device)[0])
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
        ours = PackedDataset(Path(tmp) / "pack", split="train", augment=Augment(flip=True))
        enc = PackedDataset(Path(tmp) / "enc", split="train", augment=Augment(flip=True))
        assert len(baseline) == len(ours) == len(enc) == len(samples)

        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
        print(f"images: {len(samples)} from {args.data}, batch {args.batch_size}")
        for w in args.workers:
            b_rates, o_rates, e_rates = [], [], []
            for _ in range(args.rounds):
                b_rates.append(rate(baseline, args.batch_size, w, args.epochs))
                o_rates.append(rate(ours, args.batch_size, w, args.epochs))
                e_rates.append(rate(enc, args.batch_size, w, args.epochs))
            b, o, e = (float(np.median(r)) for r in (b_rates, o_rates, e_rates))
            print(f"workers={w}: ImageFolder+PIL {b:6.0f} img/s | PackedDataset raw {o:6.0f} img/s"
                  f" ratio {o / b:.2f}x (goal >= 4x) | encoded {e:6.0f} img/s ratio {e / b:.2f}x"
                  f"  (medians of {args.rounds})")  # fmt: skip
        if torch.cuda.is_available():
            name = torch.cuda.get_device_name()
            for label, ds in (("raw", ours), ("encoded", enc)):
                c = rate_direct(ds, args.batch_size, "cpu", args.epochs)
                g = rate_direct(ds, args.batch_size, "cuda", args.epochs)
                print(f"GPU data path ({name}), {label} pack: decode+augment on CPU {c:7.0f} img/s"
                      f" | on GPU {g:7.0f} img/s  ratio {g / c:.2f}x")  # fmt: skip
        else:
            c = rate_direct(enc, args.batch_size, "cpu", args.epochs)
            print(f"GPU data path: not measured (no CUDA device here); the same path on the CPU,"
                  f" encoded pack, in-process: {c:.0f} img/s")  # fmt: skip


if __name__ == "__main__":
    main()
