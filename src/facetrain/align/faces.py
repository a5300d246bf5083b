"""Align faces in memory, the way a model's training faces were aligned.

`facetrain align` writes crops to disk for training; evaluation, embedding and the photo
library need the same crops on the fly, made with the alignment record a saved model
carries (mode, size, margin and the detector settings), so that a model never sees faces
prepared differently from the ones it learned on.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image

from facetrain.align.detector import MTCNN, DetectorConfig, Faces
from facetrain.align.transform import align_face, rewarp_standard, select_faces


def detect_photos(detector: MTCNN, images: list[np.ndarray], max_side: int) -> list[Faces]:
    """Faces of each photo, detected on a copy no larger than max_side (coordinates are
    the original photo's: crops are warped from the full-resolution image)."""
    small, scales = [], []
    for img in images:
        h, w = img.shape[:2]
        s = min(1.0, max_side / max(h, w))
        if s < 1.0:
            size = (max(1, round(w * s)), max(1, round(h * s)))
            img = np.asarray(Image.fromarray(img).resize(size, Image.BILINEAR))
        small.append(img)
        scales.append(s)
    found = detector.detect(small) if small else []
    return [f.scaled(1.0 / s) if s < 1.0 else f for f, s in zip(found, scales)]


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
        mode = self.alignment.get("mode", "similarity")
        self.size = int(self.alignment.get("size") or (112 if mode == "similarity" else 182))
        self.detect_max_side = detect_max_side
        self.device = device

    @functools.cached_property
    def detector(self) -> MTCNN:
        """Made on first use: faces that are already aligned, or re-warped, need none."""
        return MTCNN(
            DetectorConfig(
                int(self.alignment.get("min_face", 20)),
                tuple(self.alignment.get("thresholds", (0.6, 0.7, 0.7))),
                float(self.alignment.get("factor", 0.709)),
                self.device,
            )
        )

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

    def faces(self, img: np.ndarray, select: str = "all") -> list[AlignedFace]:
        """The selected faces of one photo (`center`, `largest` or `all`), aligned."""
        found = detect_photos(self.detector, [img], self.detect_max_side)[0]
        out = []
        for i in select_faces(found.boxes, img.shape, select):
            try:
                crop = align_face(img, found.boxes[i], found.landmarks[i], self.alignment)
            except ValueError:
                continue
            out.append(AlignedFace(crop, found.boxes[i], found.landmarks[i], found.scores[i]))
        return out
