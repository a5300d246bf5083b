"""The batched MTCNN finds the faces facenet-pytorch's reference implementation finds."""

from __future__ import annotations

import numpy as np
import torch

from conftest import LFW_RAW, need
from facetrain.align.detector import MTCNN, DetectorConfig
from facetrain.data import iter_samples, load_rgb


def iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@need(LFW_RAW)
def test_matches_facenet_pytorch_on_real_photos():
    from facenet_pytorch import MTCNN as Reference
    from PIL import Image

    torch.set_num_threads(1)
    images = [load_rgb(s.path) for s in list(iter_samples(str(LFW_RAW)))[:40]]
    ours = MTCNN().detect(images)
    ref = Reference(keep_all=True, device="cpu")
    ious, lm_err, same_count = [], [], 0
    for img, faces in zip(images, ours):
        boxes, probs, lms = ref.detect(Image.fromarray(img), landmarks=True)
        n_ref = 0 if boxes is None else len(boxes)
        same_count += n_ref == len(faces)
        if n_ref == 0 or len(faces) == 0:
            continue
        i = int(np.argmax(probs.astype(np.float64)))
        rb = boxes.astype(np.float32)[i]
        j = int(np.argmax([iou(rb, b) for b in faces.boxes]))
        ious.append(iou(rb, faces.boxes[j]))
        lm_err.append(np.abs(lms.astype(np.float32)[i] - faces.landmarks[j]).max())
    assert same_count >= 0.85 * len(images)
    assert len(ious) >= 0.95 * len(images)
    assert np.median(ious) > 0.93 and np.percentile(ious, 10) > 0.8
    assert np.median(lm_err) < 4.0


def test_no_face_in_noise_and_batches_of_mixed_sizes():
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (h, w, 3), np.uint8) for h, w in [(64, 80), (64, 80), (50, 50)]]
    imgs.append(np.zeros((11, 11, 3), np.uint8))  # smaller than one detector window
    det = MTCNN(DetectorConfig(thresholds=(0.9, 0.95, 0.99)))
    out = det.detect(imgs)
    assert len(out) == 4
    assert all(f.boxes.shape[1] == 4 and f.landmarks.shape[1:] == (5, 2) for f in out)
    assert len(out[3]) == 0


@need(LFW_RAW)
def test_batch_result_equals_single_image_result():
    images = [load_rgb(s.path) for s in list(iter_samples(str(LFW_RAW)))[:6]]
    det = MTCNN()
    batch = det.detect(images)
    for img, b in zip(images, batch):
        (single,) = det.detect([img])
        np.testing.assert_allclose(single.boxes, b.boxes, atol=1e-3)
        np.testing.assert_allclose(single.landmarks, b.landmarks, atol=1e-3)
