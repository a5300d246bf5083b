"""Camera RAW in the library: what developing at half the sensor's size costs, against a
full development (LibRaw's default AHD demosaic) and against decoding the camera's JPEG of
the same photo, and whether the faces are the same.

    .venv/bin/python bench/raw_develop.py [--megapixels 24] [--rounds 3]

A DNG of a group photo of ../shared/datasets/photos/bbt (a gradient where that is absent),
enlarged to the sensor's size, as a sensor behind an RGGB filter records it
(`tests/helpers.write_dng`); the JPEG is that photo at the developed size (q92). Prints the
median seconds of each way, the ratios, and the faces MTCNN finds on each picture.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from facetrain.data.images import load_raw, load_rgb  # noqa: E402
from facetrain.devices import cpu_name
from helpers import write_dng  # noqa: E402

GROUP = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "photos" / "bbt" / "group"


def picture(megapixels: float) -> np.ndarray:
    """The photo at a quarter of the sensor's pixels (what half-size development gives)."""
    w = int(round(np.sqrt(megapixels * 1e6 / 4 * 3 / 2)))
    size = (w, w * 2 // 3)
    src = GROUP / "bbt1.jpg"
    if src.exists():
        return np.asarray(Image.open(src).convert("RGB").resize(size, Image.LANCZOS))
    x = np.linspace(0, 255, size[0], dtype=np.uint8)
    return np.repeat(np.stack([x, x[::-1], x], -1)[None], size[1], 0)


def timed(fn, rounds: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(rounds):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def full(path: Path) -> np.ndarray:
    import rawpy

    with rawpy.imread(str(path)) as raw:
        return raw.postprocess(use_camera_wb=True, output_bps=8)


def faces(img: np.ndarray) -> int:
    """The faces a library scan keeps usable on this picture (default model and gate)."""
    from facetrain.inference.compiled import open_for_use
    from facetrain.library.scan import Scanner

    return sum(f["usable"] for f in Scanner(open_for_use("pretrained:dlib_resnet")).faces_of(img))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--megapixels", type=float, default=24)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    img = picture(a.megapixels)
    with tempfile.TemporaryDirectory() as tmp:
        dng = write_dng(img, Path(tmp) / "IMG_0001.DNG")
        jpeg = Path(tmp) / "IMG_0001.JPG"
        Image.fromarray(img).save(jpeg, quality=92)
        sensor = img.shape[0] * img.shape[1] * 4 / 1e6
        print(f"machine: {cpu_name()}, {os.cpu_count()} cores; "
              f"sensor {sensor:.1f} MP, DNG {dng.stat().st_size / 1e6:.0f} MB, "
              f"JPEG {jpeg.stat().st_size / 1e6:.1f} MB")  # fmt: skip
        t_half, half = timed(lambda: load_raw(dng), a.rounds)
        t_full, whole = timed(lambda: full(dng), a.rounds)
        t_jpeg, pic = timed(lambda: load_rgb(jpeg), a.rounds)
    for what, t, out in (("half-size development (the library's)", t_half, half),
                         ("full development (AHD)", t_full, whole),
                         ("the camera's JPEG decoded", t_jpeg, pic)):  # fmt: skip
        print(f"{what:<40} {t:6.2f} s -> {out.shape[1]}x{out.shape[0]}")
    print(f"ratio full / half: {t_full / t_half:.1f}x; half / JPEG: {t_half / t_jpeg:.1f}x")
    print(f"faces found: half-size {faces(half)}, JPEG {faces(pic)}")


if __name__ == "__main__":
    main()
