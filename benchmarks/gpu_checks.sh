#!/usr/bin/env bash
# Every GPU-only check of this repository on one CUDA machine, most important first, each
# bounded in time so that a short lease still returns the first results. Runs from a
# source checkout without installing it (PYTHONPATH), as on a machine without a registry.
#
#   bash benchmarks/gpu_checks.sh [OUT]      # logs in OUT (default: gpu-checks/), one per step
#   DEVICE=cpu bash benchmarks/gpu_checks.sh # the same steps on the CPU (the gpu tests skip)
#
# Steps: the gpu-marked tests (sync-debug "error" mode among them), the adapter table at
# 224 and 32 px (ms, ratio to CutMix, read-backs, kernels), the mixing table against timm
# and torchvision, and the image recipe's throughput.
set -u
out=${1:-gpu-checks}
device=${DEVICE:-cuda}
mkdir -p "$out"
recipes=$(mktemp -d)  # the recipes import as multimix_recipes, their installed name
ln -s "$PWD/recipes" "$recipes/multimix_recipes"
export PYTHONPATH="$PWD:$recipes${PYTHONPATH:+:$PYTHONPATH}"

step() {  # step NAME SECONDS COMMAND...: run with a time limit, keep the log, show its end
    local name=$1 limit=$2
    shift 2
    echo "== $name (at most ${limit} s): $*"
    timeout "$limit" "$@" > "$out/$name.log" 2>&1
    echo "exit status $?" >> "$out/$name.log"
    tail -n 14 "$out/$name.log"
}

step gpu-tests 300 python -m pytest -m gpu -p no:cacheprovider -o addopts="" -q
step adapters-224 120 python benchmarks/image_mix.py --adapters-only --device "$device"
step adapters-32 60 python benchmarks/image_mix.py --adapters-only --size 32 --device "$device"
step image-mix 180 python benchmarks/image_mix.py --device "$device" --no-memory
step recipe-throughput 240 python benchmarks/recipe_throughput.py --device "$device"
rm -rf "$recipes"
