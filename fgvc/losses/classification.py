"""Classification criteria: cross-entropy with label smoothing (Szegedy et al. 2016), and the
soft-target cross-entropy used with Mixup/CutMix (timm's)."""
from __future__ import annotations

from timm.loss import SoftTargetCrossEntropy
from torch import Tensor, nn

from fgvc.registry import LOSSES


@LOSSES.register("cross_entropy")
class CrossEntropy(nn.Module):
    """Cross-entropy over ``logits: B, K``; targets are class indices ``B`` or soft ``B, K`` (Mixup)."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"loss.args.label_smoothing must be in [0, 1), got {label_smoothing}")
        self.hard = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.soft = SoftTargetCrossEntropy()

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        if targets.ndim == 2:  # already-smoothed soft targets from Mixup
            return self.soft(logits, targets)
        return self.hard(logits, targets)
