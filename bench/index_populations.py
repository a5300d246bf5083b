"""A library past 50,000 faces stacks its faces through an index (`neighbours`: faiss
IVF-Flat, `NPROBE` of its 4·√N lists searched per face). Does it stack real faces as
comparing every pair does, on every population?

One library of every real face at hand: LFW, mini-train and more-train (aligned, embedded
by `facetrain embed`, one face a photo) and the East-Asian and South-Asian sets (scanned the
library's way, `bench/library_populations.py`'s cache): about 48,600 faces, just under the
limit, so the same faces are stacked both ways, with the limit set above them (every pair)
and below them (the index, at each NPROBE). Per set: BCubed F of its faces within the
whole library (a face stacked with another set's faces counts against it), and the share
of its faces whose stack is the same face set both ways.

    .venv/bin/python bench/index_populations.py [--nprobe 16 32 64] [--embeddings PATH]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from facetrain.devices import cpu_name
from library_populations import SHARED, faces_of_set  # noqa: E402

EMBEDDINGS = Path(__file__).resolve().parent / "out" / "real-faces.npz"
ALIGNED = ("lfw", "mini-train", "more-train")
POPULATIONS = ("east-asian-idols", "south-asian-actors")


def aligned_faces(path: Path) -> dict:
    """emb, photo, truth (`set/person`) of the aligned sets, embedded once and kept."""
    if not path.exists():
        exe = Path(sys.executable).with_name("facetrain")
        subprocess.run([str(exe), "embed", *(str(SHARED / s) for s in ALIGNED),
                        "--out", str(path)], check=True)  # fmt: skip
    with np.load(path, allow_pickle=False) as z:
        emb, paths = z["embeddings"].astype(np.float32), z["paths"]
    sets = [Path(p).parent.parent.name for p in paths]
    truth = np.array([f"{s}/{Path(p).parent.name}" for s, p in zip(sets, paths)])
    return {"emb": emb, "photo": np.arange(len(emb)), "truth": truth, "set": np.array(sets)}


def library(path: Path) -> dict:
    """Every face at hand in one library: photos kept apart, people by `set/person`."""
    parts = [aligned_faces(path)]
    for name in POPULATIONS:
        s = faces_of_set(name)
        truth = np.array([f"{name}/{t}" if t else "" for t in s["truth"]])
        parts.append({"emb": s["emb"], "photo": s["photo"], "truth": truth,
                      "set": np.full(len(truth), name)})  # fmt: skip
    offset = 0
    for p in parts:
        p["photo"] = p["photo"] + offset
        offset = int(p["photo"].max()) + 1
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def stacks(lib: dict, threshold: float, distance: str, exact: bool, nprobe: int):
    """Each face's stack as the library makes them with nothing named, and seconds."""
    from facetrain import neighbours
    from facetrain.library.cluster import with_new_faces

    neighbours.EXACT_SEARCH = 10**9 if exact else 0
    neighbours.NPROBE = nprobe
    t0 = time.perf_counter()
    got = with_new_faces(lib["emb"], lib["photo"], np.full(len(lib["emb"]), -1), threshold,
                         distance)  # fmt: skip
    return got, time.perf_counter() - t0


def bcubed(pred: np.ndarray, truth: np.ndarray, rows: np.ndarray) -> float:
    """BCubed F of the faces `rows` (known truth), each face's precision and recall taken
    over the whole library."""
    known = truth != ""
    p_, t_ = pred[known], truth[known]
    _, pi = np.unique(p_, return_inverse=True)
    _, ti = np.unique(t_, return_inverse=True)
    both = pi.astype(np.int64) * (ti.max() + 1) + ti
    _, bi, bc = np.unique(both, return_inverse=True, return_counts=True)
    inter = bc[bi]
    prec, rec = inter / np.bincount(pi)[pi], inter / np.bincount(ti)[ti]
    sel = rows[known]
    p, r = prec[sel].mean(), rec[sel].mean()
    return float(2 * p * r / (p + r))


def same_stacks(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether each face's stack holds the same faces both ways."""
    key = lambda lab: {s: frozenset(np.flatnonzero(lab == s)) for s in np.unique(lab)}  # noqa: E731
    ka, kb = key(a), key(b)
    return np.array([ka[x] == kb[y] for x, y in zip(a, b)])


def main(argv=None) -> int:
    from facetrain.inference.compiled import open_for_use

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nprobe", type=int, nargs="*", default=[16, 32, 64])
    ap.add_argument("--embeddings", type=Path, default=EMBEDDINGS)
    args = ap.parse_args(argv)
    pre = open_for_use("pretrained:dlib_resnet").pre
    lib = library(args.embeddings)
    names = list(dict.fromkeys(lib["set"].tolist()))
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; {len(lib['emb'])} faces, "
          f"{len(set(lib['truth']) - {''})} people; threshold {pre.threshold:.3f} "
          f"{pre.distance}; lists {int(4 * np.sqrt(len(lib['emb'])))}")  # fmt: skip
    exact, secs = stacks(lib, pre.threshold, pre.distance, True, 16)
    rows = [("every pair", exact, secs)]
    for nprobe in args.nprobe:
        got, secs = stacks(lib, pre.threshold, pre.distance, False, nprobe)
        rows.append((f"index, nprobe {nprobe}", got, secs))
    print(f"{'how':<18}{'s':>7} | " + " | ".join(f"{n[:18]:>18} F  same" for n in names))
    for how, got, secs in rows:
        same = same_stacks(exact, got)
        cells = [f"{bcubed(got, lib['truth'], lib['set'] == n):>20.4f} "
                 f"{same[lib['set'] == n].mean():5.3f}" for n in names]  # fmt: skip
        print(f"{how:<18}{secs:>7.1f} | " + " | ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
