"""Copies of one picture — a re-encoded, resized, shifted or brightened copy, a burst shot
— are not each other's neighbours (`neighbours.copy_radius`).

1. How near a copy is: the default model's distance between a photo's face and the same
   face in its copies (`--photos` of lfw-raw-sample), and, on every set of
   bench/library_populations.py, how near two different photos of one person come (the
   share of faces whose nearest other photo of their person is under the radius).
2. What copies did to naming: two people named on half their faces (as
   bench/library_populations.py's identify), then three copies of one of the first
   person's named faces added (a burst); each person's new faces named right, and
   strangers named, without the radius (0: the way it was) and with it.
3. The stacks with no names (as bench/library_populations.py makes them) with copies
   counted as neighbours (what the library does) and without (the radius applied there).

    .venv/bin/python bench/copies.py [--photos 40]
"""

from __future__ import annotations

import argparse
import io
import os
from pathlib import Path

import numpy as np

from facetrain.devices import cpu_name
from library_populations import SETS, faces_of_set

LFW_RAW = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "lfw-raw-sample"


def variants(im):
    """A photo's copies as a photo library gathers them."""
    from PIL import Image, ImageEnhance

    b = io.BytesIO()
    im.save(b, "JPEG", quality=60)
    return {"JPEG q60": Image.open(b).convert("RGB"),
            "resized 0.8": im.resize((int(im.width * 0.8), int(im.height * 0.8))),
            "shifted 6 px": im.crop((6, 4, im.width, im.height)),
            "brightened 15%": ImageEnhance.Brightness(im).enhance(1.15)}  # fmt: skip


def copy_distances(n: int) -> dict[str, list[float]]:
    from PIL import Image

    import facetrain

    fr = facetrain.load()
    out: dict[str, list[float]] = {}
    for p in sorted(LFW_RAW.glob("*/*.jpg"))[:n]:
        im = Image.open(p).convert("RGB")
        base = fr.embed(np.asarray(im))[0]
        for name, v in variants(im).items():
            e = fr.embed(np.asarray(v))[0]
            if np.isfinite(base).all() and np.isfinite(e).all():
                out.setdefault(name, []).append(fr.distance(base, e))
    return out


def burst(s: dict, copies: float, rng) -> tuple[float, float]:
    """(named people's new faces named right, strangers named) with a burst of three
    copies of one named face, the open-set rule's copy radius `copies`."""
    from facetrain import neighbours
    from facetrain.open_set import Among, identify

    keep = s["truth"] != ""
    e, t = s["emb"][keep], s["truth"][keep]
    people, counts = np.unique(t, return_counts=True)
    known = [p for _, p in sorted(zip(-counts, people))][:2]
    g, q = [], []
    for p in known:
        idx = rng.permutation(np.flatnonzero(t == p))
        g, q = g + idx[: len(idx) // 2].tolist(), q + idx[len(idx) // 2 :].tolist()
    extra = e[g[0]] + rng.normal(scale=1e-3, size=(3, e.shape[1])).astype(np.float32)
    G = np.concatenate([e[g], extra / np.linalg.norm(extra, axis=1, keepdims=True)])
    pid = np.array([known.index(x) for x in t[g]] + [0] * 3)
    strangers = np.flatnonzero(~np.isin(t, known))
    was, neighbours.COPIES = neighbours.COPIES, copies
    try:
        named = []
        for rows in (np.array(q), strangers):
            lim = Among.of(G, e[strangers], 0.19, "squared_l2").limits(e[rows])
            named.append([identify(e[rows][i : i + 1], (G, pid, dict(enumerate(known))), 0.19,
                                   "squared_l2", 0.05, lim[i : i + 1])[0]["name"]
                          for i in range(len(rows))])  # fmt: skip
    finally:
        neighbours.COPIES = was
    right = np.mean([a == b for a, b in zip(named[0], t[q])])
    return float(right), float(np.mean([a != "unknown" for a in named[1]]))


def stacks_f(s: dict, copies: float) -> float:
    """BCubed F of the stacks with no names, each face's spacing without (copies > 0) or
    with the faces as near as copies among its neighbours."""
    from facetrain.library.cluster import FaceSet, People, recluster
    from facetrain.neighbours import K, kth_other_photo
    from library_populations import bcubed_f

    n = len(s["emb"])
    scale = kth_other_photo(s["emb"], s["photo"], "squared_l2", K, copies=copies)
    faces = FaceSet(np.arange(n), s["emb"], s["photo"], scale)
    nobody = People(np.zeros((0, s["emb"].shape[1]), np.float32), np.zeros(0, int),
                    np.zeros(0, int), np.zeros(0))  # fmt: skip
    plan = recluster(faces, nobody, set(), 0.19, "squared_l2")
    labels = np.empty(n, np.int64)
    for k, ids in enumerate(plan.new_stacks):
        labels[ids] = k
    return bcubed_f(labels, s["truth"])


def main() -> None:
    from facetrain.distances import distance_matrix
    from facetrain.neighbours import COPIES

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=int, default=40)
    args = ap.parse_args()
    radius = COPIES * 0.19
    print(f"{cpu_name()}, {os.cpu_count()} cores; copy radius {radius:.3f} "
          f"(COPIES {COPIES} x threshold 0.190)")  # fmt: skip
    for name, d in copy_distances(args.photos).items():
        print(f"copy, {name}: median {np.median(d):.4f}, max {np.max(d):.4f} ({len(d)} faces)")
    print("| set | nearest other photo of one's person under the radius | burst: right / "
          "strangers, no radius | with the radius | stacks F, copies neighbours | "
          "without |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name in SETS:
        s = faces_of_set(name)
        keep = s["truth"] != ""
        e, t = s["emb"][keep], s["truth"][keep]
        d = distance_matrix(e, e)
        np.fill_diagonal(d, np.inf)
        nn = np.where(t[:, None] == t[None, :], d, np.inf).min(1)
        under = np.mean(nn[np.isfinite(nn)] < radius)
        cells = [burst(s, c, np.random.default_rng(0)) for c in (0.0, COPIES)]
        stacks = [stacks_f(s, c) for c in (0.0, radius)]
        print(f"| {name} | {under:.1%} | " + " | ".join(f"{r:.1%} / {x:.1%}" for r, x in cells)
              + f" | {stacks[0]:.3f} | {stacks[1]:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
