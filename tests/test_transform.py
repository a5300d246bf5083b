"""Alignment geometry: the similarity warp lands landmarks on the template; FaceNet's box crop."""

from __future__ import annotations

import numpy as np
import pytest

from facetrain.align.transform import (
    TEMPLATE_112,
    crop_box,
    margin_box,
    select_faces,
    similarity_matrix,
    warp_similarity,
)


def random_similarity(rng):
    a, s = rng.uniform(-0.6, 0.6), rng.uniform(1.2, 3.0)
    r = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return r, rng.uniform(40, 120, 2)


@pytest.mark.parametrize("size", [112, 160])
def test_matrix_maps_exact_landmarks_onto_scaled_template(size):
    rng = np.random.default_rng(size)
    r, t = random_similarity(rng)
    landmarks = TEMPLATE_112 @ r.T + t  # the template seen through a camera
    m = similarity_matrix(landmarks, size)
    mapped = landmarks @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(mapped, TEMPLATE_112 * size / 112, atol=1e-6)


def test_warp_moves_marked_pixels_to_template_positions():
    rng = np.random.default_rng(1)
    r, t = random_similarity(rng)
    landmarks = TEMPLATE_112 @ r.T + t
    img = np.zeros((400, 400, 3), np.uint8)
    for k, (x, y) in enumerate(landmarks):
        cv = np.zeros(3, np.uint8)
        cv[k % 3] = 255
        yi, xi = int(round(y)), int(round(x))
        img[yi - 4 : yi + 5, xi - 4 : xi + 5] = cv
    out = warp_similarity(img, landmarks, 112)
    assert out.shape == (112, 112, 3)
    for k, (x, y) in enumerate(TEMPLATE_112):
        patch = out[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2, k % 3]
        assert patch.mean() > 150, k


def test_box_crop_follows_facenet_margin_rule():
    img = np.arange(300 * 200 * 3, dtype=np.uint32).reshape(300, 200, 3).astype(np.uint8)
    box = np.array([50.4, 60.2, 150.7, 170.9])
    assert margin_box(box, 44, 200, 300) == (28, 38, 173, 193)
    assert margin_box(np.array([5, 5, 195, 295.0]), 44, 200, 300) == (0, 0, 200, 300)
    out = crop_box(img, box, 182, 44)
    assert out.shape == (182, 182, 3)


def test_select_faces_rules():
    boxes = np.array(
        [
            [0, 0, 120, 120],  # biggest, in a corner
            [150, 150, 250, 250],  # smaller, at the centre of a 400x400 image
            [300, 300, 330, 330],
        ],
        dtype=np.float32,
    )
    assert select_faces(boxes, (400, 400, 3), "largest") == [0]
    assert select_faces(boxes, (400, 400, 3), "center") == [1]
    assert select_faces(boxes, (400, 400, 3), "all") == [0, 1, 2]
    assert select_faces(np.zeros((0, 4)), (10, 10, 3), "center") == []
    with pytest.raises(ValueError):
        select_faces(boxes, (400, 400, 3), "biggest")
