"""Memory of the classification layer for huge identity counts, with and without Partial FC.

Computed, per GPU, for fp32 centres trained with SGD + momentum: the centres, their
gradient and momentum (3 × rows × D × 4 bytes), plus the logits and their gradient
(2 × batch rows × scored classes × 4 bytes). Without Partial FC every GPU holds all C
centres (data parallel) and scores its local batch against all of them; with it, a GPU
holds C / world centres and scores the *global* batch against sample_rate of its shard.

    .venv/bin/python bench/partial_fc_memory.py [--classes 1000000] [--dim 512] [--gpus 8]
"""

from __future__ import annotations

import argparse


def gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:7.2f} GiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--classes", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--batch-per-gpu", type=int, default=128)
    ap.add_argument("--sample-rates", type=float, nargs="+", default=[1.0, 0.3, 0.1])
    a = ap.parse_args()
    c, d, w, b = a.classes, a.dim, a.gpus, a.batch_per_gpu
    print(f"{c:,} identities, {d}-d embeddings, {w} GPUs x batch {b}, fp32, SGD momentum")
    full_w, full_l = 3 * c * d * 4, 2 * b * c * 4
    print(f"full classifier (data parallel): centres {gib(full_w)}  logits {gib(full_l)}"
          f"  total {gib(full_w + full_l)} per GPU")  # fmt: skip
    for r in a.sample_rates:
        rows = -(-c // w)
        pw, pl = 3 * rows * d * 4, 2 * (b * w) * int(r * rows) * 4
        less = (full_w + full_l) / (pw + pl)
        print(f"Partial FC, sample rate {r:.1f}: centres {gib(pw)}  logits {gib(pl)}"
              f"  total {gib(pw + pl)} per GPU  ({less:.1f}x less)")  # fmt: skip


if __name__ == "__main__":
    main()
