#!/usr/bin/env bash
# fgvc.report on real birds: a short tf_efficientnet_lite0 run on ../shared/data/cub200-mini (recipes/cub200_lite0.yaml,
# 160 px, the recipe's 6 epochs, CPU), its HTML report checked in headless Chromium (screenshot), its Grad-CAM grid and t-SNE map.
# Writes benchmarks/results/report/{report.html, report_top.png, report_full.jpg, gradcam_grid.jpg, tsne.png, README.md}.
#   bash benchmarks/report_example.sh            # RUN=runs/report-example, SHARED=../shared by default
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
RUN=${RUN:-runs/report-example}
OUT=benchmarks/results/report
mkdir -p "$OUT"
t0=$(date +%s)
if [ ! -f "$RUN/final.json" ]; then
  python -m fgvc.train recipes/cub200_lite0.yaml --output "$RUN" --set "data.root=$SHARED/data/cub200-mini" \
    "model.pretrained_file=$SHARED/weights/tf_efficientnet_lite0.safetensors" train.device=cpu
fi
python -m fgvc.report "$RUN" --out "$OUT/report.html"
python -m fgvc.explain "$RUN" --n 16 --cam gradcam --output "$RUN/explain"
python -c "import sys; from PIL import Image; Image.open(sys.argv[1]).convert('RGB').save(sys.argv[2], quality=85)" "$RUN/explain/grid.png" "$OUT/gradcam_grid.jpg"
python -m fgvc.project "$RUN" --method tsne --out "$OUT/tsne.png"
python - "$OUT" <<'PY'
import sys
from pathlib import Path
from PIL import Image
from fgvc.vis.browser import check_page
out = Path(sys.argv[1])
page = check_page(out / "report.html", out / "report_full.png", click="table.sortable th:nth-child(5)")
full = Image.open(out / "report_full.png").convert("RGB")
full.crop((0, 0, full.width, min(full.height, 1400))).save(out / "report_top.png")
small = full.resize((full.width // 2, full.height // 2))
small.save(out / "report_full.jpg", quality=80)
(out / "report_full.png").unlink()
print(f"browser: {len(page.errors)} console errors, {page.n_images} images, {len(page.broken_images)} broken, "
      f"sections {page.headings}")
PY
echo "total $(( $(date +%s) - t0 )) s"
