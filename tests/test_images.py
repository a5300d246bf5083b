"""Every kind of photo a user may have decodes to upright 8-bit RGB, or fails with a reason."""

from __future__ import annotations

import warnings
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


@pytest.mark.parametrize("top", [1.0, 255.0])
def test_a_float_tiff_in_either_range_becomes_8_bits(tmp_path: Path, top):
    """32-bit float images (scientific and HDR tools) in [0, 1] or in [0, 255]; a pixel that
    is not a number (NaN, infinity) becomes black or white rather than an undefined byte."""
    p = tmp_path / "float.tif"
    arr = np.array([[0.0, top / 2, top, np.nan, np.inf, -np.inf]], dtype=np.float32)
    Image.fromarray(arr, mode="F").save(p)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "invalid value encountered in cast"
        a = load_rgb(p)
    assert a.shape == (1, 6, 3) and (a == a[:, :, :1]).all()
    assert a[0, :, 0].tolist() == [0, 128, 255, 0, 255, 0]


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


def _pattern() -> Image.Image:
    """60x40, white block at the stored top-left, smooth elsewhere (survives lossy codecs)."""
    a = np.full((40, 60, 3), 40, np.uint8)
    a[:12, :12] = 255
    return Image.fromarray(a)


@pytest.mark.parametrize("ext", [".heic", ".avif", ".tif", ".webp", ".png", ".jpg"])
def test_phone_and_camera_formats_decode_upright(tmp_path: Path, ext):
    """HEIC (an iPhone's default), AVIF, TIFF, WebP, PNG, JPEG — each with an EXIF rotation."""
    p = tmp_path / f"photo{ext}"
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored pixels rotated 90° clockwise
    _pattern().save(p, exif=exif.tobytes(), **({"quality": 95} if ext != ".png" else {}))
    a = load_rgb(p)
    assert a.shape == (60, 40, 3), ext  # upright: width and height swapped
    assert a[:10, -10:].mean() > 200 and a[:10, :10].mean() < 80, ext  # block now top-right


def test_animated_gif_gives_its_first_frame(tmp_path: Path):
    p = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (30, 20), c) for c in ((250, 0, 0), (0, 0, 250), (0, 250, 0))]
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100, loop=0)
    a = load_rgb(p)
    assert a.shape == (20, 30, 3) and a[..., 0].mean() > 200 and a[..., 2].mean() < 50


def test_multipage_tiff_gives_its_first_page(tmp_path: Path):
    p = tmp_path / "scan.tiff"
    pages = [Image.new("RGB", (16, 16), c) for c in ((0, 200, 0), (200, 0, 0))]
    pages[0].save(p, save_all=True, append_images=pages[1:])
    assert load_rgb(p)[..., 1].mean() > 150


@pytest.mark.parametrize("name", ["a.jxl", "b.psd", "c.svg"])
def test_unsupported_photo_formats_are_named_with_a_reason(tmp_path: Path, name):
    from facetrain.data.images import is_image_name

    p = tmp_path / name
    p.write_bytes(b"II*\x00" + b"\x00" * 64)
    assert is_image_name(name)  # listed, so that it is reported — not silently left out
    with pytest.raises(ImageError) as e:
        load_rgb(p)
    assert e.value.status == "unsupported" and "not" in e.value.reason


def _scene(h: int = 48, w: int = 80) -> np.ndarray:
    """A picture no turn or mirror maps onto itself: a gradient and a bright corner."""
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.linspace(20, 235, w, dtype=np.uint8)[None, :]
    img[..., 2] = np.linspace(235, 20, h, dtype=np.uint8)[:, None]
    img[: h // 4, : w // 5] = 250
    return img


def _like(a: np.ndarray, b: np.ndarray) -> float:
    """How alike two pictures' brightness is (correlation); -1 for other shapes."""
    if a.shape[:2] != b.shape[:2]:
        return -1.0
    return float(np.corrcoef(a.mean(2).ravel(), b.mean(2).ravel())[0, 1])


@pytest.mark.parametrize("orientation, turn", [(1, 0), (3, 2), (6, -1), (8, 1)])
def test_camera_raw_is_developed_upright_with_its_date(tmp_path: Path, orientation, turn):
    """A DNG as a sensor behind a Bayer filter records it, the camera held four ways: it is
    developed to the picture (at half the sensor's size), turned as the camera said, and
    its date is read from it; what `turns` reads as EXIF orientation is already applied."""
    from facetrain.data.images import exif_orientation
    from facetrain.library.scan import taken
    from helpers import write_dng

    scene = _scene()
    p = write_dng(scene, tmp_path / "IMG_0001.dng", "2021:05:06 07:08:09", orientation)
    got = load_rgb(p)
    upright = np.rot90(scene, turn)
    assert got.shape == upright.shape and got.dtype == np.uint8
    assert _like(got, upright) > 0.9  # the picture, turned as the camera was held
    assert all(_like(got, np.rot90(scene, k)) < 0.5 for k in range(4) if k % 4 != turn % 4)
    assert taken(str(p)) == "2021:05:06 07:08:09" and exif_orientation(p) == 1


BROKEN_RAWS = [("DSC_0002.NEF", b"II*\x00" + b"\x00" * 64), ("IMG_0003.CR2", b""),
               ("x.ARW", b"not a raw")]  # fmt: skip


@pytest.mark.parametrize("name, content", BROKEN_RAWS)
def test_a_raw_that_cannot_be_developed_says_why(tmp_path: Path, name, content):
    from facetrain.data.images import is_image_name

    p = tmp_path / name
    p.write_bytes(content)
    assert is_image_name(name)
    with pytest.raises(ImageError) as e:
        load_rgb(p)
    assert e.value.status == "unreadable"
    assert "empty" in e.value.reason or "cannot develop this RAW" in e.value.reason


def test_images_read_on_threads_at_once_leave_the_process_warnings_alone(tmp_path: Path):
    """Photos opened by several threads at once (the reading threads of embed, compare,
    classify and find): the caller's warnings are still heard during and after; each
    open once switched every warning of the process off, for good, when two overlapped."""
    from facetrain.data.images import read_rgb
    from facetrain.inference.sources import read_ahead

    paths = []
    for k in range(8):
        paths.append(tmp_path / f"{k}.png")
        Image.new("RGB", (40, 30), (k * 30, 90, 200)).save(paths[-1])
    data = paths[0].read_bytes()
    with warnings.catch_warnings(record=True) as heard:
        warnings.simplefilter("always")
        filters = list(warnings.filters)
        for got in read_ahead(load_rgb, paths * 40, 4):
            assert got.shape == (30, 40, 3)
        list(read_ahead(read_rgb, [data] * 200, 4))
        warnings.warn("still heard", UserWarning, stacklevel=1)
        assert warnings.filters == filters
    assert [str(w.message) for w in heard] == ["still heard"]


def test_pil_notes_on_a_damaged_file_are_not_printed(tmp_path: Path):
    """A RAW whose TIFF directories are cut short: no date, and none of PIL's warnings in a
    real process (they are filtered at import, as the per-open filter did)."""
    import subprocess
    import sys

    raw = tmp_path / "cut.CR2"
    raw.write_bytes(b"II*\x00" + b"\x00" * 64)
    probe = f"from facetrain.data.images import raw_date; print(raw_date({str(raw)!r}))"
    got = subprocess.run([sys.executable, "-W", "default", "-c", probe], capture_output=True,
                         text=True, check=True)  # fmt: skip
    assert (got.stdout.strip(), got.stderr) == ("None", "")
