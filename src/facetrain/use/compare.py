"""`facetrain compare`: are these faces the same person? Every pair, by the model's threshold,
marked unsure where that threshold cannot be trusted for every population."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facetrain.distances import distance_matrix, plain_l2
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
                "distance": self.distance, "pairs": self.pairs,
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
    """Embed each image's face and compare every pair."""
    from facetrain.use.embeddings import embed_paths

    if len(images) < 2:
        raise FacetrainError("give at least two images")
    if threshold is not None and not (np.isfinite(threshold) and threshold >= 0):
        raise FacetrainError(f"--threshold {threshold}: a finite number ≥ 0")
    t = embed_paths(model, images, [""] * len(images), align=align, device=device,
                    progress=len(images) > SILENT_UP_TO)  # fmt: skip
    if len(t) < 2:
        why = "; ".join(f"{p}: {w}" for p, w in t.skipped.items())
        raise FacetrainError(f"fewer than two usable faces ({why})")
    pre = model.pre
    thr = threshold if threshold is not None else pre.threshold
    d = distance_matrix(t.embeddings, t.embeddings, pre.distance)
    c = Comparison(t.paths, d, pre.distance, thr,
                   "given" if threshold is not None else pre.threshold_source,
                   pre.sure_below, pre.sure_source, skipped=dict(t.skipped))  # fmt: skip
    for i in range(len(t)):
        for j in range(i + 1, len(t)):
            c.pairs.append({"a": t.paths[i], "b": t.paths[j], "distance": float(d[i, j]),
                            **verdict(float(d[i, j]), thr, pre.sure_below)})  # fmt: skip
    return c
