"""The eight ways a photo viewer turns or mirrors a photo (an EXIF orientation written, or
the pixels turned): which one took the pixels a photo's faces were found on to the pixels
it has now, and where its recorded faces are then. So a photo the owner turned keeps its
faces and their names instead of being searched as a stranger's.

A turn is (quarter turns counter-clockwise, mirrored left-right first); points are in
continuous pixel coordinates (a pixel's centre at +0.5), boxes [x1, y1, x2, y2]. An EXIF
orientation is one of these turns (`UPRIGHT`): the regions other programs keep — XMP's,
Picasa's — are turned with it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Turn = tuple[int, bool]

# every turn but "as it was"
TURNS: list[Turn] = [(k, m) for m in (False, True) for k in range(4)][1:]

# the turn that shows a photo stored with each EXIF orientation upright (what PIL's
# exif_transpose does to its pixels)
UPRIGHT: dict[int, Turn] = {1: (0, False), 2: (0, True), 3: (2, False), 4: (2, True),
                            5: (1, True), 6: (3, False), 7: (3, True), 8: (1, False)}  # fmt: skip

# a mirror swaps the face's sides: MTCNN's five points are left eye, right eye, nose,
# left and right mouth corner as seen in the photo
MIRRORED_ORDER = [1, 0, 2, 4, 3]


def turn_of(img: np.ndarray, recorded: str, digest: Callable[[np.ndarray], str]) -> Turn | None:
    """The turn that took the pixels whose `digest` is `recorded` to `img`; None when
    `img` is not those pixels turned or mirrored."""
    import cv2

    # k quarter turns counter-clockwise, undone
    undo = {1: cv2.ROTATE_90_CLOCKWISE, 2: cv2.ROTATE_180, 3: cv2.ROTATE_90_COUNTERCLOCKWISE}
    for k, mirrored in TURNS:
        back = cv2.rotate(img, undo[k]) if k else img  # cv2: ~20× numpy's strided copy
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


def region(box, width: float = 1.0, height: float = 1.0) -> tuple:
    """A box (x1, y1, x2, y2) of a `width` × `height` photo as a region: (cx, cy, w, h),
    normalised by the photo's size."""
    x1, y1, x2, y2 = box
    return ((x1 + x2) / 2 / width, (y1 + y2) / 2 / height, abs(x2 - x1) / width,
            abs(y2 - y1) / height)  # fmt: skip


def undone(turn: Turn) -> Turn:
    """The turn that takes a turned photo back (a mirrored turn undoes itself)."""
    k, mirrored = turn
    return turn if mirrored else ((4 - k) % 4, False)


def turn_area(area: tuple, turn: Turn) -> tuple:
    """A region's (cx, cy, w, h), normalised by its photo's size, once the photo is turned."""
    cx, cy, w, h = area
    (a, b), (c, d) = turn_points([(cx - w / 2, cy - h / 2), (cx + w / 2, cy + h / 2)], turn,
                                 1.0, 1.0)  # fmt: skip
    return (a + c) / 2, (b + d) / 2, abs(c - a), abs(d - b)


def upright_area(area: tuple, orientation: int) -> tuple:
    """A region's (cx, cy, w, h), normalised, from the stored photo to the upright one."""
    return turn_area(area, UPRIGHT.get(orientation, (0, False)))


def stored_area(area: tuple, orientation: int) -> tuple:
    """A region's (cx, cy, w, h), normalised, from the upright photo to the stored one."""
    return turn_area(area, undone(UPRIGHT.get(orientation, (0, False))))
