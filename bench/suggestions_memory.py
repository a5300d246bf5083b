"""Peak memory and time of the people page's "same person?" suggestions: a person's mean
squared-L2 distance to every stacked face, as one matrix (the way it was) against
`distances.mean_distances` (the way it is: in closed form, no matrix), each in its own
process on the same synthetic 128-d unit embeddings (float32, as the library stores them).

    .venv/bin/python bench/suggestions_memory.py [--faces 200000] [--person 2000]

The last line is the ratio of the peaks, whole matrix / mean_distances, the seconds of
each, and whether the two means agree (to 1e-9 relative). A process the system kills for
its memory says `exit -9`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from facetrain.devices import cpu_name

CHILD = """
import json, resource, sys, time
import numpy as np
from facetrain.distances import distance_matrix, mean_distances
faces, person, how = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(0)
emb = rng.normal(size=(faces, 128)).astype(np.float32)
emb /= np.linalg.norm(emb, axis=1, keepdims=True)
t0 = time.perf_counter()
a = emb[:person]
d = distance_matrix(a, emb).mean(0) if how == "matrix" else mean_distances(a, emb)
s = time.perf_counter() - t0
np.save(sys.argv[4], d)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": s, "peak_mb": peak}))
"""


def run_child(code: str, *args) -> dict:
    """The JSON that `code` prints, run in a process of its own (its peak memory its own);
    {"error": its last line} when it fails (`exit -9`: killed for memory)."""
    r = subprocess.run([sys.executable, "-c", code, *map(str, args)],
                       capture_output=True, text=True)  # fmt: skip
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]}
    return json.loads(r.stdout)


def main() -> None:
    import tempfile

    import numpy as np

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faces", type=int, default=200_000)
    ap.add_argument("--person", type=int, default=2_000)
    args = ap.parse_args()
    print(f"{cpu_name()}, {os.cpu_count()} cores; {args.faces} faces, a person of "
          f"{args.person}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        ways = ("matrix", "mean_distances")
        rows = {h: run_child(CHILD, args.faces, args.person, h, f"{tmp}/{h}.npy") for h in ways}
        for how, r in rows.items():
            print(f"{how}: {json.dumps(r)}")
        if any("error" in r for r in rows.values()):
            return
        means = [np.load(f"{tmp}/{h}.npy") for h in ways]
        same = np.allclose(*means, rtol=1e-9)
    m, b = rows["matrix"], rows["mean_distances"]
    print(f"peak MB whole matrix / mean_distances = {m['peak_mb'] / b['peak_mb']:.1f} "
          f"({m['peak_mb']:.0f} / {b['peak_mb']:.0f}); seconds {m['seconds']:.1f} / "
          f"{b['seconds']:.1f}; same means: {same}")  # fmt: skip


if __name__ == "__main__":
    main()
