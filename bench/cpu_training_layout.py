"""Training on a CPU with `channels_last = true` against the default (PyTorch's NCHW
layout): whole `train()` runs of the same settings on the same faces, the two alternating
round after round, so what is measured is what a user's run gets (data loading,
augmentation, forward, backward, update) and not a bare step (`bench/train_step.py`).

Each run trains one epoch of `--steps` batches of mini-train's faces from a fresh start and
is timed whole, after one untimed run of each layout; the ratio is the median of the
rounds' ratios, and the two layouts' last losses are printed side by side (the same
arithmetic in another order: close, not always equal).

    .venv/bin/python bench/cpu_training_layout.py [--data ../shared/datasets/mini-train]
        [--models nn4_small2 mobilefacenet iresnet18_050] [--steps 12] [--rounds 3]
        [--threads 0]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mini-train"
BATCH = 32


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--models", nargs="+",
                    default=["nn4_small2", "mobilefacenet", "iresnet18_050"])  # fmt: skip
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="0: every core")
    args = ap.parse_args()
    import torch

    from facetrain.data.packed import pack
    from resumable_cost import cpu_name

    if not args.data.is_dir():
        raise SystemExit(f"{args.data}: no such folder (give --data)")
    threads = args.threads or torch.get_num_threads()
    print(f"{cpu_name()}, torch {torch.__version__}, {threads} threads; "
          f"{args.steps} steps of {BATCH} a run, {args.rounds} rounds alternated")  # fmt: skip
    print("| model | input | NCHW: images/s | channels-last: images/s | ratio | "
          "last loss NCHW / channels-last |\n|---|---|---|---|---|---|")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        pack(str(args.data), Path(tmp) / "pack", progress=False)
        for name in args.models:
            print(row(name, Path(tmp), args.steps, args.rounds, args.threads), flush=True)


def run(name: str, tmp: Path, last: bool, steps: int, k: int, threads: int) -> tuple[float, float]:
    """Seconds of one whole run, and its last loss."""
    from facetrain.train.config import TrainConfig
    from facetrain.train.loop import train

    out = tmp / f"{name}-{last}-{k}"
    cfg = TrainConfig.of(data=[str(tmp / "pack")], out=str(out), model=name, epochs=1,
                         epoch_size=steps, batch_size=BATCH, lr=0.05, log_every=1,
                         channels_last=last, checkpoint_minutes=1e9, threads=threads)  # fmt: skip
    t = time.perf_counter()
    train(cfg, log=lambda *_: None)
    dt = time.perf_counter() - t
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return dt, [d["loss"] for d in lines if "loss" in d and not d.get("epoch_end")][-1]


def row(name: str, tmp: Path, steps: int, rounds: int, threads: int) -> str:
    from facetrain.models import create_model

    size = create_model(name, 128).input_size
    seconds: dict[bool, list[float]] = {False: [], True: []}
    loss: dict[bool, float] = {}
    run(name, tmp, False, 1, -1, threads), run(name, tmp, True, 1, -1, threads)  # warm-up
    for k in range(rounds):
        for last in (False, True):
            dt, loss[last] = run(name, tmp, last, steps, k, threads)
            seconds[last].append(dt)
    ratio = statistics.median(a / b for a, b in zip(seconds[False], seconds[True]))
    a, b = (steps * BATCH / statistics.median(seconds[k]) for k in (False, True))
    return (f"| {name} | {size} | {a:.1f} | {b:.1f} | **{ratio:.2f}x** | "
            f"{loss[False]:.4f} / {loss[True]:.4f} |")  # fmt: skip


if __name__ == "__main__":
    main()
