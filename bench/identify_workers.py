"""Photos a second of `facetrain library identify` with one process and with `--workers N`,
on the same photos and library, each a whole process from a cold start as a user runs it;
rounds alternate the two.

    .venv/bin/python bench/identify_workers.py [FOLDER] [--workers 2] [--rounds 3]

FOLDER defaults to ../shared/datasets/photos/friends; a library of it is made first (scanned,
clustered, the three largest stacks named). The last line is the ratio of the median
seconds, one process / N, and whether both named every face alike.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from facetrain.devices import cpu_name

FRIENDS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "photos" / "friends"


def facetrain(*args) -> None:
    subprocess.run([sys.executable, "-m", "facetrain", *map(str, args)], check=True,
                   capture_output=True)  # fmt: skip


def library(folder: Path, db: Path) -> None:
    """FOLDER scanned and clustered, its three largest stacks named."""
    facetrain("library", "scan", folder, "--db", db)
    facetrain("library", "cluster", "--db", db)
    people = db.parent / "people.json"
    facetrain("library", "people", "--db", db, "--json", people)
    for i, p in enumerate(json.loads(people.read_text())[:3]):
        facetrain("library", "name", p["id"], f"person {i}", "--db", db)


def worker_arguments(doc: str) -> argparse.ArgumentParser:
    """FOLDER, --workers and --rounds, as the worker benches take them (add more, then
    parse)."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("folder", type=Path, nargs="?", default=FRIENDS)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    return ap


def alternated(run, workers: int, rounds: int) -> dict[int, list[float]]:
    """Seconds of `run(w)` with one process and with `workers`, rounds alternating the two."""
    secs: dict[int, list[float]] = {1: [], workers: []}
    for _ in range(rounds):
        for w in secs:
            secs[w].append(run(w))
    return secs


def medians(secs: dict, photos: int, label=lambda k: f"--workers {k}") -> dict:
    """Each variant's rounds printed with its photos/s and median seconds; the medians."""
    import statistics

    med = {k: statistics.median(s) for k, s in secs.items()}
    for k, s in secs.items():
        print(f"{label(k)}: {photos / med[k]:.1f} photos/s, median {med[k]:.2f} s; rounds "
              f"{[round(x, 2) for x in s]}")  # fmt: skip
    return med


def identify(folder: Path, db: Path, workers: int, out: Path) -> float:
    t0 = time.perf_counter()
    facetrain("library", "identify", folder, "--db", db, "--workers", workers, "--json", out)
    return time.perf_counter() - t0


def _names(result: Path) -> list:
    return [(r["photo"], [(f["name"], f["box"]) for f in r["faces"]])
            for r in json.loads(result.read_text())]  # fmt: skip


def main() -> None:
    args = worker_arguments(__doc__).parse_args()
    photos = sum(1 for p in args.folder.rglob("*") if p.is_file())
    print(f"{cpu_name()}, {os.cpu_count()} cores; {photos} files in {args.folder}")
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "lib.db"
        library(args.folder, db)
        secs = alternated(lambda w: identify(args.folder, db, w, Path(tmp) / f"{w}.json"),
                          args.workers, args.rounds)  # fmt: skip
        named = [_names(Path(tmp) / f"{w}.json") for w in secs]
    med = medians(secs, photos)
    print(
        f"seconds one process / --workers {args.workers} = {med[1] / med[args.workers]:.2f}; "
        f"the same names and boxes: {named[0] == named[1]}"
    )


if __name__ == "__main__":
    main()
