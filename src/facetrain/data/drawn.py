"""Drawn faces: a dataset made on the spot, for `make demo` where no photos are at hand.

No package ships face photos of enough people to train on, and facetrain downloads nothing
at run time; so the demo draws its people. Each person is a few numbers (face shape, skin,
hair, where the eyes, nose and mouth sit, their sizes and colours); each photo of them is
drawn with what changes between two photos (where the head is, a tilt, a slight turn,
a smile, the light and its direction, the background, the exposure, sensor noise). They
are cartoons, not people, yet MTCNN finds them (every photo on five of the six skin tones
drawn, 94% on the darkest: light on the brow and cheeks, and an exposure set by the whole
photo, as a camera's, took that from 80%) and a network learns to tell them apart: every
step of the pipeline runs on them as on photos.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SKINS = np.array([[236, 200, 170], [224, 180, 140], [198, 146, 104], [160, 110, 75],
                  [128, 86, 60], [105, 72, 52]])  # fmt: skip
SIZE = 250  # pixels a side, as LFW's photos
SCALE = 3  # drawn at 3x, then reduced: smooth edges


@dataclass(frozen=True)
class Person:
    """What stays the same in every photo of one drawn person (lengths: of the face)."""

    skin: np.ndarray
    hair: np.ndarray
    iris: np.ndarray
    lips: np.ndarray
    background: np.ndarray
    width: float  # of the face, of the photo
    height: float
    hair_below: float  # where the hair ends, below the face's centre
    eye_y: float  # above the centre
    eye_dx: float  # from the centre, each eye
    brow: float  # above the eyes
    brow_w: float  # thickness, of the photo
    nose: float  # below the centre
    nose_w: float
    mouth: float
    mouth_w: float


def person(rng: np.random.Generator) -> Person:
    u = rng.uniform
    return Person(
        skin=SKINS[rng.integers(len(SKINS))] * u(0.93, 1.07, 3), hair=u(10, 110, 3) * [1, 0.8, 0.6],
        iris=u(20, 120, 3), lips=u([140, 40, 50], [200, 100, 110]), background=u(60, 220, 3),
        width=u(0.34, 0.44), height=u(0.46, 0.56), hair_below=u(-0.1, 0.5), eye_y=u(0.06, 0.14),
        eye_dx=u(0.17, 0.23), brow=u(0.07, 0.11), brow_w=u(0.008, 0.02), nose=u(0.1, 0.17),
        nose_w=u(0.05, 0.09), mouth=u(0.24, 0.3), mouth_w=u(0.11, 0.19),
    )  # fmt: skip


def _rgb(colour, k: float = 1.0) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.clip(np.asarray(colour) * k, 0, 255))


def photo(p: Person, rng: np.random.Generator) -> Image.Image:
    """One photo of `p`: the head placed, tilted and turned a little, lit from one side."""
    w = SIZE * SCALE
    bg = _rgb(p.background * rng.uniform(0.85, 1.15, 3))
    img = Image.new("RGB", (w, w), bg)
    d = ImageDraw.Draw(img)
    cx, cy = w / 2 + rng.normal(0, w * 0.02), w * 0.47 + rng.normal(0, w * 0.02)
    fw, fh = p.width * w, p.height * w
    d.rectangle([cx - fw * 0.22, cy + fh * 0.3, cx + fw * 0.22, w], fill=_rgb(p.skin, 0.8))
    d.ellipse([cx - fw * 0.6, cy - fh * 0.62, cx + fw * 0.6, cy + fh * p.hair_below],
              fill=_rgb(p.hair))  # fmt: skip
    for k, shade in ((1.0, 0.82), (0.9, 0.92), (0.78, 1.0)):  # the face, darker at its rim
        d.ellipse([cx - fw / 2 * k, cy - fh / 2 * (0.5 + k / 2), cx + fw / 2 * k,
                   cy + fh / 2 * k], fill=_rgb(p.skin, shade))  # fmt: skip
    for x0, y0, x1, y1 in (
        (-0.2, -0.3, 0.2, -0.12),
        (-0.33, 0.0, -0.13, 0.12),
        (0.13, 0.0, 0.33, 0.12),
    ):  # light on the brow and cheeks
        d.ellipse([cx + fw * x0, cy + fh * y0, cx + fw * x1, cy + fh * y1],
                  fill=_rgb(p.skin, 1.12))  # fmt: skip
    d.chord([cx - fw * 0.52, cy - fh * 0.62, cx + fw * 0.52, cy - fh * 0.1], 180, 360,
            fill=_rgb(p.hair))  # fmt: skip
    fx = cx + rng.normal(0, 0.04) * fw  # the features sideways: a head turned a little
    _eyes(d, p, fx, cy - fh * p.eye_y, fw, fh, w)
    _nose_and_mouth(d, p, fx, cy, fw, fh, rng.uniform(0.0, 0.05), w)
    img = img.rotate(rng.normal(0, 5), resample=Image.BILINEAR, center=(cx, cy), fillcolor=bg)
    img = img.resize((SIZE, SIZE), Image.LANCZOS).filter(ImageFilter.GaussianBlur(0.7))
    light = np.linspace(rng.uniform(0.7, 1.0), rng.uniform(0.9, 1.2), SIZE)[None, :, None]
    a = np.asarray(img, np.float32) * light
    a *= rng.uniform(100, 140) / a.mean()  # the camera's exposure: the photo's mean level
    return Image.fromarray(np.clip(a + rng.normal(0, 5, a.shape), 0, 255).astype(np.uint8))


def _eyes(d: ImageDraw.ImageDraw, p: Person, fx, ey, fw, fh, w) -> None:
    for side in (-1, 1):
        x, ew, eh = fx + side * fw * p.eye_dx, fw * 0.1, fh * 0.04
        d.ellipse([x - ew * 1.4, ey - eh * 2.2, x + ew * 1.4, ey + eh * 2.0],
                  fill=_rgb(p.skin, 0.85))  # fmt: skip
        d.ellipse([x - ew, ey - eh, x + ew, ey + eh], fill=(235, 232, 228))
        d.ellipse([x - eh * 0.95, ey - eh * 0.95, x + eh * 0.95, ey + eh * 0.95], fill=_rgb(p.iris))
        d.ellipse([x - eh * 0.43, ey - eh * 0.43, x + eh * 0.43, ey + eh * 0.43], fill=(8, 8, 8))
        d.arc([x - ew, ey - eh * 1.2, x + ew, ey + eh * 1.2], 190, 350, fill=(30, 25, 25),
              width=max(2, w // 200))  # fmt: skip
        by = ey - fh * p.brow
        d.line([x - ew * 1.2, by + fh * 0.01, x + ew * 1.2, by - fh * 0.005],
               fill=_rgb(p.hair, 0.7), width=max(3, int(w * p.brow_w)))  # fmt: skip


def _nose_and_mouth(d: ImageDraw.ImageDraw, p: Person, fx, cy, fw, fh, smile, w) -> None:
    ny, nw, ey = cy + fh * p.nose, fw * p.nose_w, cy - fh * p.eye_y
    d.polygon([(fx, ey + fh * 0.02), (fx - nw, ny), (fx + nw, ny)], fill=_rgb(p.skin, 0.9))
    d.ellipse([fx - nw * 1.1, ny - fh * 0.02, fx + nw * 1.1, ny + fh * 0.02],
              fill=_rgb(p.skin, 0.7))  # fmt: skip
    my, mw = cy + fh * p.mouth, fw * p.mouth_w
    d.chord([fx - mw, my - fh * 0.03, fx + mw, my + fh * (0.03 + smile)], 0, 180,
            fill=_rgb(p.lips))  # fmt: skip
    d.line([fx - mw, my, fx + mw, my], fill=_rgb(p.lips, 0.6), width=max(2, w // 250))


def draw_people(out: str | os.PathLike, people: int, photos: int, seed: int = 0,
                lfw_names: bool = False) -> Path:  # fmt: skip
    """`people` drawn people, `photos` photos each, as OUT/<person>/<k>.jpg (LFW's names,
    OUT/<person>/<person>_NNNN.jpg, with `lfw_names`); photos already there are kept, so a
    stopped demo goes on. Every file is written whole or not at all."""
    from facetrain import atomic

    rng, out = np.random.default_rng(seed), Path(out)
    for i in range(people):
        p, name = person(rng), f"person_{seed}_{i:04d}"
        for k in range(photos):
            img = photo(p, rng)  # drawn even when kept: the next photos stay the same
            f = out / name / (f"{name}_{k + 1:04d}.jpg" if lfw_names else f"{k}.jpg")
            if not f.exists():
                with atomic.atomic_open(f, "wb") as fh:
                    img.save(fh, "JPEG", quality=92)
    return out


def write_pairs(folder: str | os.PathLike, path: str | os.PathLike, folds: int = 10,
                per_fold: int = 30, seed: int = 0) -> Path:  # fmt: skip
    """An LFW-format pairs.txt over the faces of a folder in LFW's names (`draw_people(...,
    lfw_names=True)`, aligned): `folds` folds of `per_fold` same-person and `per_fold`
    different-people pairs, of the faces that are there (alignment may have missed some)."""
    from facetrain import atomic

    pick = random.Random(seed)
    faces = {d.name: sorted(int(f.stem.rpartition("_")[2]) for f in d.glob(f"{d.name}_*.jpg"))
             for d in sorted(Path(folder).iterdir()) if d.is_dir()}  # fmt: skip
    names = [n for n, have in faces.items() if have]
    twice = [n for n in names if len(faces[n]) >= 2]  # people a same-person pair can be of
    lines = [f"{folds} {per_fold}"]
    for _ in range(folds):
        for _ in range(per_fold):
            n = pick.choice(twice)
            a, b = pick.sample(faces[n], 2)
            lines.append(f"{n} {a} {b}")
        for _ in range(per_fold):
            m, n = pick.sample(names, 2)
            lines.append(f"{m} {pick.choice(faces[m])} {n} {pick.choice(faces[n])}")
    atomic.write_text(path, "\n".join(lines) + "\n")
    return Path(path)
