"""Does the exported file compute what the PyTorch model computes? Logits of both on the run's own test images.

Tolerance (:data:`REL_TOL`): the exported logits pass when ``max |exported - pytorch| <= 1e-3 * max(1, max |pytorch
logit|)`` and every image's top-1 class agrees. Why these numbers: both sides compute in fp32, and what differs is
only the order of floating-point operations (ONNX Runtime's fused conv + BN + ReLU kernels and its own GEMM, einsum
and reduction orders against oneDNN's); that moves a logit by a few units of fp32 rounding of its accumulations,
measured 1e-7..2e-5 relative to the largest logit for every method here. A real export bug (a batch size baked into
the graph, a layer left in training mode, a wrong box or crop, a missing normalisation) moves logits by the order of
the logits themselves. 1e-3 relative sits two orders of magnitude above the noise and far below any such bug; the
``max(1, ...)`` keeps the bound meaningful for logits near 0 (an untrained head).

Top-1 must agree for 100 % of the images, with one exception that is not a disagreement: an image whose two best
PyTorch logits differ by less than the tolerance itself is a tie within numerical noise, and either answer is the
PyTorch model's answer. Such ties are counted and reported (``ties``), never hidden.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["REL_TOL", "MAX_IMAGES", "ParityReport", "compare", "parity_images", "check_parity"]

REL_TOL = 1e-3
MAX_IMAGES = 64


@dataclass
class ParityReport:
    """Exported vs PyTorch logits on ``n_images`` images."""

    n_images: int
    max_abs_diff: float
    max_abs_logit: float
    tolerance: float  # REL_TOL * max(1, max_abs_logit)
    top1_agreement: float  # % of images with the same top-1 class
    ties: int  # images whose differing top-1 is a tie within the tolerance (not failures)
    passed: bool

    def line(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        ties = f" ({self.ties} tie(s) within the tolerance)" if self.ties else ""
        return (f"parity {verdict} on {self.n_images} test image(s): max |logit diff| {self.max_abs_diff:.3g} "
                f"(tolerance {self.tolerance:.3g} = {REL_TOL:g} x max(1, max |logit| {self.max_abs_logit:.3g})), "
                f"top-1 agreement {self.top1_agreement:.1f} %{ties}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(reference: np.ndarray, exported: np.ndarray, rel_tol: float = REL_TOL) -> ParityReport:
    """Compare logits ``N, K`` of the PyTorch model (``reference``) and of the exported file."""
    reference, exported = np.asarray(reference, np.float64), np.asarray(exported, np.float64)
    if reference.shape != exported.shape:
        return ParityReport(len(reference), float("inf"), float(np.abs(reference).max(initial=0.0)), 0.0, 0.0, 0,
                            False)
    max_logit = float(np.abs(reference).max(initial=0.0))
    tol = rel_tol * max(1.0, max_logit)
    diff = float(np.abs(reference - exported).max(initial=0.0))
    ref_top, exp_top = reference.argmax(1), exported.argmax(1)
    rows = np.arange(len(reference))
    differ = ref_top != exp_top
    ties = differ & (reference[rows, ref_top] - reference[rows, exp_top] <= tol)
    agreement = 100.0 * float((~differ).mean()) if len(reference) else 100.0
    finite = bool(np.isfinite(exported).all())
    passed = finite and diff <= tol and not bool((differ & ~ties).any())
    return ParityReport(len(reference), diff if finite else float("inf"), max_logit, tol, agreement, int(ties.sum()),
                        passed)


def parity_images(dataset: Any, n: int = MAX_IMAGES) -> Tensor:
    """Up to ``n`` eval-transformed images ``N, 3, S, S`` spread evenly over ``dataset`` (every class, not the
    first few)."""
    if len(dataset) == 0:
        raise ValueError("the parity split is empty")
    idx = sorted({int(round(i)) for i in np.linspace(0, len(dataset) - 1, min(n, len(dataset)))})
    return torch.stack([dataset[i][0] for i in idx])


@torch.no_grad()
def check_parity(module: nn.Module, exported: Callable[[np.ndarray], np.ndarray], images: Tensor,
                 batch_size: int = 32, rel_tol: float = REL_TOL) -> ParityReport:
    """Run ``module`` (the PyTorch model, CPU fp32, eval mode) and ``exported`` on ``images`` in batches and compare."""
    module.eval()
    ref, got = [], []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].float()
        ref.append(module(x).float().numpy())
        got.append(np.asarray(exported(x.numpy())))
    return compare(np.concatenate(ref), np.concatenate(got), rel_tol)
