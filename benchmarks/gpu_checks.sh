#!/usr/bin/env bash
# Every GPU-only check of this repository on one CUDA machine, most important first, each
# bounded in time so that a run cut short still leaves the first results. Runs from a
# source checkout without installing it (PYTHONPATH), as on a machine without a registry.
#
#   bash benchmarks/gpu_checks.sh [OUT]      # logs in OUT (default: gpu-checks/), one per step
#   DEVICE=cpu bash benchmarks/gpu_checks.sh # the same steps on the CPU (the gpu tests skip)
#   STEPS="image-mix recipe-throughput" bash benchmarks/gpu_checks.sh   # only the steps named
#
# Steps (name: what, limit), most important first:
#   gpu-tests: the gpu-marked tests, sync-debug "error" mode among them (180 s)
#   train-step-compiled: PreAct ResNet-18's step compiled whole with CUDA graphs (reduce-overhead),
#     batch 128 then 512, against the compiled step without mixing and timm's eager mixup, with
#     its syncs (200 s; a batch size's rows are kept when a later one is cut)
#   adapters-224, adapters-32: the adapter table (ms, ratio to CutMix, read-backs, kernels, CUDA
#     syncs, GPU time) at 224 and 32 px (50 s, 40 s)
#   train-step-adapters: what each adapter adds to a training step (110 s)
#   image-mix: the mixing table against timm and torchvision (80 s)
#   train-step-autotune: the compiled step again with max-autotune-no-cudagraphs (200 s)
#   recipe-throughput: the image recipe's step at the paper's settings eager, compiled whole and
#     compiled without mixing (300 s, most of it compiling)
# A device call of 600 s holds gpu-tests through train-step-adapters (580 s); the other three
# fit a second (580 s): STEPS="image-mix train-step-autotune recipe-throughput".
set -u
out=${1:-gpu-checks}
device=${DEVICE:-cuda}
names="gpu-tests train-step-compiled adapters-224 adapters-32 train-step-adapters"
names+=" image-mix train-step-autotune recipe-throughput"
for name in ${STEPS:-}; do  # refused before anything runs
    if [[ " $names " != *" $name "* ]]; then
        echo "gpu_checks.sh: STEPS names an unknown step '$name'; choose from: $names" >&2
        exit 2
    fi
done
mkdir -p "$out"
recipes=$(mktemp -d)  # the recipes import as multimix_recipes, their installed name
ln -s "$PWD/recipes" "$recipes/multimix_recipes"
export PYTHONPATH="$PWD:$recipes${PYTHONPATH:+:$PYTHONPATH}"

step() {  # step NAME SECONDS COMMAND...: run with a time limit, keep the log, show its end
    local name=$1 limit=$2
    shift 2
    if [ -n "${STEPS:-}" ] && [[ " $STEPS " != *" $name "* ]]; then return; fi
    echo "== $name (at most ${limit} s): $*"
    timeout "$limit" "$@" > "$out/$name.log" 2>&1
    echo "exit status $?" >> "$out/$name.log"
    cp benchmarks/results/*.csv "$out/" 2> /dev/null  # the raw rows beside the logs, for a machine where only OUT is kept
    tail -n 14 "$out/$name.log"
}

workers=$(python3 -c "import xdist" 2>/dev/null && echo "-n 4")  # pytest-xdist where installed: 115 tests in ~50 s
if [ "$device" = cuda ]; then
    compiled=(--device cuda --rounds 10)
else  # a check that it runs: tiny, and aot_eager (inductor's C++ compile takes minutes on a CPU)
    compiled=(--device cpu --backend aot_eager --batches 4 --size 8 --rounds 2 --steps 1 --no-csv)
fi
step gpu-tests 180 python3 -m pytest -m gpu -p no:cacheprovider -o addopts="" -q $workers
step train-step-compiled 200 python3 benchmarks/train_step.py --compile reduce-overhead "${compiled[@]}"
step adapters-224 50 python3 benchmarks/image_mix.py --adapters-only --device "$device"
step adapters-32 40 python3 benchmarks/image_mix.py --adapters-only --size 32 --device "$device"
step train-step-adapters 110 python3 benchmarks/train_step.py --adapters --bert none --rounds 8 --device "$device"
step image-mix 80 python3 benchmarks/image_mix.py --device "$device" --no-memory --no-adapters
step train-step-autotune 200 python3 benchmarks/train_step.py --compile max-autotune-no-cudagraphs "${compiled[@]}"
if [ "$device" = cuda ]; then
    step recipe-throughput 300 python3 benchmarks/recipe_throughput.py --device cuda --images 20000 --epochs 3
else  # a check that it runs: tiny, and aot_eager (inductor's C++ compile takes minutes on a CPU)
    step recipe-throughput 300 python3 benchmarks/recipe_throughput.py --device cpu --images 256 --batch-size 32 \
        --model small_cnn --backend aot_eager --epochs 2 --no-csv
fi
rm -rf "$recipes"
