"""`make gpu-check`: the first proof on a GPU, as one prepared script (sized well inside 10
minutes, so that it can be rerun), or its CPU dry run where no GPU is here (CI).

    (a) throughput: iresnet50 at 112², bf16 + channels_last + torch.compile, batch 256:
        images/s and MFU, against arcface_torch's ~700 images/s per GPU (goal ≥ 8,000 on
        an H100);
    (b) the GPU-only paths run for a few steps without error: fp16 with GradScaler at a
        learning rate that makes steps overflow (skipped steps must close the scaler), raw
        and encoded packs decoded and augmented on the device (`data_on_device`), and
        `align --device cuda` with 2 worker processes;
    (c) the best recipe (recipes/best.toml) trained with `device=cuda` and
        `data_on_device=true` on mini-train, and its accuracy on LFW's 6,000 pairs — from
        ../shared/datasets, or --data (a machine without ../shared takes the bundle that
        bench/gpu_bundle.py makes); generated faces when neither is there.

Each stage prints PASS or FAIL with what it measured; the figures go to docs/benchmarks.md
with the card named. The dry run (no GPU, or --dry-run) runs the same stages on the CPU at
toy sizes — fp16 is GPU-only and is left out — so CI keeps the script working.

    PYTHONPATH=src python3 bench/gpu_check.py [--dry-run] [--out DIR] [--data DIR]
        [--epochs N] [--stages abc] [--variants compile,fused_sgd,reduce-overhead]
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
SHARED = HERE.parent.parent / "shared" / "datasets"
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense bf16, SXM


def environment(gpu: bool) -> dict:
    import torchvision

    env = {"torch": torch.__version__, "torchvision": torchvision.__version__,
           "python": sys.version.split()[0], "device": "cpu"}  # fmt: skip
    if gpu:
        name = torch.cuda.get_device_name()
        env |= {"device": name, "peak_tflops": next(
            (v for k, v in PEAK_TFLOPS.items() if k in name), 0.0)}  # fmt: skip
    return env


def stage(name: str, fn, results: dict) -> None:
    t0 = time.perf_counter()
    try:
        out = fn()
        results[name] = {"ok": True, "seconds": round(time.perf_counter() - t0, 1)} | out
        print(f"PASS {name}: {json.dumps(out)} ({results[name]['seconds']} s)", flush=True)
    except Exception as e:  # a GPU check reports every failure and goes on
        results[name] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
        traceback.print_exc()


# (a)'s variants of iresnet50's step at 112², bf16, channels_last: (batch, torch.compile
# (False, True or a mode), fused SGD, timed steps, warm-up steps). Any other name asked for
# is a torch.compile mode, measured at batch 256 with fused SGD.
VARIANTS = {
    "without_compile": (256, False, False, 20, 5),
    "compile": (256, True, False, 20, 5),
    "batch_512": (512, True, False, 10, 3),
    "fused_sgd": (256, True, True, 20, 5),
}


def throughput(gpu: bool, peak: float, variants: str = ",".join(VARIANTS)) -> dict:
    """Images/s of each variant asked for (comma-separated names), and the best one's MFU."""
    from train_step import measure

    if not gpu:  # toy size, one step: the code path, not a figure (bf16 is slow on a CPU:
        # 8 s a step without bf16 kernels, so the fused optimiser's path runs in float32)
        ips, flops = measure("iresnet18_050", 4, "cpu", torch.bfloat16, True, False, 1, 1)
        fused, _ = measure("iresnet18_050", 4, "cpu", None, True, False, 1, 1, fused=True)
        return {"model": "iresnet18_050 (dry run)", "images_per_s": round(ips, 1),
                "images_per_s_fused_sgd": round(fused, 1)}  # fmt: skip
    out, flops = {"model": "iresnet50 112² bf16 channels_last, batch 256 unless named"}, 0.0
    for name in filter(None, variants.split(",")):
        batch, comp, fused, steps, warmup = VARIANTS.get(name, (256, name, True, 20, 5))
        ips, flops = measure("iresnet50", batch, "cuda", torch.bfloat16, True, comp, steps,
                             warmup, fused=fused)  # fmt: skip
        out[f"images_per_s_{name}"] = round(ips)
        print(f"  iresnet50 {name}: {ips:.0f} images/s", flush=True)
    best = max(v for k, v in out.items() if k.startswith("images_per_s"))
    mfu = best * flops / (peak * 1e12) if peak else None
    return out | {
        "best_images_per_s": best,
        "gflops_per_image": round(flops / 1e9, 2),
        "best_mfu": mfu and round(mfu, 3),
        "vs_arcface_torch_700": round(best / 700, 1),
    }


