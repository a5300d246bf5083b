"""One face embedder: photo → faces (box, landmarks, quality, embedding), for every user.

The photo library's scan, the Python API, distillation's teacher, `embed`, `compare` and
`classify` all detect, align and embed through `FaceEmbedder`, so a face is prepared one
way wherever it is seen: detected and aligned with the model's own alignment record, then
fed as the model's preprocessing record says (`feed`). Faces of many photos are embedded in
one batch; the model runs on any device, or compiled for ONNX Runtime (`compiled`: no
torch in the process).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import cv2
import numpy as np

from facetrain.inference.sources import Arrays, FaceSource, Images, Progress, face_crop, whole_face


@dataclass
class Face:
    """One detected face of a photo, with what a caller needs to judge and use it."""

    box: np.ndarray  # x1, y1, x2, y2 in the photo
    landmarks: np.ndarray  # (5, 2): eyes, nose tip, mouth corners, in the photo
    score: float  # detector probability
    size: float  # shorter side of the box, in photo pixels
    sharpness: float  # variance of the Laplacian of the aligned grey face
    # left out of repr: printing a face shows where it is, not 40,000 pixels
    crop: np.ndarray = field(repr=False)  # the aligned face the model saw (HxWx3 uint8)
    embedding: np.ndarray = field(repr=False)  # unit vector


def sharpness(face: np.ndarray) -> float:
    """Focus of an aligned face: low for blur (a quality gate's input)."""
    grey = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


class FaceEmbedder:
    """A saved model with its detector. `faces(photo)`: every face; `embed(images)`: one row
    per image (its central face, or the image itself when already aligned; NaN: no face)."""

    def __init__(self, model, device: str = "cpu"):
        """`model`: a `saved.FaceModel` or a `compiled.CompiledModel`."""
        self.model, self.device = model, device
        self._aligner = None
        self._lock = threading.Lock()  # reading threads share one detector

    @property
    def pre(self):
        return self.model.pre

    @property
    def width(self) -> int:
        """Columns of an embedding row (twice the size for a `concat` flip)."""
        return self.pre.embedding_size * (2 if self.pre.flip == "concat" else 1)

    @property
    def aligner(self):
        """The model's FaceAligner, made on first use (MTCNN takes a moment to load)."""
        with self._lock:
            if self._aligner is None:
                from facetrain.align.faces import FaceAligner

                self._aligner = FaceAligner(self.pre.alignment, self.device)
        return self._aligner

    def embed_crops(self, crops: Sequence[np.ndarray], progress: str | None = None,
                    workers: int = 0) -> np.ndarray:  # fmt: skip
        """Unit embeddings of faces already aligned the model's way."""
        if not len(crops):
            return np.zeros((0, self.width), np.float32)
        return self.embed_source(Arrays(list(crops)), progress=progress, workers=workers)

    def embed_source(self, source: FaceSource, *, flip: str | None = None,
                     progress: Progress = None, workers: int = 0) -> np.ndarray:  # fmt: skip
        """Unit embeddings of every face of a source (NaN rows where it has none)."""
        from facetrain.inference.compiled import CompiledModel, embed_source

        if isinstance(self.model, CompiledModel):
            if flip not in (None, self.pre.flip):
                raise ValueError(f"a compiled model embeds with its own flip ({self.pre.flip})")
            return embed_source(self.model, source, progress=progress, workers=workers)
        from facetrain.inference.feed import embed_model

        return embed_model(self.model, source, flip=flip, device=self.device,
                           progress=progress, workers=workers)  # fmt: skip

    def faces_of(self, photos: Sequence[np.ndarray], smallest: float = 0.0) -> list[list[Face]]:
        """Every face of each photo, detected, aligned, measured and embedded in one batch;
        `smallest`: the smallest face wanted, in photo pixels (smaller ones may be missed:
        `detect_photos`)."""
        found = [self.aligner.faces(p, "all", smallest) for p in photos]
        emb = iter(self.embed_crops([f.crop for fs in found for f in fs]))
        out = []
        for fs in found:
            out.append([_face(f, next(emb)) for f in fs])
        return out

    def faces(self, photo: np.ndarray, smallest: float = 0.0) -> list[Face]:
        """Every face of one photo (`faces_of`)."""
        return self.faces_of([photo], smallest)[0]

    def faces_at(self, photo: np.ndarray, places: Sequence[tuple]) -> list[Face | None]:
        """The faces of one photo at places already known — (box, landmarks, score) each —
        aligned and embedded as `faces` would, without detecting: a face found once stays
        usable when another detector setting no longer finds it (None: no crop there)."""
        aligned = [self.aligner.at(photo, np.asarray(box, np.float32),
                                   np.asarray(landmarks, np.float32), score)
                   for box, landmarks, score in places]  # fmt: skip
        emb = iter(self.embed_crops([a.crop for a in aligned if a is not None]))
        return [None if a is None else _face(a, next(emb)) for a in aligned]

    def crop(self, img: np.ndarray, align: str = "auto") -> np.ndarray | None:
        """The model's face of one image (see `feed.face_crop`), or None: no face."""
        return face_crop(np.ascontiguousarray(img), lambda: self.aligner, align)

    def every_crop(self, img: np.ndarray, align: str = "auto") -> list[tuple]:
        """(box or None, aligned crop) of every face of one image: an image taken whole
        (`never`, or an already aligned face under `auto`) is one face with no box; a
        photo gives each face it holds, so a group photo is never read as one person."""
        img = np.ascontiguousarray(img)
        whole = whole_face(img, lambda: self.aligner, align)
        if whole is not None:
            return [(None, whole)]
        return [(f.box, f.crop) for f in self.aligner.faces(img, select="all")]

    def embed(self, images: Sequence[np.ndarray], align: str = "auto") -> np.ndarray:
        """One row per image (HxWx3 uint8 RGB): its face's embedding, NaN where none."""
        crops = [self.crop(im, align) for im in images]
        ok = [i for i, c in enumerate(crops) if c is not None]
        out = np.full((len(images), self.width), np.nan, np.float32)
        if ok:
            out[ok] = self.embed_crops([crops[i] for i in ok])
        return out

    def images(self, paths: list[str], align: str = "auto", read=None) -> Images:
        """Photos on disk (or `read(i)`'s pixels, paths[i] naming them) as a source whose
        faces are cropped by this embedder."""
        return Images(paths, self.pre.alignment, align, crop=partial(self.crop, align=align),
                      read=read)  # fmt: skip


def _face(f, embedding: np.ndarray) -> Face:
    size = float(min(f.box[2] - f.box[0], f.box[3] - f.box[1]))
    return Face(f.box, f.landmarks, float(f.score), size, sharpness(f.crop), f.crop, embedding)
