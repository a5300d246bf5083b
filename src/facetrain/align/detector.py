"""MTCNN face detection, batched, with the P/R/O-Net weights shipped in facenet-pytorch.

facenet-pytorch's own `detect_face` crops every candidate box in a Python loop; on a CPU
that costs more than the networks themselves. This module runs the same three-stage
cascade (same pyramid, thresholds, NMS rules and box regression) in numpy with all images
of one size in one batch; R-Net and O-Net are given an image level and all the candidate
boxes on it, and sample them in one call (torchvision's `roi_align` arithmetic, one sample
a bin). The networks are functions of float32 arrays: ONNX graphs run by ONNX Runtime on a
CPU (`facetrain.runtime`: no torch import), the PyTorch modules of `nets.py` on a GPU.
`tests/test_detector.py` checks the faces it finds against facenet-pytorch's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facetrain.align.weights import NET_FILES, weights_key

Net = Callable[..., tuple[np.ndarray, ...]]  # float32 arrays (pixels, boxes) → outputs

# `detect(smallest=S)` searches the levels for faces down to this fraction of S: the level
# just under S stays, so a face near S is found as the whole pyramid finds it (the levels
# are a factor 0.709 apart). With the library's 40 px gate the 20 px level goes: half of
# P-Net's work on a still, and the candidate boxes it sends R-Net.
SEARCH_BELOW = 0.7


@dataclass(frozen=True)
class DetectorConfig:
    """MTCNN settings; the defaults are MTCNN's published ones (and FaceNet's)."""

    min_face: int = 20
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    factor: float = 0.709
    device: str = "cpu"


@dataclass
class Faces:
    """Faces found in one image: boxes (n,4) x1,y1,x2,y2; scores (n,); landmarks (n,5,2).

    Landmark order: left eye, right eye, nose, left mouth corner, right mouth corner.
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    def scaled(self, s: float) -> Faces:
        """Coordinates multiplied by s (maps detections on a resized copy back)."""
        return Faces(self.boxes * s, self.scores, self.landmarks * s)

    def shifted(self, d: float) -> Faces:
        """Coordinates moved by d in x and y (maps detections on a padded canvas back)."""
        return Faces(self.boxes + d, self.scores, self.landmarks + d)


def load_nets(device: str) -> tuple[Net, Net, Net]:
    """P-Net, R-Net and O-Net: ONNX graphs (traced once into the cache) on a CPU, else the
    PyTorch modules on `device`."""
    from facetrain import runtime

    if runtime.enabled(device):
        folder = runtime.compiled(f"mtcnn-{weights_key()}", list(NET_FILES), _export)
        if folder is not None:
            return tuple(_runtime_net(runtime.session(folder / f)) for f in NET_FILES)  # type: ignore[return-value]
    from facetrain.align.nets import as_numpy, pixel_nets

    return tuple(as_numpy(n, device) for n in pixel_nets(device))  # type: ignore[return-value]


def _export(folder: Path) -> None:
    from facetrain.align.nets import trace_nets

    trace_nets(folder)


