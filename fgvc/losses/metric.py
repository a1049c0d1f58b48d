"""Deep-metric-learning losses from pytorch-metric-learning (PML), as ``loss.aux`` feature losses.

* ``multi_similarity``: Wang, Han, Huang, Dong & Scott 2019, "Multi-Similarity Loss with General Pair Weighting
  for Deep Metric Learning", CVPR, arXiv:1904.06627 - PML's ``MultiSimilarityLoss`` (``alpha``, ``beta``,
  ``base`` = the paper's lambda) on the pairs its ``MultiSimilarityMiner`` keeps (``miner_epsilon``, the paper's
  mining step; null uses every pair).
* ``proxy_anchor``: Kim, Kim, Cho & Kwak 2020, "Proxy Anchor Loss for Deep Metric Learning", CVPR,
  arXiv:2003.13911 - PML's ``ProxyAnchorLoss`` (``margin`` delta, ``alpha``), with one learnable proxy per class.
  The proxies are parameters of this module, so they are in the method's parameters, its ``param_groups`` and
  the optimizer like a center loss's centers; the paper trains them at 100x the learning rate: set
  ``lr_scale: 100`` on the ``loss.aux`` entry (see :meth:`fgvc.methods.base.Method.optimizer_groups`).

Both take ``forward(feats: B, D, targets: B) -> scalar`` on cosine similarities (PML normalises the features),
computed in fp32 with autocast off. The multi-similarity loss needs positive pairs in the batch: use
``data.sampler: pk``. PML is optional: ``pip install fgvc[metric]``; it is imported only when such a loss is built.
"""
from __future__ import annotations

from types import ModuleType
from typing import ClassVar

import torch
from torch import Tensor, nn

from fgvc.errors import ConfigError
from fgvc.registry import LOSSES

__all__ = ["MultiSimilarityLoss", "ProxyAnchorLoss", "import_pml"]


def import_pml(loss: str) -> ModuleType:
    """``pytorch_metric_learning``, or a :class:`ConfigError` saying how to install it."""
    try:
        import pytorch_metric_learning
        import pytorch_metric_learning.losses  # noqa: F401
        import pytorch_metric_learning.miners  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"loss '{loss}' (loss.aux) needs pytorch-metric-learning, which is not installed ({exc}): "
                          "pip install fgvc[metric] (or pip install pytorch-metric-learning), or choose another loss "
                          "such as triplet") from None
    return pytorch_metric_learning


class _PMLLoss(nn.Module):
    """Calls a PML loss on fp32 features, outside autocast."""

    inputs: ClassVar[str] = "features"
    loss: nn.Module
    miner: nn.Module | None = None

    def forward(self, feats: Tensor, targets: Tensor) -> Tensor:
        if targets.ndim == 2:
            targets = targets.argmax(1)
        with torch.autocast(device_type=feats.device.type, enabled=False):
            x = feats.float()  # B, D (PML casts its own parameters to the features' dtype: keep it fp32)
            pairs = self.miner(x, targets) if self.miner is not None else None
            return self.loss(x, targets, pairs).to(feats.dtype)


@LOSSES.register("multi_similarity")
class MultiSimilarityLoss(_PMLLoss):
    """Multi-similarity loss with its pair mining (Wang et al. 2019), through PML."""

    def __init__(self, alpha: float = 2.0, beta: float = 50.0, base: float = 0.5,
                 miner_epsilon: float | None = 0.1) -> None:
        super().__init__()
        pml = import_pml("multi_similarity")
        self.loss = pml.losses.MultiSimilarityLoss(alpha=float(alpha), beta=float(beta), base=float(base))
        self.miner = None if miner_epsilon is None else pml.miners.MultiSimilarityMiner(epsilon=float(miner_epsilon))


@LOSSES.register("proxy_anchor")
class ProxyAnchorLoss(_PMLLoss):
    """Proxy-anchor loss (Kim et al. 2020), through PML; ``num_classes`` and ``feat_dim`` are passed by the method
    (:func:`fgvc.losses.build_aux_losses`). The proxies: ``self.loss.proxies``, ``K, D``."""

    def __init__(self, num_classes: int, feat_dim: int, margin: float = 0.1, alpha: float = 32.0) -> None:
        super().__init__()
        pml = import_pml("proxy_anchor")
        self.loss = pml.losses.ProxyAnchorLoss(num_classes, feat_dim, margin=float(margin), alpha=float(alpha))

    @property
    def proxies(self) -> nn.Parameter:
        return self.loss.proxies  # K, D
