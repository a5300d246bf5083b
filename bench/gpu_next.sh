#!/usr/bin/env bash
# What issue 33 needs from a lent GPU, prepared as two calls that fit its 15 device minutes
# (docs/benchmarks.md, "On a GPU: what is left"). Each call carries its own bundle: the
# training faces and the photos to scan do not fit one call's 64 MiB beside the tree.
#
#   bash bench/gpu_next.sh train   # call 1, ~7 min: three from-scratch models small enough to
#                                  #   ship, side by side, each evaluated on LFW's pairs
#   bash bench/gpu_next.sh scan    # call 2, ~4 min: `library scan` on the CPU and on cuda,
#                                  #   then iresnet50's training step (make gpu-check's (a))
# With a minute or more to start the machine and ~40 s to carry each call, that is ~14 of
# the 15 device minutes: no room for a rerun.
#
# Make the bundles here first (both ignored by git; `run`'s carry names one per call):
#   .venv/bin/python bench/gpu_bundle.py .gpucarry --train-sets --quality 50 --lfw-quality 55
#       (45.7 MB: with the tree's 19.3 MB, 65.1 of the 67.1 MB a call carries)
#   .venv/bin/python bench/gpu_bundle.py .gpucarry-scan --scan          (39 MB)
# and call `run` with carry [".gpucarry"], timeout_s 480, command `bash bench/gpu_next.sh
# train`; then at once (the machine stays warm 30 s) carry [".gpucarry-scan"], timeout_s 300,
# `bash bench/gpu_next.sh scan`. Figures and logs go to $OUT (bench/out/gpu-next here).
#
# Afterwards, here: a model at >= 93% (the best of the three) is shipped with
#   facetrain eval OUT/NAME.safetensors --pairs ../shared/datasets/lfw/pairs.txt \
#       --images ../shared/datasets/lfw --json EVAL.json
#   .venv/bin/python bench/ship_model.py OUT/NAME.safetensors facetrain_scratch \
#       --threshold-from EVAL.json
# (and the facetrain_scratch entry's record in inference/pretrained.py updated to its figure).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out/gpu-next}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH=src
case "${1:-}" in
train)
    test -d /tmp/datasets || "$PY" bench/gpu_bundle.py --unbundle .gpucarry /tmp
    # 3,810 steps of 256 for the half-width IResNets, 5,080 for MobileFaceNet: about 16 steps
    # a second each on the H100 side by side (host-bound), so the deadline leaves MobileFaceNet
    # the only one that may not finish; a run that has trained all its epochs gets 90 s more
    "$PY" bench/gpu_recipes.py --data /tmp/datasets --out "$OUT" --work /tmp/gpu-next \
        --deadline-s "${DEADLINE:-330}" --set amp=bf16 \
        recipes/scratch-iresnet18-050-cosface-b256-30.toml \
        recipes/scratch-iresnet34-050-cosface-b256-30.toml \
        recipes/scratch-mobilefacenet-cosface-b256-40.toml 2>&1 | tee "$OUT/recipes-log.txt"
    ;;
scan)
    export PYTHONPATH=src:.gpucarry-scan/site # MTCNN's weights: facenet-pytorch's folder
    # 2,963 photos (most of them small crops); 52.7 s with 2 workers on the 2-core AMD EPYC
    timeout 150 "$PY" bench/scan_devices.py .gpucarry-scan/scan-photos --out "$OUT" \
        --model .gpucarry-scan/dlib_resnet-fp16.safetensors --setting "cpu:$(nproc)" \
        --setting cuda:4 --setting cuda:1 2>&1 | tee "$OUT/scan-log.txt" || true
    # eager and batch 512 were measured on the H100 (4,725 and 5,925 images/s): here the
    # compiled baseline again (6,069 there), and CUDA graphs with fused SGD beside it
    timeout 120 "$PY" bench/gpu_check.py --out "$OUT" --stages a \
        --variants compile,reduce-overhead 2>&1 | tee "$OUT/throughput-log.txt"
    ;;
*)
    echo "usage: bash bench/gpu_next.sh train|scan" >&2
    exit 2
    ;;
esac
