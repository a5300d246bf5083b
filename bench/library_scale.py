"""Library clustering at the size of a family's collection: wall time and peak memory of
facetrain's clustering (near-pairs graph, each connected group clustered alone) against the
dense method it replaced (one N x N distance matrix), where that fits, on synthetic clustered
embeddings with known identities (BCubed F against them).

Synthetic faces: 128-d unit vectors, ~20 faces an identity (5 to 40), identities in
families of five lookalikes, so that some pairs of different people fall under the
threshold (squared L2 1.0) and groups of several people form, as in real libraries.
Each measurement runs in its own process (peak memory = that process's max RSS, Python and
libraries included).

    .venv/bin/python bench/library_scale.py [--faces 10000 30000 100000] [--exact-max N]
        [--methods dense ours spacing spacing-exact]

The last line is the last measurement: `N faces: peak MB, seconds`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

from facetrain.devices import cpu_name

EXACT_LIMIT = 15_000  # the dense method needs ~24 bytes a pair: 5.4 GB at 15k


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embeddings, identity labels, photo ids) of about n faces."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(5, 41, size=n // 10)
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), n) + 1]
    ids = len(sizes)
    family = rng.normal(size=(ids // 5 + 1, 128))
    family /= np.linalg.norm(family, axis=1, keepdims=True)
    centre = family[np.arange(ids) // 5] + rng.normal(scale=0.05, size=(ids, 128))
    centre /= np.linalg.norm(centre, axis=1, keepdims=True)
    label = np.repeat(np.arange(ids), sizes)[:n]
    emb = centre[label] + rng.normal(scale=0.08, size=(len(label), 128))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return emb.astype(np.float32), label, np.arange(len(label))  # one face a photo


def child(n: int, method: str, exact_max: int, nprobe: int | None) -> None:
    from facetrain import neighbours
    from facetrain.library.cluster import agglomerate
    from facetrain.library.evaluate import scores
    from facetrain.linkage import dense_clusters

    neighbours.NPROBE = nprobe or neighbours.NPROBE

    emb, label, photo = synthetic(n)
    t0 = time.perf_counter()
    if method == "dense":
        pred = dense_clusters(emb, photo, 1.0, "squared_l2")
    elif method.startswith("spacing"):  # the library's rule: each pair's limit from spacing
        if method == "spacing-exact":  # every pair compared, however many faces
            neighbours.EXACT_SEARCH = len(emb)
        with neighbours.keep(once=True):  # as Library.cluster: one index for spacing and pairs
            pred, _ = agglomerate(emb, photo, 1.0, "squared_l2", exact_max=exact_max,
                                  spacing=True)  # fmt: skip
    else:
        pred, _ = agglomerate(emb, photo, 1.0, "squared_l2", exact_max=exact_max)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    f = scores(pred, [str(x) for x in label])["bcubed_f"]
    print(json.dumps({"faces": len(emb), "method": method, "seconds": seconds, "peak_mb": peak,
                      "bcubed_f": f, "stacks": int(len(np.unique(pred)))}))  # fmt: skip


def measure(n: int, method: str, exact_max: int, nprobe: int | None) -> dict:
    cmd = [sys.executable, __file__, "--child", method, "--faces", str(n),
           "--exact-max", str(exact_max)]  # fmt: skip
    cmd += ["--nprobe", str(nprobe)] if nprobe else []
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    from facetrain.library.cluster import EXACT_MAX

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faces", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    ap.add_argument("--exact-max", type=int, default=EXACT_MAX, help="largest exact group")
    ap.add_argument("--nprobe", type=int, help="the index's lists searched per face [facetrain's]")
    ap.add_argument("--child", choices=["ours", "spacing", "spacing-exact", "dense"],
                    help=argparse.SUPPRESS)  # fmt: skip
    ap.add_argument("--methods", nargs="+", default=["dense", "ours", "spacing"],
                    help="dense (one N x N matrix), ours (one threshold, grouped), spacing "
                    "(the library's rule: each pair's limit from the local spacing; past "
                    "50,000 faces a neighbour index proposes the pairs), spacing-exact (the "
                    "same, every pair compared)")  # fmt: skip
    args = ap.parse_args()
    if args.child:
        return child(args.faces[0], args.child, args.exact_max, args.nprobe)
    cores = len(os.sched_getaffinity(0))
    print(f"{cpu_name()}, {cores} cores; exact groups up to {args.exact_max} faces")
    print("| faces | method | seconds | peak MB | BCubed F | stacks |\n|---|---|---|---|---|---|")
    last = ""
    for n in args.faces:
        for method in [m for m in args.methods if m != "dense" or n <= EXACT_LIMIT]:
            r = measure(n, method, args.exact_max, args.nprobe)
            print(f"| {r['faces']:,} | {method} | {r['seconds']:.1f} | {r['peak_mb']:.0f} | "
                  f"{r['bcubed_f']:.4f} | {r['stacks']:,} |", flush=True)  # fmt: skip
            last = (
                f"{r['faces']} faces ({method}): peak {r['peak_mb']:.0f} MB, {r['seconds']:.1f} s"
            )
    print(last)


if __name__ == "__main__":
    main()
