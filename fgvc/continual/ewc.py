"""Elastic weight consolidation (Kirkpatrick et al. 2017, "Overcoming catastrophic forgetting in neural networks",
PNAS, arXiv:1612.00796), for ``fgvc.extend``'s fine-tune.

The parameters that the old classes relied on are held near their old values ``w_old`` by the penalty
``lambda / 2 * sum_i F_i (w_i - w_old_i)^2``, with ``F`` the diagonal of the Fisher information of the old task at
``w_old``. :func:`diagonal_fisher` estimates it as the *empirical* Fisher, as most implementations do: the mean
over old training images of the squared gradient of ``log p(y | x)`` at the image's own label, one image at a
time (the paper samples ``y`` from the model instead; on a trained model the two are close). The model is in eval
mode while the Fisher is taken, so BatchNorm uses its running statistics and images do not interact.

:class:`EWCPenalty` is a :attr:`fgvc.methods.base.Method.penalties` entry: the trainer adds it to every training
step's loss and logs it as ``ewc`` in ``metrics.jsonl``.
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["diagonal_fisher", "EWCPenalty"]


def diagonal_fisher(logits_fn: Callable[[Tensor], Tensor], params: Mapping[str, nn.Parameter],
                    samples: Iterable[tuple[Tensor, int]]) -> tuple[dict[str, Tensor], int]:
    """``({name: F}, images used)``: ``F = mean_n (d log p(y_n | x_n) / d w)^2`` for each parameter of ``params``
    (fp32, on the parameter's device), over ``samples`` of ``(image C, H, W, label)``; ``logits_fn`` maps a batch
    ``1, C, H, W`` to logits ``1, K``. Parameters no logit depends on get no entry."""
    names = list(params)
    sums: dict[str, Tensor] = {}
    n = 0
    for image, label in samples:
        logits = logits_fn(image[None]).float()  # 1, K
        nll = F.cross_entropy(logits, torch.tensor([int(label)], device=logits.device))  # -log p(y | x)
        grads = torch.autograd.grad(nll, [params[k] for k in names], allow_unused=True)
        for k, g in zip(names, grads):
            if g is not None:
                sq = g.detach().float() ** 2
                sums[k] = sums[k] + sq if k in sums else sq
        n += 1
    return {k: v / max(n, 1) for k, v in sums.items()}, n


class EWCPenalty:
    """``lam / 2 * sum_i F_i (w_i - w_old_i)^2`` over the parameters that have a Fisher entry; ``w_old`` is their
    value when the penalty is made (the start of the fine-tune)."""

    def __init__(self, params: Mapping[str, nn.Parameter], fisher: Mapping[str, Tensor], lam: float) -> None:
        if lam < 0:
            raise ValueError(f"the EWC strength lambda must be >= 0, got {lam}")
        self.lam = float(lam)
        self.terms = [(p, fisher[k].to(p.device), p.detach().float().clone()) for k, p in params.items() if k in fisher]

    def __call__(self) -> Tensor:
        if not self.terms:
            return torch.zeros(())
        total = sum((f * (p.float() - old) ** 2).sum() for p, f, old in self.terms)
        return 0.5 * self.lam * total  # type: ignore[return-value]
