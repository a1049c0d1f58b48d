"""Is a run over- or underfitting? A verdict from its per-epoch history (``RUN/metrics.jsonl``), with remedies.

:func:`assess` is a pure function of the history (no torch, no files): one dict per epoch as the trainer logs it,
``epoch`` (0-based in metrics.jsonl), ``loss`` (train loss), ``train_top1`` and, on the epochs that were validated,
``val_top1``, ``val_loss`` (cross-entropy of the headline logits on the validation split), ``val_loss_se`` (its
standard error) and ``val_n`` (the split's size; older runs lack the last two). It returns a :class:`Fit`:

* ``verdict``: ``overfitting``, ``underfitting``, ``good fit``, ``inconclusive`` (a sign of overfitting that the
  validation split is too small to tell from noise), ``too short to tell`` (fewer than :data:`MIN_EPOCHS` validated
  epochs) or ``no validation split`` (no epoch has ``val_top1``: ``data.val_split`` is null). The test split is
  never used to judge the fit.
* ``gap``: train minus validation top-1 at the last validated epoch, in percentage points (None without validation).
* ``gap_ci``: the 95 % interval of that gap from the validation split's size (``[low, high]``, points): the
  train top-1 minus the Wilson score interval of the val top-1 over ``val_images`` images (the train top-1, over
  the larger training split, is taken as exact). None when the history does not say how many images were
  validated (runs from before ``val_n`` was logged).
* ``val_images``: the validation split's size (``val_n`` of metrics.jsonl), or None.
* ``epoch``: where overfitting starts, **1-based as in train.log and final.json's ``best_val_epoch``** (metrics.jsonl
  counts from 0): the last good epoch, after which the validation loss rises while the train loss falls, or at which
  the validation top-1 peaks before falling. It is the epoch ``checkpoints/best.pt`` keeps. None unless overfitting
  started inside the run (a verdict of ``overfitting`` from the gap alone has no onset).
* ``remedies``: short suggestions with the fgvc recipe keys to change; empty for a good fit.

Rules, in order (thresholds are the module constants below):

1. overfitting started: the validation top-1 fell more than :data:`VAL_DROP_PP` points below its peak by the last
   epoch, or the validation loss rose more than :data:`VAL_LOSS_RISE` (relative) above its minimum while the train
   loss went on falling; the onset is the earlier of the peak and the minimum;
2. overfitting without an onset: the gap is larger than :data:`OVERFIT_GAP_PP` points;
   both only when the evidence is larger than the validation split's noise (when the history logs ``val_n``; the
   loss rule also needs ``val_loss_se``): the drop of val top-1 must exceed :data:`CONFIDENCE_Z` standard errors of the difference of
   two accuracies on ``val_n`` images (as if independent: conservative, the same images are re-scored), the rise
   of the val loss :data:`CONFIDENCE_Z` standard errors of the difference of the two means, and the gap's lower
   95 % bound (``gap_ci[0]``) must stay above :data:`OVERFIT_GAP_PP`. A sign that fails this test gives
   ``inconclusive`` (on 100 images a top-1 near 85 % is only known to about +-7 points), never ``overfitting``;
3. underfitting: the last train top-1 is below :data:`UNDERFIT_TRAIN_TOP1` %, or the validation top-1 is still
   rising: each of its last ``MIN_EPOCHS - 1`` steps between validated epochs gained at least
   :data:`STILL_RISING_PP` points per epoch while train top-1 is below :data:`SATURATED_TRAIN_TOP1` (a run at
   100 % train top-1 whose small validation split still gains a point is not underfitting), and, with ``val_n``
   logged, the rise over those epochs is larger than the noise of the split (as for a drop, above);
4. otherwise a good fit.

With Mixup / CutMix the train top-1 is measured on mixed images and reads low, so the gap reads small.
:func:`analyse_run` reads a run directory (what the HTML report calls); :func:`describe` is the one log line.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

__all__ = ["Fit", "assess", "analyse_run", "describe", "read_history", "wilson_interval", "MIN_EPOCHS", "VAL_DROP_PP",
           "VAL_LOSS_RISE", "OVERFIT_GAP_PP", "UNDERFIT_TRAIN_TOP1", "STILL_RISING_PP", "SATURATED_TRAIN_TOP1",
           "CONFIDENCE_Z", "VERDICTS"]

MIN_EPOCHS = 3  # validated epochs needed for any verdict (and the window of "still rising")
VAL_DROP_PP = 2.0  # validation top-1 this many points below its peak at the last epoch: overfitting started
VAL_LOSS_RISE = 0.10  # validation loss this fraction above its minimum at the last epoch (train loss falling);
# 5 % flagged noise on a 60-image validation split (cub200-mini: 0.253 -> 0.272 at 98.3 % val top-1)
OVERFIT_GAP_PP = 15.0  # train minus validation top-1 above this at the last epoch: overfitting
UNDERFIT_TRAIN_TOP1 = 80.0  # train top-1 below this at the last epoch: underfitting
STILL_RISING_PP = 1.0  # each recent validation step gaining at least this many points per epoch: underfitting
SATURATED_TRAIN_TOP1 = 99.0  # ... unless train top-1 is already this high (the data is fit; val may still creep up)
CONFIDENCE_Z = 1.96  # two-sided 95 %: the noise a sign of overfitting must exceed (see the rules above)

VERDICTS = ("overfitting", "underfitting", "good fit", "inconclusive", "too short to tell", "no validation split")

REMEDIES: dict[str, list[str]] = {
    "overfitting": [
        "stop earlier: use checkpoints/best.pt (fgvc.evaluate --checkpoint best) or fewer train.epochs",
        "more augmentation: data.augment.random_resized_crop=true, data.augment.color_jitter=0.2",
        "Mixup / CutMix: train.mixup=0.2, train.cutmix=1.0",
        "stronger weight decay: train.weight_decay x5 (e.g. 5e-4)",
        "label smoothing: loss.args.label_smoothing=0.1",
    ],
    "underfitting": [
        "train longer: train.epochs x2",
        "a higher learning rate: train.lr x3 (with train.warmup_epochs=1)",
        "unfreeze / speed up the backbone: train.backbone_lr_scale=1.0 (or the stage's backbone_lr_scale)",
        "larger inputs: data.img_size (e.g. 448 with data.resize=512)",
        "less regularisation: lower train.weight_decay, train.mixup=0, train.cutmix=0",
    ],
    "good fit": [],
    "inconclusive": [
        "a larger validation split to tell overfitting from noise: raise data.args.val_fraction (e.g. 0.2-0.3) or "
        "use more images per class (a top-1 near 85 % is known to about +-7 points on 100 images, +-3.5 on 400)",
        "if a larger split confirms it, stop earlier: use checkpoints/best.pt or fewer train.epochs",
    ],
    "too short to tell": [f"train at least {MIN_EPOCHS} epochs, validating each (train.eval_every=1)"],
    "no validation split": ["set data.val_split (e.g. val: a held-out part of train) to judge the fit; the test "
                            "split is never used for it"],
}


@dataclass
class Fit:
    """The verdict on a run's training curves (see the module docstring)."""

    verdict: str
    gap: float | None  # train - val top-1 at the last validated epoch, percentage points
    epoch: int | None  # 1-based epoch where overfitting starts
    reason: str  # one clause: what in the curves gave the verdict
    remedies: list[str] = field(default_factory=list)
    gap_ci: list[float] | None = None  # 95 % interval of the gap from the validation split's size, points
    val_images: int | None = None  # images in the validation split (metrics.jsonl's val_n)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def wilson_interval(top1: float, n: int, z: float = CONFIDENCE_Z) -> tuple[float, float]:
    """The Wilson score interval (percent) of an accuracy of ``top1`` percent measured on ``n`` images."""
    p = min(max(top1 / 100.0, 0.0), 1.0)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100.0 * max(centre - half, 0.0), 100.0 * min(centre + half, 1.0)


