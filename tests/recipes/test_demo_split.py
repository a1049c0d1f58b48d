"""The demo recipe's validation split is large enough to judge the fit: a stratified holdout of at least 200 of the
synthetic set's training images, the same number per class (100 images knew a top-1 near 85 % only to +-7 points)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fgvc.config import load_recipe
from fgvc.data.cub import stratified_holdout
from fgvc.metrics.fit_verdict import wilson_interval

REPO = Path(__file__).resolve().parents[2]


def test_demo_val_split_is_stratified_and_large_enough() -> None:
    cfg, _ = load_recipe(REPO / "recipes" / "demo.yaml")
    args = cfg["data"]["args"]
    assert cfg["data"]["val_split"] == "val"
    train_per_class = args["images_per_class"] // 2  # make_synthetic's test_fraction 0.5
    labels = np.repeat(np.arange(1, args["num_classes"] + 1), train_per_class)
    held = stratified_holdout(labels, args["val_fraction"], args["seed"])
    per_class = np.bincount(labels[held])[1:]
    assert held.sum() >= 200 and per_class.min() == per_class.max()
    lo, hi = wilson_interval(90.0, int(held.sum()))
    assert hi - lo < 8.0  # the 95 % interval of a 90 % top-1: +-4 points at most
    assert (~held).sum() >= 600  # still most of the training images to learn from
