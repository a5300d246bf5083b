"""When a photo's pixels change, are the names on its faces carried to the right faces?

A scan that finds a photo's file changed carries each old face's labels to the face now at
its place only when their embeddings are within `scan.SAME_FACE` × the model's threshold
and their landmarks within `scan.SAME_PLACE` × the face's size.
An edit that keeps the geometry (JPEG re-save, exposure, contrast, grey, colour) should
keep the names; another photo saved under the same name must not inherit them, even with
a face at the same place. Measured per population of ../shared/datasets and across them:

    .venv/bin/python bench/changed_photos.py [--models M ...] [--per-person 3]

"strangers": pairs of photos of two different people whose faces are at the same place
(box IoU ≥ 0.5, as a scan matches them), within each population and across populations
(the mixed library), and the nearest of them: its embeddings' distance over the limit (1
would carry the name); "edits": each photo against five edits of itself. The last line is
the worst population's figures.
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from facetrain.data.images import load_rgb
from facetrain.devices import cpu_name
from facetrain.distances import pair_distances
from facetrain.inference.compiled import open_for_use
from facetrain.library.scan import SAME_FACE, SAME_PLACE, Scanner, _iou

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"
POPULATIONS = {
    "bbt (Western)": DATA / "photos" / "bbt" / "reference",
    "East-Asian": DATA / "populations" / "east-asian-idols",
    "South-Asian": DATA / "populations" / "south-asian-actors",
}


def edits(img: np.ndarray):
    """Five edits that keep a photo's geometry."""
    pil = Image.fromarray(img)
    buf = io.BytesIO()
    pil.save(buf, "JPEG", quality=60)
    yield np.asarray(Image.open(buf).convert("RGB"))
    yield np.asarray(ImageEnhance.Brightness(pil).enhance(1.3))
    yield np.asarray(ImageEnhance.Contrast(pil).enhance(0.7))
    yield np.asarray(pil.convert("L").convert("RGB"))
    yield np.asarray(ImageEnhance.Color(pil).enhance(1.5))


def largest(scanner: Scanner, img: np.ndarray) -> dict | None:
    found = scanner.faces_of(img)
    return max(found, key=lambda f: f["size"]) if found else None


class Judge:
    """Whether a face at an old face's place passes for it, as the scan decides."""

    def __init__(self, fm):
        self.pre = fm.pre

    def __call__(self, old: dict, new: dict) -> bool:
        return self.margin(old, new) <= 1.0

    def margin(self, old: dict, new: dict) -> float:
        """The embeddings' distance over the limit (≤ 1: the same face) where box and
        landmarks pass; inf where they do not."""
        d = pair_distances(old["embedding"][None], new["embedding"][None], self.pre.distance)
        a, b = (np.asarray(f["landmarks"], float).reshape(-1, 2) for f in (old, new))
        moved = float(np.linalg.norm(a - b, axis=1).mean())
        if _iou(old["box"], new["box"]) < 0.5 or moved > SAME_PLACE * old["size"]:
            return float("inf")
        return float(d[0]) / (SAME_FACE * self.pre.threshold)


def measure(model: str, per_person: int) -> dict[str, dict]:
    fm = open_for_use(model)
    scanner, same = Scanner(fm), Judge(fm)
    faces: dict[str, list[tuple[str, dict]]] = {}
    out: dict[str, dict] = {}
    for pop, root in POPULATIONS.items():
        faces[pop], kept = [], []
        for person in sorted(p for p in root.iterdir() if p.is_dir()):
            for path in sorted(person.iterdir())[:per_person]:
                img = load_rgb(path)
                face = largest(scanner, img)
                if face is None:
                    continue
                faces[pop].append((person.name, face))
                kept += [same(face, e) for e in map(lambda x: largest(scanner, x), edits(img))
                         if e is not None]  # fmt: skip
        out[pop] = strangers(faces[pop], same) | {"edits": len(kept), "edits_kept": sum(kept)}
    every = [(f"{pop}/{who}", f) for pop, fs in faces.items() for who, f in fs]
    out["mixed library"] = strangers(every, same) | {"edits": 0, "edits_kept": 0}
    return out


def strangers(faces: list[tuple[str, dict]], same: Judge) -> dict:
    """Pairs of two people's faces at the same place, how many would be carried, and how
    far the nearest of them is from being carried (its distance over the limit)."""
    n = carried = 0
    nearest = float("inf")
    for (a, fa), (b, fb) in itertools.permutations(faces, 2):
        if a != b and _iou(fa["box"], fb["box"]) >= 0.5:
            m = same.margin(fa, fb)
            n, carried, nearest = n + 1, carried + (m <= 1.0), min(nearest, m)
    return {"strangers": n, "strangers_carried": carried, "nearest_stranger": nearest}


def arguments(doc: str, per_person: int) -> argparse.Namespace:
    """--models (both shipped models) and --per-person, as the population benches take them."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    models = ["pretrained:dlib_resnet", "pretrained:facetrain_distilled"]
    ap.add_argument("--models", nargs="+", default=models)
    ap.add_argument("--per-person", type=int, default=per_person)
    return ap.parse_args()


def main() -> None:
    args = arguments(__doc__, per_person=3)
    print(f"{cpu_name()}, {os.cpu_count()} cores; SAME_FACE = {SAME_FACE} x threshold, "
          f"SAME_PLACE = {SAME_PLACE} x face size; {args.per_person} photos a person")  # fmt: skip
    print("| model | population | strangers at the same place | carried | nearest stranger "
          "(x the limit) | edits | names kept |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    worst_strangers, worst_edits = 0, 1.0
    for model in args.models:
        for pop, r in measure(model, args.per_person).items():
            kept = r["edits_kept"] / r["edits"] if r["edits"] else None
            print(f"| {model} | {pop} | {r['strangers']} | {r['strangers_carried']} | "
                  f"{r['nearest_stranger']:.2f} | {r['edits']} | "
                  f"{'-' if kept is None else f'{kept:.1%}'} |")  # fmt: skip
            worst_strangers = max(worst_strangers, r["strangers_carried"])
            worst_edits = min(worst_edits, 1.0 if kept is None else kept)
    print(f"worst population: {worst_strangers} strangers given a name; "
          f"{worst_edits:.1%} of edits keep their names")  # fmt: skip


if __name__ == "__main__":
    main()
