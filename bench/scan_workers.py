"""`library scan`, `library identify` and a first `find` in a folder as a user runs them now
(`--workers` left out: one process a core once 24 photos wait) against one process
(`--workers 1`), each a whole process from a cold start, rounds alternating the two; on a
folder of photos and on a few of them (where the default stays in one process: starting
others would cost more). The find's model is compiled once before (a cache kept apart),
its folder looked at anew each round.

    .venv/bin/python bench/scan_workers.py [FOLDER] [--rounds 3] [--few 8]

FOLDER defaults to ../shared/datasets/photos/friends. The last lines are the ratios of the
median seconds, one process / the default, and whether both found the same faces (boxes
and embeddings), names and photos found.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from facetrain.devices import cpu_name
from identify_workers import FRIENDS, _names, alternated, facetrain, library, medians  # noqa: E402

DEFAULT = 0  # what --workers is when it is left out


def label(w: int) -> str:
    return "the default" if w == DEFAULT else f"--workers {w}"


def scanned(folder: Path, tmp: Path, w: int, count=itertools.count()) -> float:
    """Seconds of a scan of `folder` into a new library, then kept as tmp/scan-W.db."""
    db = tmp / f"new-{next(count)}.db"
    t0 = time.perf_counter()
    args = [] if w == DEFAULT else ["--workers", w]
    facetrain("library", "scan", folder, "--db", db, *args)
    secs = time.perf_counter() - t0
    shutil.move(db, tmp / f"scan-{w}.db")
    return secs


def identified(folder: Path, db: Path, w: int, out: Path) -> float:
    t0 = time.perf_counter()
    args = [] if w == DEFAULT else ["--workers", w]
    facetrain("library", "identify", folder, "--db", db, *args, "--json", out)
    return time.perf_counter() - t0


def found(photo: Path, folder: Path, tmp: Path, w: int) -> float:
    """Seconds of a first `find` of `photo` in `folder` (the folder's faces not kept yet)."""
    cache = tmp / "cache"
    shutil.rmtree(cache / "find", ignore_errors=True)
    env = os.environ | {"FACETRAIN_CACHE": str(cache)}
    args = [] if w == DEFAULT else ["--workers", str(w)]
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "facetrain", "find", str(photo), str(folder), *args,
                    "--json", str(tmp / f"find-{w}.json")], check=True, capture_output=True,
                   env=env)  # fmt: skip
    return time.perf_counter() - t0


def _found(tmp: Path, w: int) -> list:
    return [h["path"] for h in json.loads((tmp / f"find-{w}.json").read_text())["found"]]


def faces(db: Path) -> list:
    """Every face found: photo, box, embedding bytes (what one process and many must agree on)."""
    con = sqlite3.connect(db)
    try:
        return con.execute(
            "SELECT p.path, f.x1, f.y1, f.x2, f.y2, f.embedding FROM faces f "
            "JOIN photos p ON p.id = f.photo_id ORDER BY p.path, f.x1"
        ).fetchall()
    finally:
        con.close()


def compare(title: str, secs: dict, photos: int, same: bool) -> None:
    print(f"{title} ({photos} photos):")
    med = medians(secs, photos, label)
    print(f"  seconds one process / the default = {med[1] / med[DEFAULT]:.2f}; the same: {same}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", type=Path, nargs="?", default=FRIENDS)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--few", type=int, default=8, help="photos in the small folder")
    args = ap.parse_args()
    photos = sorted(p for p in args.folder.rglob("*") if p.is_file())
    print(f"{cpu_name()}, {os.cpu_count()} cores; {len(photos)} files in {args.folder}")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        few = tmp / "few"
        few.mkdir()
        for p in photos[: args.few]:
            shutil.copy(p, few / p.name)
        sets = (("scan", args.folder, len(photos)), ("scan, a few", few, args.few))
        for title, folder, n in sets:
            secs = alternated(lambda w, f=folder: scanned(f, tmp, w), DEFAULT, args.rounds)
            compare(title, secs, n, faces(tmp / "scan-1.db") == faces(tmp / f"scan-{DEFAULT}.db"))
        db = tmp / "lib.db"
        library(args.folder, db)
        run = lambda w: identified(args.folder, db, w, tmp / f"id-{w}.json")  # noqa: E731
        secs = alternated(run, DEFAULT, args.rounds)
        same = _names(tmp / "id-1.json") == _names(tmp / f"id-{DEFAULT}.json")
        compare("identify", secs, len(photos), same)
        found(photos[0], args.folder, tmp, 1)  # the model compiled into its cache
        secs = alternated(lambda w: found(photos[0], args.folder, tmp, w), DEFAULT, args.rounds)
        compare("find, the first in the folder", secs, len(photos),
                _found(tmp, 1) == _found(tmp, DEFAULT))  # fmt: skip


if __name__ == "__main__":
    main()
