"""Every face of many photos, embedded a photo at a time or PHOTOS_AT_ONCE photos at a time:
what `classify train`, `classify predict` and `compare` pay per photo (`use.embeddings`).

The same photos (LFW's aligned faces by default, or any folder of photos) go through
`faces_in_photos` both ways in one process, the two alternating round after round; the
ratio is the median of the rounds, and the two must find the same faces with embeddings
equal to float rounding.

    .venv/bin/python bench/photo_batches.py [--images ../shared/datasets/lfw] [--photos 512]
        [--model nn4_small2 | pretrained:dlib_resnet] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from resumable_cost import cpu_name

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "lfw"


def open_model(name: str):
    """A pretrained model as shipped, or an untrained network of that family (speed does
    not depend on training)."""
    if name.startswith("pretrained:"):
        from facetrain.inference.compiled import open_for_use

        return open_for_use(name, "cpu", "auto", None, True)
    import torch

    from facetrain.inference.record import Preprocess
    from facetrain.inference.saved import FaceModel
    from facetrain.models import create_model

    torch.manual_seed(0)
    net = create_model(name, 128)
    return FaceModel.of_module(net, Preprocess(name, 128, net.input_size), name)


def timed(paths: list[str], model, at_once: int) -> tuple[float, list]:
    from facetrain.use import embeddings

    embeddings.PHOTOS_AT_ONCE = at_once
    t = time.perf_counter()
    photos = embeddings.faces_in_photos(model, paths, progress=False)
    return time.perf_counter() - t, photos


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=Path, default=SHARED)
    ap.add_argument("--photos", type=int, default=512)
    ap.add_argument("--model", default="nn4_small2")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from facetrain.data.listing import list_photos
    from facetrain.use import embeddings

    if not args.images.is_dir():
        raise SystemExit(f"{args.images}: no such folder (give --images)")
    paths = list_photos(args.images)[: args.photos]
    model, batched = open_model(args.model), embeddings.PHOTOS_AT_ONCE
    timed(paths[:8], model, 1)  # the detector and the model loaded before any clock runs
    one, many, diff, same = [], [], 0.0, True
    for _ in range(args.rounds):
        t1, a = timed(paths, model, 1)
        tn, b = timed(paths, model, batched)
        one.append(t1)
        many.append(tn)
        same &= [len(p.boxes) for p in a] == [len(p.boxes) for p in b]
        for p, q in zip(a, b):
            if len(p.boxes) and len(p.boxes) == len(q.boxes):
                diff = max(diff, float(np.abs(p.embeddings - q.embeddings).max()))
        print(f"round: one at a time {t1:.1f} s, {batched} at a time {tn:.1f} s", flush=True)
    faces = sum(len(p.boxes) for p in a)
    print(f"{cpu_name()}, {len(paths)} photos ({faces} faces) of {args.images.name}, "
          f"{args.model}, {args.rounds} rounds alternated")  # fmt: skip
    print(f"same faces found: {same}; largest embedding difference {diff:.1e}")
    print(f"one at a time: {len(paths) / statistics.median(one):.1f} photos/s (median)")
    print(f"{batched} at a time: {len(paths) / statistics.median(many):.1f} photos/s (median)")
    ratios = [o / m for o, m in zip(one, many)]
    print(
        f"ratio (photos/s, {batched} at a time / one), median of rounds: "
        f"{statistics.median(ratios):.2f}x (rounds {', '.join(f'{r:.2f}' for r in ratios)})"
    )


if __name__ == "__main__":
    main()
