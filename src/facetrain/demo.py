"""`make demo`: the pipeline end to end on real photos, with nothing to set up.

1. Preparation: stats → align → prune → split → pack, on ../shared/datasets/lfw-raw-sample
   when it is there; otherwise on 600 photos of LFW downloaded from its public source
   (checksum verified, saying so first).
2. A short training run (a few minutes on a CPU): on ../shared/datasets/mini-train with
   verification on LFW pairs when those exist, else on the pack made in step 1.
3. `facetrain eval` on LFW's 6,000 pairs (when there), then `facetrain report`: one HTML
   page with the learning curves, the metrics table and the ROC; its path is printed last.

Every step is the `facetrain` command a user would type, printed before it runs.
Re-running resumes: finished work is skipped.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import sys
import tarfile
import urllib.request
from pathlib import Path

from facetrain.cli import app
from facetrain.progress import console

LFW_URL = "https://vis-www.cs.umass.edu/lfw/lfw.tgz"
LFW_MD5 = "a17d05bd522c52d84eca14327a23d494"  # the checksum torchvision's LFW loader also uses
OUT = Path("demo-output")


def shared_dataset(name: str) -> Path | None:
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        p = base.parent / "shared" / "datasets" / name
        if p.exists():
            return p
    return None


def shared_sample() -> Path | None:
    env = os.environ.get("FACETRAIN_DEMO_DATA")
    if env:
        return Path(env)
    return shared_dataset("lfw-raw-sample")


# The short CPU recipe (recipes/demo.toml): the best recipe cut to 4 epochs of mini-train.
DEMO_RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "demo.toml"


def download_lfw(cache: Path) -> Path:
    """Fetch and unpack LFW once (about 180 MB), verifying its MD5."""
    tgz = cache / "lfw.tgz"
    root = cache / "lfw"
    if root.is_dir():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    if not tgz.exists():
        console.print(f"no local sample found: downloading LFW from {LFW_URL} (~180 MB)")
        part = tgz.with_suffix(".part")
        try:
            with urllib.request.urlopen(LFW_URL, timeout=60) as r, open(part, "wb") as f:
                shutil.copyfileobj(r, f)
        except OSError as e:
            console.print(
                f"[bold red]error:[/] cannot download LFW ({e}). You seem to be offline: put a "
                "folder of photos per person somewhere and set FACETRAIN_DEMO_DATA to it."
            )
            sys.exit(1)
        os.replace(part, tgz)
    md5 = hashlib.md5(tgz.read_bytes()).hexdigest()
    if md5 != LFW_MD5:
        tgz.unlink()
        console.print(f"[bold red]error:[/] {tgz} has MD5 {md5}, expected {LFW_MD5}; removed it.")
        sys.exit(1)
    console.print("checksum verified; unpacking")
    with tarfile.open(tgz) as t:
        t.extractall(cache, filter="data")
    return root


def run(*args: str) -> None:
    console.rule(f"[bold]$ facetrain {' '.join(args)}")
    try:
        app(list(args), standalone_mode=False)
    except SystemExit as e:
        if e.code:
            raise


def main() -> None:
    data = shared_sample()
    OUT.mkdir(exist_ok=True)
    if data is None:
        from facetrain.data.listing import iter_samples, write_list

        lfw = download_lfw(Path.home() / ".cache" / "facetrain")
        samples = list(iter_samples(str(lfw)))
        pick = sorted(random.Random(7).sample(range(len(samples)), 600))
        data = OUT / "lfw-sample.txt"
        write_list(data, (samples[i] for i in pick))
    console.print(f"demo data: {data}")
    run("stats", str(data))
    run("align", str(data), str(OUT / "aligned"))
    run("prune", str(OUT / "aligned"), str(OUT / "pruned.txt"), "--min-images", "2")
    run(
        "split",
        str(OUT / "pruned.txt"),
        str(OUT / "split"),
        "--by",
        "image",
        "--val-fraction",
        "0.2",
    )
    run("pack", str(OUT / "split"), str(OUT / "pack"))

    mini, lfw = shared_dataset("mini-train"), shared_dataset("lfw")
    if mini is not None and lfw is not None:
        run("pack", str(mini), str(OUT / "mini-train-pack"))
        run(
            "train",
            "--data",
            str(OUT / "mini-train-pack"),
            "--out",
            str(OUT / "run"),
            "--config",
            str(DEMO_RECIPE),
            "--set",
            f"eval_pairs={lfw / 'pairs.txt'}",
            "--set",
            f"eval_images={lfw}",
        )
        run("eval", str(OUT / "run"), "--pairs", str(lfw / "pairs.txt"), "--images", str(lfw))
    else:
        console.print("(../shared/datasets/mini-train absent: a short run on the demo pack)")
        run(
            "train",
            "--data",
            str(OUT / "pack"),
            "--out",
            str(OUT / "run"),
            "--model",
            "nn4_small2",
            "--loss",
            "softmax",
            "--epochs",
            "3",
            "--batch-size",
            "32",
            "--set",
            "input_size=80",
        )
    run("report", str(OUT / "run"))
    console.rule("[bold green]done")
    console.print(
        f"aligned faces: {OUT / 'aligned'} (every input in alignment.csv)\n"
        f"packed dataset: {OUT / 'pack'} — load it with facetrain.data.PackedDataset\n"
        f"training run: {OUT / 'run'} (metrics.jsonl, tensorboard/, checkpoints/, "
        "model.safetensors); run the same command again to resume"
    )
    console.print(f"report page: {(OUT / 'run' / 'report.html').resolve()}")


if __name__ == "__main__":
    main()
