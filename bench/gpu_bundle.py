"""The data `make gpu-check` needs, bundled for a GPU machine that has no ../shared beside
the repository and no package index (the lent machines take a 64 MiB working tree).

    PYTHONPATH=src python3 bench/gpu_bundle.py .gpu [--quality 75]

writes FOLDER/datasets/{mini-train, lfw (the 7,701 images LFW's pairs.txt names, and
pairs.txt), lfw-raw-sample (32 photos, as published)}; the aligned faces are re-encoded as
JPEG at --quality to fit (about 55 MB at 75; the originals are q95/q90). Then run there

    PYTHONPATH=src python3 bench/gpu_check.py --data FOLDER/datasets

Carry facenet-pytorch's wheel too (the MTCNN weights), installed there with --no-deps.

`--train-sets` bundles instead what `bench/gpu_recipes.py` needs: mini-train, more-train and
LFW's pair images as WebP (the name kept: readers go by content) at --quality 65 for the
32,591 training faces and --lfw-quality 75 for LFW, about 54 MB; no raw photos. The files
are then joined into FOLDER/datasets.bin + datasets.idx (40,000 small files in a zip would
cost 6 MB of headers; the loose files are removed, so FOLDER is what a call carries), which
`--unbundle FOLDER DEST` turns back into DEST/datasets there.
`--scan` bundles instead what `bench/scan_devices.py` needs there (issue 33's `library scan
--device cuda` against the CPU): ../shared's photos/ and populations/ as published under
FOLDER/scan-photos, the library's default model in half precision (`--teacher`'s file,
`pretrained:dlib_resnet`, 11 MB; its arithmetic stays fp32) and the facenet-pytorch package
folder, MTCNN's weights in it, under FOLDER/site (found by `importlib`, never imported): put
FOLDER/site on PYTHONPATH there.
`--teacher MODEL` adds a distillation teacher as a facetrain model file in half precision
(FOLDER/NAME-fp16.safetensors; `pretrained:dlib_resnet` is 11 MB), for a machine without the
package its weights come from: name it in the recipe, `@teacher=FOLDER/NAME-fp16.safetensors`.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import sys
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


def _reencode(job: tuple[Path, Path, int, str]) -> int:
    src, dst, quality, fmt = job
    dst.parent.mkdir(parents=True, exist_ok=True)
    extra = {"method": 6} if fmt == "WEBP" else {}
    Image.open(src).convert("RGB").save(dst, fmt, quality=quality, **extra)
    return dst.stat().st_size


def join(folder: Path, dest: Path) -> None:
    """Every file under folder in one dest/datasets.bin, listed in dest/datasets.idx."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    with (dest / "datasets.bin").open("wb") as out:
        for p in files:
            out.write(p.read_bytes())
    lines = [f"{p.relative_to(folder.parent)}\t{p.stat().st_size}" for p in files]
    (dest / "datasets.idx").write_bytes(gzip.compress("\n".join(lines).encode()))


def unbundle(folder: Path, dest: Path) -> None:
    """datasets.bin + datasets.idx back into files under dest."""
    with (folder / "datasets.bin").open("rb") as src:
        for line in gzip.decompress((folder / "datasets.idx").read_bytes()).decode().splitlines():
            rel, size = line.split("\t")
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel).write_bytes(src.read(int(size)))


def half_teacher(spec: str, folder: Path) -> Path:
    """A MODEL saved as a facetrain model file in half precision, its record kept."""
    import torch

    from facetrain.inference import pretrained
    from facetrain.inference.record import save_model
    from facetrain.inference.saved import load_model

    net, pre = load_model(spec)
    name = spec.removeprefix(pretrained.PREFIX) if pretrained.is_spec(spec) else Path(spec).stem
    return save_model(folder / f"{name}-fp16.safetensors", net.to(torch.float16), pre)


def scan_bundle(shared: Path, folder: Path) -> None:
    """The photos, the default model and MTCNN's weights a `library scan` needs there."""
    import importlib.util

    for name in ("photos", "populations"):
        shutil.copytree(shared / name, folder / "scan-photos" / name, dirs_exist_ok=True)
    model = half_teacher("pretrained:dlib_resnet", folder)
    package = Path(importlib.util.find_spec("facenet_pytorch").origin).parent
    shutil.copytree(package, folder / "site" / "facenet_pytorch", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    print(f"photos, populations, {model.name} and MTCNN's weights: {size / 1e6:.1f} MB in {folder}")


def main() -> None:
    if sys.argv[1:2] == ["--unbundle"]:
        unbundle(Path(sys.argv[2]), Path(sys.argv[3]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--shared", type=Path, default=SHARED)
    ap.add_argument("--quality", type=int, help="of the training faces (75; 65 with --train-sets)")
    ap.add_argument("--lfw-quality", type=int, default=75)
    ap.add_argument("--train-sets", action="store_true", help="mini + more + LFW, as WebP")
    ap.add_argument("--teacher", help="a MODEL to carry in half precision (distillation)")
    ap.add_argument("--scan", action="store_true", help="photos + populations, model, MTCNN")
    args = ap.parse_args()
    if args.scan:
        return scan_bundle(args.shared, args.out)
    if args.teacher:
        args.out.mkdir(parents=True, exist_ok=True)
        path = half_teacher(args.teacher, args.out)
        print(f"teacher {args.teacher}: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    out = args.out / "datasets"
    lfw = args.shared / "lfw"
    fmt = "WEBP" if args.train_sets else "JPEG"
    quality = args.quality or (65 if args.train_sets else 75)
    jobs = []
    for name in ("mini-train", "more-train") if args.train_sets else ("mini-train",):
        root = args.shared / name
        jobs += [(f, out / name / f.relative_to(root), quality, fmt)
                 for f in sorted(root.glob("*/*.jpg"))]  # fmt: skip
    jobs += [(f, out / "lfw" / f.relative_to(lfw), args.lfw_quality, fmt) for f in pair_images(lfw)]
    with ProcessPoolExecutor() as ex:
        size = sum(ex.map(_reencode, jobs, chunksize=64))
    shutil.copy(lfw / "pairs.txt", out / "lfw" / "pairs.txt")
    if args.train_sets:
        join(out, args.out)
        shutil.rmtree(out)  # the joined copy is what travels: FOLDER is the carry
        print(f"{len(jobs)} faces as WebP: {size / 1e6:.1f} MB in {args.out}/datasets.bin")
        return
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
