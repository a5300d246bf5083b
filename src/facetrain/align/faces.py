"""Align faces in memory, the way a model's training faces were aligned.

`facetrain align` writes crops to disk for training; evaluation, embedding and the photo
library need the same crops on the fly, made with the alignment record a saved model
carries (mode, size, margin and the detector settings), so that a model never sees faces
prepared differently from the ones it learned on.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image

from facetrain.align.detector import MTCNN, DetectorConfig, Faces
from facetrain.align.transform import align_face, aligned_size, rewarp_standard, select_faces

PAD = 0.5  # a photo whose face fills the frame is looked at again on a canvas this much wider
PAD_GREY = 127  # the canvas around it: mid-grey (edge-replicated borders read as faces less
#                 well: east-asian-idols pair AUC 0.838 against 0.878 with grey)
PAD_SIDE = 240  # the second look sees the photo at most this size (shorter side): a face
#                 filling the frame is large, so the second look costs a fraction of the first


def detect_photos(detector: MTCNN, images: list[np.ndarray], max_side: int,
                  smallest: float = 0.0) -> list[Faces]:  # fmt: skip
    """Faces of each photo, detected on a copy no larger than max_side (coordinates are
    the original photo's: crops are warped from the full-resolution image). A photo where
    no face is found, or a face runs past the frame (a profile picture, an ID photo, a
    tight crop: MTCNN needs context around a face), is looked at again on a padded canvas
    (`fills_frame`, `second_look`). `smallest`: the smallest face wanted, in the photo's
    pixels (`MTCNN.detect`), on the first look; the second looks for every face."""
    small = [_at_most(img, max_side / max(img.shape[:2])) for img in images]
    found = detector.detect([c for c, _ in small], [smallest * s for _, s in small])
    found = [f.scaled(1.0 / s) if s < 1.0 else f for f, (_, s) in zip(found, small)]
    redo = [i for i, f in enumerate(found) if fills_frame(f, images[i].shape)]
    if redo:
        again = second_look(detector, [images[i] for i in redo])
        for i, g in zip(redo, again):
            found[i] = merge_looks(found[i], g, images[i].shape)
    return found


def _at_most(img: np.ndarray, s: float) -> tuple[np.ndarray, float]:
    """The photo resized by s when s < 1, and the scale used."""
    if s >= 1.0:
        return img, 1.0
    h, w = img.shape[:2]
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.asarray(Image.fromarray(img).resize(size, Image.BILINEAR)), s


def second_look(detector: MTCNN, images: list[np.ndarray]) -> list[Faces]:
    """Faces of photos placed in the middle of a grey canvas PAD wider on each side, seen
    at most PAD_SIDE on the shorter side; in the photos' coordinates."""
    canvases, maps = [], []
    for img in images:
        small, s = _at_most(img, PAD_SIDE / min(img.shape[:2]))
        pad = round(PAD * max(small.shape[:2]))
        spec = ((pad, pad), (pad, pad), (0, 0))
        canvases.append(np.pad(small, spec, mode="constant", constant_values=PAD_GREY))
        maps.append((pad, s))
    found = detector.detect(canvases)
    return [f.shifted(-pad).scaled(1.0 / s) for f, (pad, s) in zip(found, maps)]


def _outside(boxes: np.ndarray, shape, slack: float) -> np.ndarray:
    """Which boxes run past the frame by more than `slack` of their own side."""
    h, w = shape[:2]
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    over = np.maximum.reduce(
        [-boxes[:, 0], -boxes[:, 1], boxes[:, 2] - w, boxes[:, 3] - h, np.zeros(len(boxes))]
    )
    return over > slack * side


def fills_frame(f: Faces, shape, slack: float = 0.1) -> bool:
    """No face found, or one running past the frame: worth a look with more context."""
    return len(f) == 0 or bool(_outside(f.boxes, shape, slack).any())


def merge_looks(first: Faces, again: Faces, shape) -> Faces:
    """The faces of the first look that lie inside the frame, and those of the second look
    that are not among them; a face of the second look centred outside the photo is
    dropped (the canvas has no one there)."""
    h, w = shape[:2]
    keep1 = np.flatnonzero(~_outside(first.boxes, shape, 0.1)) if len(first) else []
    cx = (again.boxes[:, 0] + again.boxes[:, 2]) / 2
    cy = (again.boxes[:, 1] + again.boxes[:, 3]) / 2
    inside = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
    keep2 = [
        j for j in np.flatnonzero(inside)
        if all(_iou(again.boxes[j], first.boxes[i]) < 0.3 for i in keep1)
    ]  # fmt: skip
    pick = lambda f, ix: (f.boxes[ix], f.scores[ix], f.landmarks[ix])  # noqa: E731
    parts = [pick(first, np.asarray(keep1, int)), pick(again, np.asarray(keep2, int))]
    return Faces(*(np.concatenate([p[k] for p in parts]) for k in range(3)))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class AlignedFace:
    crop: np.ndarray  # HxWx3 uint8 RGB, the model's aligned size
    box: np.ndarray  # x1, y1, x2, y2 in the photo
    landmarks: np.ndarray  # (5, 2) in the photo
    score: float


class FaceAligner:
    """Detect and align faces of in-memory RGB photos with a model's alignment record."""

    def __init__(self, alignment: dict, device: str = "cpu", detect_max_side: int = 1600):
        self.alignment = dict(alignment)
        self.size = aligned_size(self.alignment)
        self.detect_max_side = detect_max_side
        self.device = device
        self._detector: MTCNN | None = None
        self._lock = threading.Lock()  # reading threads share one detector

    @property
    def detector(self) -> MTCNN:
        """Made on first use: faces that are already aligned, or re-warped, need none. Made
        once when several threads ask at once (Python 3.12's cached_property has no lock)."""
        with self._lock:
            if self._detector is None:
                self._detector = MTCNN(
                    DetectorConfig(
                        int(self.alignment.get("min_face", 20)),
                        tuple(self.alignment.get("thresholds", (0.6, 0.7, 0.7))),
                        float(self.alignment.get("factor", 0.709)),
                        self.device,
                    )
                )
        return self._detector

    def is_aligned(self, img: np.ndarray) -> bool:
        """A photo already the model's aligned size is taken as an aligned face."""
        return img.shape[0] == self.size and img.shape[1] == self.size

    def is_standard_crop(self, img: np.ndarray) -> bool:
        """A 112x112 face (the standard five-point crop of `facetrain align` and of the
        shared sets) given to a model whose own geometry differs: re-warped, not detected."""
        own = self.alignment.get("template") is not None or self.size != 112
        square = img.shape[0] == img.shape[1] == 112
        return own and square and self.alignment.get("mode", "similarity") == "similarity"

    def rewarp(self, img: np.ndarray) -> np.ndarray:
        return rewarp_standard(img, self.size, self.alignment.get("template"))

    def faces(self, img: np.ndarray, select: str = "all",
              smallest: float = 0.0) -> list[AlignedFace]:  # fmt: skip
        """The selected faces of one photo (`center`, `largest` or `all`), aligned;
        `smallest`: the smallest face wanted (`detect_photos`)."""
        found = detect_photos(self.detector, [img], self.detect_max_side, smallest)[0]
        out = [self.at(img, found.boxes[i], found.landmarks[i], found.scores[i])
               for i in select_faces(found.boxes, img.shape, select)]  # fmt: skip
        return [f for f in out if f is not None]

    def at(self, img: np.ndarray, box, landmarks, score: float) -> AlignedFace | None:
        """The face at a known place of a photo (detected now, or recorded earlier),
        aligned; None where the alignment record cannot crop it."""
        try:
            crop = align_face(img, box, landmarks, self.alignment)
        except ValueError:
            return None
        return AlignedFace(crop, box, landmarks, score)
