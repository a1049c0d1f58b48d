"""Self-supervised contrastive pretraining: SimCLR, with an optional memory of past embeddings as extra negatives.

* Chen, Kornblith, Norouzi & Hinton 2020, "A Simple Framework for Contrastive Learning of Visual Representations"
  (SimCLR), ICML, arXiv:2002.05709: two augmented views of each image (:mod:`fgvc.data.views`), an encoder (here the
  backbone's pooled embedding), a projection head (a 2-layer MLP, ``dim -> hidden -> 128``) and the NT-Xent loss at a
  temperature, where the other view of the same image is the positive and the ``2B - 2`` other views are negatives.
* He, Fan, Wu, Xie & Girshick 2020, "Momentum Contrast for Unsupervised Visual Representation Learning" (MoCo),
  CVPR, arXiv:1911.05722: more negatives from a queue of past embeddings. ``queue_size > 0`` keeps the last
  ``queue_size`` projected views in pytorch-metric-learning's ``CrossBatchMemory`` (Wang et al. 2020, XBM) as
  negatives; unlike MoCo there is no momentum encoder, so the queued embeddings come from the encoder as it was when
  they were made (a memory bank; with small learning rates it drifts little).
* You, Gitman & Ginsburg 2017, "Large Batch Training of Convolutional Networks" (LARS), arXiv:1708.03888: the
  optimizer SimCLR trains with at large batches, ``train.optimizer: lars`` (:mod:`fgvc.engine.optim`).
* ``supcon: true``: Khosla et al. 2020, "Supervised Contrastive Learning": the views of every image of the same class
  are positives (PML's ``SupConLoss``); only where the data have labels.

The loss is pytorch-metric-learning's ``NTXentLoss`` / ``SupConLoss`` (``pip install fgvc[metric]``), on the two
views' projections with label ``i`` for both views of image ``i`` (unique across steps, so queued views are never
positives). Training batches are the two views stacked along the height (``B, 3, 2S, S``: :meth:`SimCLR.data_config`
asks the trainer for the two-view transform of ``data.augment.simclr``, so the loader, device normalisation and
channels-last stay as they are); :meth:`SimCLR.training_step` splits them.

What the encoder learns never depends on labels (unless ``supcon``). ``infer()`` returns the embedding before the
projection head (what ``fgvc.embed`` and ``fgvc.evaluate --protocol knn|linear|retrieval`` score) and, as logits, an
*online linear probe* (``probe``): a linear classifier trained on the detached embedding with the data's labels (its
gradient never reaches the encoder). It lets the trainer's validation and ``final.json`` say something, but it is a
weak classifier; score an SSL run with ``--protocol knn`` or ``linear``. On ``data.name: unlabeled`` there is one
pseudo-class and the probe says nothing.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fgvc.errors import ConfigError
from fgvc.losses.metric import import_pml
from fgvc.methods.base import Method, MethodSetup, Outputs, hard_labels
from fgvc.registry import METHODS

__all__ = ["SimCLR", "split_views", "projection_head"]


def projection_head(dim: int, hidden: int, out: int) -> nn.Sequential:
    """SimCLR's projection head: ``Linear(dim, hidden) - ReLU - Linear(hidden, out)``."""
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out))


def split_views(images: Tensor) -> tuple[Tensor, Tensor]:
    """``B, 3, 2S, S`` (two views stacked along the height) -> two ``B, 3, S, S`` batches."""
    h, w = images.shape[-2:]
    if h != 2 * w:
        raise ConfigError(f"method simclr trains on two views of each image stacked along the height (B, 3, 2S, S), "
                          f"got a batch of {h} x {w} images: build its training transform with the data_config() "
                          "of the method (two_views), as fgvc.engine.builder.build_transform does")
    return images[..., :w, :], images[..., w:, :]


