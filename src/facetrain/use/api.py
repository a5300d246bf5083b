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

import numpy as np

from facetrain.distances import pair_distances
from facetrain.inference.embedder import Face, FaceEmbedder
from facetrain.inference.saved import FaceModel, open_model

ImageLike = str | os.PathLike | np.ndarray
__all__ = ["Face", "Recognizer", "load"]


def _rgb(image: ImageLike) -> np.ndarray:
    from facetrain.data.images import load_rgb

    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError("an image array must be HxWx3 uint8 RGB")
        return image
    return load_rgb(image)


class Recognizer:
    """A model with its detector: `faces(photo)`, `embed(images)`, `distance(a, b)` — the
    one `FaceEmbedder` with paths and arrays accepted."""

    def __init__(self, model: FaceModel, device: str = "cpu"):
        self.embedder = FaceEmbedder(model, device)
        self.model, self.device = model, device
        self.threshold = model.pre.threshold

    def faces(self, image: ImageLike) -> list[Face]:
        """Every face of a photo, detected, aligned and embedded."""
        return self.embedder.faces(_rgb(image))

    def embed(self, images: list[ImageLike], align: str = "auto") -> np.ndarray:
        """One unit embedding per image (a photo's central face, or an aligned face);
        a NaN row where no face was found."""
        return self.embedder.embed([_rgb(im) for im in images], align)

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        """The distance the model's threshold is measured in."""
        return float(pair_distances(a[None], b[None], self.model.pre.distance)[0])


def load(model: str | os.PathLike | None = None, device: str = "cpu") -> Recognizer:
    """A MODEL (run folder, weights, exported file, `pretrained:NAME`; None: the default)."""
    from facetrain.inference.pretrained import DEFAULT

    return Recognizer(open_model(model or DEFAULT, device), device)
