#!/usr/bin/env bash
# A real benchmark run on this machine's CPU: CE vs SCHaNe on miniImageNet, from fine-tuning to
# Table 1, using only the `fewshot` CLI (as a user would). Run it with `make bench-mini`
# (DATA_ROOT=/path/to/data, default ../shared/data: a folder holding mini-imagenet/ in the
# Ravi CSV + images/ layout or the mini-imagenet-cache-*.pkl files).
#
# Budget: Conv-4 from scratch at 32x32 px on the 64 base classes (the images available per class),
# two objectives with the same seed, schedule and early stopping; then the full protocol
# (5-way, 1/5-shot, 15 queries, 3,000 episodes, seeds 0 1 2) on the complete test split.
set -euo pipefail
cd "$(dirname "$0")/.."

ROOT=${1:-${DATA_ROOT:-../shared/data}}
OUT=${OUT:-results/mini-imagenet}
EPOCHS=${EPOCHS:-8}
FEWSHOT=${FEWSHOT:-.venv/bin/fewshot}
export FEWSHOT_CACHE_DIR=${FEWSHOT_CACHE_DIR:-$OUT/.cache}

mkdir -p "$OUT"
. benchmarks/_stage.sh  # stage NAME CMD...: run CMD, append its wall time to timings.txt

stage "data check" "$FEWSHOT" data check mini-imagenet --root "$ROOT" --csv "$OUT/data_check.csv"

declare -A LABEL=([ce]="Conv-4 / CE" [schane]="Conv-4 / SCHaNe")
for objective in ce schane; do
    rm -rf "$OUT/runs/$objective"
    stage "finetune $objective" "$FEWSHOT" finetune --backbone conv4 --img-size 32 \
        --dataset mini-imagenet --data-root "$ROOT" --objective "$objective" --lam 0.9 --temperature 0.5 \
        --epochs "$EPOCHS" --batch-size 256 --lr 1e-3 --weight-decay 0.05 --patience 3 --hflip 0.5 \
        --seed 0 --no-progress --out "$OUT/runs/$objective"
    stage "extract $objective" "$FEWSHOT" extract --checkpoint "$OUT/runs/$objective/best" \
        --dataset mini-imagenet --split test --data-root "$ROOT" --no-progress --out "$OUT/features/$objective.npz"
    stage "evaluate $objective" "$FEWSHOT" evaluate --features "$OUT/features/$objective.npz" \
        --protocol episodes/mini-imagenet.toml --label "${LABEL[$objective]}" --out "$OUT/results/$objective"
done

stage "compare" "$FEWSHOT" compare "$OUT/results/ce" "$OUT/results/schane" --baseline "Conv-4 / CE" --out "$OUT/compare.csv"
for fmt in md csv tex; do
    stage "table $fmt" "$FEWSHOT" table "$OUT/results/ce" "$OUT/results/schane" --baseline "Conv-4 / CE" --out "$OUT/table1.$fmt"
done
if [ -f "$OUT/published.csv" ]; then  # quoted rows (method,dataset,n_shot,mean,half_width in %)
    stage "table with published" "$FEWSHOT" table "$OUT/results/ce" "$OUT/results/schane" --baseline "Conv-4 / CE" \
        --quoted "$OUT/published.csv" --out "$OUT/table1_with_published.md"
fi
stage "plot" "$FEWSHOT" plot "$OUT/results/ce" "$OUT/results/schane" --out "$OUT/accuracy.png"
cat "$OUT/table1.md"
echo "total $SECONDS s" | tee -a "$OUT/timings.txt"
