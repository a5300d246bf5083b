"""The small Python API: `facetrain.load()` and what it returns.

    import facetrain
    fr = facetrain.load()                    # the default pretrained model
    for face in fr.faces("group.jpg"):       # every face: box, landmarks, score, embedding
        print(face.box, face.embedding[:4])
    e = fr.embed(["a.jpg", "b.jpg"])         # one unit embedding per image (NaN: no face)
    fr.distance(e[0], e[1]) < fr.threshold   # same person?

Faces are prepared exactly as the model's record says (alignment, size, normalisation,
flip), through the same functions the command line uses.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from facetrain.models.saved import FaceModel, open_model

ImageLike = str | os.PathLike | np.ndarray


@dataclass
class Face:
    box: np.ndarray  # x1, y1, x2, y2 in the photo
    landmarks: np.ndarray  # (5, 2): eyes, nose tip, mouth corners
    score: float  # detector probability
    embedding: np.ndarray  # unit vector


def _rgb(image: ImageLike) -> np.ndarray:
    from facetrain.data.images import load_rgb

    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError("an image array must be HxWx3 uint8 RGB")
        return image
    return load_rgb(image)


class Recognizer:
    """A model with its detector: `faces(photo)`, `embed(images)`, `distance(a, b)`."""

    def __init__(self, model: FaceModel, device: str = "cpu"):
        from facetrain.align.faces import FaceAligner

        self.model, self.device = model, device
        self.aligner = FaceAligner(model.pre.alignment, device)
        self.threshold = model.pre.threshold

    def _embed_crops(self, crops: list[np.ndarray]) -> np.ndarray:
        from facetrain.models.feed import Arrays, embed_model

        if not crops:
            return np.zeros((0, self.model.pre.embedding_size), np.float32)
        return embed_model(self.model, Arrays(crops), device=self.device)

    def faces(self, image: ImageLike) -> list[Face]:
        """Every face of a photo, detected, aligned and embedded."""
        found = self.aligner.faces(_rgb(image), select="all")
        emb = self._embed_crops([f.crop for f in found])
        return [Face(f.box, f.landmarks, float(f.score), e) for f, e in zip(found, emb)]

    def embed(self, images: list[ImageLike], align: str = "auto") -> np.ndarray:
        """One unit embedding per image (a photo's central face, or an aligned face);
        a NaN row where no face was found."""
        from facetrain.models.feed import face_crop

        crops = [face_crop(_rgb(im), lambda: self.aligner, align) for im in images]
        ok = [i for i, c in enumerate(crops) if c is not None]
        emb = self._embed_crops([crops[i] for i in ok])
        out = np.full((len(images), emb.shape[1] if len(ok) else 0), np.nan, np.float32)
        out[ok] = emb
        return out

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        """The distance the model's threshold is measured in."""
        from facetrain.evaluate.verification import pair_distances

        return float(pair_distances(a[None], b[None], self.model.pre.distance)[0])


def load(model: str | os.PathLike | None = None, device: str = "cpu") -> Recognizer:
    """A MODEL (run folder, weights, exported file, `pretrained:NAME`; None: the default)."""
    from facetrain.models.pretrained import DEFAULT

    return Recognizer(open_model(model or DEFAULT, device), device)
