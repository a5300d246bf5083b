"""Face clustering compared on the same embeddings: facetrain's stacks, Chinese Whispers (a
threshold graph, as in dlib) and Immich-style DBSCAN (cosine distance ≤ 0.5, min 3 faces).

Labelled folders (default: ../shared/datasets/lfw identities with at least --min-images
faces, and photos/bbt/reference) are embedded once with --model; each method clusters the
same embeddings; pairwise and BCubed F against the folder labels are printed, with the
best marked. Ours and Chinese Whispers use the model's calibrated threshold.

    .venv/bin/python bench/cluster.py --model demo-output/run [--identities 60]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from facetrain.devices import cpu_name
from facetrain.distances import distance_matrix
from facetrain.inference.saved import open_model
from facetrain.library.cluster import agglomerate
from facetrain.library.evaluate import scores
from facetrain.linkage import dense_clusters
from facetrain.use.embeddings import embed_paths

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"


def chinese_whispers(emb, threshold, distance, iterations=100, seed=0) -> np.ndarray:
    """dlib's chinese_whispers: every face starts alone and repeatedly takes the label most
    common (by edge count) among its neighbours closer than the threshold."""
    d = distance_matrix(emb, emb, distance)
    adj = (d < threshold) & ~np.eye(len(emb), dtype=bool)
    labels = np.arange(len(emb))
    rng = np.random.default_rng(seed)
    for _ in range(iterations):
        for i in rng.permutation(len(emb)):
            nb = labels[adj[i]]
            if len(nb):
                vals, counts = np.unique(nb, return_counts=True)
                labels[i] = vals[np.argmax(counts)]
    return labels


def immich_dbscan(emb, eps=0.5, min_samples=3) -> np.ndarray:
    """Immich's face clustering: DBSCAN on cosine distance; noise faces stay alone."""
    from sklearn.cluster import DBSCAN

    labels = DBSCAN(eps=eps, min_samples=min_samples, metric="cosine").fit_predict(emb)
    alone = labels < 0
    labels[alone] = labels.max() + 1 + np.arange(alone.sum())
    return labels


def labelled_sets(identities: int, min_images: int, per_identity: int):
    sets = {}
    lfw = SHARED / "lfw"
    if lfw.is_dir():
        names = sorted(d for d in os.listdir(lfw) if (lfw / d).is_dir())
        chosen = [n for n in names if len(os.listdir(lfw / n)) >= min_images][:identities]
        paths = [
            str(lfw / n / f) for n in chosen for f in sorted(os.listdir(lfw / n))[:per_identity]
        ]
        sets["lfw"] = (paths, [Path(p).parent.name for p in paths])
    ref = SHARED / "photos" / "bbt" / "reference"
    if ref.is_dir():
        paths = [str(p) for p in sorted(ref.glob("*/*"))]
        sets["bbt reference"] = (paths, [Path(p).parent.name for p in paths])
    return sets


def detection_recall(fm) -> None:
    """photos/compreface/faces.csv: a true face counts as found when a detected box holds
    its nose point; also how many found faces pass the library's quality gate."""
    import csv

    from facetrain.data.images import load_rgb
    from facetrain.library.scan import Quality, Scanner

    folder = SHARED / "photos" / "compreface"
    if not (folder / "faces.csv").exists():
        return
    scanner, gate = Scanner(fm), Quality()
    truth = found = extra = usable = 0
    with open(folder / "faces.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        noses = [tuple(map(float, p.split(":"))) for p in row["noses_xy_scaled"].split()]
        faces = scanner.faces_of(load_rgb(folder / row["file"]))
        hit = set()
        for x, y in noses:
            for k, f in enumerate(faces):
                b = f["box"]
                if k not in hit and b[0] <= x <= b[2] and b[1] <= y <= b[3]:
                    hit.add(k)
                    break
        truth += len(noses)
        found += len(hit)
        extra += len(faces) - len(hit)
        usable += sum(gate.usable(f["size"], f["score"], f["sharpness"]) for f in faces)
    print(f"\ndetection (photos/compreface, {truth} faces): recall {found / truth:.3f} "
          f"({found}/{truth}), {extra} detections matching no listed face, "
          f"{usable} faces pass the quality gate")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="demo-output/run")
    ap.add_argument("--identities", type=int, default=60)
    ap.add_argument("--min-images", type=int, default=6)
    ap.add_argument("--per-identity", type=int, default=8)
    a = ap.parse_args()
    fm = open_model(a.model)
    thr, dist = fm.pre.threshold, fm.pre.distance
    if thr is None:
        raise SystemExit(f"{a.model}: no calibrated threshold")
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; model {a.model} "
          f"(threshold {thr:.3f}, {dist})")  # fmt: skip
    for name, (paths, labels) in labelled_sets(a.identities, a.min_images, a.per_identity).items():
        t = embed_paths(fm, paths, labels, progress=False)
        photo = np.arange(len(t))
        methods = {
            "facetrain (average linkage + cannot-link)": agglomerate(
                t.embeddings, photo, thr, dist
            )[0],
            "facetrain, dense (before 2026-11-26)": dense_clusters(t.embeddings, photo, thr, dist),
            "facetrain, over near pairs forced": agglomerate(
                t.embeddings, photo, thr, dist, exact_max=1
            )[0],
            "Chinese Whispers (dlib)": chinese_whispers(t.embeddings, thr, dist),
            "Immich DBSCAN (cos 0.5, min 3)": immich_dbscan(t.embeddings),
        }
        rows = {m: scores(lab.tolist(), t.labels) for m, lab in methods.items()}
        best = max(rows, key=lambda m: rows[m]["bcubed_f"])
        print(f"\n{name}: {len(t)} faces of {len(set(t.labels))} people")
        for m, r in rows.items():
            print(f"  {m:44s} stacks {r['stacks']:4d}  pairwise F {r['pairwise_f']:.3f}  "
                  f"BCubed P {r['bcubed_precision']:.3f} R {r['bcubed_recall']:.3f} "
                  f"F {r['bcubed_f']:.3f}{'  <- best' if m == best else ''}")  # fmt: skip
    detection_recall(fm)


if __name__ == "__main__":
    main()