def _drop_noise(a: float, b: float, n: int) -> float:
    """``CONFIDENCE_Z`` standard errors (points) of the difference of two top-1 (percent) on ``n`` images each."""
    pa, pb = a / 100.0, b / 100.0
    return 100.0 * CONFIDENCE_Z * math.sqrt((pa * (1 - pa) + pb * (1 - pb)) / n)


def _val_n(val: list[dict[str, Any]]) -> int | None:
    """The validation split's size as the last validated row logs it (``val_n``), or None."""
    n = _num(val[-1].get("val_n"))
    return int(n) if n is not None and n >= 1 else None


def _fit(verdict: str, gap: float | None, epoch: int | None, reason: str, gap_ci: list[float] | None = None,
         n: int | None = None) -> Fit:
    remedies = list(REMEDIES[verdict])
    if epoch is not None:  # an onset: say where to stop
        remedies[0] = f"stop at epoch {epoch}: use checkpoints/best.pt (fgvc.evaluate --checkpoint best) or " \
                      f"set train.epochs={epoch}"
    return Fit(verdict, None if gap is None else round(gap, 2), epoch, reason, remedies, gap_ci, n)


def _onset(val: list[dict[str, Any]], n: int | None) -> tuple[int | None, str, list[str]]:
    """(1-based onset epoch, why, signs within noise) of overfitting inside the validated epochs ``val``: the
    epoch is None unless a sign is larger than the noise of ``n`` validation images (any sign, when ``n`` is
    None); the signs it dismissed as noise come back as clauses for an ``inconclusive`` verdict."""
    onsets: list[tuple[int, str]] = []
    noisy: list[str] = []
    acc = [float(r["val_top1"]) for r in val]
    peak = max(range(len(acc)), key=lambda i: (acc[i], -i))  # the first epoch at the highest top-1
    drop = acc[peak] - acc[-1]
    if drop > VAL_DROP_PP:
        why = f"val top-1 peaked at {acc[peak]:.1f}% and fell to {acc[-1]:.1f}%"
        noise = _drop_noise(acc[peak], acc[-1], n) if n else 0.0
        if drop > noise:
            onsets.append((peak, why))
        else:
            noisy.append(f"{why}, within the +-{noise:.1f}-point noise of {n} val images")
    vl = [_num(r.get("val_loss")) for r in val]
    tl = [_num(r.get("loss")) for r in val]
    if all(v is not None for v in vl):
        low = min(range(len(vl)), key=lambda i: (vl[i], i))
        rising = vl[-1] > vl[low] * (1 + VAL_LOSS_RISE) if vl[low] > 0 else vl[-1] > vl[low]
        falling = tl[low] is not None and tl[-1] is not None and tl[-1] < tl[low]
        if low < len(vl) - 1 and rising and falling:
            why = f"val loss rose from {vl[low]:.3f} to {vl[-1]:.3f} while train loss fell"
            se = [_num(val[i].get("val_loss_se")) for i in (low, -1)]
            noise = CONFIDENCE_Z * math.hypot(se[0], se[1]) if n and se[0] is not None and se[1] is not None else 0.0
            if vl[-1] - vl[low] > noise:
                onsets.append((low, why))
            else:
                noisy.append(f"{why}, within the +-{noise:.3f} noise of {n} val images")
    if not onsets:
        return None, "", noisy
    first = min(i for i, _ in onsets)
    return int(val[first]["epoch"]) + 1, "; ".join(why for _, why in onsets), noisy


