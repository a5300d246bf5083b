"""Threads of a command run right after another: `facetrain embed` of photos (detected,
aligned, embedded) on the threads the 1-minute load average left (the rule before) against
the cores busy now (`devices.cores_free`, the rule now), each a whole process started the
instant the one before ended, rounds alternating the two; then the same command while busy
loops hold every core (what the rule is for: torch's threads spin against other jobs).

    .venv/bin/python bench/threads_after.py [FOLDER] [--photos 200] [--rounds 3]

FOLDER defaults to ../shared/datasets/lfw-raw-sample. Each line says the threads each rule
chose and the seconds; the last, the ratio of the median seconds, before / now, and how far
apart the two made the embeddings (threads add in another order).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from facetrain.data.listing import Problems, iter_samples, write_list
from facetrain.devices import cores_free, cpu_name

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "lfw-raw-sample"


def threads_by_load() -> int:
    """The rule before: the cores the last minute's load average leaves."""
    cores = len(os.sched_getaffinity(0))
    return max(1, min(cores, cores - int(os.getloadavg()[0] + 0.5)))


def embedded(photos: Path, out: Path, threads: int | None) -> float:
    """Seconds of `facetrain embed` of the list `photos` into `out`, a whole process; with
    `threads`, FACETRAIN_THREADS set to it, else the command chooses."""
    env = dict(os.environ)
    env.pop("FACETRAIN_THREADS", None)
    if threads is not None:
        env["FACETRAIN_THREADS"] = str(threads)
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "facetrain", "embed", str(photos), "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return time.perf_counter() - t0


def one_after_another(photos: Path, tmp: Path, rounds: int) -> dict[str, list[float]]:
    """Both rules in turn, each command started as the one before ends."""
    secs: dict[str, list[float]] = {"before": [], "now": []}
    embedded(photos, tmp / "warm.npz", None)  # the command "just before" the first round
    for _ in range(rounds):
        for rule in secs:
            threads = threads_by_load() if rule == "before" else None
            chose = threads if threads is not None else cores_free()
            secs[rule].append(embedded(photos, tmp / f"{rule}.npz", threads))
            print(f"  {rule}: {chose} thread(s), load {os.getloadavg()[0]:.2f}, "
                  f"{secs[rule][-1]:.2f} s", flush=True)  # fmt: skip
    return secs


def beside_busy_loops(photos: Path, tmp: Path) -> None:
    """The rule now while every core runs a busy loop, against every core's thread."""
    cores = len(os.sched_getaffinity(0))
    spin = "print(flush=True)\nwhile True: pass"
    loops = [subprocess.Popen([sys.executable, "-c", spin], stdout=subprocess.PIPE)
             for _ in range(cores)]  # fmt: skip
    try:
        for p in loops:
            p.stdout.readline()
        chose = cores_free()
        mine = embedded(photos, tmp / "busy-now.npz", None)
        every = embedded(photos, tmp / "busy-all.npz", cores)
    finally:
        for p in loops:
            p.kill()
            p.wait()
    print(f"beside {cores} busy loops: now {chose} thread(s) {mine:.2f} s; "
          f"{cores} threads {every:.2f} s")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", type=Path, nargs="?", default=SAMPLE)
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    samples = list(iter_samples(str(args.folder), problems=Problems()))[: args.photos]
    print(f"{cpu_name()}, {os.cpu_count()} cores; {len(samples)} photos of {args.folder}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = tmp / "photos.txt"
        write_list(photos, samples)
        secs = one_after_another(photos, tmp, args.rounds)
        beside_busy_loops(photos, tmp)
        med = {k: statistics.median(s) for k, s in secs.items()}
        a, b = (np.load(tmp / f"{k}.npz")["embeddings"] for k in secs)
        print(f"one after another: before {med['before']:.2f} s, now {med['now']:.2f} s: "
              f"{med['before'] / med['now']:.2f}x; embeddings apart by at most "
              f"{np.abs(a - b).max():.1e}")  # fmt: skip


if __name__ == "__main__":
    main()
