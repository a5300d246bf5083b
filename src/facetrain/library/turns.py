"""The eight ways a photo viewer turns or mirrors a photo (an EXIF orientation written, or
the pixels turned): which one took the pixels a photo's faces were found on to the pixels
it has now, and where its recorded faces are then. So a photo the owner turned keeps its
faces and their names instead of being searched as a stranger's.

A turn is (quarter turns counter-clockwise, mirrored left-right first); points are in
continuous pixel coordinates (a pixel's centre at +0.5), boxes [x1, y1, x2, y2].
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

Turn = tuple[int, bool]

# every turn but "as it was"
TURNS: list[Turn] = [(k, m) for m in (False, True) for k in range(4)][1:]

# a quarter turns counter-clockwise undone
_BACK = {1: cv2.ROTATE_90_CLOCKWISE, 2: cv2.ROTATE_180, 3: cv2.ROTATE_90_COUNTERCLOCKWISE}

# a mirror swaps the face's sides: MTCNN's five points are left eye, right eye, nose,
# left and right mouth corner as seen in the photo
MIRRORED_ORDER = [1, 0, 2, 4, 3]


def turn_of(img: np.ndarray, recorded: str, digest: Callable[[np.ndarray], str]) -> Turn | None:
    """The turn that took the pixels whose `digest` is `recorded` to `img`; None when
    `img` is not those pixels turned or mirrored."""
    for k, mirrored in TURNS:
        back = cv2.rotate(img, _BACK[k]) if k else img  # cv2: ~20× numpy's strided copy
        if digest(cv2.flip(back, 1) if mirrored else back) == recorded:
            return k, mirrored
    return None


def fitting(width: int, height: int, new_width: int, new_height: int) -> list[Turn]:
    """The turns that take a `width` × `height` photo to `new_width` × `new_height`."""
    turned = (height, width), (width, height)
    return [t for t in TURNS if (new_width, new_height) == turned[t[0] % 2 == 0]]


def turn_points(points, turn: Turn, width: float, height: float) -> np.ndarray:
    """Points of a `width` × `height` photo, where they are once it is turned."""
    k, mirrored = turn
    p = np.asarray(points, float).reshape(-1, 2).copy()
    if mirrored:
        p[:, 0] = width - p[:, 0]
    for _ in range(k):  # a quarter turn counter-clockwise: (x, y) -> (y, width - x)
        p = np.stack([p[:, 1], width - p[:, 0]], axis=1)
        width, height = height, width
    return p


def turn_face(box, landmarks, turn: Turn, width: float, height: float) -> tuple[list, list]:
    """A face's box and five landmarks where they are once its photo is turned (the
    landmarks in MTCNN's order, which a mirror swaps)."""
    corners = turn_points([box[:2], box[2:]], turn, width, height)
    new_box = [*corners.min(axis=0).tolist(), *corners.max(axis=0).tolist()]
    points = turn_points(landmarks, turn, width, height)
    if turn[1] and len(points) == len(MIRRORED_ORDER):
        points = points[MIRRORED_ORDER]
    return new_box, points.round(2).tolist()
