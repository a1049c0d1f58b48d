"""Does the exported file compute what the PyTorch model computes? Logits of both on the run's own test images.

Tolerance (:data:`REL_TOL`): the exported logits pass when ``max |exported - pytorch| <= 1e-3 * max(1, max |pytorch
logit|)`` and every image's top-1 class agrees. Why these numbers: both sides compute in fp32, and what differs is
only the order of floating-point operations (ONNX Runtime's fused conv + BN + ReLU kernels and its own GEMM, einsum
and reduction orders against oneDNN's); that moves a logit by a few units of fp32 rounding of its accumulations,
measured 1e-7..2e-5 relative to the largest logit for every method here. A real export bug (a batch size baked into
the graph, a layer left in training mode, a wrong box or crop, a missing normalisation) moves logits by the order of
the logits themselves. 1e-3 relative sits two orders of magnitude above the noise and far below any such bug; the
``max(1, ...)`` keeps the bound meaningful for logits near 0 (an untrained head).

On CUDA the reference itself is not plain fp32: PyTorch lets cuDNN run fp32 convolutions on TF32 tensor cores
(``torch.backends.cudnn.allow_tf32``, on by default; Ampere and newer), whose inputs keep 10 mantissa bits (unit
roundoff 2^-11 = 4.9e-4). Two layouts of the same model then pick different kernels and differ by about TF32's
rounding, not fp32's: on an H100 the channels-last and the torch.compile'd tf_efficientnet_lite0 moved a logit by
1.1e-3 of the largest one against eager (7.6e-3 of 6.9), so a 1e-3 bound would call them wrong.
:func:`rel_tol_for` gives :data:`REL_TOL_TF32` = 1e-2 there: ten times that noise, still two orders of magnitude below
a real bug.

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

__all__ = ["REL_TOL", "REL_TOL_TF32", "rel_tol_for", "tolerance_for", "MAX_IMAGES", "ParityReport", "compare", "parity_images",
           "check_parity"]

REL_TOL = 1e-3
REL_TOL_TF32 = 1e-2
MAX_IMAGES = 64


def rel_tol_for(device: torch.device | str) -> float:
    """The tolerance for logits computed on ``device``: :data:`REL_TOL_TF32` on a CUDA device of compute capability
    8 or newer while PyTorch allows TF32 convolutions or matrix products (the module doc), else :data:`REL_TOL`."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return REL_TOL
    tf32 = bool(torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32)
    return tolerance_for(torch.cuda.get_device_capability(device)[0], tf32)


def tolerance_for(capability_major: int | None, tf32_allowed: bool) -> float:
    """The rule behind :func:`rel_tol_for`, on plain values: ``capability_major`` is the CUDA compute capability's
    major number (None off CUDA), ``tf32_allowed`` whether PyTorch lets fp32 convolutions or matmuls use TF32."""
    return REL_TOL_TF32 if capability_major is not None and capability_major >= 8 and tf32_allowed else REL_TOL


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
                f"(tolerance {self.tolerance:.3g} = {self.rel_tol:g} x max(1, max |logit| {self.max_abs_logit:.3g})), "
                f"top-1 agreement {self.top1_agreement:.1f} %{ties}")

    @property
    def rel_tol(self) -> float:
        """The relative tolerance this report was judged by."""
        return self.tolerance / max(1.0, self.max_abs_logit)

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
    """Run ``module`` (the PyTorch model, CPU fp32, eval mode) and ``exported`` on ``images`` in batches of
    ``batch_size`` and compare. A file with a fixed batch is fed in its own chunks by its runner
    (:class:`fgvc.deploy.runtime.OnnxModel`), so the PyTorch reference need not run at that batch: at batch 1 (a
    ``--static-batch 1`` lite0 file at 128 px) its 61 single-image passes took 195 s of a 237 s export on this repo's
    shared 2-core CPU. Every PyTorch batch runs before the file's first, so the two runtimes' thread pools do not
    take turns."""
    module.eval()
    batches = [images[start:start + batch_size].float() for start in range(0, len(images), batch_size)]
    ref = [module(x).float().numpy() for x in batches]
    got = [np.asarray(exported(x.numpy())) for x in batches]
    return compare(np.concatenate(ref), np.concatenate(got), rel_tol)
