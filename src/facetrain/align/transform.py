"""Turn a detected face into a training crop: the two alignment modes and face selection.

`similarity`: the five landmarks are mapped by a similarity transform (rotation, uniform
scale, translation; least squares) onto the standard 112x112 five-point template used by
InsightFace/ArcFace, scaled for other sizes. `box`: FaceNet's crop of the detector box grown
by `margin` pixels (half each side, clipped to the image), resized to `size`.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

# Left eye, right eye, nose tip, left and right mouth corners on a 112x112 crop.
TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)

SELECT_MODES = ("center", "largest", "all")


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 similarity (rotation, uniform scale, translation) that maps the points `src`
    onto `dst` in the least-squares sense (Umeyama 1991, without reflection)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var = (s**2).sum() / len(src)
    if not np.isfinite(var) or var < 1e-12:
        raise ValueError("degenerate landmarks: no similarity transform")
    u, sig, vt = np.linalg.svd(d.T @ s / len(src))
    fix = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ fix @ vt
    scale = (sig * np.diag(fix)).sum() / var
    return np.hstack([scale * rot, (mu_d - scale * rot @ mu_s)[:, None]])


def template_for(size: int = 112, template=None) -> np.ndarray:
    """The five-point template of a size x size crop: the standard one scaled, or the
    model's own (given in its crop's pixels, as an alignment record carries it)."""
    if template is not None:
        return np.asarray(template, np.float64)
    return TEMPLATE_112 * (size / 112.0)


def similarity_matrix(landmarks: np.ndarray, size: int = 112, template=None) -> np.ndarray:
    """The 2x3 matrix mapping image coordinates onto the template for a size x size crop."""
    return fit_similarity(landmarks, template_for(size, template))


def warp_similarity(
    img: np.ndarray, landmarks: np.ndarray, size: int = 112, template=None
) -> np.ndarray:
    """Aligned size x size RGB crop (pixels outside the photo are black)."""
    m = similarity_matrix(landmarks, size, template)
    return cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))


def rewarp_standard(face: np.ndarray, size: int, template) -> np.ndarray:
    """A face already aligned to the standard template (any square size) warped into
    another template's geometry; what the standard crop does not cover is black."""
    src = TEMPLATE_112 * (face.shape[0] / 112.0)
    return warp_similarity(face, src, size, template)


def margin_box(box: np.ndarray, margin: float, width: int, height: int) -> tuple[int, ...]:
    """FaceNet's crop window: the box grown by margin/2 on each side, clipped to the image."""
    x1 = int(max(np.floor(box[0] - margin / 2), 0))
    y1 = int(max(np.floor(box[1] - margin / 2), 0))
    x2 = int(min(np.ceil(box[2] + margin / 2), width))
    y2 = int(min(np.ceil(box[3] + margin / 2), height))
    return x1, y1, x2, y2


def crop_box(img: np.ndarray, box: np.ndarray, size: int = 182, margin: float = 44) -> np.ndarray:
    """FaceNet-style crop: box plus margin, resized (bilinear) to size x size."""
    h, w = img.shape[:2]
    x1, y1, x2, y2 = margin_box(box, margin, w, h)
    if x2 <= x1 or y2 <= y1:
        raise ValueError("face box lies outside the image")
    crop = Image.fromarray(np.ascontiguousarray(img[y1:y2, x1:x2]))
    return np.asarray(crop.resize((size, size), Image.BILINEAR))


def aligned_size(alignment: dict) -> int:
    """The side of the faces an alignment record makes (112 similarity, 182 box when the
    record does not say)."""
    mode = alignment.get("mode", "similarity")
    return int(alignment.get("size") or (112 if mode == "similarity" else 182))


def align_face(img: np.ndarray, box, landmarks, alignment: dict) -> np.ndarray:
    """One face cropped the way `alignment` says ({"mode", "size", "margin"}, as
    `facetrain align` records it and saved models carry it)."""
    mode = alignment.get("mode", "similarity")
    size = aligned_size(alignment)
    if mode == "similarity":
        return warp_similarity(img, landmarks, size, alignment.get("template"))
    if mode == "box":
        return crop_box(img, np.asarray(box), size, float(alignment.get("margin", 44.0)))
    raise ValueError(f"unknown alignment mode {mode!r}; choose similarity or box")


def select_faces(boxes: np.ndarray, image_shape: tuple[int, ...], how: str) -> list[int]:
    """Indices of the faces to keep.

    `center`: FaceNet's LFW rule, the largest box area minus twice the squared distance of
    its centre from the image centre. `largest`: largest area. `all`: every face.
    """
    n = len(boxes)
    if n == 0:
        return []
    if how == "all":
        return list(range(n))
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    if how == "largest":
        return [int(np.argmax(area))]
    if how == "center":
        h, w = image_shape[:2]
        cx = (boxes[:, 0] + boxes[:, 2]) / 2 - w / 2
        cy = (boxes[:, 1] + boxes[:, 3]) / 2 - h / 2
        return [int(np.argmax(area - 2.0 * (cx**2 + cy**2)))]
    raise ValueError(f"unknown selection {how!r}; choose from {', '.join(SELECT_MODES)}")
