"""Images read ahead of the model by threads, as `facetrain embed` and `eval` now choose
(`--workers` left out: `sources.reading_threads(0)`, as many as the model runs on),
against the model's own thread reading them between batches (the default before), in one
process with the model opened once, rounds alternating the two; on photos (decoded,
detected, aligned) and on faces already aligned (decoded only); and every face of photos
read the way compare, classify and find read them, by those threads or the caller's.

    .venv/bin/python bench/reading_threads.py [--photos 300] [--aligned 2000] [--rounds 3]

Photos: ../shared/datasets/lfw-raw-sample; aligned faces: ../shared/datasets/mini-train.
Each line: a variant's median seconds and images/s; the ratio before / now; whether the
embeddings are the same.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from functools import partial
from pathlib import Path

import numpy as np

from facetrain.data.images import load_rgb
from facetrain.data.listing import Problems, iter_samples
from facetrain.devices import cpu_name
from facetrain.inference.compiled import open_for_use
from facetrain.inference.embedder import FaceEmbedder
from facetrain.inference.pretrained import DEFAULT
from facetrain.inference.sources import reading_threads
from facetrain.use.embeddings import PHOTOS_AT_ONCE, embed_paths, every_face

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def embedded(model, paths: list[str], workers: int) -> np.ndarray:
    """`embed`'s way: one face an image, batches of faces read ahead by `workers`."""
    return embed_paths(model, paths, ["x"] * len(paths), workers=workers, progress=False).embeddings


def every_face_of(model, paths: list[str], threads: int) -> np.ndarray:
    """`compare`'s, `classify`'s and `find`'s way: every face of each photo, PHOTOS_AT_ONCE
    photos read by `threads`, then embedded together."""
    embedder = FaceEmbedder(model, "cpu")
    got = [every_face(embedder, load_rgb, paths[k : k + PHOTOS_AT_ONCE], threads=threads)
           for k in range(0, len(paths), PHOTOS_AT_ONCE)]  # fmt: skip
    return np.concatenate([p.embeddings for step in got for p in step])


def compare(run, name: str, n: int, rounds: int) -> None:
    """`run(0)` (the caller's thread) against `run(chosen)`, rounds alternating; their
    medians and ratio printed."""
    chosen = reading_threads(0)
    secs: dict[int, list[float]] = {0: [], chosen: []}
    made = {}
    for _ in range(rounds):
        for w in secs:
            t0 = time.perf_counter()
            made[w] = run(w)
            secs[w].append(time.perf_counter() - t0)
    med = {w: statistics.median(s) for w, s in secs.items()}
    for w, m in med.items():
        who = "the caller's thread (before)" if w == 0 else f"{w} reading threads (now)"
        print(f"  {name}, {who}: median {m:.2f} s, {n / m:.1f} images/s; rounds "
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
    print(f"{cpu_name()}, {os.cpu_count()} cores; {model.backend}; "
          f"{reading_threads(0)} reading threads chosen")  # fmt: skip

    def listed(folder: Path, n: int) -> list[str]:
        return [s.path for s in iter_samples(str(folder), problems=Problems())][:n]

    photos, aligned = (
        listed(DATA / "lfw-raw-sample", args.photos),
        listed(DATA / "mini-train", args.aligned),
    )
    for name, run, paths in [("embed, photos", embedded, photos),
                             ("embed, aligned faces", embedded, aligned),
                             ("every face of photos", every_face_of, photos)]:  # fmt: skip
        compare(partial(run, model, paths), name, len(paths), args.rounds)


if __name__ == "__main__":
    main()
