"""`make accuracy` / `python -m facetrain.experiment RECIPE...`: a recipe end to end.

For each recipe: pack ../shared/datasets/mini-train once (runs/packs/mini-train), train
(`facetrain train --config RECIPE`, resumable: run it again after an interruption),
evaluate on LFW's 6,000 pairs (`facetrain eval`, writing RUN/eval/) and write the report
page. The LFW accuracy is the last line printed.
"""

from __future__ import annotations

import sys
import time
import tomllib
from pathlib import Path

from facetrain.demo import run, shared_dataset
from facetrain.progress import console

PACK = Path("runs/packs/mini-train")


def main(recipes: list[str]) -> None:
    mini, lfw = shared_dataset("mini-train"), shared_dataset("lfw")
    if mini is None or lfw is None:
        console.print("[bold red]error:[/] needs ../shared/datasets/mini-train and lfw")
        raise SystemExit(2)
    if not (PACK / "meta.json").exists():
        run("pack", str(mini), str(PACK))
    lines = []
    for recipe in recipes:
        out = tomllib.loads(Path(recipe).read_text())["out"]
        t0 = time.perf_counter()
        run("train", "--config", recipe)
        minutes = (time.perf_counter() - t0) / 60
        run("eval", out, "--pairs", str(lfw / "pairs.txt"), "--images", str(lfw))
        run("report", out)
        import json

        m = json.loads((Path(out) / "eval" / "metrics.json").read_text())
        lines.append(
            f"{recipe}: LFW accuracy {m['accuracy']:.4f} ± {m['accuracy_std']:.4f}, "
            f"VAL@FAR=1e-3 {m['val']:.4f}, AUC {m['auc']:.4f} ({out}; this call {minutes:.1f} min)"
        )
    console.rule("[bold green]results")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main(sys.argv[1:] or ["recipes/best.toml"])
