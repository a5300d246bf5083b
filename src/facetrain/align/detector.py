"""MTCNN face detection, batched, with the P/R/O-Net weights shipped in facenet-pytorch.

facenet-pytorch's own `detect_face` crops every candidate box in a Python loop and runs the
networks in channels-first layout; on a CPU that costs more than the networks themselves.
This module runs the same three-stage cascade (same pyramid, thresholds, NMS rules and box
regression) with: all images of one size in one batch, candidate crops sampled in one
batched gather per level (the arithmetic of torchvision's `roi_align` with one sample a
bin), and the networks in channels_last memory format. It needs torch alone: torchvision's
ops import its compiler stack, which took longer than torch itself in a cold `compare`.
`tests/test_detector.py` checks the faces it finds against facenet-pytorch's.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from facetrain.align.nets import load_nets


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


class MTCNN:
    """A batched MTCNN detector. `detect(images)` takes HxWx3 uint8 RGB arrays."""

    def __init__(self, config: DetectorConfig | None = None):
        self.config = config or DetectorConfig()
        self.device = torch.device(self.config.device)
        self.pnet, self.rnet, self.onet = load_nets(self.config.device)

    @torch.inference_mode()
    def detect(self, images: list[np.ndarray]) -> list[Faces]:
        """Detect faces in each image; images of equal size are processed as one batch."""
        out: list[Faces | None] = [None] * len(images)
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, img in enumerate(images):
            groups[img.shape[:2]].append(i)
        for idx in groups.values():
            batch = np.stack([images[i] for i in idx])
            for i, faces in zip(idx, self._detect_batch(batch)):
                out[i] = faces
        return out  # type: ignore[return-value]

    def _pyramid(self, h: int, w: int) -> list[float]:
        m = 12.0 / self.config.min_face
        minl = min(h, w) * m
        scales, s = [], m
        while minl >= 12:
            scales.append(s)
            s *= self.config.factor
            minl *= self.config.factor
        return scales

    def _detect_batch(self, batch: np.ndarray) -> list[Faces]:
        """The three stages on a batch of equal-size images, then each image's faces."""
        imgs = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float()
        mips = _mips(imgs)
        boxes, img_idx = self._propose(mips)
        if len(boxes):
            boxes, img_idx = self._refine(mips, boxes, img_idx)
        points = torch.zeros(0, 5, 2, device=self.device)
        if len(boxes):
            boxes, img_idx, points = self._output(mips, boxes, img_idx)
        boxes_np = boxes.cpu().numpy().astype(np.float32)
        points_np = points.cpu().numpy().astype(np.float32)
        idx_np = img_idx.cpu().numpy()
        result = []
        for b in range(len(batch)):
            sel = np.flatnonzero(idx_np == b)
            sel = sel[_nms_min(boxes_np[sel], 0.7)]
            result.append(Faces(boxes_np[sel, :4], boxes_np[sel, 4], points_np[sel]))
        return result

    def _propose(self, mips) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 1: P-Net over the image pyramid; NMS per scale, then across scales; the
        candidates (x1, y1, x2, y2, score) squared, and their images."""
        h, w = mips[0].shape[2:]
        cands, inds = [], []
        for scale in self._pyramid(h, w):
            size = (int(h * scale + 1), int(w * scale + 1))
            # area-resample from the smallest halved copy still larger than the target
            src = next(m for m in reversed(mips) if m.shape[2] >= size[0] and m.shape[3] >= size[1])
            im = F.interpolate(src, size=size, mode="area")
            im = ((im - 127.5) * 0.0078125).contiguous(memory_format=torch.channels_last)
            reg, prob = self.pnet(im)
            boxes, img_idx = _candidates(reg, prob[:, 1], scale, self.config.thresholds[0])
            keep = batched_nms(boxes[:, :4], boxes[:, 4], img_idx, 0.5)
            cands.append(boxes[keep])
            inds.append(img_idx[keep])
        boxes = torch.cat(cands) if cands else torch.zeros(0, 9, device=self.device)
        img_idx = torch.cat(inds) if inds else torch.zeros(0, dtype=torch.long, device=self.device)
        keep = batched_nms(boxes[:, :4], boxes[:, 4], img_idx, 0.7)
        boxes, img_idx = boxes[keep], img_idx[keep]
        wh = (boxes[:, 2:4] - boxes[:, 0:2]).repeat(1, 2)
        boxes = torch.cat([boxes[:, :4] + boxes[:, 5:9] * wh, boxes[:, 4:5]], dim=1)
        return _square(boxes), img_idx

    def _refine(self, mips, boxes, img_idx) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 2: R-Net keeps and corrects the candidates."""
        reg, prob = self._run(self.rnet, mips, boxes, img_idx, 24)
        score = prob[:, 1]
        ok = score > self.config.thresholds[1]
        boxes = torch.cat([boxes[ok, :4], score[ok, None]], dim=1)
        img_idx, reg = img_idx[ok], reg[ok]
        keep = batched_nms(boxes[:, :4], boxes[:, 4], img_idx, 0.7)
        return _square(_regress(boxes[keep], reg[keep])), img_idx[keep]

    def _output(self, mips, boxes, img_idx):
        """Stage 3: O-Net gives the final boxes, scores and five landmarks."""
        reg, pts, prob = self._run(self.onet, mips, boxes, img_idx, 48)
        score = prob[:, 1]
        ok = score > self.config.thresholds[2]
        boxes = torch.cat([boxes[ok, :4], score[ok, None]], dim=1)
        img_idx, reg, pts = img_idx[ok], reg[ok], pts[ok]
        bw = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        bh = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        px = bw * pts[:, :5] + boxes[:, 0:1] - 1
        py = bh * pts[:, 5:] + boxes[:, 1:2] - 1
        return _regress(boxes, reg), img_idx, torch.stack([px, py], dim=2)

    def _run(self, net, mips, boxes, img_idx, size):
        """Crop every box (clipped to its image) to size x size and run `net` on them.

        Each crop is taken from the level of `mips` (the image halved k times) where the box
        is at most twice the crop size, so one roi_align call per level averages no more
        than 2x2 samples per output pixel and still approximates area resampling.
        """
        h, w = mips[0].shape[2:]
        x1 = boxes[:, 0].trunc().clamp(min=1) - 1
        y1 = boxes[:, 1].trunc().clamp(min=1) - 1
        x2 = boxes[:, 2].trunc().clamp(max=w)
        y2 = boxes[:, 3].trunc().clamp(max=h)
        side = torch.maximum(x2 - x1, y2 - y1).clamp(min=1)
        level = torch.log2(side / (2 * size)).ceil().clamp(0, len(mips) - 1).long()
        rois = torch.stack([img_idx.to(mips[0].dtype), x1, y1, x2, y2], dim=1)
        crops = torch.empty(len(rois), 3, size, size, device=rois.device)
        for k in level.unique().tolist():
            sel = (level == k).nonzero()[:, 0]
            crops[sel] = roi_samples(mips[k], rois[sel], size, 0.5**k)
        outs = []
        for i in range(0, len(crops), 1024):
            c = ((crops[i : i + 1024] - 127.5) * 0.0078125).contiguous(
                memory_format=torch.channels_last
            )
            outs.append(net(c))
        return tuple(torch.cat(parts) for parts in zip(*outs))


