"""Photos a second of `facetrain library migrate` with one process and with `--workers N`:
the same library (a copy of it each time) moved from the default model to another, each a
whole process from a cold start as a user runs it; rounds alternate the two.

    .venv/bin/python bench/migrate_workers.py [FOLDER] [--model M] [--workers 2] [--rounds 3]

FOLDER defaults to ../shared/datasets/photos/friends; a library of it is made first with the
default model (scanned, clustered, the three largest stacks named), and `--model` defaults
to pretrained:facetrain_distilled. The last line is the ratio of the median seconds, one
process / N, and whether both left the same faces, names and embeddings.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from facetrain.devices import cpu_name

sys.path.insert(0, str(Path(__file__).parent))
from identify_workers import (  # noqa: E402
    alternated,
    facetrain,
    library,
    medians,
    worker_arguments,
)


def migrate(db0: Path, db: Path, model: str, workers: int) -> float:
    shutil.copy(db0, db)
    t0 = time.perf_counter()
    facetrain("library", "migrate", "--db", db, "--model", model, "--workers", workers)
    return time.perf_counter() - t0


def faces(db: Path) -> tuple[list, np.ndarray]:
    """(path, box, name) of every face, and their embeddings, in one order."""
    con = sqlite3.connect(db)
    rows = con.execute(
        "SELECT p.path, f.x1, f.y1, f.x2, f.y2, pe.name, f.embedding FROM faces f"
        " JOIN photos p ON p.id = f.photo_id LEFT JOIN people pe ON pe.id = f.person_id"
        " ORDER BY p.path, f.x1, f.y1"
    ).fetchall()
    con.close()
    keys = [(r[0], *(round(v, 1) for v in r[1:5]), r[5]) for r in rows]
    return keys, np.stack([np.frombuffer(r[6], np.float32) for r in rows])


def main() -> None:
    ap = worker_arguments(__doc__)
    ap.add_argument("--model", default="pretrained:facetrain_distilled")
    args = ap.parse_args()
    photos = sum(1 for p in args.folder.rglob("*") if p.is_file())
    print(f"{cpu_name()}, {os.cpu_count()} cores; {photos} files in {args.folder}; "
          f"to {args.model}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        db0 = Path(tmp) / "lib.db"
        library(args.folder, db0)
        secs = alternated(lambda w: migrate(db0, Path(tmp) / f"{w}.db", args.model, w),
                          args.workers, args.rounds)  # fmt: skip
        (k1, e1), (k2, e2) = (faces(Path(tmp) / f"{w}.db") for w in secs)
    med = medians(secs, photos)
    same = k1 == k2 and e1.shape == e2.shape and float(np.abs(e1 - e2).max()) < 1e-3
    print(f"seconds one process / --workers {args.workers} = {med[1] / med[args.workers]:.2f}; "
          f"the same faces, names and embeddings: {same}")  # fmt: skip


if __name__ == "__main__":
    main()
