"""`facetrain compare`: are these faces the same person? Every pair, by the model's threshold,
marked unsure where that threshold cannot be trusted for every population."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facetrain.distances import distance_matrix, plain_l2, threshold_problem
from facetrain.errors import FacetrainError

SILENT_UP_TO = 8  # photos compared without a progress bar (a pair takes a second)


@dataclass
class Comparison:
    paths: list[str]  # the usable faces, in the order given
    matrix: np.ndarray  # distances between them, in the model's distance
    distance: str
    threshold: float | None  # "same" below it; None: the model has none and none was given
    threshold_source: str
    sure_below: float | None = None  # a "same" under it holds on every population measured
    sure_source: str = ""
    pairs: list[dict] = field(default_factory=list)  # a, b, distance, same, sure
    skipped: dict[str, str] = field(default_factory=dict)  # path → why

    @property
    def threshold_l2(self) -> float | None:
        """The threshold as plain L2, the scale dlib and face_recognition quote theirs in."""
        return None if self.threshold is None else plain_l2(self.threshold, self.distance)

    def as_dict(self) -> dict:
        return {"threshold": self.threshold, "sure_below": self.sure_below,
                "distance": self.distance, "photos": self.paths,
                "matrix": np.asarray(self.matrix).tolist(), "pairs": self.pairs,
                "skipped": self.skipped}  # fmt: skip


def verdict(d: float, threshold: float | None, sure_below: float | None) -> dict:
    """Same person, and beyond doubt? `same` is the threshold's answer (None without one).
    `sure` is False for a "same" between `sure_below` and the threshold: distances at which
    the model puts different people of some population (on the default model, 98% of
    East-Asian strangers' pairs) — the threshold, calibrated on other faces, says "same"
    there for them too. None where the model's sure_below was never measured."""
    if threshold is None:
        return {"same": None, "sure": None}
    if d >= threshold:
        return {"same": False, "sure": True}
    return {"same": True, "sure": None if sure_below is None else bool(d < sure_below)}


def compare(model, images: list[str], threshold: float | None = None, align: str = "auto",
            device: str = "cpu") -> Comparison:  # fmt: skip
    """Compare every pair of images by their nearest two faces: each face of a group photo
    is looked at ("is Amy in this photo?"), not the central one alone, which said
    "different" for a photo Amy was in beside five others."""
    from facetrain.data.listing import photos_in
    from facetrain.use.embeddings import NO_FACE, faces_in_photos

    passed_over: dict[str, str] = {}
    images = photos_in(images, skipped=passed_over)
    if len(images) < 2:
        raise FacetrainError("give at least two images")
    if threshold is not None and (problem := threshold_problem(threshold, model.pre.distance)):
        raise FacetrainError(f"--threshold {threshold}: {problem}")
    photos = faces_in_photos(model, images, align=align, device=device,
                             progress=len(images) > SILENT_UP_TO)  # fmt: skip
    usable = [p for p in photos if len(p.boxes)]
    skipped = passed_over | {p.path: p.error or NO_FACE for p in photos if not len(p.boxes)}
    if len(usable) < 2:
        why = "; ".join(f"{p}: {w}" for p, w in skipped.items())
        raise FacetrainError(f"fewer than two usable faces ({why})")
    pre = model.pre
    thr = threshold if threshold is not None else pre.threshold
    nearest, matrix = nearest_faces(usable, pre.distance)
    c = Comparison([p.path for p in usable], matrix, pre.distance, thr,
                   "given" if threshold is not None else pre.threshold_source,
                   pre.sure_below, pre.sure_source, skipped=skipped)  # fmt: skip
    for (i, j), (fi, fj) in nearest.items():
        d = float(matrix[i, j])
        c.pairs.append({"a": usable[i].path, "b": usable[j].path, "distance": d,
                        **verdict(d, thr, pre.sure_below), "face_a": face_of(usable[i], fi),
                        "face_b": face_of(usable[j], fj)})  # fmt: skip
    return c


def face_of(photo, k: int) -> dict | None:
    """Which face of a `PhotoFaces` face k is, as results name it (`which_face`)."""
    return which_face(k, len(photo.boxes), photo.boxes[k])


def nearest_faces(photos: list, distance: str) -> tuple[dict, np.ndarray]:
    """For each pair of photos (i < j), which of their faces are nearest each other, and
    the photos' distance matrix: those faces' distance."""
    emb = np.concatenate([p.embeddings for p in photos])
    d = distance_matrix(emb, emb, distance)
    start = np.cumsum([0] + [len(p.boxes) for p in photos])
    matrix, nearest = np.zeros((len(photos), len(photos))), {}
    for i in range(len(photos)):
        for j in range(i + 1, len(photos)):
            block = d[start[i] : start[i + 1], start[j] : start[j + 1]]
            fi, fj = np.unravel_index(np.argmin(block), block.shape)
            matrix[i, j] = matrix[j, i] = block[fi, fj]
            nearest[i, j] = (int(fi), int(fj))
    return nearest, matrix


def which_face(k: int, count: int, box) -> dict | None:
    """Face k (from 0) of a photo of `count` faces, with its box (None or NaN: an image
    taken whole), as results name it; None for a photo's only face."""
    if count == 1:
        return None
    whole = box is None or not np.isfinite(np.asarray(box, float)).all()
    return {"face": int(k) + 1, "of": int(count),
            "box": None if whole else [round(float(v), 1) for v in box]}  # fmt: skip
