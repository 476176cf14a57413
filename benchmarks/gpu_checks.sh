#!/usr/bin/env bash
# Every GPU-only check of this repository on one CUDA machine, most important first, each
# bounded in time so that a run cut short still leaves the first results. Runs from a
# source checkout without installing it (PYTHONPATH), as on a machine without a registry.
#
#   bash benchmarks/gpu_checks.sh [OUT]      # logs in OUT (default: gpu-checks/), one per step
#   DEVICE=cpu bash benchmarks/gpu_checks.sh # the same steps on the CPU (the gpu tests skip)
#
# Steps: the gpu-marked tests (sync-debug "error" mode among them), the adapter table at
# 224 and 32 px (ms, ratio to CutMix, read-backs, kernels, CUDA syncs, GPU time), what each
# adapter adds to a training step, the mixing table against timm and torchvision (at most
# 460 s), then the image recipe's step at the paper's settings (PreAct ResNet-18, batch 128)
# eager, compiled whole and compiled without mixing (at most 300 s, most of it compiling).
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

workers=$(python3 -c "import xdist" 2>/dev/null && echo "-n 4")  # pytest-xdist where installed: 115 tests in ~50 s
step gpu-tests 180 python3 -m pytest -m gpu -p no:cacheprovider -o addopts="" -q $workers
step adapters-224 50 python3 benchmarks/image_mix.py --adapters-only --device "$device"
step adapters-32 40 python3 benchmarks/image_mix.py --adapters-only --size 32 --device "$device"
step train-step-adapters 110 python3 benchmarks/train_step.py --adapters --bert none --rounds 8 --device "$device"
step image-mix 80 python3 benchmarks/image_mix.py --device "$device" --no-memory --no-adapters
if [ "$device" = cuda ]; then
    step recipe-throughput 300 python3 benchmarks/recipe_throughput.py --device cuda --images 20000 --epochs 3
else  # a check that it runs: tiny, and aot_eager (inductor's C++ compile takes minutes on a CPU)
    step recipe-throughput 300 python3 benchmarks/recipe_throughput.py --device cpu --images 256 --batch-size 32 \
        --model small_cnn --backend aot_eager --epochs 2 --no-csv
fi
rm -rf "$recipes"