def tiny_pack(work: Path, store: str) -> Path:
    """16 generated identities x 16 faces, packed."""
    import numpy as np
    from PIL import Image

    from facetrain.data.packed import pack

    rng = np.random.default_rng(0)
    root = work / "faces"
    for i in range(16):
        base = rng.integers(0, 255, 3)
        for j in range(16):
            img = np.zeros((112, 112, 3), np.uint8) + base.astype(np.uint8)
            img[:, (i * 5) % 112 :: 7 + i] = 255 - base
            img = np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)
            (root / f"id{i}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / f"id{i}" / f"{j}.jpg")
    pack(str(root), work / f"pack-{store}", store=store, progress=False)
    return work / f"pack-{store}"


def short_run(pack_dir: Path, out: Path, device: str, **kw) -> dict:
    """A few steps of training; on the CPU a small net at a small size (the code path)."""
    from facetrain.train.config import TrainConfig
    from facetrain.train.loop import train

    net = {"model": "iresnet18"} if device == "cuda" else {"model": "nn4_small2", "input_size": 80}
    settings = dict(data=[str(pack_dir)], out=str(out), embedding_size=128, batch_size=16,
                    epochs=1, epoch_size=4, lr=0.05, device=device, log_every=1,
                    checkpoint_minutes=1e9, threads=0, **net)  # fmt: skip
    cfg = TrainConfig.of(**settings | kw)
    train(cfg, log=lambda *_: None)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return {"steps": sum("loss" in d and "epoch_end" not in d for d in lines),
            "skipped": sum(d.get("skipped") == "nonfinite" for d in lines),
            "rollbacks": sum(bool(d.get("rollback")) for d in lines)}  # fmt: skip


def device_paths(gpu: bool, work: Path, data: Path) -> dict:
    device = "cuda" if gpu else "cpu"
    out = {}
    for store in ("raw", "encoded"):
        p = tiny_pack(work, store)
        out[f"data_on_device_{store}"] = short_run(p, work / f"run-{store}", device,
                                                   data_on_device=True, rotate=5.0,
                                                   color_jitter=0.2, grayscale=0.1)  # fmt: skip
    if gpu:
        out["fp16"] = short_run(work / "pack-raw", work / "run-fp16", device, amp="fp16")
        out["fp16_diverging"] = fp16_diverging(work)
    out["align"] = align_check(gpu, work, data)
    return out


def fp16_diverging(work: Path) -> dict:
    """fp16 at a learning rate that makes losses non-finite: each skipped step must close
    the GradScaler's step (else the next one raises 'unscale_() has already been called').
    The run may end refusing to write its non-finite weights: that is the guard working."""
    from facetrain.train.state import TrainingError

    try:
        r = short_run(work / "pack-raw", work / "run-fp16-lr", "cuda", amp="fp16", lr=1e4,
                      max_nonfinite=100)  # fmt: skip
        return r | {"ended": "model written"}
    except TrainingError as e:
        if "non-finite" not in str(e):
            raise
        lines = (work / "run-fp16-lr" / "metrics.jsonl").read_text().splitlines()
        skipped = sum(json.loads(x).get("skipped") == "nonfinite" for x in lines)
        return {"skipped": skipped, "ended": "refused non-finite weights (the guard)"}


def align_check(gpu: bool, work: Path, data: Path) -> dict:
    """MTCNN on the device in 2 worker processes (spawned: CUDA cannot be forked)."""
    from facetrain.align.job import AlignConfig, run_align
    from facetrain.data.listing import iter_samples, write_list

    photos = data / "lfw-raw-sample"
    if gpu and photos.exists():
        roots = [str(photos)]
    else:  # 16 generated images (no faces in them: the detector's path, not its result)
        write_list(work / "align.txt", list(iter_samples(str(work / "faces")))[:16])
        roots = [str(work / "align.txt")]
    device = "cuda" if gpu else "cpu"
    cfg = AlignConfig(device=device, batch_size=16)
    s = run_align(roots, work / "aligned", cfg, workers=2, progress=False)
    return {"inputs": sum(s.counts.values()), "faces": s.faces_written, "workers": 2}


def training_run(
    device: str, work: Path, data: Path, epochs: int, budget_s: float, out: Path | None
) -> dict:
    """The best recipe on the device, evaluated on the full LFW pairs there (on the CPU in
    the dry run: generated faces, a few steps)."""
    lfw, mini = data / "lfw", data / "mini-train"
    if device == "cpu" or not (lfw.exists() and mini.exists()):
        p = work / "pack-raw" if (work / "pack-raw").exists() else tiny_pack(work, "raw")
        shown = {"recipe": "generated faces (no data here)"}
        return shown | short_run(p, work / "run-short", device)
    return best_recipe(device, work, data, epochs, budget_s, out)


def best_recipe(
    device: str, work: Path, data: Path, epochs: int, budget_s: float, out: Path | None
) -> dict:
    """Pack mini-train, time one epoch, then train the recipe for as many of its epochs as
    fit budget_s (all of them, when the device is fast enough), and evaluate on LFW."""
    from facetrain.data.packed import pack
    from facetrain.evaluate.model_eval import evaluate_model
    from facetrain.inference.saved import open_model

    lfw, mini = data / "lfw", data / "mini-train"
    t0 = time.perf_counter()
    n = pack(str(mini), work / "pack-mini", store="raw", progress=False).images
    packed = time.perf_counter() - t0
    probe = _train_recipe(device, work, lfw, "probe", 1)
    if out is not None:  # where a step's time goes (the recipe's net is small: host-bound?)
        with torch.profiler.profile() as prof:
            _train_recipe(device, work, lfw, "profile", 1, ["epoch_size=20", "eval_every=100"])
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
        (out / "train_profile.txt").write_text(table)
    epochs = max(1, min(epochs, int(budget_s / probe)))
    trained = _train_recipe(device, work, lfw, "best", epochs)
    ev = evaluate_model(open_model(work / "best", device), [(str(lfw / "pairs.txt"), str(lfw))],
                        device=device)  # fmt: skip
    r = next(iter(ev.results.values()))
    return {"recipe": f"best.toml, {epochs} epochs, --set device={device} data_on_device=true",
            "pack_s": round(packed, 1), "one_epoch_s": round(probe, 1),
            "train_s": round(trained, 1), "train_images_per_s": round(epochs * n / trained),
            "lfw_accuracy": round(r["accuracy"], 4), "lfw_std": round(r["accuracy_std"], 4),
            "val_at_far_1e-3": round(r["val"], 4), "auc": round(r["auc"], 4)}  # fmt: skip


def _train_recipe(
    device: str, work: Path, lfw: Path, name: str, epochs: int, more: tuple = ()
) -> float:
    """recipes/best.toml on the packed mini-train for `epochs`; the seconds it took."""
    from facetrain.train.config import resolve
    from facetrain.train.loop import train

    flags = {"data": [str(work / "pack-mini")], "out": str(work / name),
             "eval_pairs": str(lfw / "pairs.txt"), "eval_images": str(lfw)}  # fmt: skip
    sets = [f"device={device}", "data_on_device=true", f"epochs={epochs}", "log_every=500"]
    cfg = resolve(HERE.parent / "recipes" / "best.toml", flags, sets=[*sets, *more])
    t0 = time.perf_counter()
    train(cfg, log=print)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dry-run", action="store_true", help="the CPU path even on a GPU")
    ap.add_argument("--out", type=Path, help="write the results as JSON here (after each stage)")
    ap.add_argument("--data", type=Path, default=SHARED, help="datasets folder (mini-train, lfw)")
    ap.add_argument("--epochs", type=int, default=30, help="epochs of the best recipe in (c)")
    ap.add_argument("--budget-s", type=float, default=240, help="training time for (c)")
    ap.add_argument("--stages", default="abc", help="which stages to run, e.g. 'c'")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help="(a)'s variants, comma-separated: " + ", ".join(VARIANTS)
                    + ", or a torch.compile mode (with fused SGD)")  # fmt: skip
    args = ap.parse_args()
    gpu = torch.cuda.is_available() and not args.dry_run
    if gpu:  # what a training run on CUDA sets too
        torch.backends.cudnn.benchmark = True
    env = environment(gpu)
    print(f"{'GPU check' if gpu else 'dry run (no GPU): toy sizes, figures not measured'}: "
          f"{json.dumps(env)}", flush=True)  # fmt: skip
    results: dict = {"environment": env}
    device = "cuda" if gpu else "cpu"
    stages = {
        "a_throughput": lambda work: throughput(gpu, env.get("peak_tflops", 0.0), args.variants),
        "b_device_paths": lambda work: device_paths(gpu, work, args.data),
        "c_training_run": lambda work: training_run(
            device, work, args.data, args.epochs, args.budget_s, args.out
        ),
    }
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        for name, fn in stages.items():
            if name[0] in args.stages:
                stage(name, functools.partial(fn, Path(tmp)), results)
                if args.out:
                    args.out.mkdir(parents=True, exist_ok=True)
                    text = json.dumps(results, indent=2, default=str)
                    (args.out / "gpu_check.json").write_text(text)
    failed = [k for k, v in results.items() if isinstance(v, dict) and v.get("ok") is False]
    print(f"{len(failed)} of {len(results) - 1} stages failed"
          + (f": {', '.join(failed)}" if failed else ""))  # fmt: skip
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
