"""Every kind of photo a user may have decodes to upright 8-bit RGB, or fails with a reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facetrain.data.images import ImageError, load_rgb
from helpers import huge_png


def test_rgb_jpeg_roundtrip(tmp_path: Path):
    p = tmp_path / "a.jpg"
    Image.new("RGB", (30, 20), (200, 30, 40)).save(p, quality=100)
    a = load_rgb(p)
    assert a.shape == (20, 30, 3) and a.dtype == np.uint8
    assert np.abs(a.astype(int) - [200, 30, 40]).max() <= 3


def test_grayscale_becomes_three_equal_channels(tmp_path: Path):
    p = tmp_path / "g.pgm"
    Image.new("L", (8, 6), 77).save(p)
    a = load_rgb(p)
    assert a.shape == (6, 8, 3) and (a == 77).all()


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path):
    p = tmp_path / "c.jpg"
    Image.new("RGB", (16, 16), (255, 0, 0)).convert("CMYK").save(p, quality=100)
    assert Image.open(p).mode == "CMYK"
    a = load_rgb(p)
    assert a.shape == (16, 16, 3)
    r, g, b = a.reshape(-1, 3).mean(0)
    assert r > 200 and g < 60 and b < 60


def test_16bit_png_scaled_not_clipped(tmp_path: Path):
    p = tmp_path / "deep.png"
    arr = np.array([[0, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(arr).save(p)
    assert Image.open(p).mode.startswith("I")
    a = load_rgb(p)
    assert a.shape == (1, 3, 3)
    assert a[0, :, 0].tolist() == [0, 128, 255]


def test_palette_with_alpha_composited_on_white(tmp_path: Path):
    p = tmp_path / "pal.png"
    img = Image.new("P", (4, 4), 0)
    img.putpalette([10, 20, 30] + [0, 0, 0] * 255)
    img.info["transparency"] = 0
    img.save(p, transparency=0)
    a = load_rgb(p)
    assert (a == 255).all()  # fully transparent → white background


def test_rgba_half_transparent(tmp_path: Path):
    p = tmp_path / "rgba.png"
    Image.new("RGBA", (2, 2), (0, 0, 0, 128)).save(p)
    a = load_rgb(p)
    assert np.abs(a.astype(int) - 127).max() <= 1


def test_exif_orientation_applied(tmp_path: Path):
    p = tmp_path / "rot.jpg"
    img = Image.new("RGB", (60, 40), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 10, 10))  # white square top-left of stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display = rotate 90° clockwise
    img.save(p, exif=exif.tobytes(), quality=100)
    a = load_rgb(p)
    assert a.shape == (60, 40, 3)  # upright: width and height swapped
    assert a[:10, -10:].mean() > 200 and a[:10, :10].mean() < 50  # now top-right


def test_one_pixel_image(tmp_path: Path):
    p = tmp_path / "one.png"
    Image.new("RGB", (1, 1), (1, 2, 3)).save(p)
    assert load_rgb(p).tolist() == [[[1, 2, 3]]]


@pytest.mark.parametrize(
    "name,content,status",
    [
        ("empty.jpg", b"", "unreadable"),
        ("text.jpg", b"this is not a photo\n", "unreadable"),
        ("corrupt.jpg", b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF" + b"\x13" * 200, "unreadable"),
    ],
)
def test_broken_files_report_a_reason(tmp_path: Path, name, content, status):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(ImageError) as e:
        load_rgb(p)
    assert e.value.status == status and e.value.reason


def test_truncated_png(tmp_path: Path):
    p = tmp_path / "t.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as e:
        load_rgb(p)
    assert e.value.status == "unreadable"


def test_huge_dimensions_refused_before_decoding(tmp_path: Path):
    p = tmp_path / "bomb.png"
    huge_png(p, 100_000, 100_000)
    assert p.stat().st_size < 1000
    with pytest.raises(ImageError) as e:
        load_rgb(p)
    assert e.value.status == "too_large" and "100000x100000" in e.value.reason
