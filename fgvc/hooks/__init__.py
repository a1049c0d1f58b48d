"""Plug-ins of the training loop (:class:`fgvc.engine.hook.Hook`): the end-of-training evaluation protocols, the
fit verdict, TensorBoard. :func:`training_hooks` gives the standard set every command that trains uses (``train``,
and the fine-tunes of ``extend`` and ``prune``)."""
from __future__ import annotations

from typing import Any

from fgvc.engine.hook import Hook
from fgvc.hooks.fit import FitVerdict
from fgvc.hooks.protocols import EvaluationProtocols
from fgvc.hooks.tensorboard import TensorBoard

__all__ = ["training_hooks", "EvaluationProtocols", "FitVerdict", "TensorBoard"]


def training_hooks(cfg: dict[str, Any]) -> list[Hook]:
    """The hooks of a training run of ``cfg``, in order: the test protocols (``final.json``'s metrics), the fit
    verdict, TensorBoard (active when ``train.tensorboard`` is on)."""
    return [EvaluationProtocols(cfg), FitVerdict(), TensorBoard()]
