"""A photo turned by a viewer and saved again: are its named faces turned back with it,
and is no stranger's photo taken for it?

A scan that finds a photo's pixels changed, with no digest to tell a turn (the pixels were
turned and re-compressed), asks its named faces (`scan._turn_by_faces`): the turn under
which more of them are the same faces (`scan._same_face`), embedded again at their turned
landmarks, than as the photo stands. Measured per population of ../shared/datasets:

    .venv/bin/python bench/turned_photos.py [--models M ...] [--per-person 2]

"turned": each photo's largest face against the photo turned by a quarter, a half and
three quarters and saved as JPEG q90 — is the right turn found? "strangers": the same face
against another person's photo of the same size, as it is and turned three ways — is any
turn taken?
"""

from __future__ import annotations

import io
import json
import os
from functools import partial

import numpy as np
from PIL import Image

from changed_photos import POPULATIONS, arguments, largest
from facetrain.data.images import load_rgb
from facetrain.devices import cpu_name
from facetrain.inference.compiled import open_for_use
from facetrain.library.scan import Scanner, _same_face, _turn_by_faces


def resaved(img: np.ndarray, k: int) -> np.ndarray:
    """The photo turned k quarters counter-clockwise and saved as JPEG q90."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(np.rot90(img, k))).save(buf, "JPEG", quality=90)
    return np.asarray(Image.open(buf).convert("RGB"))


def as_named(face: dict) -> dict:
    """A face as the store keeps a named one."""
    return dict(zip(("x1", "y1", "x2", "y2"), face["box"])) | {
        "landmarks": json.dumps(face["landmarks"]), "score": face["score"],
        "embedding": face["embedding"].tobytes(), "size": face["size"], "confirmed": 1}  # fmt: skip


def faces_of(scanner: Scanner, root, per_person: int) -> list[tuple[str, np.ndarray, dict]]:
    out = []
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(person.iterdir())[:per_person]:
            img = load_rgb(path)
            face = largest(scanner, img)
            if face is not None:
                out.append((person.name, img, as_named(face)))
    return out


def measure(scanner: Scanner, items: list) -> dict:
    same = _same_face(scanner)
    found = tries = taken = strangers = 0
    for i, (who, img, face) in enumerate(items):
        photo = {"width": img.shape[1], "height": img.shape[0]}
        for k in (1, 2, 3):
            turn = _turn_by_faces(scanner, partial(resaved, img, k), [face], photo, same)
            found, tries = found + (turn == (k, False)), tries + 1
        other = next((im for w, im, _ in items[i + 1 :] + items[:i]
                      if w != who and im.shape == img.shape), None)  # fmt: skip
        for k in (0, 1, 2, 3) if other is not None else ():
            turn = _turn_by_faces(scanner, partial(resaved, other, k), [face], photo, same)
            taken, strangers = taken + (turn is not None), strangers + 1
    return {"tries": tries, "found": found, "strangers": strangers, "taken": taken}


def main() -> None:
    args = arguments(__doc__, per_person=2)
    print(f"{cpu_name()}, {os.cpu_count()} cores; {args.per_person} photos a person")
    print("| model | population | turned photos | turn found | strangers' photos | taken |")
    print("|---|---|---|---|---|---|")
    worst_found, worst_taken = 1.0, 0
    for model in args.models:
        scanner = Scanner(open_for_use(model))
        for pop, root in POPULATIONS.items():
            r = measure(scanner, faces_of(scanner, root, args.per_person))
            share = r["found"] / r["tries"]
            print(f"| {model} | {pop} | {r['tries']} | {share:.1%} | {r['strangers']} | "
                  f"{r['taken']} |")  # fmt: skip
            worst_found, worst_taken = min(worst_found, share), max(worst_taken, r["taken"])
    print(f"worst population: {worst_found:.1%} of turns found; {worst_taken} strangers' photos "
          "taken for a turned one")  # fmt: skip


if __name__ == "__main__":
    main()
