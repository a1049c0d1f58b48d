#!/usr/bin/env bash
# Real-data check on a CPU: fine-tune tf_efficientnet_lite0 from its ImageNet weights, and the same network
# from scratch, on the mini Oxford Flowers 102 (12 classes) and CUB-200-2011 (20 classes) sets in ../shared.
# Final-epoch test metrics (never best-on-test) go to runs/mini/*/final.json; the table to
# benchmarks/results/mini_sets.md (via fgvc.bench report), with the command, machine and date.
#   bash benchmarks/mini_sets.sh            # EPOCHS=8 IMG=160 by default
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
W=$SHARED/weights/tf_efficientnet_lite0.safetensors
EPOCHS=${EPOCHS:-8}
IMG=${IMG:-160}
RESIZE=$(( IMG * 8 / 7 ))
common="data.img_size=$IMG data.resize=$RESIZE train.epochs=$EPOCHS train.device=cpu"
for ds in flowers102 cub200; do
  bs=32; [ $ds = flowers102 ] && bs=16   # 120 training images: smaller batches give more updates
  for init in pretrained scratch; do
    if [ $init = pretrained ]; then w="model.pretrained_file=$W"; else w="model.pretrained=false"; fi
    out=runs/mini/${ds}_lite0_$init
    rm -rf "$out"
    python -m fgvc.train recipes/${ds}_lite0.yaml --output "$out" \
      --set data.root=$SHARED/data/${ds}-mini $w $common train.batch_size=$bs
  done
done
python -m fgvc.bench report runs/mini/* --out benchmarks/results/mini_sets.md
{
  echo; echo "- command: \`bash benchmarks/mini_sets.sh\` (EPOCHS=$EPOCHS IMG=$IMG)"
  echo "- machine: $(uname -srm), $(nproc) cores, torch $(python -c 'import torch; print(torch.__version__)'), CPU only"
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
} >> benchmarks/results/mini_sets.md
