"""Ship a facetrain-trained model inside facetrain as a pretrained entry's weights: the run's
model.safetensors in half precision (half the size; rounding moves the LFW figure by a few
hundredths of a point, so the entry states the figure `facetrain eval pretrained:NAME`
measures on the shipped file) with its preprocessing record.

    .venv/bin/python bench/ship_model.py RUN NAME
      → src/facetrain/models/weights/NAME.safetensors
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from facetrain.models.pretrained import SHIPPED
from facetrain.models.saved import load_model, save_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("name")
    args = ap.parse_args()
    net, pre = load_model(args.run)
    out = save_model(SHIPPED / f"{args.name}.safetensors", net.to(torch.float16), pre)
    print(f"{out}: {out.stat().st_size / 1e6:.1f} MB ({pre.model}, {pre.embedding_size}-d)")


if __name__ == "__main__":
    main()
