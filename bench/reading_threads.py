"""Images read ahead of the model by threads, as `facetrain embed` and `eval` now choose
(`--workers` left out: `sources.reading_threads(0)`, as many as the model runs on),
against the model's own thread reading them between batches (the default before), in one
process with the model opened once, rounds alternating the two; on photos (decoded,
detected, aligned) and on faces already aligned (decoded only).

    .venv/bin/python bench/reading_threads.py [--photos 300] [--aligned 2000] [--rounds 3]

Photos: ../shared/datasets/lfw-raw-sample; aligned faces: ../shared/datasets/mini-train.
Each line: a variant's median seconds and images/s; the ratio before / now; whether the
embeddings are the same.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from facetrain.data.listing import Problems, iter_samples
from facetrain.inference.compiled import open_for_use
from facetrain.inference.pretrained import DEFAULT
from facetrain.inference.sources import reading_threads
from facetrain.use.embeddings import embed_paths

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def timed(model, paths: list[str], workers: int) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    t = embed_paths(model, paths, ["x"] * len(paths), workers=workers, progress=False)
    return time.perf_counter() - t0, t.embeddings


def compare(model, name: str, paths: list[str], rounds: int) -> None:
    """Both variants on `paths`, rounds alternating; their medians and ratio printed."""
    chosen = reading_threads(0)
    secs: dict[int, list[float]] = {0: [], chosen: []}
    made = {}
    for _ in range(rounds):
        for w in secs:
            s, made[w] = timed(model, paths, w)
            secs[w].append(s)
    med = {w: statistics.median(s) for w, s in secs.items()}
    for w, m in med.items():
        who = "the model's thread (before)" if w == 0 else f"{w} reading threads (now)"
        print(f"  {name}, {who}: median {m:.2f} s, {len(paths) / m:.1f} images/s; rounds "
              f"{[round(x, 2) for x in secs[w]]}")  # fmt: skip
    same = np.array_equal(made[0], made[chosen], equal_nan=True)
    print(f"{name}: {med[0] / med[chosen]:.2f}x; the same embeddings: {same}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=int, default=300)
    ap.add_argument("--aligned", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    model = open_for_use(DEFAULT, "cpu")
    print(f"{platform.machine()}, {os.cpu_count()} cores; {model.backend}; "
          f"{reading_threads(0)} reading threads chosen")  # fmt: skip
    for name, folder, n in [("photos", DATA / "lfw-raw-sample", args.photos),
                            ("aligned faces", DATA / "mini-train", args.aligned)]:  # fmt: skip
        paths = [s.path for s in iter_samples(str(folder), problems=Problems())][:n]
        compare(model, name, paths, args.rounds)


if __name__ == "__main__":
    main()
