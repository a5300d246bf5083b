"""Photos a second of `facetrain library scan --workers 2` against face_recognition's
pipeline on the same photos, in one run: dlib's HOG detector upsampled once, its 5-point
landmarks and the same ResNet (what `face_recognition.face_encodings` does by default), in
two processes. Both run as whole processes from a cold start (the scan's library is new
each time), alternating for --rounds rounds so that the machine's ups and downs hit both
alike (seconds are medians); peak = the largest max RSS of any one process (GNU time's %M
over the process and the workers it waited for). Faces: how many each pipeline kept (the
scan: those passing its quality gate).

    .venv/bin/python bench/scan_speed.py [FOLDER] [--workers 2] [--rounds 3]

The last line is the ratio facetrain / face_recognition in photos a second (goal ≥ 3), of
the median times; each round's ratio is printed before it.
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

import numpy as np

from facetrain.devices import cpu_name

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
FACETRAIN = str(Path(sys.executable).parent / "facetrain")

# face_recognition's pipeline written with dlib's own API, one photo a task, N processes
DLIB_SCRIPT = """
import importlib.util, sys, numpy as np, dlib
from multiprocessing import Pool
from PIL import Image, ImageOps

m = importlib.util.find_spec("face_recognition_models").submodule_search_locations[0]
def init():
    global det, sp, net
    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(m + "/models/shape_predictor_5_face_landmarks.dat")
    net = dlib.face_recognition_model_v1(m + "/models/dlib_face_recognition_resnet_model_v1.dat")
def faces(path):
    img = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    return len([net.compute_face_descriptor(img, sp(img, d)) for d in det(img, 1)])
if __name__ == "__main__":
    paths = [l for l in open(sys.argv[1]).read().splitlines() if l]
    with Pool(int(sys.argv[2]), initializer=init) as pool:
        print(sum(pool.map(faces, paths, chunksize=1)))
"""


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """(seconds, peak MB of any one process, stdout)."""
    t0 = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed:\n{r.stderr[-2000:]}")
    return time.perf_counter() - t0, int(r.stderr.strip().splitlines()[-1]) / 1024, r.stdout


def photos_of(folder: Path) -> list[str]:
    from facetrain.data.listing import list_photos

    return [str(p) for p in list_photos(folder)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", nargs="?", default=str(SHARED / "photos" / "friends"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    photos = photos_of(Path(args.folder))
    print(f"{cpu_name()}, {len(os.sched_getaffinity(0))} cores; {len(photos)} photos "
          f"in {args.folder}, {args.workers} processes each")  # fmt: skip
    fr, ft = [], []
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "photos.txt"
        listing.write_text("\n".join(photos) + "\n")
        for k in range(args.rounds):
            fr.append(timed([sys.executable, "-c", DLIB_SCRIPT, str(listing),
                             str(args.workers)]))  # fmt: skip
            report = Path(tmp) / f"scan{k}.json"
            ft.append(timed([FACETRAIN, "library", "scan", args.folder, "--db",
                             str(Path(tmp) / f"lib{k}.db"), "--workers", str(args.workers),
                             "--json", str(report)]))  # fmt: skip
            print(f"round {k + 1}: face_recognition {fr[-1][0]:.1f} s, facetrain {ft[-1][0]:.1f} s"
                  f" = {fr[-1][0] / ft[-1][0]:.2f}x", flush=True)  # fmt: skip
        r = json.loads(report.read_text())
    fr_s, ft_s = (float(np.median([t[0] for t in x])) for x in (fr, ft))
    fr_mb, ft_mb = (max(t[1] for t in x) for x in (fr, ft))
    fr_out = fr[-1][2]
    ours, theirs = len(photos) / ft_s, len(photos) / fr_s
    print("| pipeline | seconds | photos/s | peak MB a process | faces |\n|---|---|---|---|---|")
    print(
        f"| face_recognition (dlib HOG + 5 points + ResNet) | {fr_s:.1f} | {theirs:.2f} | "
        f"{fr_mb:.0f} | {int(fr_out.strip())} |"
    )
    print(f"| facetrain library scan | {ft_s:.1f} | {ours:.2f} | {ft_mb:.0f} | "
          f"{r['faces']} ({r['usable_faces']} past the gate) |")  # fmt: skip
    print(f"photos/s facetrain / face_recognition = {ours / theirs:.2f}")


if __name__ == "__main__":
    main()
