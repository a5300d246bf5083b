"""Photos a second of `facetrain library scan` on each device and worker count asked, on the
same photos, each from a new library (issue 33: a lent GPU's `--device cuda` against the
CPU). Each setting runs as a whole process from a cold start, as a user runs it; the faces
each found, and those past the quality gate, are printed beside its speed: one detector and
one model on another device should agree but for a face or two at the gate's edge.

    PYTHONPATH=src python3 bench/scan_devices.py FOLDER [--model MODEL] \\
        [--setting cuda:1 --setting cuda:4 --setting cpu:16] [--rounds 1] [--out DIR]

A setting is DEVICE:WORKERS (default: cpu with one worker per core, and cuda:1 and cuda:4
where a GPU is). The last lines are a table and, with a GPU, the ratio of the fastest cuda
setting to the fastest cpu one; DIR/scan_devices.json holds every figure.
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

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def scan_once(folder: str, device: str, workers: int, model: str | None, tmp: Path) -> dict:
    """One cold `facetrain library scan` into a new library: seconds and its report."""
    db, report = tmp / f"{device}-{workers}-{time.monotonic_ns()}.db", tmp / "report.json"
    cmd = [sys.executable, "-m", "facetrain", "library", "scan", folder, "--db", str(db),
           "--device", device, "--workers", str(workers), "--json", str(report)]  # fmt: skip
    cmd += ["--model", model] if model else []
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=os.environ | {"CI": "1"})
    seconds = time.perf_counter() - t0
    if r.returncode != 0:  # reported, and the other settings still run (one lent call)
        print(f"{' '.join(cmd)} failed:\n{r.stdout[-1500:]}\n{r.stderr[-3000:]}", flush=True)
        last = (r.stderr.strip().splitlines() or [f"exit code {r.returncode}"])[-1]
        return {"seconds": round(seconds, 2), "error": last}
    rep = json.loads(report.read_text())
    db.unlink()
    return {"seconds": round(seconds, 2), "faces": rep["faces"], "usable": rep["usable_faces"],
            "photos": rep["new"], "problems": len(rep.get("problems", {}))}  # fmt: skip


def default_settings() -> list[str]:
    import torch

    cores = len(os.sched_getaffinity(0))
    return [f"cpu:{cores}"] + (["cuda:1", "cuda:4"] if torch.cuda.is_available() else [])


def measure(folder: str, settings: list[str], model: str | None, rounds: int) -> list[dict]:
    """Each setting `rounds` times, alternating; the median round of each."""
    runs: dict[str, list[dict]] = {s: [] for s in settings}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(rounds):
            for s in settings:
                device, workers = s.rsplit(":", 1)
                runs[s].append(scan_once(folder, device, int(workers), model, Path(tmp)))
                print(f"round {k + 1} {s}: {json.dumps(runs[s][-1])}", flush=True)
    rows = []
    for s, rs in runs.items():
        done = sorted((r for r in rs if "error" not in r), key=lambda r: r["seconds"])
        if not done:
            rows.append({"setting": s, **rs[-1]})
            continue
        mid = done[len(done) // 2]
        rows.append({"setting": s, **mid, "photos_per_s": round(mid["photos"] / mid["seconds"], 2)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", nargs="?", default=str(SHARED / "photos"))
    ap.add_argument("--model", help="a MODEL (the library's default when left out)")
    ap.add_argument("--setting", action="append", help="DEVICE:WORKERS; repeat for several")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    settings = args.setting or default_settings()
    gpu = ""
    if any(s.startswith("cuda") for s in settings):
        import torch

        gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU here"
    print(f"{cpu_name()}, {len(os.sched_getaffinity(0))} cores{', ' + gpu if gpu else ''}; "
          f"{args.folder}; settings {', '.join(settings)}", flush=True)  # fmt: skip
    rows = measure(args.folder, settings, args.model, args.rounds)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"gpu": gpu, "cores": os.cpu_count(), "rows": rows}, indent=2)
        (args.out / "scan_devices.json").write_text(text + "\n")
    print("| setting | seconds | photos | photos/s | faces | past the gate |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['setting']} | failed: {r['error']} | | | | |")
            continue
        print(f"| {r['setting']} | {r['seconds']} | {r['photos']} | {r['photos_per_s']} | "
              f"{r['faces']} | {r['usable']} |")  # fmt: skip
    best = {d: max((r.get("photos_per_s", 0) for r in rows if r["setting"].startswith(d)),
                   default=0) for d in ("cuda", "cpu")}  # fmt: skip
    if best["cuda"] and best["cpu"]:
        print(f"photos/s cuda / cpu = {best['cuda'] / best['cpu']:.2f}")


if __name__ == "__main__":
    main()
