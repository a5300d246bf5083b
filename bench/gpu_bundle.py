"""The data `make gpu-check` needs, bundled for a GPU machine that has no ../shared beside
the repository and no package index (the lent machines take a 64 MiB working tree).

    PYTHONPATH=src python3 bench/gpu_bundle.py .gpu [--quality 75]

writes FOLDER/datasets/{mini-train, lfw (the 7,701 images LFW's pairs.txt names, and
pairs.txt), lfw-raw-sample (32 photos, as published)}; the aligned faces are re-encoded as
JPEG at --quality to fit (about 55 MB at 75; the originals are q95/q90). Then run there

    PYTHONPATH=src python3 bench/gpu_check.py --data FOLDER/datasets

Carry facenet-pytorch's wheel too (the MTCNN weights), installed there with --no-deps.
"""

from __future__ import annotations

import argparse
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def pair_images(lfw: Path) -> list[Path]:
    """The images LFW's pairs.txt names (View 2)."""
    names = set()
    for line in (lfw / "pairs.txt").read_text().splitlines()[1:]:
        p = line.split()
        if len(p) == 3:
            names |= {(p[0], int(p[1])), (p[0], int(p[2]))}
        elif len(p) == 4:
            names |= {(p[0], int(p[1])), (p[2], int(p[3]))}
    return sorted(lfw / n / f"{n}_{i:04d}.jpg" for n, i in names)


def _reencode(job: tuple[Path, Path, int]) -> int:
    src, dst, quality = job
    dst.parent.mkdir(parents=True, exist_ok=True)
    Image.open(src).convert("RGB").save(dst, "JPEG", quality=quality)
    return dst.stat().st_size


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--shared", type=Path, default=SHARED)
    ap.add_argument("--quality", type=int, default=75)
    args = ap.parse_args()
    out = args.out / "datasets"
    mini, lfw = args.shared / "mini-train", args.shared / "lfw"
    jobs = [(f, out / "mini-train" / f.relative_to(mini), args.quality)
            for f in sorted(mini.glob("*/*.jpg"))]  # fmt: skip
    jobs += [(f, out / "lfw" / f.relative_to(lfw), args.quality) for f in pair_images(lfw)]
    with ProcessPoolExecutor() as ex:
        size = sum(ex.map(_reencode, jobs, chunksize=64))
    shutil.copy(lfw / "pairs.txt", out / "lfw" / "pairs.txt")
    raw = out / "lfw-raw-sample"
    for f in sorted((args.shared / "lfw-raw-sample").rglob("*.jpg"))[:32]:
        dst = raw / f.relative_to(args.shared / "lfw-raw-sample")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, dst)
        size += f.stat().st_size
    print(f"{len(jobs)} faces re-encoded at q{args.quality} + 32 raw photos: {size / 1e6:.1f} MB "
          f"in {out}")  # fmt: skip


if __name__ == "__main__":
    main()
