"""Training-step throughput per model: fp32 vs bf16 autocast, channels-first vs channels-last,
optionally torch.compile — each a ratio against fp32 channels-first measured in this run.

Also reports model-FLOPs utilisation (MFU) when --peak-tflops is given: FLOPs of one
forward+backward (counted by torch.utils.flop_counter) x steps/s / peak.

    .venv/bin/python bench/train_step.py [--models nn4_small2 mobilefacenet iresnet18]
        [--device cuda --models iresnet50 --batch-size 256 --compile --peak-tflops 989]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from facetrain.devices import cpu_name
from facetrain.losses import MarginHead
from facetrain.models import RawEmbedding, create_model

ARCFACE_TORCH_R50_PER_GPU = 700  # InsightFace arcface_torch, r50: ~5.6k images/s on 8 GPUs


def step_fn(raw_fn, head, opt, x, y, dtype, device_type):
    with torch.autocast(device_type, dtype=dtype, enabled=dtype is not None):
        raw = raw_fn(x)
    loss = F.cross_entropy(head(raw.float(), y), y)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def measure(name, batch, device, dtype, channels_last, compile_, steps, warmup, fused=False):
    """Images/s of training steps, and FLOPs a forward+backward per image. compile_: False,
    True (the default mode) or a torch.compile mode ("max-autotune-no-cudagraphs", ...);
    fused: SGD's fused kernel (one launch for all parameters) instead of its foreach one."""
    torch.manual_seed(0)
    model = create_model(name, 512 if name.startswith("iresnet") else 128).to(device).train()
    emb = model.embed(
        torch.zeros(2, 3, model.input_size, model.input_size, device=device), normalize=False
    ).shape[1]
    head = MarginHead(emb, 1000).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    raw_fn = RawEmbedding(model)  # forward = the raw embedding, as training compiles it
    mode = compile_ if isinstance(compile_, str) else None
    fwd = torch.compile(raw_fn, mode=mode) if compile_ else raw_fn
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, fused=fused or None)
    s = model.input_size
    x = torch.randn(batch, 3, s, s, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)
    dt = "cuda" if device.startswith("cuda") else "cpu"
    for _ in range(warmup):
        step_fn(fwd, head, opt, x, y, dtype, dt)
    if dt == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step_fn(fwd, head, opt, x, y, dtype, dt)
    if dt == "cuda":
        torch.cuda.synchronize()
    rate = batch * steps / (time.perf_counter() - t0)
    with FlopCounterMode(display=False) as fc:
        step_fn(raw_fn, head, opt, x, y, dtype, dt)
    return rate, fc.get_total_flops() / batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["nn4_small2", "mobilefacenet", "iresnet18"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--compile-mode", help="a torch.compile mode, e.g. max-autotune-no-cudagraphs")
    ap.add_argument("--fused", action="store_true", help="add a variant with fused SGD")
    ap.add_argument("--peak-tflops", type=float, default=0.0, help="device peak for MFU")
    args = ap.parse_args()
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"device {args.device}, batch {args.batch_size}"
    )
    if args.device.startswith("cuda"):
        print(f"GPU: {torch.cuda.get_device_name(args.device)}")
    else:  # as training on a CPU does (bench/cpu_memory.py)
        from facetrain.devices import keep_freed_memory

        keep_freed_memory()
    variants = [  # label, autocast dtype, channels_last, compile (False/True/mode), fused SGD
        ("fp32", None, False, False, False),
        ("fp32 channels_last", None, True, False, False),
        ("bf16", torch.bfloat16, False, False, False),
        ("bf16 channels_last", torch.bfloat16, True, False, False),
    ]
    if args.compile:
        variants.append(("bf16 channels_last compile", torch.bfloat16, True, True, False))
    if args.compile_mode:
        variants.append((f"bf16 cl {args.compile_mode}", torch.bfloat16, True, args.compile_mode,
                         False))  # fmt: skip
    if args.fused:  # the last variant again, with fused SGD
        label, *rest, _ = variants[-1]
        variants.append((f"{label} fused SGD", *rest, True))
    for name in args.models:
        base = best = None
        for label, dtype, cl, comp, fused in variants:
            rate, flops = measure(name, args.batch_size, args.device, dtype, cl, comp, args.steps,
                                  args.warmup, fused)  # fmt: skip
            base = base or rate
            best = max(best or 0.0, rate)
            mfu = ""
            if args.peak_tflops:
                mfu = f"  MFU {100 * rate * flops / (args.peak_tflops * 1e12):.1f}%"
            print(
                f"{name:20s} {label:27s} {rate:9.1f} img/s  ratio {rate / base:5.2f}x  "
                f"({flops / 1e9:.2f} GFLOP/img fwd+bwd){mfu}"
            )
        if name == "iresnet50":
            print(
                f"iresnet50 best {best:.0f} img/s = {best / ARCFACE_TORCH_R50_PER_GPU:.2f}x "
                f"arcface_torch's published {ARCFACE_TORCH_R50_PER_GPU} img/s per GPU "
                "(5.6k on 8 GPUs); goal on one H100: >= 8,000 img/s"
            )


if __name__ == "__main__":
    main()
