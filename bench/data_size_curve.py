"""LFW accuracy against the number of training faces, same recipe at equal compute, and what
a power law through the points predicts for more data (issue 17's data-size curve).

Each point is a finished run folder (its `eval/metrics.json` from `facetrain eval` on LFW's
6,000 pairs and its packed training set), or `LABEL=ACC,STD,FACES` for a run whose folder
is not on this machine (its figures as docs/benchmarks.md records them). The error rate
(1 - accuracy) is fitted as a * faces^-b by least squares in log-log space.

    .venv/bin/python bench/data_size_curve.py "mini-train=0.8718,0.0136,10892" \\
        runs/scratch-two-thirds-15 runs/scratch-mini-more-10 --out docs/img/data-size-mini-more.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

OPENFACE = (500_000, 0.9292)  # nn4.small2 trained by OpenFace on ~500k images (CASIA+FaceScrub)


def point(arg: str) -> tuple[str, float, float, int]:
    """(label, accuracy, std, training faces) of a run folder or a LABEL=ACC,STD,FACES."""
    if "=" in arg:
        label, rest = arg.split("=", 1)
        acc, std, faces = rest.split(",")
        return label, float(acc), float(std), int(faces)
    run = Path(arg)
    m = json.loads((run / "eval" / "metrics.json").read_text())
    r = m["sets"][next(iter(m["sets"]))] if "sets" in m else m
    cfg = json.loads((run / "config.json").read_text())
    pack = Path(cfg["data"][0]) if (Path(cfg["data"][0]) / "meta.json").exists() else run / "pack"
    faces = json.loads((pack / "meta.json").read_text())["splits"]["train"]
    return run.name, r["accuracy"], r["accuracy_std"], faces


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("points", nargs="+")
    ap.add_argument("--out", type=Path, default=Path("docs/img/data-size-mini-more.png"))
    ap.add_argument("--title", default="nn4.small2 80², softmax, from scratch: accuracy "
                    "against data")  # fmt: skip
    args = ap.parse_args()
    pts = sorted((point(a) for a in args.points), key=lambda p: p[3])
    n = np.array([p[3] for p in pts], float)
    err = 1 - np.array([p[1] for p in pts])
    slope, intercept = np.polyfit(np.log(n), np.log(err), 1)
    predict = lambda faces: 1 - np.exp(intercept) * faces**slope  # noqa: E731
    print("| training faces | run | LFW accuracy |\n|---|---|---|")
    for label, acc, std, faces in pts:
        print(f"| {faces:,} | {label} | {100 * acc:.2f} ± {100 * std:.2f} % |")
    print(f"\nerror = {np.exp(intercept):.3g} x faces^{slope:.3f}; predicted accuracy: "
          + ", ".join(f"{f:,} faces {100 * predict(f):.1f}%"
                      for f in (50_000, 100_000, 200_000, 500_000)))  # fmt: skip
    if slope < 0:
        need = (0.07 / np.exp(intercept)) ** (1 / slope)
        print(f"93% (OpenFace's nn4.small2: 92.92% from ~500k images) predicted at ~{need:,.0f} "
              "faces")  # fmt: skip
    else:
        print("the error does not fall with more faces here: no prediction of where 93% lies")
    plot(pts, predict, args.out, args.title)
    print(f"wrote {args.out}")


def plot(pts, predict, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    n = np.array([p[3] for p in pts])
    ax.errorbar(n, [100 * p[1] for p in pts], yerr=[100 * p[2] for p in pts], fmt="o",
                capsize=4, label="measured (10-fold mean ± std)")  # fmt: skip
    for label, acc, _, faces in pts:
        ax.annotate(label, (faces, 100 * acc), textcoords="offset points", xytext=(6, -12),
                    fontsize=8)  # fmt: skip
    grid = np.geomspace(n.min() * 0.8, 600_000, 100)
    ax.plot(grid, 100 * predict(grid), "--", label="power-law fit of the error")
    ax.plot(*OPENFACE[:1], 100 * OPENFACE[1], "s", label="OpenFace nn4.small2 (~500k images)")
    ax.set_xscale("log")
    ax.set_xlabel("training faces (same recipe, equal number of steps)")
    ax.set_ylabel("LFW accuracy (%)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
