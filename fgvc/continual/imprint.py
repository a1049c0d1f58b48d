"""Weight imprinting (Qi, Brown & Lowe 2018, "Low-Shot Learning with Imprinted Weights", CVPR, arXiv:1712.07136):
a new class's classifier weight is the L2-normalised mean of the L2-normalised embeddings of its few training
images, in a cosine classifier ``s * cos(theta)`` (NormFace, Wang et al. 2017; :class:`fgvc.models.heads.CosineHead`).

* :func:`imprinted_weights`: the new rows, ``K_new x D`` unit vectors.
* :func:`head_rows`: the old head as rows. A cosine head (``cosine``, ``arcface``, ``cosface``) keeps its rows and
  its type, so old-class logits do not change at all. A ``linear`` head's rows come back normalised; ``fgvc.extend``
  then imprints all of them (:func:`centred_linear`) unless ``--old-weights normalised`` keeps these (Qi et al.'s
  conversion to a cosine head). Measured on a lite0 run over 10 CUB species (94.6 % test top-1), with 10 species
  added from 5 shots: normalised linear rows have a cosine of 0.25 on average with their own class's images,
  imprinted means 0.4-0.7 with any bird (pooled ReLU features are non-negative, so every mean direction is close to
  every image), and the new classes take almost every image (old top-1 3.7 %, new 83.7 %); with the old rows
  imprinted from their training images: old 94.0 %, new 77.2 % (old among old only: 95.3 %).
* :func:`centred_linear`: what every mean direction shares is removed by centring first: rows imprinted from
  ``e - c`` (``c`` the old training images' mean embedding, ``imprinted_weights(..., centre=c)``), kept in a linear
  head ``s / u * (e - c) . w`` whose argmax is the cosine nearest-class-mean of centred, normalised embeddings
  (SimpleShot's CL2N, Wang et al. 2019, "SimpleShot: Revisiting Nearest-Neighbor Classification for Few-Shot
  Learning", arXiv:1911.04623); ``benchmarks/results/extend.md`` measures it against the uncentred mean.
* :func:`fit_scale`: the scale ``s`` of a linear head's imprinted rows (cosine units: the scores are divided by the
  centred embeddings' mean norm) or of ``--old-weights normalised``'s cosine head. ``s`` changes no prediction
  (every row is scaled alike), only how peaked the softmax is, which sets the fine-tune's gradients and the
  probabilities. We take the ``s`` of a geometric grid (4 to 64) with the lowest cross-entropy of ``s * scores`` on
  held-out images of the old classes (temperature scaling, Guo et al. 2017, "On Calibration of Modern Neural
  Networks"): ``fgvc.extend`` uses the run's validation split, or its training images when it has none (which
  pushes ``s`` towards 64).
* :func:`extended_state`: the old model's state dict for the union classes: the head's rows, and every per-class
  tensor of ``K_old`` rows (a center loss's centers, proxy-anchor's proxies, WS-DAN-like feature centers) grown
  with the new classes' mean embedding.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fgvc.models.heads import HEADS, CosineHead, LinearHead

__all__ = ["imprinted_weights", "class_means", "centred_linear", "head_rows", "union_rows", "fit_scale",
           "extended_state", "SCALE_GRID"]

SCALE_GRID = tuple(float(2 ** (e / 4)) for e in range(8, 25))  # 4 ... 64, four steps per octave


def class_means(embeddings: Tensor, labels: Tensor, num_classes: int, normalize: bool) -> Tensor:
    """``num_classes x D``: the mean embedding of each class (of the L2-normalised embeddings with ``normalize``),
    in float64 sums; every class must have at least one embedding."""
    e = embeddings.double()
    if normalize:
        e = F.normalize(e, dim=1)
    labels = labels.long()
    counts = torch.bincount(labels, minlength=num_classes).double()  # K
    if bool((counts == 0).any()):
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"classes {missing} have no embedding to average")
    sums = torch.zeros(num_classes, e.shape[1], dtype=torch.float64).index_add_(0, labels, e)  # K, D
    return (sums / counts[:, None]).float()


def imprinted_weights(embeddings: Tensor, labels: Tensor, num_classes: int, fallback: Tensor | None = None,
                      centre: Tensor | None = None) -> Tensor:
    """``num_classes x D`` unit rows: row ``c`` = normalise(mean of normalise(e_i) over the images of class ``c``)
    (Qi et al. 2018, eq. 3); ``labels`` in ``0..num_classes-1``. With ``centre`` (``D``), ``e_i - centre`` in
    place of ``e_i`` (:func:`centred_linear`). A class without images takes its row of ``fallback`` (without one,
    that is an error)."""
    if centre is not None:
        embeddings = embeddings.double() - centre.double()
    labels = labels.long()
    have = torch.bincount(labels, minlength=num_classes) > 0
    if fallback is not None and not bool(have.all()):
        rows = fallback.detach().float().clone()
        present = torch.nonzero(have).flatten()
        remap = torch.full((num_classes,), -1, dtype=torch.long)
        remap[present] = torch.arange(len(present))
        rows[present] = imprinted_weights(embeddings, remap[labels], len(present))
        return rows
    return F.normalize(class_means(embeddings, labels, num_classes, normalize=True).double(), dim=1).float()


def centred_linear(rows: Tensor, centre: Tensor, scale: float, unit: float) -> tuple[Tensor, Tensor]:
    """``(weight K x D, bias K)`` of the linear head whose logits are ``scale / unit * (e - centre) . rows`` (``rows``
    unit vectors imprinted from centred embeddings): ``weight = scale / unit * rows``, ``bias = -weight @ centre``.
    Its argmax is the cosine nearest-class-mean of centred, normalised embeddings (SimpleShot's CL2N, Wang et al.
    2019); ``unit`` (the mean norm of the centred embeddings) puts ``scale`` in cosine units."""
    weight = rows.double() * (scale / unit)
    return weight.float(), -(weight @ centre.double()).float()


def head_rows(head: nn.Module) -> tuple[Tensor, str | None]:
    """``(K_old x D rows, registered head name or None)``: a cosine-family head's own rows and name, or a linear
    head's rows normalised and None (it is to become a ``cosine`` head, whose rows may then be imprinted)."""
    if isinstance(head, CosineHead):
        name = next(n for n in HEADS.names() if HEADS.get(n) is type(head))
        return head.weight.detach().float().cpu().clone(), name
    if isinstance(head, (LinearHead, nn.Linear)):
        return F.normalize(head.weight.detach().float().cpu(), dim=1), None
    raise TypeError(f"cannot imprint into a {type(head).__name__}: expected a linear or cosine head")


