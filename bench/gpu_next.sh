#!/usr/bin/env bash
# What issue 17 (task 10) still needs from a lent GPU, prepared as two calls of under 10
# minutes each (docs/benchmarks.md, "On a GPU: what is left"):
#
#   bash bench/gpu_next.sh recipes      # ~7 min: two from-scratch recipes side by side
#   bash bench/gpu_next.sh throughput   # ~6 min: make gpu-check's (a), + max-autotune, fused SGD
#
# `recipes` trains a small model that may reach 93% and still fit the repository
# (MobileFaceNet, ~2 MB in half precision; its weights come back in $OUT) and the CPU-budget
# recipe for 60 epochs (is a 2.7-hour CPU schedule worth running?), then evaluates both on
# LFW. The lent machine has no ../shared: carry the bundle made here beforehand with
#   python bench/gpu_bundle.py .gpucarry --train-sets --quality 50   # with the tree, under 64 MiB
# (`run` with carry [".gpucarry"]). Figures and logs go to $OUT (bench/out/gpu-next here).
# Afterwards, here: a MobileFaceNet at ≥ 93% is shipped with
#   facetrain eval OUT/scratch-mobilefacenet-cosface-b256-40.safetensors --pairs \
#       ../shared/datasets/lfw/pairs.txt --images ../shared/datasets/lfw --json EVAL.json
#   .venv/bin/python bench/ship_model.py OUT/scratch-mobilefacenet-cosface-b256-40.safetensors \
#       facetrain_scratch --threshold-from EVAL.json
# (and the facetrain_scratch entry's record in models/pretrained.py updated to its figure).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out/gpu-next}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH=src
case "${1:-}" in
recipes)
    test -d /tmp/datasets || "$PY" bench/gpu_bundle.py --unbundle .gpucarry /tmp
    "$PY" bench/gpu_recipes.py --data /tmp/datasets --out "$OUT" --work /tmp/gpu-next \
        --deadline-s 390 --set amp=bf16 \
        recipes/scratch-mobilefacenet-cosface-b256-40.toml \
        recipes/scratch-cosface512-b256-60.toml 2>&1 | tee "$OUT/recipes-log.txt"
    ;;
throughput)
    timeout 560 "$PY" bench/gpu_check.py --out "$OUT" --stages a \
        --compile-mode max-autotune-no-cudagraphs 2>&1 | tee "$OUT/throughput-log.txt"
    ;;
*)
    echo "usage: bash bench/gpu_next.sh recipes|throughput" >&2
    exit 2
    ;;
esac
