"""Seconds of `facetrain library scan` over photos whose files changed but not their
pixels — a caption written into every one, as a photo program's tagging does — against
the same photos with their pixels changed (re-saved), which a scan must search again;
until this, a caption edit cost exactly that. Each scan a whole process from a cold start
on a fresh copy of one library of FOLDER; rounds alternate the two.

    .venv/bin/python bench/caption_rescan.py [FOLDER] [--rounds 3]

FOLDER (JPEGs) defaults to ../shared/datasets/photos/friends. The caption is a JPEG
comment segment put in after the start marker: the compressed image is untouched. The
last line is the ratio of the median seconds, pixels changed / caption only, and whether
the caption scan kept every face (the same face ids).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from facetrain.devices import cpu_name
from identify_workers import FRIENDS, facetrain, medians  # noqa: E402


def caption(path: Path, text: bytes = b"at the beach") -> None:
    """A JPEG comment (COM) segment after the start of image: new bytes, the same pixels."""
    data = path.read_bytes()
    assert data[:2] == b"\xff\xd8", f"{path}: not a JPEG"
    path.write_bytes(data[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + data[2:])


def resave(path: Path) -> None:
    """Other pixels: re-encoded at another quality."""
    Image.open(path).save(path, quality=90)


def fresh(folder: Path, work: Path) -> Path:
    """WORK/photos: a copy of FOLDER, its files' times kept (a library of one copy knows
    every other copy's files as unchanged)."""
    shutil.rmtree(work / "photos", ignore_errors=True)
    shutil.copytree(folder, work / "photos", copy_function=shutil.copy2)
    return work / "photos"


def face_ids(db: Path) -> list[int]:
    con = sqlite3.connect(db)
    ids = [r[0] for r in con.execute("SELECT id FROM faces ORDER BY id")]
    con.close()
    return ids


def rescan(folder: Path, work: Path, edit) -> tuple[float, list[int]]:
    """The photos and library as first scanned, every photo edited, then one timed scan."""
    photos = fresh(folder, work)
    shutil.copy(work / "first.db", work / "lib.db")
    for p in sorted(photos.rglob("*.jpg")):
        edit(p)
    t0 = time.perf_counter()
    facetrain("library", "scan", photos, "--db", work / "lib.db")
    return time.perf_counter() - t0, face_ids(work / "lib.db")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", type=Path, nargs="?", default=FRIENDS)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    photos = sum(1 for _ in args.folder.rglob("*.jpg"))
    print(f"{cpu_name()}, {os.cpu_count()} cores; {photos} JPEGs in {args.folder}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        facetrain("library", "scan", fresh(args.folder, work), "--db", work / "first.db")
        before = face_ids(work / "first.db")
        secs: dict[str, list[float]] = {"caption only": [], "pixels changed": []}
        kept = True
        for _ in range(args.rounds):
            took, ids = rescan(args.folder, work, caption)
            secs["caption only"].append(took)
            kept = kept and ids == before
            secs["pixels changed"].append(rescan(args.folder, work, resave)[0])
    med = medians(secs, photos, label=str)
    ratio = med["pixels changed"] / med["caption only"]
    print(f"seconds pixels changed / caption only = {ratio:.2f}; every face kept (the same "
          f"ids): {kept}")  # fmt: skip


if __name__ == "__main__":
    main()
