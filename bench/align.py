"""Faces/s of `facetrain align` against a plain facenet-pytorch loop, measured in one run.

Baseline: one image at a time — PIL decode, facenet-pytorch's `MTCNN.detect` (same
min-face, thresholds and factor), the same face selection, similarity warp and JPEG write
that facetrain does. Candidate: `facetrain.align.job.run_align` with its defaults.
Data: ../shared/datasets/lfw-raw-sample (600 photos, 250x250), or --data.

    .venv/bin/python bench/align.py [--data DIR] [--limit N] [--device cuda]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
from PIL import Image

from facetrain.align.job import AlignConfig, encode_jpeg, run_align
from facetrain.align.transform import select_faces, warp_similarity
from facetrain.data import iter_samples, load_rgb
from facetrain.devices import cpu_name

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "lfw-raw-sample"


def baseline(samples, out: Path, cfg: AlignConfig) -> tuple[int, float]:
    # imported here: facetrain's spawned workers import this script as their __main__, and
    # must not pay for torch and facenet-pytorch (a user's `facetrain align` does not)
    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(
        min_face_size=cfg.min_face, thresholds=list(cfg.thresholds), factor=cfg.factor,
        keep_all=True, device=cfg.device,
    )  # fmt: skip
    faces = 0
    t0 = time.perf_counter()
    for s in samples:
        img = load_rgb(s.path)
        boxes, _probs, lms = mtcnn.detect(Image.fromarray(img), landmarks=True)
        if boxes is None:
            continue
        boxes, lms = boxes.astype(np.float32), lms.astype(np.float32)  # object arrays on numpy 2
        for i in select_faces(boxes, img.shape, cfg.select):
            crop = warp_similarity(img, lms[i], cfg.out_size)
            dst = out / s.identity / f"{s.name}.jpg"
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(encode_jpeg(crop, cfg.jpeg_quality))
            faces += 1
    return faces, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--limit", type=int, default=0, help="use only the first N photos")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians reported")
    args = ap.parse_args()
    if not os.path.isdir(args.data):
        raise SystemExit(f"{args.data}: not found (see ../shared/datasets/README.md)")

    tmp = Path(tempfile.mkdtemp(prefix="bench-align-"))
    try:
        samples = list(iter_samples(args.data))
        if args.limit:
            samples = samples[: args.limit]
        listing = tmp / "inputs.txt"
        from facetrain.data.listing import write_list

        write_list(listing, samples)
        cfg = AlignConfig(device=args.device)

        print(f"machine: {cpu_name()}, {os.cpu_count()} cores, "
              f"torch {version('torch')}, device {args.device}")  # fmt: skip
        print(f"photos: {len(samples)} from {args.data}")
        base_rates, ours_rates = [], []
        for r in range(args.rounds):  # alternate, so that machine noise hits both alike
            n_base, t_base = baseline(samples, tmp / f"baseline{r}", cfg)
            out = tmp / f"facetrain{r}"
            s = run_align([str(listing)], out, cfg, workers=args.workers, progress=False)
            base_rates.append(n_base / t_base)
            ours_rates.append(s.faces_written / s.seconds)
            print(f"round {r + 1}: baseline {n_base} faces {t_base:6.1f} s = {base_rates[-1]:5.1f}"
                  f" faces/s | facetrain {s.faces_written} faces {s.seconds:6.1f} s = "
                  f"{ours_rates[-1]:5.1f} faces/s (worker start-up included)")  # fmt: skip
        b, o = float(np.median(base_rates)), float(np.median(ours_rates))
        print(f"baseline  facenet-pytorch loop : {b:6.1f} faces/s (median of {args.rounds})")
        print(f"facetrain align                : {o:6.1f} faces/s (median of {args.rounds})")
        print(f"ratio: {o / b:.2f}x  (goal >= 3x)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
