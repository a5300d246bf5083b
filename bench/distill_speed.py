"""Faces/s of a student and its teacher on this machine, measured in one run.

Each model embeds prepared inputs of its own size (the student's 112², the teacher's 150²
for dlib's ResNet) at batch 1 and batch 64, best of 3 passes over 128 faces; the
student/teacher ratio is printed for each batch size, the one for batch 64 last.

    .venv/bin/python bench/distill_speed.py [STUDENT] [--teacher pretrained:dlib_resnet]

STUDENT is a run folder or model file; without one, an untrained `mobilefacenet` (speed
does not depend on the weights).
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from facetrain.devices import cpu_name
from facetrain.inference.saved import open_model
from facetrain.models import create_model


def rate(net, size: int, batch: int, faces: int = 128, repeat: int = 3) -> float:
    x = torch.rand(batch, 3, size, size) * 255
    best = float("inf")
    with torch.inference_mode():
        net(x)  # warm-up
        for _ in range(repeat):
            t0 = time.perf_counter()
            for _ in range(max(1, faces // batch)):
                net(x)
            best = min(best, time.perf_counter() - t0)
    return max(1, faces // batch) * batch / best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("student", nargs="?")
    ap.add_argument("--teacher", default="pretrained:dlib_resnet")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t = open_model(args.teacher)
    if args.student:
        s = open_model(args.student)
        student, s_size, s_name = s.module.eval(), s.pre.input_size, args.student
    else:
        student = create_model("mobilefacenet", 128).eval()
        s_size, s_name = student.input_size, "mobilefacenet (untrained)"
    print(
        f"{cpu_name()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    )
    print(f"student {s_name} at {s_size}², teacher {args.teacher} at {t.pre.input_size}²")
    for batch in (1, 64):
        a = rate(student, s_size, batch)
        b = rate(t.module.eval(), t.pre.input_size, batch)
        print(
            f"batch {batch:2d}: student {a:7.1f} faces/s, teacher {b:7.1f} faces/s, "
            f"ratio {a / b:.2f}x"
        )


if __name__ == "__main__":
    main()
