"""Who is this? on the library's page, in a large library: a photo's faces named through
the page's route (`POST /api/identify`), its namer made for every photo (before) or kept
while the library does not change (`web.KeptWhileUnchanged`, now). Both in the same run,
alternating, on one library:

    .venv/bin/python bench/who_is_this.py [--faces 200000] [--named 20] [--photos 5]

A library of synthetic faces as bench/library_scale.py makes them (128-d unit vectors, ~20
faces a person, one face a photo) under the default model's record, `--named` people
named; the photo asked about is a real one (photos/bbt). Prints each way's seconds a photo
(median), the first request apart (it makes the namer either way), and the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import import_scale  # noqa: E402
from facetrain.devices import cpu_name

PHOTO = Path(__file__).resolve().parents[2] / "shared/datasets/photos/bbt/reference/amy/amy5.png"
ORIGIN = "http://127.0.0.1:8765"


def build(db: Path, faces: int, named: int) -> None:
    """import_scale's library, no group photos, under the default model's record."""
    from facetrain.inference.compiled import open_for_use
    from facetrain.inference.pretrained import DEFAULT

    import_scale.build(db, faces, named, 0, (asdict(open_for_use(DEFAULT).pre), DEFAULT, None))


def requests(db: Path, n: int, kept: bool) -> tuple[float, list[float], list]:
    """(the first request's seconds, the others', the names each gave)."""
    from fastapi.testclient import TestClient

    from facetrain.library import web

    app = web.create_app(db)
    if not kept:  # the namer made again for every photo, as before
        web.KeptWhileUnchanged._version = lambda self: object()
    client = TestClient(app, base_url=ORIGIN, headers={"Origin": ORIGIN})
    data, times, names = PHOTO.read_bytes(), [], []
    for _ in range(n + 1):
        t = time.perf_counter()
        r = client.post("/api/identify", content=data)
        times.append(time.perf_counter() - t)
        assert r.status_code == 200, r.text
        names.append([f["name"] for f in r.json()["faces"]])
    return times[0], times[1:], names


def main() -> None:
    from facetrain.library import web

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faces", type=int, default=200_000)
    ap.add_argument("--named", type=int, default=20)
    ap.add_argument("--photos", type=int, default=5)
    args = ap.parse_args()
    version = web.KeptWhileUnchanged._version
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "lib.db"
        t = time.perf_counter()
        build(db, args.faces, args.named)
        print(f"{cpu_name()}, {os.cpu_count()} cores; {args.faces} faces, "
              f"{args.named} people named (built in {time.perf_counter() - t:.0f} s)")  # fmt: skip
        got = {}
        for kept in (False, True, False, True):
            web.KeptWhileUnchanged._version = version
            first, rest, names = requests(db, args.photos, kept)
            got.setdefault(kept, []).append((first, statistics.median(rest), names))
        web.KeptWhileUnchanged._version = version
    for kept, rounds in got.items():
        way = "namer kept (now)" if kept else "namer made a photo (before)"
        best = min(rounds, key=lambda r: r[1])
        print(f"{way}: first {best[0]:.2f} s, then {best[1]:.2f} s a photo (median of "
              f"{args.photos}; rounds {', '.join(f'{r[1]:.2f}' for r in rounds)})")  # fmt: skip
    same = all(r[2] == got[False][0][2] for rs in got.values() for r in rs)
    ratio = min(r[1] for r in got[False]) / min(r[1] for r in got[True])
    print(f"same names: {same}; ratio {ratio:.1f}x a photo after the first")


if __name__ == "__main__":
    main()
