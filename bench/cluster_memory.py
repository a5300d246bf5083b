"""Peak memory and time of stacking a large real library with nothing named
(`cluster.with_new_faces`: spacing, near pairs, average linkage), for the code of a
baseline revision and the working tree, each in its own process on the same faces: every
real face at hand (`bench/index_populations.py`'s library: LFW, mini-train, more-train, the
East- and South-Asian sets, about 48,600 faces), or a random draw of them.

    .venv/bin/python bench/cluster_memory.py [--baseline REV] [--faces N] [--index] [--runs N]

`--index`: the near pairs and the spacing through the faiss index, as past 50,000 faces.

`--runs N`: each N times, alternately; the figures of each one's quickest run. The last
line is the ratio of the peaks, baseline / now, the seconds of each and of its spacing and
near pairs (`cluster.spaced_pairs`), and whether the two stack every face alike.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from facetrain.devices import cpu_name

sys.path.insert(0, str(Path(__file__).resolve().parent))
from index_populations import EMBEDDINGS, library  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import json, resource, sys, time
import numpy as np
from facetrain import neighbours
from facetrain.library import cluster
if sys.argv[5] == "index":
    neighbours.EXACT_SEARCH = 0
z = np.load(sys.argv[1])
spent, spaced = [], getattr(cluster, "spaced_pairs", None)  # since 51c9597
def timed(*a, **k):
    t = time.perf_counter()
    out = spaced(*a, **k)
    spent.append(time.perf_counter() - t)
    return out
if spaced is not None:
    cluster.spaced_pairs = timed
t0 = time.perf_counter()
got = cluster.with_new_faces(z["emb"], z["photo"], np.full(len(z["emb"]), -1),
                             float(sys.argv[2]), sys.argv[3])
s = time.perf_counter() - t0
np.save(sys.argv[4], np.unique(got, return_inverse=True)[1])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
pairs = round(sum(spent), 1) if spent else None
print(json.dumps({"seconds": round(s, 1), "spacing_and_pairs": pairs, "peak_mb": round(peak),
                  "stacks": int(len(np.unique(got)))}))
"""


def tree_of(rev: str, into: Path) -> Path:
    """The package sources of a revision, unpacked: its `src` folder."""
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src"], check=True,
                         capture_output=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(into)], input=tar, check=True)
    return into / "src"


def run(src: Path, faces: Path, threshold: float, distance: str, labels: Path,
        index: bool) -> dict:  # fmt: skip
    """The child's figures with `src`'s package."""
    return child(CHILD, src, faces, threshold, distance, labels, "index" if index else "exact")


def child(code: str, src: Path, *args) -> dict:
    """The JSON a child process running `code` with `src`'s package prints last;
    {"error": …} when it fails (`exit -9`: killed for its memory)."""
    env = os.environ | {"PYTHONPATH": str(src)}
    r = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                       text=True, env=env)  # fmt: skip
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]}
    return json.loads(r.stdout)


def main(argv=None) -> int:
    from facetrain.inference.compiled import open_for_use

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", default="f7b4277", help="revision measured against")
    ap.add_argument("--faces", type=int, default=0, help="a random draw of this many")
    ap.add_argument("--embeddings", type=Path, default=EMBEDDINGS)
    ap.add_argument("--index", action="store_true", help="through the index")
    ap.add_argument("--runs", type=int, default=1, help="runs of each, alternately")
    args = ap.parse_args(argv)
    pre = open_for_use("pretrained:dlib_resnet").pre
    lib = library(args.embeddings)
    emb, photo = lib["emb"], lib["photo"]
    if args.faces:
        keep = np.sort(np.random.default_rng(0).choice(len(emb), args.faces, replace=False))
        emb, photo = emb[keep], photo[keep]
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; {len(emb)} real faces; "
          f"threshold {pre.threshold:.3f} {pre.distance}; "
          f"{'through the index' if args.index else 'every pair compared'}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.savez(tmp / "faces.npz", emb=emb, photo=photo)
        got: dict[str, list] = {"baseline": [], "now": []}
        trees = {"baseline": tree_of(args.baseline, tmp), "now": ROOT / "src"}
        for _ in range(args.runs):  # alternately: the machine's drift falls on both
            for name, src in trees.items():
                got[name].append(run(src, tmp / "faces.npz", pre.threshold, pre.distance,
                                     tmp / f"{name}.npy", args.index))  # fmt: skip
                print(f"{name:<9} {got[name][-1]}", flush=True)
                if "error" in got[name][-1]:
                    return 1
        same = np.array_equal(np.load(tmp / "baseline.npy"), np.load(tmp / "now.npy"))
    b, n = (min(got[k], key=lambda g: g["seconds"]) for k in ("baseline", "now"))
    print(
        f"peak memory baseline/now {b['peak_mb'] / n['peak_mb']:.2f}x "
        f"({b['peak_mb']:.0f} MB -> {n['peak_mb']:.0f} MB); seconds (the least of "
        f"{args.runs}) {b['seconds']:.1f} -> {n['seconds']:.1f} "
        f"({b['seconds'] / n['seconds']:.2f}x), of which the spacing and near pairs "
        f"{b['spacing_and_pairs']} -> {n['spacing_and_pairs']}; the same stacks: {same}"
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
