"""Seconds to cut the library page's pictures from phone-sized photos: each face's 112-px
thumbnail and each photo shown at 480 px, from the photo decoded whole (the baseline) and
decoded no larger than the picture needs (`images.load_rgb_smaller`: a JPEG's own DCT
scaling), in one run on the same photos.

The photos: `photos/compreface` (phone-style and group photos, up to 1600 px), each
enlarged to 4000 px on its long side (12 megapixels, a phone's) and saved as JPEG (q92),
scanned into a library in a temporary folder.

    .venv/bin/python bench/thumbnail_speed.py [--rounds 3]

The last line is the ratio of the seconds, whole / smaller, for the faces and the photos.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from facetrain.devices import cpu_name

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def enlarged(src: Path, out: Path) -> None:
    """Each JPEG of src at 4000 px on its long side."""
    for p in sorted(src.glob("*.jpg")):
        im = Image.open(p).convert("RGB")
        k = 4000 / max(im.size)
        im.resize((round(im.width * k), round(im.height * k)), Image.BICUBIC).save(
            out / p.name, quality=92)  # fmt: skip


def timed(fn, items, rounds: int) -> float:
    """The least seconds of `rounds` passes of fn over the items."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for x in items:
            fn(x)
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    from facetrain.data.images import to_jpeg
    from facetrain.library.library import Library

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        photos, db = Path(tmp) / "photos", Path(tmp) / "lib.db"
        photos.mkdir()
        enlarged(SHARED / "photos" / "compreface", photos)
        exe = Path(sys.executable).with_name("facetrain")
        subprocess.run([str(exe), "library", "scan", str(photos), "--db", str(db)],
                       check=True, capture_output=True)  # fmt: skip
        with Library(db) as lib:
            faces = [f for p in lib.people() for f in lib.face_ids(p["id"])] or [
                r[0] for r in lib.con.execute("SELECT id FROM faces")]  # fmt: skip
            pids = [r[0] for r in lib.con.execute("SELECT id FROM photos")]
            print(f"machine: {cpu_name()}, {os.cpu_count()} cores; {len(pids)} photos "
                  f"of 12 MP, {len(faces)} faces")  # fmt: skip
            rows = {
                "faces": (timed(lambda f: to_jpeg(lib.face_crop(f), 112), faces, args.rounds),
                          timed(lambda f: to_jpeg(lib.face_crop(f, size=112), 112), faces,
                                args.rounds), len(faces)),
                "photos": (timed(lambda p: to_jpeg(lib.photo(p)[0], 480), pids, args.rounds),
                           timed(lib.photo_jpeg, pids, args.rounds), len(pids)),
            }  # fmt: skip
    for what, (whole, small, n) in rows.items():
        print(f"{what:<7} whole {whole:.2f} s ({whole / n * 1000:.0f} ms each), smaller "
              f"{small:.2f} s ({small / n * 1000:.0f} ms each)")  # fmt: skip
    print(
        "ratio whole/smaller: " + ", ".join(f"{w}: {a / b:.2f}x" for w, (a, b, _) in rows.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