def _mips(imgs: torch.Tensor, smallest: int = 24) -> list[torch.Tensor]:
    """The batch at full, half, quarter… resolution (2x2 averaging), down to ~`smallest`."""
    levels = [imgs]
    while min(levels[-1].shape[2:]) >= 2 * smallest:
        levels.append(F.avg_pool2d(levels[-1], 2, ceil_mode=True))
    return levels


def _candidates(reg, prob, scale, threshold):
    """P-Net output map → boxes (x1,y1,x2,y2,score,reg4) above threshold, with image index."""
    stride, cell = 2, 12
    mask = prob >= threshold
    idx = mask.nonzero()
    score = prob[mask]
    r = reg.permute(0, 2, 3, 1)[mask]
    yx = idx[:, 1:].to(reg.dtype).flip(1)
    q1 = ((stride * yx + 1) / scale).floor()
    q2 = ((stride * yx + cell) / scale).floor()
    return torch.cat([q1, q2, score[:, None], r], dim=1), idx[:, 0]


def _square(boxes):
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    x1 = boxes[:, 0] + w * 0.5 - side * 0.5
    y1 = boxes[:, 1] + h * 0.5 - side * 0.5
    return torch.cat([torch.stack([x1, y1, x1 + side, y1 + side], 1), boxes[:, 4:]], dim=1)


