"""Picasa's face tags on a photo shown turned: does `--import-picasa` put each name on its
own face, whichever way up Picasa measured?

Which frame Picasa's `rect64` boxes are in for a photo shown turned is not documented, so
`curate.turned_to_fit` tries each frame it may be (`picasa.frames`: as shown, as stored,
as Picasa showed it after its own turn), takes the one that puts the most tags on faces,
and leaves a photo whose tags fit as well another way on other faces. Measured on every
photo of ../shared/datasets/photos (group photos among them) and the populations:

    .venv/bin/python bench/picasa_turns.py [--per-person 100]

Each photo's faces (those the scan finds) get a tag each, drawn as Picasa might: its box
scaled by 0.8-1.1 and moved by up to a tenth of its size. The photo is taken as stored in
each of the four quarter turns (EXIF orientations 1, 6, 3, 8), its tags measured on the
pixels as stored and on the photo as shown; and as turned 1-3 quarters by Picasa itself
(`rotate(k)`), its tags measured on what Picasa showed: 11 tries a photo. "right": every
tag on its own face; "left": the photo listed as unclear; "wrong": a tag on another face.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from changed_photos import DATA
from facetrain.data.images import load_rgb
from facetrain.devices import cpu_name
from facetrain.inference.compiled import open_for_use
from facetrain.library.curate import placed, turned_to_fit
from facetrain.library.picasa import frames
from facetrain.library.scan import Scanner
from facetrain.library.turns import stored_area

SETS = {
    "photos (bbt, friends, compreface)": DATA / "photos",
    "East-Asian": DATA / "populations" / "east-asian-idols",
    "South-Asian": DATA / "populations" / "south-asian-actors",
}


def photos_of(root: Path, per_person: int) -> list[Path]:
    """Every image below root, at most `per_person` of a folder."""
    out = []
    for folder, _, files in sorted(os.walk(root)):
        out += [Path(folder, f) for f in sorted(files) if f.lower().endswith((".jpg", ".png"))][
            :per_person
        ]
    return out


def tags_for(faces: list[dict], W: int, H: int, rng) -> list[tuple[str, tuple]]:
    """A tag a face, as Picasa might have drawn it: (face id, (cx, cy, w, h))."""
    out = []
    for f in faces:
        w, h = (
            (f["x2"] - f["x1"]) * rng.uniform(0.8, 1.1),
            (f["y2"] - f["y1"]) * rng.uniform(0.8, 1.1),
        )
        cx = (f["x1"] + f["x2"]) / 2 + rng.uniform(-0.1, 0.1) * w
        cy = (f["y1"] + f["y2"]) / 2 + rng.uniform(-0.1, 0.1) * h
        out.append((str(f["id"]), (cx / W, cy / H, w / W, h / H)))
    return out


def judge(faces: list[dict], photo: dict, tags: list) -> dict:
    """The photo as stored in each quarter turn, its tags measured as stored and as shown;
    and shown upright by Picasa after its own turn of 1-3 quarters, its tags measured on
    what Picasa showed."""
    tries = [(t, m, 0) for t in (1, 6, 3, 8) for m in (t, 1)]
    tries += [(1, frames(1, k)[-1], k) for k in (1, 2, 3)]
    counts = {"right": 0, "left": 0, "wrong": 0}
    for orientation, measured, rotate in tries:
        seen = [(n, stored_area(a, measured)) for n, a in tags]
        fit = turned_to_fit(faces, photo, seen, frames(orientation, rotate))
        if fit is None:
            counts["left"] += 1
            continue
        got = [None if f is None else str(f["id"]) for f in placed(faces, photo, fit)]
        counts["right" if got == [n for n, _ in tags] else "wrong"] += 1
    return counts


def measure(scanner: Scanner, paths: list[Path], rng) -> dict:
    out = {"photos": 0, "faces": 0, "right": 0, "left": 0, "wrong": 0}
    for path in paths:
        img = load_rgb(path)
        faces = [dict(zip(("x1", "y1", "x2", "y2"), f["box"])) | {"id": i}
                 for i, f in enumerate(scanner.faces_of(img))]  # fmt: skip
        if not faces:
            continue
        photo = {"width": img.shape[1], "height": img.shape[0]}
        for k, v in judge(faces, photo, tags_for(faces, *img.shape[1::-1], rng)).items():
            out[k] += v
        out["photos"] += 1
        out["faces"] += len(faces)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-person", type=int, default=100, help="photos of each folder")
    args = ap.parse_args()
    print(f"{cpu_name()}, {os.cpu_count()} cores; {args.per_person} photos a folder")
    print("| set | photos | faces | tries | right | left (unclear) | wrong |")
    print("|---|---|---|---|---|---|---|")
    scanner, rng, worst = (
        Scanner(open_for_use("pretrained:facetrain_distilled")),
        np.random.default_rng(0),
        0,
    )
    for name, root in SETS.items():
        r = measure(scanner, photos_of(root, args.per_person), rng)
        tries = r["right"] + r["left"] + r["wrong"]
        print(f"| {name} | {r['photos']} | {r['faces']} | {tries} | {r['right'] / tries:.1%} | "
              f"{r['left'] / tries:.1%} | {r['wrong']} |")  # fmt: skip
        worst = max(worst, r["wrong"])
    print(f"tags put on another face: {worst} at most in a set")


if __name__ == "__main__":
    main()
