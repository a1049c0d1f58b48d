#!/usr/bin/env bash
# The three speed tables of issue 14 on a CUDA machine, in one go (about five minutes on an H100).
#
#   DATA=path/to/flowers102-mini RUN=path/to/a/trained/run RESULTS=out.jsonl bash benchmarks/gpu_speed.sh
#
# DATA: an Oxford Flowers 102 root (official layout); RUN: a run directory trained on it (for the
# inference table: real weights, real test images). Rows are appended to RESULTS (default
# benchmarks/results/speed.jsonl); `python -m fgvc.bench tables` turns them into results/speed.md.
# DEVICE=cpu IMAGES=32 REPEATS=1 makes a quick dry run of the same commands on a machine without a GPU.
set -u
DATA=${DATA:?set DATA to a flowers102 root}
RUN=${RUN:?set RUN to a run directory trained on DATA}
RESULTS=${RESULTS:-benchmarks/results/speed.jsonl}
DEVICE=${DEVICE:-cuda}
WORKERS=${WORKERS:-8}
IMAGES=${IMAGES:-384}
REPEATS=${REPEATS:-3}
STEP_REPEATS=${STEP_REPEATS:-15}
PY=${PY:-python3}
status=0
step() { echo "== $*"; "$@" || { echo "!! failed ($?): $*"; status=1; }; }

nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || true
for size in 160 448; do
    step $PY -m fgvc.bench pipeline recipes/flowers102_lite0.yaml \
        --set data.root="$DATA" data.img_size=$size \
        --workers "$WORKERS" --images "$IMAGES" --repeats "$REPEATS" --device "$DEVICE" \
        --label "flowers102-mini $size px, $WORKERS workers" --results "$RESULTS"
done
METHODS="recipes/cub200_lite0.yaml recipes/cub200_wsdan_lite0.yaml recipes/cub200_bcnn.yaml recipes/cub200_racnn.yaml"
step $PY -m fgvc.bench steps $METHODS --backbone tf_efficientnet_lite0 --img-size 160 --batch 32 \
    --device "$DEVICE" --repeats "$STEP_REPEATS" --warmup 5 --label "lite0 160 px fp32" --results "$RESULTS"
step $PY -m fgvc.bench steps $METHODS --backbone resnet50 --img-size 448 --batch 16 --amp bf16 \
    --device "$DEVICE" --repeats "$STEP_REPEATS" --warmup 5 --label "resnet50 448 px bf16" --results "$RESULTS"
step $PY -m fgvc.bench infer "$RUN" --checkpoint best --set data.root="$DATA" --device "$DEVICE" --images 64 \
    --paths eager channels_last torchscript compile bf16 fp16 --results "$RESULTS"
exit $status