def _regress(boxes, reg):
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    wh = torch.stack([w, h, w, h], 1)
    return torch.cat([boxes[:, :4] + reg[:, :4] * wh, boxes[:, 4:]], dim=1)


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


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor,
                threshold: float) -> torch.Tensor:  # fmt: skip
    """`nms` within each group (image) in one pass: the kept boxes of every group, best
    first."""
    if len(boxes) == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    b = boxes.detach().cpu().numpy().astype(np.float64)
    apart = b + (groups.cpu().numpy() * (b.max() + 1))[:, None]  # groups never overlap
    keep = nms(apart, scores.detach().cpu().numpy(), threshold)
    return torch.from_numpy(keep).to(boxes.device)


def roi_samples(images: torch.Tensor, rois: torch.Tensor, size: int, scale: float) -> torch.Tensor:
    """Each roi (image index, x1, y1, x2, y2 in full-resolution pixels) of `images` (a
    level `scale` times the full size) as a size x size crop: one bilinear sample at the
    centre of each bin, borders clamped — torchvision's `roi_align` with sampling_ratio 1
    and aligned=False, written out (one gather for all rois)."""
    n, c, h, w = images.shape
    bins = torch.arange(size, dtype=images.dtype, device=images.device)
    start = rois[:, 1:] * scale  # x1, y1, x2, y2 on this level
    side = torch.clamp(start[:, 2:] - start[:, :2], min=1.0) / size  # bin width, height
    x = start[:, 0:1] + bins * side[:, 0:1] + 0.5 * side[:, 0:1]  # (m, size)
    y = start[:, 1:2] + bins * side[:, 1:2] + 0.5 * side[:, 1:2]
    (x0, x1, lx, inx), (y0, y1, ly, iny) = _corners(x, w), _corners(y, h)
    flat = images.permute(0, 2, 3, 1).reshape(n * h * w, c)  # one pixel a row
    row = rois[:, 0].long()[:, None] * (h * w)  # (m, 1): the roi's image
    ys = torch.stack([y0, y0, y1, y1]) * w + row  # (4, m, size): the four neighbours'
    xs = torch.stack([x0, x1, x0, x1])  # rows and columns
    index = (ys[:, :, :, None] + xs[:, :, None, :]).reshape(-1)
    pixels = flat.index_select(0, index).view(4, len(rois), size, size, c)
    wy = torch.stack([1 - ly, 1 - ly, ly, ly])[:, :, :, None, None]
    wx = torch.stack([1 - lx, lx, 1 - lx, lx])[:, :, None, :, None]
    p = wy * wx * pixels
    out = p[0] + p[1] + p[2] + p[3]  # roi_align's order of the sum
    inside = iny[:, :, None, None] & inx[:, None, :, None]  # roi_align: 0 past the border
    if not bool(inside.all()):
        out = torch.where(inside, out, torch.zeros_like(out))
    return out.permute(0, 3, 1, 2)


def _corners(v: torch.Tensor, length: int):
    """For sample coordinates v along an axis of `length` pixels: the lower and upper
    neighbours, the weight of the upper one (clamped at the borders as roi_align), and
    whether the sample lies within a pixel of the image (roi_align gives 0 beyond)."""
    inside = (v >= -1) & (v <= length)
    v = v.clamp(min=0)
    low = v.floor().long().clamp(max=length - 1)
    high = (low + 1).clamp(max=length - 1)
    frac = torch.where(low >= length - 1, torch.zeros_like(v), v - low.to(v.dtype))
    return low, high, frac, inside