@METHODS.register("simclr")
class SimCLR(Method):
    """SimCLR (see the module docstring). ``model.args``: ``proj_dim`` (128), ``proj_hidden`` (None: the
    embedding's width), ``temperature`` (0.1), ``queue_size`` (0: no memory), ``supcon`` (False), ``probe`` (True:
    the online linear probe's loss is added; its weight ``probe_weight``)."""

    def __init__(self, setup: MethodSetup, proj_dim: int = 128, proj_hidden: int | None = None,
                 temperature: float = 0.1, queue_size: int = 0, supcon: bool = False, probe: bool = True,
                 probe_weight: float = 1.0) -> None:
        super().__init__(setup)
        if temperature <= 0:
            raise ConfigError(f"model.args.temperature must be > 0, got {temperature}")
        if queue_size < 0:
            raise ConfigError(f"model.args.queue_size must be >= 0 (0: no memory queue), got {queue_size}")
        self.backbone = setup.backbone.build()
        dim = self.backbone.num_features
        self.projector = projection_head(dim, int(proj_hidden or dim), int(proj_dim))  # B, C -> B, 128
        self.probe = nn.Linear(dim, setup.num_classes)  # B, C (detached) -> B, K
        self.use_probe, self.probe_weight = bool(probe), float(probe_weight)
        self.supcon, self.temperature, self.queue_size = bool(supcon), float(temperature), int(queue_size)
        pml = import_pml("simclr")
        inner = pml.losses.SupConLoss(self.temperature) if supcon else pml.losses.NTXentLoss(self.temperature)
        self.contrastive: nn.Module = inner
        if queue_size:
            self.contrastive = pml.losses.CrossBatchMemory(inner, int(proj_dim), memory_size=int(queue_size))
        self.seen = 0  # images trained on: makes the instance labels unique across steps (extra state)
        self.add_feature_losses(dim)

    # --------------------------------------------------------------- inference
    def infer(self, images: Tensor) -> Outputs:
        fmap, emb = self.backbone.forward_pooled(images)  # B, C, h, w ; B, C
        return Outputs({"probe": self.probe(emb)}, "probe", emb, fmap)

    def data_config(self) -> dict[str, Any]:
        """The backbone's normalisation, and ``two_views``: train on SimCLR's two-view transform."""
        return {**self.backbone.data_config(), "two_views": True}

    # ---------------------------------------------------------------- training
    def contrastive_loss(self, z1: Tensor, z2: Tensor, targets: Tensor | None = None) -> Tensor:
        """NT-Xent (or SupCon with ``targets``) of the projections ``z1, z2: B, D`` of the two views."""
        b = z1.shape[0]
        if self.supcon:
            if targets is None:
                raise ConfigError("model.args.supcon needs labels")
            labels = hard_labels(targets).repeat(2)  # 2B
        else:
            labels = (torch.arange(b, device=z1.device) + self.seen).repeat(2)  # both views of image i: label i
        with torch.autocast(device_type=z1.device.type, enabled=False):
            return self.contrastive(torch.cat([z1, z2]).float(), labels)

    def training_step(self, images: Tensor, targets: Tensor) -> dict[str, Tensor]:
        v1, v2 = split_views(images)  # B, 3, S, S each
        e1 = self.backbone.forward_pooled(v1)[1]  # B, C
        e2 = self.backbone.forward_pooled(v2)[1]
        z1, z2 = self.projector(e1), self.projector(e2)  # B, 128
        out = {"nt_xent" if not self.supcon else "supcon": self.contrastive_loss(z1, z2, targets)}
        logits = self.probe(e1.detach())  # the online probe: no gradient into the encoder
        loss = next(iter(out.values()))
        if self.use_probe:
            out["probe_ce"] = F.cross_entropy(logits, hard_labels(targets))
            loss = loss + self.probe_weight * out["probe_ce"]
        out["loss"] = loss + self.feature_loss_terms(e1, targets, out)
        out["logits"] = logits
        if self.training:
            self.seen += int(v1.shape[0])
        return out

    # ------------------------------------------------------------ extra state
    def extra_state(self) -> dict[str, Any]:
        """The step counter and the memory queue's write position (its contents are buffers, in the state dict)."""
        state: dict[str, Any] = {"seen": self.seen}
        if self.queue_size:
            state.update(queue_idx=int(self.contrastive.queue_idx), filled=bool(self.contrastive.has_been_filled))
        return state

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.seen = int(state.get("seen", 0))
        if self.queue_size and "queue_idx" in state:
            self.contrastive.queue_idx = int(state["queue_idx"])
            self.contrastive.has_been_filled = bool(state["filled"])
