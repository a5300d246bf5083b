"""Same-vs-different pair AUC of each folder of people, through facetrain and through dlib.

Every pair of images of a folder (`<Person>/<image>`) is a same or a different pair; a
pipeline's AUC is how well its distance separates them. An image in which a pipeline finds
no face makes each of its pairs "different" at the largest distance (what a user gets: no
match), so missed faces cost AUC. facetrain's pipeline is the default model with its own
detection and alignment (`FaceEmbedder`); dlib's is face_recognition's: HOG detector
(upsampled once), 5-point shape predictor, 150² chip, the same ResNet weights.

    python bench/population_auc.py                       # every populations/ folder, LFW raw
    python bench/population_auc.py --sets east-asian-idols --no-dlib
    python bench/population_auc.py --one-look --no-dlib  # before the second look
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SETS = {
    "east-asian-idols": SHARED / "populations" / "east-asian-idols",
    "south-asian-actors": SHARED / "populations" / "south-asian-actors",
    "lfw-raw-sample": SHARED / "lfw-raw-sample",
    "friends": SHARED / "photos" / "friends",
    "bbt": SHARED / "photos" / "bbt" / "reference",
}


def listing(folder: Path) -> tuple[list[Path], np.ndarray]:
    paths = sorted(p for p in folder.glob("*/*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    names = [p.parent.name for p in paths]
    return paths, np.unique(names, return_inverse=True)[1]


def pair_auc(emb: np.ndarray, labels: np.ndarray, distance: str) -> float:
    """AUC of same-vs-different over every pair; pairs with a missing face are 'different'
    at the largest distance."""
    from sklearn.metrics import roc_auc_score

    from facetrain.distances import distance_matrix

    ok = np.isfinite(emb).all(1)
    d = np.full((len(emb), len(emb)), np.inf)
    d[np.ix_(ok, ok)] = distance_matrix(emb[ok], emb[ok], distance)
    iu = np.triu_indices(len(emb), 1)
    same = (labels[:, None] == labels[None, :])[iu]
    if same.all() or not same.any():
        return float("nan")
    dist = d[iu]
    dist[~np.isfinite(dist)] = (
        np.nanmax(dist[np.isfinite(dist)]) * 2 if np.isfinite(dist).any() else 1
    )
    return float(roc_auc_score(same, -dist))


def facetrain_embeddings(paths: list[Path]) -> tuple[np.ndarray, str]:
    from facetrain.data.images import load_rgb
    from facetrain.inference.embedder import FaceEmbedder
    from facetrain.inference.pretrained import DEFAULT
    from facetrain.inference.saved import open_model

    fm = open_model(DEFAULT)
    emb = FaceEmbedder(fm).embed([load_rgb(p) for p in paths], align="always")
    return emb, fm.pre.distance


def dlib_embeddings(paths: list[Path]) -> np.ndarray:
    from facetrain.data.images import load_rgb
    from facetrain.inference.dlib_oracle import DlibPipeline

    pipe = DlibPipeline()
    out = np.full((len(paths), 128), np.nan)
    for i, p in enumerate(paths):
        f = pipe.face(load_rgb(p))
        if f is not None:
            out[i] = f.descriptor / np.linalg.norm(f.descriptor)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", nargs="*", default=list(SETS))
    ap.add_argument("--no-dlib", action="store_true", help="facetrain's pipeline only")
    ap.add_argument("--one-look", action="store_true",
                    help="facetrain as before issue 28: no second look at faces that fill "
                    "the frame (the 'before' column)")  # fmt: skip
    args = ap.parse_args(argv)
    if args.one_look:
        from facetrain.align import faces

        faces.fills_frame = lambda *a, **k: False
    print("AUC: every pair (a missed face: 'different'); found: pairs whose faces were found")
    print(f"{'set':<20}{'images':>7} | {'facetrain AUC':>13}{'found':>7}{'missed':>7}"
          f" | {'dlib AUC':>9}{'found':>7}{'missed':>7} | {'ratio':>6}{'s':>6}")  # fmt: skip
    worst = []
    for name in args.sets:
        if not SETS[name].is_dir():
            print(f"{name}: not here ({SETS[name]}), skipped")
            continue
        t0 = time.time()
        paths, labels = listing(SETS[name])
        emb, distance = facetrain_embeddings(paths)
        ours = pair_auc(emb, labels, distance)
        row = f"{name:<20}{len(paths):>7} | {ours:>13.3f}{_found(emb, labels, distance)}"
        if not args.no_dlib:
            d = dlib_embeddings(paths)
            theirs = pair_auc(d, labels, "squared_l2")
            row += f" | {theirs:>9.3f}{_found(d, labels, 'squared_l2')} | {ours / theirs:>6.3f}"
            worst.append(ours / theirs)
        print(row + f"{time.time() - t0:>6.0f}", flush=True)
    if worst:
        print(f"facetrain / dlib pair AUC, the worst set: {min(worst):.3f}x")
    return 0


def _found(emb: np.ndarray, labels: np.ndarray, distance: str) -> str:
    ok = np.isfinite(emb).all(1)
    return f"{pair_auc(emb[ok], labels[ok], distance):>7.3f}{int((~ok).sum()):>7}"


if __name__ == "__main__":
    sys.exit(main())
