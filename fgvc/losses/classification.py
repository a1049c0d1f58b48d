"""Classification criteria (``loss.name``), each ``forward(logits: B, K, targets: B or soft B, K) -> scalar``:

* ``cross_entropy``: with label smoothing (Szegedy et al. 2016, "Rethinking the Inception Architecture", CVPR),
  and the soft-target cross-entropy used with Mixup/CutMix (timm's).
* ``focal``: focal loss (Lin, Goyal, Girshick, He & Dollar 2017, "Focal Loss for Dense Object Detection",
  ICCV, arXiv:1708.02002), ``-alpha_y (1 - p_y)^gamma log p_y``; ``gamma = 0`` and no ``alpha`` is cross-entropy.
* ``weighted_cross_entropy``: cross-entropy with class weights from the train split's class frequencies,
  ``w_c proportional to n_c^-power``, for long-tailed training sets.

Soft targets ``q: B, K`` (Mixup) generalise each loss to ``-sum_k q_k (...)_k``, which is the hard-label loss for
one-hot ``q``.
"""
from __future__ import annotations

from typing import ClassVar, Sequence

import torch
import torch.nn.functional as F
from timm.loss import SoftTargetCrossEntropy
from torch import Tensor, nn

from fgvc.errors import ConfigError
from fgvc.registry import LOSSES

__all__ = ["CrossEntropy", "FocalLoss", "WeightedCrossEntropy", "class_weights"]


@LOSSES.register("cross_entropy")
class CrossEntropy(nn.Module):
    """Cross-entropy over ``logits: B, K``; targets are class indices ``B`` or soft ``B, K`` (Mixup)."""

    inputs: ClassVar[str] = "logits"

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


@LOSSES.register("focal")
class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017): ``mean_i -alpha_{y_i} (1 - p_{i,y_i})^gamma log p_{i,y_i}``.

    ``gamma`` (>= 0) down-weights well-classified images (the paper's 2); ``alpha`` is the class weight: one
    number for every class (the paper's 0.25 is its foreground weight in the binary case), a list of ``K``
    per-class weights, or null for 1. Computed in fp32.
    """

    inputs: ClassVar[str] = "logits"

    def __init__(self, gamma: float = 2.0, alpha: float | Sequence[float] | None = None) -> None:
        super().__init__()
        if gamma < 0:
            raise ConfigError(f"loss.args.gamma (focal loss) must be >= 0, got {gamma}; 0 is cross-entropy, 2 the "
                              "paper's")
        self.gamma = float(gamma)
        weight = None if alpha is None else torch.as_tensor(alpha, dtype=torch.float32).reshape(-1)  # 1 or K
        if weight is not None and bool((weight <= 0).any()):
            raise ConfigError(f"loss.args.alpha (focal loss) must be > 0, got {alpha}")
        self.register_buffer("alpha", weight, persistent=False)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        logp = F.log_softmax(logits.float(), dim=1)  # B, K
        q = targets.float() if targets.ndim == 2 else F.one_hot(targets.long(), logp.shape[1]).float()  # B, K
        terms = -q * (1.0 - logp.exp()).pow(self.gamma) * logp  # B, K
        if self.alpha is not None:
            if self.alpha.numel() not in (1, logp.shape[1]):
                raise ConfigError(f"loss.args.alpha has {self.alpha.numel()} weights but the data has "
                                  f"{logp.shape[1]} classes: give one number or one per class")
            terms = terms * self.alpha.to(logp.device)
        return terms.sum(1).mean()


def class_weights(class_counts: Sequence[int] | Tensor, power: float = 1.0) -> Tensor:
    """``K`` weights ``w_c = n_c^-power``, scaled so that the mean weight over the training images is 1
    (``sum_c n_c w_c = N``; with ``power = 1`` that is ``N / (K n_c)``, scikit-learn's "balanced"). A class with no
    image counts as one (it never is a training target)."""
    n = torch.as_tensor(class_counts, dtype=torch.float64).reshape(-1).clamp_min(1.0)  # K
    w = n.pow(-float(power))
    return (w * n.sum() / (w * n).sum()).float()


@LOSSES.register("weighted_cross_entropy")
class WeightedCrossEntropy(nn.Module):
    """Cross-entropy with class weights from the train split's class frequencies.

    ``class_counts`` (images per class of the train split, ``K``) is handed over by the builder:
    :func:`fgvc.engine.builder.build_method_from_cfg` passes the train split's ``class_counts()`` to every criterion
    whose signature has a ``class_counts`` argument (a recipe may instead set ``loss.args.class_counts`` itself).
    Without them (a run re-loaded for evaluation, where the criterion is never called) the loss refuses to run.
    Weights are :func:`class_weights` (``power`` 1 = inverse frequency, 0.5 = inverse square root, 0 = plain
    cross-entropy). Hard targets: PyTorch's weighted mean ``sum_i w_{y_i} l_i / sum_i w_{y_i}``; soft targets
    (Mixup): ``mean_i -sum_k w_k q_ik log p_ik``. They are recomputed from the data, not saved in checkpoints.
    """

    inputs: ClassVar[str] = "logits"

    def __init__(self, class_counts: Sequence[int] | None = None, power: float = 1.0,
                 label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"loss.args.label_smoothing must be in [0, 1), got {label_smoothing}")
        if power < 0:
            raise ConfigError(f"loss.args.power (weighted_cross_entropy) must be >= 0, got {power}; 1 = inverse "
                              "frequency, 0.5 = inverse square root")
        self.power, self.label_smoothing = float(power), float(label_smoothing)
        weight = None if class_counts is None else class_weights(class_counts, self.power)
        self.register_buffer("weight", weight, persistent=False)  # K

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        if self.weight is None:
            raise ConfigError("loss weighted_cross_entropy has no class frequencies: the trainer passes the train "
                              "split's class_counts; when building it yourself, give class_counts=[n_0, n_1, ...]")
        if self.weight.numel() != logits.shape[1]:
            raise ConfigError(f"loss weighted_cross_entropy has {self.weight.numel()} class counts but the logits "
                              f"have {logits.shape[1]} classes: loss.args.class_counts must list every class")
        return F.cross_entropy(logits.float(), targets.float() if targets.ndim == 2 else targets,
                               weight=self.weight.to(logits.device), label_smoothing=self.label_smoothing)
