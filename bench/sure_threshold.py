"""Where a model's "same person" is beyond doubt on every population: its `sure_below`.

A model's threshold is calibrated on one kind of face; where the model crowds a
population, most different people of it fall under that threshold too (the default model:
98% of East-Asian strangers' pairs). `compare` and `verify` call a pair under the threshold
"same", and mark it unsure above `sure_below`: the largest distance under which at most 1%
of different people's pairs lie on every set measured here.

The figures are `evaluate.populations`'s, as `facetrain eval-populations` prints them for
any folders. Every face of each set (each image's face found and aligned), all pairs:

    .venv/bin/python bench/sure_threshold.py pretrained:dlib_resnet [--sets NAME ...]

Prints per set: faces, different people under the threshold (FAR) and under the model's
recorded `sure_below`, the distance at FAR 1%, and how many same-person pairs are "same"
beyond doubt (under sure_below) and at all (under the threshold); last, the value to record
(the smallest distance at FAR 1%, rounded down).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from facetrain.devices import cpu_name
from library_populations import SHARED, _folders, family, lfw_library

SETS = {
    "east-asian-idols": lambda: _folders(SHARED / "populations" / "east-asian-idols"),
    "south-asian-actors": lambda: _folders(SHARED / "populations" / "south-asian-actors"),
    "bbt": lambda: _folders(SHARED / "photos" / "bbt" / "reference"),
    "lfw-60": lfw_library,
    "mini-train-family": family,
}


def pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.2%}"


def embed(fm, listing: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    from facetrain.data.images import load_rgb
    from facetrain.inference.embedder import FaceEmbedder

    emb = FaceEmbedder(fm).embed([load_rgb(p) for p, _ in listing], align="always")
    ok = np.isfinite(emb).all(1)
    return emb[ok], np.array([n for _, n in listing])[ok]


def main() -> None:
    from facetrain.evaluate.populations import FAR, figures, sure_below_of
    from facetrain.inference.saved import open_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--sets", nargs="*", default=list(SETS))
    args = ap.parse_args()
    fm = open_model(args.model)
    thr, sure, dist = fm.pre.threshold, fm.pre.sure_below, fm.pre.distance
    print(f"{cpu_name()}, {os.cpu_count()} cores; {args.model}: threshold {thr:.3f}, "
          f"sure_below {sure} ({dist})")  # fmt: skip
    print("| set | faces | different under threshold | under sure_below | distance at FAR 1% "
          "| same pairs under sure_below | under threshold | s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    sets, every = [], []
    for name in args.sets:
        t0 = time.time()
        e, truth = embed(fm, SETS[name]())
        every.append((e, np.char.add(f"{name}/", truth)))
        sets.append(figures(name, e, truth, dist, thr, sure))
        row(sets[-1], f"{time.time() - t0:.0f}")
    mixed = figures("mixed (every set, across sets too)", np.concatenate([x for x, _ in every]),
                    np.concatenate([t for _, t in every]), dist, thr, sure)  # fmt: skip
    row(mixed, "")
    value, worst = sure_below_of(sets)
    print(f"sure_below to record: {value:.3f} (FAR {FAR:.0%} on {worst}, the most crowded set)")


def row(f, seconds: str) -> None:
    print(f"| {f.name} | {f.faces} | {pct(f.far_at_threshold)} | {pct(f.far_at_sure)} "
          f"| {f.distance_at_far:.3f} | {pct(f.same_at_sure)} | {pct(f.same_at_threshold)} "
          f"| {seconds} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
