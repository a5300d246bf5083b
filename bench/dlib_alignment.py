"""The MTCNN five-point template that reproduces dlib's face chips, and how close it gets.

For each photo of ../shared/datasets/lfw-raw-sample, dlib's own pipeline (HOG detector,
5-point predictor, `get_face_chip` 150x150 with padding 0.25, its ResNet) gives a chip, a
descriptor and the image-to-chip similarity; facetrain's MTCNN gives five landmarks. The
template is the mean of those landmarks mapped into dlib's chip, fitted on the even-numbered
photos; on the odd ones it is measured: facetrain's whole pipeline (MTCNN, this template,
the ported network) against dlib's whole pipeline, as the cosine of their descriptors. It
also measures the re-warp of the shared 112x112 aligned faces into the template.

    .venv/bin/python bench/dlib_alignment.py [--data DIR] [--limit N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from facetrain.align.faces import FaceAligner
from facetrain.align.transform import rewarp_standard, warp_similarity
from facetrain.data import iter_samples, load_rgb
from facetrain.devices import cpu_name
from facetrain.inference.dlib_format import load_dlib
from facetrain.inference.dlib_oracle import DlibPipeline
from facetrain.inference.pretrained import models_folder

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def collect(paths, dlib_pipe, aligner):
    rows = []
    for p in paths:
        img = load_rgb(p)
        ours = aligner.faces(img, select="center")
        theirs = dlib_pipe.face(img)
        if not ours or theirs is None:
            continue
        lm = np.c_[ours[0].landmarks, np.ones(5)] @ theirs.to_chip.T
        rows.append((p, img, ours[0].landmarks, lm, theirs))
    return rows


def embed(net, chips) -> np.ndarray:
    x = torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        return unit(net.embed_raw(x).numpy())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=SHARED / "lfw-raw-sample")
    ap.add_argument("--limit", type=int, default=600)
    args = ap.parse_args()
    paths = [s.path for s in iter_samples([str(args.data)])][: args.limit]
    pipe = DlibPipeline()
    net = load_dlib(models_folder() / "dlib_face_recognition_resnet_model_v1.dat")
    rows = collect(paths, pipe, FaceAligner({"mode": "similarity", "size": 112}))
    fit, test = rows[0::2], rows[1::2]
    template = np.median([r[3] for r in fit], axis=0)
    spread = np.median(np.abs([r[3] - template for r in fit]))
    print(f"{len(rows)} of {len(paths)} photos have a face for both pipelines")
    print(f"template (150x150 chip pixels), median of {len(fit)} photos, ", end="")
    print(f"median |deviation| {spread:.2f} px:")
    print(np.array2string(template, precision=4, separator=", "))
    ours = [warp_similarity(r[1], r[2], 150, template) for r in test]
    e_ours = embed(net, ours)
    e_dlib = unit(np.stack([r[4].descriptor for r in test]))
    cos = (e_ours * e_dlib).sum(1)
    pix = [np.abs(a.astype(float) - r[4].chip).mean() for a, r in zip(ours, test)]
    print(
        f"facetrain pipeline vs dlib pipeline on {len(test)} held-out photos: median cosine "
        f"{np.median(cos):.4f} (min {cos.min():.4f}, 5th pct {np.percentile(cos, 5):.4f}); "
        f"median mean |pixel diff| {np.median(pix):.2f}"
    )
    e_chip = embed(net, [r[4].chip for r in test])
    print(
        f"the port on dlib's own chips vs dlib: max |diff| of unit descriptors "
        f"{np.abs(e_chip - e_dlib).max():.2e}"
    )
    std112 = [warp_similarity(r[1], r[2], 112) for r in test]
    rew = [rewarp_standard(f, 150, template) for f in std112]
    cos_rew = (embed(net, rew) * e_dlib).sum(1)
    black = np.mean([(f.max(axis=2) == 0).all(axis=1).sum() for f in rew])
    print(
        f"112x112 standard crop re-warped into the template: median cosine {np.median(cos_rew):.4f}"
        f" (min {cos_rew.min():.4f}); {black:.1f} fully black rows of 150 on average"
    )
    print(f"machine: {cpu_name()}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
