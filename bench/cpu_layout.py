"""Faces on a CPU in channels-last (NHWC) against PyTorch's default layout (NCHW), for every
CPU job that embeds with a trained model in PyTorch (`eval`, `embed`, `filter`, `classify`,
verification during training, distillation's teacher: `inference.feed.embed`).

Untrained networks on random faces of their input size (the arithmetic does not depend on
the pixels), in one process with every core; the two layouts alternate round after round
(after one warm-up pass each), each row's ratio is the median of the rounds, and the largest
difference between the two layouts' embeddings is printed beside it.

    .venv/bin/python bench/cpu_layout.py [--models nn4_small2 mobilefacenet iresnet18_050]
        [--faces 512] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["nn4_small2", "mobilefacenet",
                                                    "iresnet18_050"])  # fmt: skip
    ap.add_argument("--faces", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.faces} faces, "
          f"{args.rounds} rounds alternated")  # fmt: skip
    print("| model | input | NCHW faces/s | channels-last faces/s | ratio | max difference |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        print(row(name, args.faces, args.rounds), flush=True)


def row(name: str, n: int, rounds: int) -> str:
    import numpy as np
    import torch

    from facetrain.inference import feed
    from facetrain.inference.record import Preprocess
    from facetrain.inference.saved import FaceModel
    from facetrain.inference.sources import Arrays
    from facetrain.models import create_model

    torch.manual_seed(0)
    net = create_model(name, 128)
    size = net.input_size
    fm = FaceModel.of_module(net, Preprocess(name, 128, size), name)
    faces = list(np.random.default_rng(0).integers(0, 256, (n, size, size, 3), np.uint8))

    def embed(last: bool) -> tuple[float, np.ndarray]:
        feed.CPU_CHANNELS_LAST = last
        t = time.perf_counter()
        e = feed.embed(fm, Arrays(faces), size=size, normalize="fixed", flip="none")
        return time.perf_counter() - t, e

    embed(False), embed(True)  # warm-up
    seconds: dict[bool, list[float]] = {False: [], True: []}
    out = {}
    for _ in range(rounds):
        for last in (False, True):
            dt, out[last] = embed(last)
            seconds[last].append(dt)
    ratio = statistics.median(a / b for a, b in zip(seconds[False], seconds[True]))
    diff = float(np.abs(out[False] - out[True]).max())
    a, b = (n / statistics.median(seconds[k]) for k in (False, True))
    return f"| {name} | {size} | {a:.1f} | {b:.1f} | **{ratio:.2f}x** | {diff:.1e} |"


if __name__ == "__main__":
    main()
