"""`make demo`: the pipeline end to end on photos, with nothing to set up.

1. Preparation: stats → align → prune → split → pack, on the photos FACETRAIN_DEMO_DATA
   names, else ../shared/datasets/lfw-raw-sample when it is there, else on people drawn on
   the spot (`data.drawn`: nothing is downloaded, and no package ships face photos).
2. A short training run (a few minutes on a CPU): on ../shared/datasets/mini-train with
   verification on LFW pairs when those exist, else on the pack made in step 1 (with
   verification on other drawn people when the faces were drawn).
3. `facetrain eval` on LFW's 6,000 pairs (or the drawn people's pairs), then `facetrain
   report`: one HTML page with the learning curves, the metrics table and the ROC; its
   path is printed last.

Every step prints the `facetrain` command a user would type for it, then makes the same
package call that command makes. Re-running resumes: finished work is skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

from facetrain.progress import console

OUT = Path("demo-output")
DRAWN = (150, 8)  # people drawn to train on, photos of each
DRAWN_TEST = (60, 5)  # other people drawn to verify on


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


def drawn_faces() -> tuple[Path, Path]:
    """No photos at hand: people drawn to train on, and other people drawn, aligned and
    paired (LFW's format) to verify on. Returns (photos to prepare, aligned test faces)."""
    from facetrain.align.job import AlignConfig, run_align
    from facetrain.data.drawn import draw_people, write_pairs

    console.print("no photos given (FACETRAIN_DEMO_DATA) and no ../shared/datasets: the demo "
                  "draws its people, cartoons that every step treats as photos")  # fmt: skip
    console.rule(f"drawing {DRAWN[0]} people × {DRAWN[1]} photos, and {DRAWN_TEST[0]} others "
                 "to verify on", style="bold")  # fmt: skip
    train = draw_people(OUT / "drawn", *DRAWN, seed=1)
    test = draw_people(OUT / "drawn-test", *DRAWN_TEST, seed=2, lfw_names=True)
    step(f"align {test} {OUT / 'drawn-test-aligned'}")
    run_align([str(test)], OUT / "drawn-test-aligned", AlignConfig())
    write_pairs(OUT / "drawn-test-aligned", OUT / "drawn-test-aligned" / "pairs.txt")
    return train, OUT / "drawn-test-aligned"


def step(command: str) -> None:
    console.rule(f"$ facetrain {command}", style="bold")


def prepare(data: Path) -> Path:
    """stats → align → prune → split → pack of the demo photos; the pack's path."""
    from facetrain.align.job import AlignConfig, run_align
    from facetrain.data.split import prune, split, stats

    step(f"stats {data}")
    r = stats([str(data)])
    console.print(f"identities: {r['identities']}  images: {r['images']}")
    step(f"align {data} {OUT / 'aligned'}")
    a = run_align([str(data)], OUT / "aligned", AlignConfig())
    console.print(f"aligned {a.faces_written} faces; every input in {a.csv_path}")
    step(f"prune {OUT / 'aligned'} {OUT / 'pruned.txt'} --min-images 2")
    r = prune([str(OUT / "aligned")], OUT / "pruned.txt", 2)
    console.print(f"kept {r['identities_kept']}/{r['identities_in']} identities")
    step(f"split {OUT / 'pruned.txt'} {OUT / 'split'} --by image --val-fraction 0.2")
    sp = split(str(OUT / "pruned.txt"), OUT / "split", by="image", fraction=0.2)
    console.print(f"train {sp.train_images} images, val {sp.val_images} images")
    return pack_step(str(OUT / "split"), OUT / "pack")


def pack_step(data: str, out: Path) -> Path:
    from facetrain.data.packed import pack

    step(f"pack {data} {out}")
    r = pack(data, out)
    console.print(f"packed {r.images} images of {r.identities} identities → {out}")
    return out


def train_step(config: Path | None, flags: dict, sets: list[str] = ()) -> Path:
    from facetrain.train.config import resolve
    from facetrain.train.loop import train

    shown = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in flags.items() if k != "data")
    extra = (f" --config {config}" if config else "") + "".join(f" --set {x}" for x in sets)
    step(f"train --data {':'.join(flags['data'])} {shown}{extra}")
    cfg = resolve(config, flags, sets=list(sets))
    train(cfg, log=console.print)
    return Path(cfg.platform.out)


def eval_step(run: Path, lfw: Path) -> dict:
    from facetrain.evaluate.model_eval import evaluate_model, summary_line
    from facetrain.inference.saved import open_model

    pairs = lfw / "pairs.txt"
    step(f"eval {run} --pairs {pairs} --images {lfw}")
    done = evaluated(run)
    if done is not None:
        name = next(iter(done["sets"]))
        console.print(f"evaluated already, after the model was written: "
                      f"{summary_line(name, done)}", highlight=False)  # fmt: skip
        return done
    ev = evaluate_model(open_model(run), [(str(pairs), str(lfw))], out=run / "eval",
                        on_set=lambda name, r: console.print(summary_line(name, r)))  # fmt: skip
    return next(iter(ev.results.values()))


def evaluated(run: Path) -> dict | None:
    """The metrics of an evaluation of this run's model written after the model (a demo run
    again: the 6,000 pairs are not embedded again), else None."""
    import json

    from facetrain.run_folder import WEIGHTS

    metrics, model = run / "eval" / "metrics.json", run / WEIGHTS
    try:
        if metrics.stat().st_mtime_ns < model.stat().st_mtime_ns:
            return None
        done = json.loads(metrics.read_text())
    except (OSError, ValueError):
        return None
    ours = done.get("model") == str(run.resolve()) and done.get("sets")
    return done if ours else None


def report_step(run: Path) -> Path:
    from facetrain.evaluate.report import write_report

    step(f"report {run}")
    return write_report(run)


def main() -> None:
    data, verify_on = shared_sample(), None
    OUT.mkdir(exist_ok=True)
    if data is None:
        data, verify_on = drawn_faces()
    console.print(f"demo data: {data}")
    demo_pack = prepare(data)
    mini, lfw = shared_dataset("mini-train"), shared_dataset("lfw")
    if mini is not None and lfw is not None:
        train_pack = pack_step(str(mini), OUT / "mini-train-pack")
        sets = [f"eval_pairs={lfw / 'pairs.txt'}", f"eval_images={lfw}"]
        run = train_step(DEMO_RECIPE, {"data": [str(train_pack)], "out": str(OUT / "run")}, sets)
        eval_step(run, lfw)
    else:
        console.print("(../shared/datasets/mini-train absent: a short run on the demo pack)")
        flags = {"data": [str(demo_pack)], "out": str(OUT / "run"), "model": "nn4_small2",
                 "loss": "softmax", "epochs": 3, "batch_size": 32}  # fmt: skip
        sets = ["input_size=80"]
        if verify_on is not None:
            sets += [f"eval_pairs={verify_on / 'pairs.txt'}", f"eval_images={verify_on}"]
        run = train_step(None, flags, sets)
        if verify_on is not None:
            eval_step(run, verify_on)
    page = report_step(run)
    console.rule("done", style="bold green")
    console.print(
        f"aligned faces: {OUT / 'aligned'} (every input in alignment.csv)\n"
        f"packed dataset: {OUT / 'pack'} — load it with facetrain.data.PackedDataset\n"
        f"training run: {run} (metrics.jsonl, tensorboard/, checkpoints/, "
        "model.safetensors); run the same command again to resume"
    )
    console.print(f"report page: {page.resolve()}")


if __name__ == "__main__":
    main()