def union_rows(old_rows: Tensor, new_rows: Tensor) -> Tensor:
    """The union head's rows: the old rows, then the new unit rows scaled to the old rows' mean norm (a cosine head
    ignores row norms in its logits, but the gradient of a row scales with 1 / its norm, so like norms learn
    alike in a fine-tune)."""
    return torch.cat([old_rows, new_rows * old_rows.norm(dim=1).mean()])


def fit_scale(cosines: Tensor, labels: Tensor, grid: tuple[float, ...] = SCALE_GRID) -> float:
    """The ``s`` of ``grid`` with the lowest mean cross-entropy of ``s * cosines`` (``N x K``) at ``labels``."""
    losses = [float(F.cross_entropy(s * cosines.double(), labels.long())) for s in grid]
    return round(grid[min(range(len(grid)), key=losses.__getitem__)], 3)


def extended_state(old: Mapping[str, Tensor], template: Mapping[str, Tensor], head: str, rows: Tensor,
                   means: Tensor, k_old: int, bias: Tensor | None = None) -> dict[str, Tensor]:
    """The state dict of the union model (``template``: its freshly built state, ``K = k_old + K_new`` classes):
    ``<head>.weight`` = ``rows`` (``K x D``); tensors of the old model with the template's shape copied; tensors with
    ``k_old`` rows where the template has ``K`` (per-class centers, proxies) grown with ``means`` (``K_new x D``, the
    new classes' mean embedding) where their rows are ``D``-long, else with the template's new rows;
    ``<head>.bias`` = ``bias`` when given (a linear head kept), else the old linear head's bias is dropped (a cosine
    head has none); any other mismatch is a bug and raises."""
    out: dict[str, Tensor] = {}
    k = rows.shape[0]
    for key, fresh in template.items():
        if key == f"{head}.weight" or (key == f"{head}.bias" and bias is not None):
            value = rows if key.endswith("weight") else bias
            if tuple(value.shape) != tuple(fresh.shape):
                raise ValueError(f"'{key}' of shape {tuple(value.shape)} does not fit the extended model's "
                                 f"{tuple(fresh.shape)}")
            out[key] = value.to(fresh.dtype)
            continue
        if key not in old:
            raise KeyError(f"the extended model has '{key}', which the trained model lacks")
        value = old[key]
        if value.shape == fresh.shape:
            out[key] = value
        elif value.ndim >= 1 and value.shape[0] == k_old and fresh.shape[0] == k and value.shape[1:] == fresh.shape[1:]:
            grow = means if tuple(fresh.shape[1:]) == (means.shape[1],) else fresh[k_old:]
            out[key] = torch.cat([value.cpu(), grow.to(value.dtype).cpu()])
        else:
            raise ValueError(f"cannot carry '{key}' of shape {tuple(value.shape)} over to the extended model's "
                             f"{tuple(fresh.shape)}")
    dropped = [key for key in old if key not in template and key != f"{head}.bias"]
    if dropped:
        raise KeyError(f"the trained model's {dropped} have no place in the extended model")
    return out
