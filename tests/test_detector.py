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
    assert len(batch) == 6 and all(len(b.boxes) for b in batch)  # a face in each: a real check
    for img, b in zip(images, batch):
        (single,) = det.detect([img])
        np.testing.assert_allclose(single.boxes, b.boxes, atol=1e-3)
        np.testing.assert_allclose(single.landmarks, b.landmarks, atol=1e-3)


FRIENDS = LFW_RAW.parent / "photos" / "friends"


@need(FRIENDS)
def test_the_smallest_face_wanted_skips_only_the_levels_under_it():
    """`detect(smallest=40)` (the library's gate): P-Net searches one level less on each
    still (the 20 px one), every face of 40 px or more comes out exactly as the whole
    pyramid finds it, and only faces under 40 px can be missed."""
    from facetrain.align.detector import SEARCH_BELOW

    photos = [load_rgb(p) for p in sorted(FRIENDS.glob("*/*.jpg"))[::5]]
    det, levels = MTCNN(), []
    pnet = det.pnet
    det.pnet = lambda x: (levels.append(x.shape), pnet(x))[1]
    every = [det.detect([p])[0] for p in photos]
    searched, levels[:] = len(levels), []
    wanted = [det.detect([p], [40.0])[0] for p in photos]
    assert 12 / 0.6 < SEARCH_BELOW * 40 < 12 / 0.6 / 0.709  # the gate's margin: one level
    assert len(levels) == searched - len(photos)

    def rows(f, keep):
        side = np.minimum(f.boxes[:, 2] - f.boxes[:, 0], f.boxes[:, 3] - f.boxes[:, 1])
        pick = keep(side)
        return sorted(zip(f.boxes[pick].tolist(), f.scores[pick].tolist(),
                          f.landmarks[pick].tolist()))  # fmt: skip

    for a, b in zip(every, wanted):
        assert rows(a, lambda s: s >= 40) == rows(b, lambda s: s >= 40)
        missed = [r for r in rows(a, lambda s: s > 0) if r not in rows(b, lambda s: s > 0)]
        assert all(min(x2 - x1, y2 - y1) < 40 for (x1, y1, x2, y2), *_ in missed)
    assert sum(len(f) for f in every) > 40  # stills with faces to find


POPULATIONS = LFW_RAW.parent / "populations"


@need(POPULATIONS)
def test_a_face_that_fills_the_frame_is_found_with_its_eyes_inside():
    """A tight crop (every photo of populations/): MTCNN alone puts the box far past the
    frame with the eyes on the top edge; the second look on a padded canvas finds the face."""
    from facetrain.align.faces import FaceAligner, fills_frame

    img = load_rgb(POPULATIONS / "east-asian-idols" / "Irene" / "Irene_001.jpg")
    first = MTCNN().detect([img])[0]
    assert fills_frame(first, img.shape)  # the problem, as MTCNN alone sees it
    faces = FaceAligner({"mode": "similarity", "size": 112}).faces(img, select="center")
    assert len(faces) == 1
    eyes = faces[0].landmarks[:2]
    h, w = img.shape[:2]
    assert (eyes[:, 1] > 0.2 * h).all() and (eyes[:, 1] < 0.7 * h).all(), eyes
    assert (eyes[:, 0] > 0).all() and (eyes[:, 0] < w).all()
    assert faces[0].landmarks[2, 1] > eyes[:, 1].max()  # the nose below the eyes


@need(POPULATIONS)
def test_tight_crops_of_every_size_keep_their_eyes_in_the_frame():
    from facetrain.align.faces import FaceAligner

    aligner = FaceAligner({"mode": "similarity", "size": 112})
    for folder in ("east-asian-idols/Irene", "south-asian-actors"):
        paths = sorted((POPULATIONS / folder).rglob("*.jpg"))[:12]
        for p in paths:
            img = load_rgb(p)
            faces = aligner.faces(img, select="center")
            assert faces, p
            eyes, (h, w) = faces[0].landmarks[:2], img.shape[:2]
            slack = 0.05 * w  # a crop may cut through an eye; never far past it
            assert (eyes >= -slack).all() and (eyes[:, 1] < h + slack).all(), (p, eyes)
            assert (eyes[:, 1] > 0.1 * h).all(), (p, eyes)  # not on the top edge


def test_the_two_looks_merge_without_doubles_or_faces_in_the_padding():
    from facetrain.align.detector import Faces
    from facetrain.align.faces import merge_looks

    def faces(boxes):
        b = np.array(boxes, np.float32).reshape(-1, 4)
        return Faces(b, np.linspace(0.9, 0.99, len(b)), np.zeros((len(b), 5, 2), np.float32))

    shape = (100, 100, 3)
    first = faces([[10, 10, 30, 30], [-40, -60, 90, 80]])  # one inside, one far past the frame
    again = faces([[11, 10, 31, 30], [5, 20, 95, 98], [-60, 30, -10, 80]])
    got = merge_looks(first, again, shape)
    # the inside face once (first look), the big face from the second look, none centred
    # in the padding
    assert got.boxes.tolist() == [[10, 10, 30, 30], [5, 20, 95, 98]]
    assert len(merge_looks(faces([]), faces([]), shape)) == 0


def test_finding_faces_imports_no_torch_torchvision_or_facenet_pytorch_once_compiled():
    import subprocess
    import sys

    code = ("import sys, numpy as np; from facetrain.align.faces import FaceAligner; "
            "a = FaceAligner({'mode': 'similarity', 'size': 112}); "
            "a.faces(np.zeros((64, 64, 3), np.uint8)); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'torch', 'torchvision', 'facenet_pytorch'}))")  # fmt: skip
    for _ in range(2):  # the first may trace the networks into the cache (with torch)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True)  # fmt: skip
    assert out.stdout.strip() == "[]", out.stdout
