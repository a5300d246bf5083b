"""The "same person" threshold of a pretrained entry, calibrated on mini-train, not on LFW.

A pretrained model's record carries a threshold that `compare`, `classify` and the library
use. It is validated the way a training run validates its own: the best-accuracy
threshold (the middle of the best range) over same and different pairs of labelled faces
— here of ../shared/datasets/mini-train, which holds no LFW person, so LFW stays a test set.

    .venv/bin/python bench/pretrained_threshold.py pretrained:dlib_resnet [--identities 150]
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np

from facetrain.data import iter_samples
from facetrain.evaluate.verification import labelled_threshold
from facetrain.inference.saved import open_model
from facetrain.use.embeddings import embed_paths

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--data", type=Path, default=SHARED / "mini-train")
    ap.add_argument("--identities", type=int, default=150)
    ap.add_argument("--per-identity", type=int, default=8)
    args = ap.parse_args()
    by_id: dict[str, list[str]] = {}
    for s in iter_samples([str(args.data)]):
        by_id.setdefault(s.identity, []).append(s.path)
    names = sorted(random.Random(0).sample(sorted(by_id), args.identities))
    paths = [p for n in names for p in sorted(by_id[n])[: args.per_identity]]
    labels = [n for n in names for _ in sorted(by_id[n])[: args.per_identity]]
    fm = open_model(args.model)
    t = embed_paths(fm, paths, labels, align="auto")
    ok = np.isfinite(t.embeddings).all(1)
    thr = labelled_threshold(
        t.embeddings[ok], [x for x, k in zip(t.labels, ok) if k], fm.pre.distance
    )
    print(f"{args.model}: {int(ok.sum())} faces of {len(names)} identities of {args.data.name}")
    print(f"threshold ({fm.pre.distance}) {thr:.3f}")


if __name__ == "__main__":
    main()
