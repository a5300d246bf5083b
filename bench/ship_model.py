"""Ship a facetrain-trained model inside facetrain as a pretrained entry's weights: the run's
model.safetensors in half precision (half the size; rounding moves the LFW figure by a few
hundredths of a point, so the entry states the figure `facetrain eval pretrained:NAME`
measures on the shipped file) with its preprocessing record.

    .venv/bin/python bench/ship_model.py RUN NAME [--threshold-from EVAL.json]
      → src/facetrain/inference/weights/NAME.safetensors

RUN is a run folder or a model file. --threshold-from records as the model's "same person"
threshold the mean best-accuracy threshold of a `facetrain eval --json` output (LFW's ten
folds, say), where the run recorded none.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from facetrain.inference.pretrained import SHIPPED
from facetrain.inference.record import save_model
from facetrain.inference.saved import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("name")
    ap.add_argument("--threshold-from", type=Path, help="a `facetrain eval --json` output")
    args = ap.parse_args()
    net, pre = load_model(args.run)
    if args.threshold_from:
        ev = json.loads(args.threshold_from.read_text())
        pre = dataclasses.replace(pre, threshold=ev["threshold"], threshold_source=(
            f"mean best-accuracy threshold over {', '.join(ev['sets'])}'s folds (facetrain "
            f"eval, {ev['distance']}, flip {ev['flip']})"))  # fmt: skip
    out = save_model(SHIPPED / f"{args.name}.safetensors", net.to(torch.float16), pre)
    print(f"{out}: {out.stat().st_size / 1e6:.1f} MB ({pre.model}, {pre.embedding_size}-d, "
          f"threshold {pre.threshold})")  # fmt: skip


if __name__ == "__main__":
    main()