def assess(history: Sequence[dict[str, Any]]) -> Fit:
    """The verdict on ``history`` (metrics.jsonl rows, oldest first; see the module docstring)."""
    rows = [r for r in history if _num(r.get("train_top1")) is not None]
    val = [r for r in rows if _num(r.get("val_top1")) is not None]
    if not val:
        return _fit("no validation split", None, None, "no epoch was validated")
    last = val[-1]
    train_acc, val_acc = float(last["train_top1"]), float(last["val_top1"])
    gap = train_acc - val_acc
    n = _val_n(val)
    ci: list[float] | None = None
    if n is not None:
        lo, hi = wilson_interval(val_acc, n)
        ci = [round(train_acc - hi, 2), round(train_acc - lo, 2)]
    if len(val) < MIN_EPOCHS:
        return _fit("too short to tell", gap, None, f"{len(val)} validated epoch(s), {MIN_EPOCHS} needed", ci, n)
    epoch, why, noisy = _onset(val, n)
    if epoch is not None:
        return _fit("overfitting", gap, epoch, why, ci, n)
    if gap > OVERFIT_GAP_PP:
        why = f"train top-1 is {gap:.1f} points above val top-1"
        if ci is None or ci[0] > OVERFIT_GAP_PP:
            return _fit("overfitting", gap, None, why + (f" (95 % interval {ci[0]:.1f}-{ci[1]:.1f} with {n} val "
                                                         "images)" if ci else ""), ci, n)
        noisy.append(f"{why}, but with {n} val images the gap's 95 % interval is {ci[0]:.1f}-{ci[1]:.1f} points, "
                     f"not clearly above {OVERFIT_GAP_PP:.0f}")
    if noisy:
        return _fit("inconclusive", gap, None, "; ".join(noisy), ci, n)
    window = val[-MIN_EPOCHS:]
    gains = [(float(b["val_top1"]) - float(a["val_top1"])) / max(int(b["epoch"]) - int(a["epoch"]), 1)
             for a, b in zip(window, window[1:])]  # points per epoch
    if train_acc < UNDERFIT_TRAIN_TOP1:
        return _fit("underfitting", gap, None, f"train top-1 is only {train_acc:.1f}%", ci, n)
    rise = float(window[-1]["val_top1"]) - float(window[0]["val_top1"])
    real = n is None or rise > _drop_noise(float(window[0]["val_top1"]), float(window[-1]["val_top1"]), n)
    if min(gains) >= STILL_RISING_PP and train_acc < SATURATED_TRAIN_TOP1 and real:
        return _fit("underfitting", gap, None, f"val top-1 still rises {gains[-1]:.1f} points per epoch", ci, n)
    return _fit("good fit", gap, None, f"val top-1 has levelled off {gap:.1f} points below train top-1", ci, n)


def read_history(run_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of ``RUN/metrics.jsonl`` (a line cut by a kill is skipped); [] when there is none."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def analyse_run(run_dir: str | Path) -> dict[str, Any]:
    """``assess`` of a run directory's metrics.jsonl as a dict: verdict, gap, epoch, reason, remedies."""
    return assess(read_history(run_dir)).to_dict()


def describe(fit: dict[str, Any]) -> str:
    """One log line: ``fit: overfitting from epoch 4 (train-val top-1 gap 35.0 points, 95 % interval 28.1-41.3 with
    200 val images): why; try: ...``."""
    line = f"fit: {fit['verdict']}"
    if fit.get("epoch") is not None:
        line += f" from epoch {fit['epoch']}"
    if fit.get("gap") is not None:
        ci = fit.get("gap_ci")
        line += f" (train-val top-1 gap {fit['gap']:.1f} points" + (
            f", 95 % interval {ci[0]:.1f}-{ci[1]:.1f} with {fit.get('val_images')} val images)" if ci else ")")
    if fit.get("reason"):
        line += f": {fit['reason']}"
    if fit.get("remedies"):
        line += "; try: " + "; ".join(fit["remedies"])
    return line