def _runtime_net(sess) -> Net:
    names = [i.name for i in sess.get_inputs()]

    def run(*xs: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(sess.run(None, dict(zip(names, xs))))

    return run


class MTCNN:
    """A batched MTCNN detector. `detect(images)` takes HxWx3 uint8 RGB arrays."""

    def __init__(self, config: DetectorConfig | None = None):
        self.config = config or DetectorConfig()
        self.pnet, self.rnet, self.onet = load_nets(self.config.device)

    def detect(self, images: list[np.ndarray], smallest: list[float] | None = None) -> list[Faces]:
        """Detect faces in each image; images of equal size are processed as one batch.
        `smallest`: each image's smallest face wanted (pixels); the pyramid's levels for
        faces under `SEARCH_BELOW` of it are skipped, the others are the levels searched
        without it (None: every face down to `min_face`)."""
        out: list[Faces | None] = [None] * len(images)
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, img in enumerate(images):
            groups[img.shape[:2]].append(i)
        for idx in groups.values():
            batch = np.stack([images[i] for i in idx])
            least = SEARCH_BELOW * min(smallest[i] for i in idx) if smallest else 0.0
            for i, faces in zip(idx, self._detect_batch(batch, least)):
                out[i] = faces
        return out  # type: ignore[return-value]

    def _pyramid(self, h: int, w: int, least: float = 0.0) -> list[float]:
        """MTCNN's scales, less those whose 12-pixel window is a face under `least`."""
        m = 12.0 / self.config.min_face
        minl = min(h, w) * m
        scales, s = [], m
        while minl >= 12:
            scales.append(s)
            s *= self.config.factor
            minl *= self.config.factor
        return [s for s in scales if 12.0 / s >= least]

    def _detect_batch(self, batch: np.ndarray, least: float = 0.0) -> list[Faces]:
        """The three stages on a batch of equal-size images, then each image's faces."""
        mips = _mips(np.ascontiguousarray(batch.transpose(0, 3, 1, 2), np.float32))
        boxes, img_idx = self._propose(mips, least)
        if len(boxes):
            boxes, img_idx = self._refine(mips, boxes, img_idx)
        points = np.zeros((0, 5, 2), np.float32)
        if len(boxes):
            boxes, img_idx, points = self._output(mips, boxes, img_idx)
        result = []
        for b in range(len(batch)):
            sel = np.flatnonzero(img_idx == b)
            sel = sel[_nms_min(boxes[sel], 0.7)]
            result.append(Faces(boxes[sel, :4], boxes[sel, 4], points[sel]))
        return result

    def _propose(self, mips: list[np.ndarray], least: float) -> tuple[np.ndarray, np.ndarray]:
        """Stage 1: P-Net over the image pyramid; NMS per scale, then across scales; the
        candidates (x1, y1, x2, y2, score) squared, and their images."""
        h, w = mips[0].shape[2:]
        cands, inds = [np.zeros((0, 9), np.float32)], [np.zeros(0, np.int64)]
        for scale in self._pyramid(h, w, least):
            size = (int(h * scale + 1), int(w * scale + 1))
            # area-resample from the smallest halved copy still larger than the target
            src = next(m for m in reversed(mips) if m.shape[2] >= size[0] and m.shape[3] >= size[1])
            reg, prob = self.pnet(_resized(src, size))
            boxes, img_idx = _candidates(reg, prob[:, 1], scale, self.config.thresholds[0])
            keep = batched_nms(boxes[:, :4], boxes[:, 4], img_idx, 0.5)
            cands.append(boxes[keep])
            inds.append(img_idx[keep])
        boxes, img_idx = np.concatenate(cands), np.concatenate(inds)
        keep = batched_nms(boxes[:, :4], boxes[:, 4], img_idx, 0.7)
        boxes, img_idx = boxes[keep], img_idx[keep]
        wh = np.tile(boxes[:, 2:4] - boxes[:, 0:2], 2)
        boxes = np.concatenate([boxes[:, :4] + boxes[:, 5:9] * wh, boxes[:, 4:5]], axis=1)
        return _square(boxes), img_idx

    def _refine(self, mips, boxes, img_idx) -> tuple[np.ndarray, np.ndarray]:
        """Stage 2: R-Net keeps and corrects the candidates."""
        reg, prob = self._run(self.rnet, mips, boxes, img_idx, 24)
        score = prob[:, 1]
        ok = score > self.config.thresholds[1]
        boxes = np.concatenate([boxes[ok, :4], score[ok, None]], axis=1)
        img_idx, reg = img_idx[ok], reg[ok]
        keep = batched_nms(boxes[:, :4], boxes[:, 4], img_idx, 0.7)
        return _square(_regress(boxes[keep], reg[keep])), img_idx[keep]

    def _output(self, mips, boxes, img_idx):
        """Stage 3: O-Net gives the final boxes, scores and five landmarks."""
        reg, pts, prob = self._run(self.onet, mips, boxes, img_idx, 48)
        score = prob[:, 1]
        ok = score > self.config.thresholds[2]
        boxes = np.concatenate([boxes[ok, :4], score[ok, None]], axis=1)
        img_idx, reg, pts = img_idx[ok], reg[ok], pts[ok]
        bw = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        bh = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        px = bw * pts[:, :5] + boxes[:, 0:1] - 1
        py = bh * pts[:, 5:] + boxes[:, 1:2] - 1
        return _regress(boxes, reg), img_idx, np.stack([px, py], axis=2)

    def _run(self, net: Net, mips, boxes, img_idx, size: int) -> tuple[np.ndarray, ...]:
        """`net` on every box (clipped to its image), each sampled to size x size from the
        level of `mips` (the image halved k times) where the box is at most twice the crop
        size, so that one sample a bin still approximates area resampling."""
        h, w = mips[0].shape[2:]
        x1 = np.maximum(np.trunc(boxes[:, 0]), 1) - 1
        y1 = np.maximum(np.trunc(boxes[:, 1]), 1) - 1
        x2 = np.minimum(np.trunc(boxes[:, 2]), w)
        y2 = np.minimum(np.trunc(boxes[:, 3]), h)
        side = np.maximum(np.maximum(x2 - x1, y2 - y1), 1)
        level = np.clip(np.ceil(np.log2(side / (2 * size))), 0, len(mips) - 1).astype(np.int64)
        corners = np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)
        order, outs = [], []
        for k in np.unique(level):
            sel = np.flatnonzero(level == k)
            rois = np.concatenate([img_idx[sel, None].astype(np.float32),
                                   corners[sel] * np.float32(0.5**k)], axis=1)  # fmt: skip
            for i in range(0, len(sel), 1024):
                order.append(sel[i : i + 1024])
                outs.append(net(mips[k], rois[i : i + 1024]))
        back = np.argsort(np.concatenate(order))  # each box's row, in the boxes' order
        return tuple(np.concatenate(parts)[back] for parts in zip(*outs))


