"""Helpers of the deploy tests."""
from __future__ import annotations

from pathlib import Path

import torch

from fgvc.engine.inference import TrainedRun


def files_under(folder: Path) -> set[Path]:
    """Every file and folder below ``folder`` (to check that a failed command left nothing behind)."""
    return set(folder.rglob("*"))


# small but non-degenerate settings per method (WS-DAN: a 2 x 2 map and min-max boxes, so the test-time crop differs
# per image; compact bilinear: 96 channels into 64 bins, a dense sketch)
CASES = {
    "baseline": [],
    "senet": [],
    "cbam": [],
    "bcnn": ["model.args.reduce_dim=8"],
    "bcnn_compact": ["model.args.pooling=compact", "model.args.compact_dim=64"],
    "wsdan": ["model.args.num_attentions=4", "model.args.test_theta=0.5", "model.args.test_norm=minmax",
              "model.args.test_padding=0.0", "data.img_size=64", "data.resize=72"],
    "racnn": ["model.args.share_backbone=true", "model.args.apn_hidden=16", "model.args.apn_channels=4",
              "model.args.apn_grid=2"],
    "simclr": ["model.args.proj_dim=8"],
}


def untrained(recipe: Path, case: str) -> TrainedRun:
    """The recipe's method (random init), its weights shaken so that every logit, map and box is non-trivial."""
    run = TrainedRun.from_recipe(recipe, overrides=[f"model.name={case.split('_')[0]}", *CASES[case]])
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in run.method.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
        if case == "wsdan":  # random 1x1 attention convs can be negative everywhere: maps, parts, logits all 0
            run.method.attention[1].bias.copy_(torch.randn(4, generator=g) * 0.1)
    return run
