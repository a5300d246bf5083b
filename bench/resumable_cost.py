"""What keeping the work costs: the one resumable embedding (`inference.parts`: 512 faces a
part, each written atomically) against one pass over the same faces, for the long jobs that
keep their work (`eval`, `embed`, `filter`, `classify`, distillation's teacher).

The same photos (LFW's aligned faces that pairs.txt names, or photos of any folder) are
embedded by the same untrained network both ways in one process, the two alternating round
after round; the ratio is the median of the rounds, and the two outputs must be equal.

    .venv/bin/python bench/resumable_cost.py [--images ../shared/datasets/lfw] [--faces 3072]
        [--model nn4_small2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "lfw"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=Path, default=SHARED)
    ap.add_argument("--faces", type=int, default=3072)
    ap.add_argument("--model", default="nn4_small2")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    import torch

    from facetrain.data.listing import list_photos
    from facetrain.devices import cpu_name
    from facetrain.inference.embedder import FaceEmbedder
    from facetrain.inference.feed import embed_model
    from facetrain.inference.parts import embed_in_parts
    from facetrain.inference.record import Preprocess
    from facetrain.inference.saved import FaceModel
    from facetrain.inference.sources import Images
    from facetrain.models import create_model

    if not args.images.is_dir():
        raise SystemExit(f"{args.images}: no such folder (give --images)")
    paths = list_photos(args.images)[: args.faces]
    torch.manual_seed(0)
    net = create_model(args.model, 128)
    pre = Preprocess(args.model, 128, net.input_size)
    fm = FaceModel.of_module(net, pre, args.model)
    whole, parts, same = [], [], True
    for _ in range(args.rounds):
        t = time.perf_counter()
        a = embed_model(fm, Images(paths, pre.alignment, "auto"))
        whole.append(time.perf_counter() - t)
        folder = Path(tempfile.mkdtemp())
        t = time.perf_counter()
        b, _ = embed_in_parts(FaceEmbedder(fm), Images(paths, pre.alignment, "auto"),
                              folder / "work", progress=False)  # fmt: skip
        parts.append(time.perf_counter() - t)
        shutil.rmtree(folder)
        same &= np.array_equal(a, b, equal_nan=True)
        print(f"round: one pass {whole[-1]:.1f} s, in parts {parts[-1]:.1f} s", flush=True)
    print(f"{cpu_name()}, {len(paths)} faces, {args.model}, "
          f"{args.rounds} rounds alternated; outputs equal: {same}")  # fmt: skip
    print(f"one pass: {len(paths) / statistics.median(whole):.1f} faces/s (median)")
    print(f"in parts: {len(paths) / statistics.median(parts):.1f} faces/s (median)")
    ratios = [p / w for p, w in zip(parts, whole)]
    print(f"ratio (time in parts / one pass), median of rounds: {statistics.median(ratios):.3f} "
          f"(rounds {', '.join(f'{r:.3f}' for r in ratios)})")  # fmt: skip


if __name__ == "__main__":
    main()