def _resized(imgs: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An NCHW batch resampled to size (h, w) as torch's `area` interpolation (adaptive
    average pooling) does: output pixel i averages input pixels floor(i n / m) to
    ceil((i + 1) n / m) - 1 of each axis. (OpenCV's INTER_AREA weighs the edge pixels by
    their overlap instead: the detector's scores move, and faces come and go.) One image
    at a time: a batch of 16 LFW photos is 12 MB, past the caches, and pooled whole took
    two thirds longer."""
    if len(imgs) > 1:
        return np.concatenate([_resized(imgs[i : i + 1], size) for i in range(len(imgs))])
    return _pooled(_pooled(imgs, 2, size[0]), 3, size[1])


def _pooled(x: np.ndarray, axis: int, m: int) -> np.ndarray:
    """Adaptive average pooling of one axis to m: the first pixel of every window, then
    the k-th added to the windows that long (only those: most are 1-2 pixels here), then
    each divided by its length."""
    n = x.shape[axis]
    i = np.arange(m)
    start, end = (i * n) // m, -((-(i + 1) * n) // m)
    at = (slice(None),) * axis
    out = x[(*at, start)]
    for k in range(1, int((end - start).max())):
        longer = np.flatnonzero(end - start > k)
        out[(*at, longer)] += x[(*at, start[longer] + k)]
    shape = [1] * x.ndim
    shape[axis] = m
    return out * (1 / (end - start)).astype(np.float32).reshape(shape)


def _mips(imgs: np.ndarray, smallest: int = 24) -> list[np.ndarray]:
    """The NCHW batch at full, half, quarter… resolution (2x2 averaging; an odd last row or
    column averaged alone), down to ~`smallest`."""
    levels = [imgs]
    while min(levels[-1].shape[2:]) >= 2 * smallest:
        x = levels[-1]
        h, w = x.shape[2:]
        if h % 2 or w % 2:  # repeating the edge averages it with itself: the pixel alone
            x = np.pad(x, ((0, 0), (0, 0), (0, h % 2), (0, w % 2)), mode="edge")
        levels.append((x[:, :, 0::2, 0::2] + x[:, :, 1::2, 0::2] + x[:, :, 0::2, 1::2]
                       + x[:, :, 1::2, 1::2]) * np.float32(0.25))  # fmt: skip
    return levels


def _candidates(reg: np.ndarray, prob: np.ndarray, scale: float, threshold: float):
    """P-Net output map → boxes (x1,y1,x2,y2,score,reg4) above threshold, with image index."""
    stride, cell = 2, 12
    n, ys, xs = np.nonzero(prob >= threshold)
    yx = np.stack([xs, ys], axis=1).astype(np.float32)
    q1 = np.floor((stride * yx + 1) / np.float32(scale))
    q2 = np.floor((stride * yx + cell) / np.float32(scale))
    r = reg[n, :, ys, xs]
    boxes = np.concatenate([q1, q2, prob[n, ys, xs][:, None], r], axis=1)
    return boxes.astype(np.float32), n.astype(np.int64)


def _square(boxes: np.ndarray) -> np.ndarray:
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    x1 = boxes[:, 0] + w * 0.5 - side * 0.5
    y1 = boxes[:, 1] + h * 0.5 - side * 0.5
    square = np.stack([x1, y1, x1 + side, y1 + side], 1)
    return np.concatenate([square, boxes[:, 4:]], axis=1).astype(np.float32)


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    wh = np.stack([w, h, w, h], 1)
    return np.concatenate([boxes[:, :4] + reg[:, :4] * wh, boxes[:, 4:]], axis=1)


def _nms_min(boxes: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy NMS where overlap = intersection / smaller area (MTCNN's final 'Min' rule)."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    x1, y1, x2, y2, s = boxes.T
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(s, kind="stable")
    keep = []
    while order.size:
        i = order[-1]
        keep.append(i)
        rest = order[:-1]
        iw = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        ih = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        overlap = iw * ih / np.minimum(area[i], area[rest])
        order = rest[overlap <= threshold]
    return np.array(keep, dtype=np.int64)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy NMS by intersection over union, as torchvision's `nms`: the highest score
    first, a box dropped when its IoU with a kept one is above `threshold` (OpenCV's
    C++ pass; scores are probabilities, > 0); indices of the boxes kept, best first."""
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1).astype(np.float64)
    keep = cv2.dnn.NMSBoxes(xywh, scores.astype(np.float64), 0.0, threshold)
    return np.asarray(keep, dtype=np.int64).reshape(-1)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, groups: np.ndarray,
                threshold: float) -> np.ndarray:  # fmt: skip
    """`nms` within each group (image) in one pass: the kept boxes of every group, best
    first."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    b = boxes.astype(np.float64)
    apart = b + (groups * (b.max() + 1))[:, None]  # groups never overlap
    return nms(apart, scores, threshold)
