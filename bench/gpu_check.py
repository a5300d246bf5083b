"""`make gpu-check`: the first proof on a GPU, as one prepared script (sized well inside 10
minutes, so that it can be rerun), or its CPU dry run where no GPU is here (CI).

    (a) throughput: iresnet50 at 112², bf16 + channels_last + torch.compile, batch 256:
        images/s and MFU, against arcface_torch's ~700 images/s per GPU (goal ≥ 8,000 on
        an H100);
    (b) the GPU-only paths run for a few steps without error: fp16 with GradScaler at a
        learning rate that makes steps overflow (skipped steps must close the scaler), raw
        and encoded packs decoded and augmented on the device (`data_on_device`), and
        `align --device cuda` with 2 worker processes;
    (c) a short training run with `device=cuda` and its verification accuracy: the best
        recipe on ../shared/datasets when it is there, generated faces otherwise.

Each stage prints PASS or FAIL with what it measured; the figures go to docs/benchmarks.md
with the card named. The dry run (no GPU, or --dry-run) runs the same stages on the CPU at
toy sizes — fp16 is GPU-only and is left out — so CI keeps the script working.

    PYTHONPATH=src python3 bench/gpu_check.py [--dry-run] [--out DIR]
"""

from __future__ import annotations

import argparse
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


def throughput(gpu: bool, peak: float) -> dict:
    from train_step import measure

    if not gpu:  # toy size: the code path, not a figure
        ips, flops = measure("iresnet18", 4, "cpu", torch.bfloat16, True, False, 2, 1)
        return {"model": "iresnet18 (dry run)", "images_per_s": round(ips, 1)}
    ips, flops = measure("iresnet50", 256, "cuda", torch.bfloat16, True, True, 20, 5)
    mfu = ips * flops / (peak * 1e12) if peak else None
    return {"model": "iresnet50 112² bf16 channels_last compile", "images_per_s": round(ips),
            "vs_arcface_torch_700": round(ips / 700, 1), "mfu": mfu}  # fmt: skip


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
    cfg = TrainConfig(data=[str(pack_dir)], out=str(out), embedding_size=128, batch_size=16,
                      epochs=1, epoch_size=4, lr=0.05, device=device, log_every=1,
                      checkpoint_minutes=1e9, threads=0, **net, **kw)  # fmt: skip
    train(cfg, log=lambda *_: None)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return {"steps": sum("loss" in d and "epoch_end" not in d for d in lines),
            "skipped": sum(d.get("skipped") == "nonfinite" for d in lines),
            "rollbacks": sum(bool(d.get("rollback")) for d in lines)}  # fmt: skip


def device_paths(gpu: bool, work: Path) -> dict:
    device = "cuda" if gpu else "cpu"
    out = {}
    for store in ("raw", "encoded"):
        p = tiny_pack(work, store)
        out[f"data_on_device_{store}"] = short_run(p, work / f"run-{store}", device,
                                                   data_on_device=True, rotate=5.0,
                                                   color_jitter=0.2, grayscale=0.1)  # fmt: skip
    if gpu:  # fp16 at a learning rate that overflows: skipped steps must close the scaler
        out["fp16_overflow"] = short_run(work / "pack-raw", work / "run-fp16", device,
                                         amp="fp16", lr=1e4, max_nonfinite=100)  # fmt: skip
    out["align"] = align_check(gpu, work)
    return out


def align_check(gpu: bool, work: Path) -> dict:
    """MTCNN on the device in 2 worker processes (spawned: CUDA cannot be forked)."""
    from facetrain.align.job import AlignConfig, run_align
    from facetrain.data.listing import iter_samples, write_list

    photos = SHARED / "lfw-raw-sample"
    if gpu and photos.exists():
        roots = [str(photos)]
    else:  # 16 generated images (no faces in them: the detector's path, not its result)
        write_list(work / "align.txt", list(iter_samples(str(work / "faces")))[:16])
        roots = [str(work / "align.txt")]
    device = "cuda" if gpu else "cpu"
    cfg = AlignConfig(device=device, batch_size=16)
    s = run_align(roots, work / "aligned", cfg, workers=2, progress=False)
    return {"inputs": sum(s.counts.values()), "faces": s.faces_written, "workers": 2}


def training_run(gpu: bool, work: Path) -> dict:
    lfw, mini = SHARED / "lfw", SHARED / "mini-train"
    if gpu and lfw.exists() and mini.exists():
        from facetrain.train.config import resolve
        from facetrain.train.loop import train

        cfg = resolve(HERE.parent / "recipes" / "best.toml",
                      {"data": [str(mini)], "out": str(work / "best")},
                      sets=["device=cuda", "epochs=4"])  # fmt: skip
        r = train(cfg, log=print)
        return {"recipe": "best.toml, 4 epochs", "lfw_accuracy": r.get("accuracy")}
    p = work / "pack-raw" if (work / "pack-raw").exists() else tiny_pack(work, "raw")
    return {"recipe": "generated faces (no ../shared here)"} | short_run(
        p, work / "run-short", "cuda" if gpu else "cpu"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dry-run", action="store_true", help="the CPU path even on a GPU")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args()
    gpu = torch.cuda.is_available() and not args.dry_run
    env = environment(gpu)
    print(f"{'GPU check' if gpu else 'dry run (no GPU): toy sizes, figures not measured'}: "
          f"{json.dumps(env)}", flush=True)  # fmt: skip
    results: dict = {"environment": env}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        stage("a_throughput", lambda: throughput(gpu, env.get("peak_tflops", 0.0)), results)
        stage("b_device_paths", lambda: device_paths(gpu, work), results)
        stage("c_training_run", lambda: training_run(gpu, work), results)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_check.json").write_text(json.dumps(results, indent=2, default=str))
    failed = [k for k, v in results.items() if isinstance(v, dict) and v.get("ok") is False]
    print(f"{len(failed)} of 3 stages failed" + (f": {', '.join(failed)}" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
