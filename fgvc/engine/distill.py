"""Knowledge distillation from any trained run into any recipe (Hinton, Vinyals & Dean 2015, "Distilling the
Knowledge in a Neural Network").

A recipe with ``distill: {teacher: RUN_DIR, alpha: 0.5, temperature: 4.0, checkpoint: last}`` trains its own model
(the student) on::

    loss = alpha * kd + (1 - alpha) * student_loss
    kd   = T^2 * KL(softmax(teacher / T) || softmax(student / T))      (batch mean)

``student_loss`` is the method's own training loss (``out["loss"]`` of :meth:`Method.training_step`: its criterion
plus its own auxiliary terms, e.g. WS-DAN's crop/drop views and centre loss, ``loss.aux`` feature losses). The
``T^2`` keeps the gradient of the soft term on the scale of the hard one when ``T`` changes (the paper's section 2).
``kd`` and ``student_loss`` are logged per epoch in ``metrics.jsonl`` like the other loss terms; a weight of 0
drops its term (``alpha: 0`` is exactly the method's loss, ``alpha: 1`` pure distillation).

Which logits. The teacher gives the headline logits of its :meth:`Method.infer` (what its ``final.json`` scored;
WS-DAN's ``refined`` by default), in eval mode, under ``torch.no_grad``, with the weights ``TrainedRun.load`` picks
(EMA when the teacher kept one). The student's are the ``"logits"`` of its training step: for single-view methods
(baseline, B-CNN, CBAM, SE) its one head (with the margin where a margin head such as ArcFace is used); for
multi-branch methods the headline/first pass, on the raw image: WS-DAN's raw view (not its crop or drop views).
A method may report other differentiable logits for the KD term under ``"kd_logits"`` (read first). RA-CNN reports
its fused logits detached, so the KD term could not train it: a step whose logits carry no gradient stops with a
:class:`~fgvc.errors.ConfigError` rather than distil nothing silently.

Preprocessing. The teacher sees the student's batch, converted when the two runs preprocess differently: undo the
student's normalisation (its mean/std), resize to the teacher's input size (``data.img_size`` x its method's
``input_scale``; bilinear, antialiased) and normalise with the teacher's mean/std (:func:`to_teacher_inputs`).
Augmentation is therefore shared: teacher and student see the same crop, flip, colour jitter and Mixup/CutMix mix,
which is what distillation needs (the soft targets describe the very image the student sees).

No caching: fgvc recomputes the teacher every step. Caching teacher logits is only correct when each image's
training view is the same every epoch (no random crop, flip, colour jitter, Mixup/CutMix); fgvc's recipes augment
(``data.augment.hflip`` is on by default), and a batch carries no sample index to key a cache, so a cache would
give the student soft targets of another view. The teacher costs one inference pass (no backward) per step.

Resume and DDP: nothing of the teacher goes into a checkpoint but the ``distill`` section of the config; a resumed
run (and every DDP rank) loads the teacher again from its run directory, only through :meth:`TrainedRun.load`, on
the trainer's device. The teacher path is read relative to the working directory, as ``data.root`` is.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from fgvc.config import input_geometry
from fgvc.engine.inference import Runtime, TrainedRun
from fgvc.engine.state import capture_rng, restore_rng
from fgvc.errors import ConfigError

log = logging.getLogger("fgvc")

__all__ = ["kd_loss", "distill_loss", "to_teacher_inputs", "Distiller", "build_distiller", "check_teacher_dir",
           "check_classes"]


# ------------------------------------------------------------------------ loss
def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, the mean over the batch (``B, K`` each; fp32)."""
    t = float(temperature)
    log_p_student = F.log_softmax(student_logits.float() / t, dim=1)  # B, K
    log_p_teacher = F.log_softmax(teacher_logits.float() / t, dim=1)  # B, K
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * (t * t)


def distill_loss(student_loss: Tensor, student_logits: Tensor, teacher_logits: Tensor, alpha: float,
                 temperature: float) -> tuple[Tensor, Tensor]:
    """``(alpha * kd + (1 - alpha) * student_loss, kd)``; a term whose weight is 0 is left out, so ``alpha=0`` returns
    ``student_loss`` itself and ``alpha=1`` the KD term alone (a non-finite dropped term cannot leak in as 0 * inf)."""
    kd = kd_loss(student_logits, teacher_logits, temperature)
    if alpha == 0:
        return student_loss, kd
    if alpha == 1:
        return kd, kd
    return alpha * kd + (1.0 - alpha) * student_loss.float(), kd


# --------------------------------------------------------------- preprocessing
def to_teacher_inputs(images: Tensor, student_mean: Sequence[float], student_std: Sequence[float],
                      teacher_mean: Sequence[float], teacher_std: Sequence[float], teacher_size: int) -> Tensor:
    """The student's normalised batch ``B, 3, H, W`` as the teacher's loader would have made it: de-normalised with
    the student's mean/std, resized to ``teacher_size`` square (bilinear, antialiased) when ``H, W`` differ, then
    normalised with the teacher's mean/std. Returns ``images`` itself when nothing differs."""
    size = (int(teacher_size), int(teacher_size))
    same_norm = tuple(map(float, student_mean)) == tuple(map(float, teacher_mean)) and \
        tuple(map(float, student_std)) == tuple(map(float, teacher_std))
    if same_norm and tuple(images.shape[-2:]) == size:
        return images

    def column(v: Sequence[float]) -> Tensor:  # 1, 3, 1, 1
        return torch.as_tensor([float(x) for x in v], device=images.device, dtype=torch.float32).view(1, -1, 1, 1)

    x = images.float() * column(student_std) + column(student_mean)  # B, 3, H, W in [0, 1] pixel units
    if tuple(x.shape[-2:]) != size:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)  # B, 3, S, S
    return (x - column(teacher_mean)) / column(teacher_std)


# ---------------------------------------------------------------------- checks
def check_teacher_dir(teacher: str | Path, checkpoint: str) -> Path:
    """The teacher's run directory, refused (:class:`ConfigError`) unless it holds ``checkpoints/<checkpoint>.pt``."""
    run_dir = Path(teacher)
    if not run_dir.is_dir():
        raise ConfigError(f"'distill.teacher' = {teacher}: no such run directory (from {Path.cwd()}); give the run "
                          "directory of a trained teacher (fgvc.train's --output, e.g. "
                          "runs/cub200_wsdan-20261123-171500), or distill: null to train without a teacher")
    ckpt = run_dir / "checkpoints" / f"{checkpoint}.pt"
    if not ckpt.is_file():
        found = sorted(p.stem for p in (run_dir / "checkpoints").glob("*.pt"))
        raise ConfigError(f"'distill.teacher' = {teacher} has no checkpoints/{checkpoint}.pt (it has: "
                          f"{', '.join(found) or 'no checkpoints'}); train the teacher first (python -m fgvc.train ... "
                          f"--output {teacher}) or set distill.checkpoint to one it has")
    return run_dir


def check_classes(teacher_classes: Sequence[str], student_classes: Sequence[str], teacher: str | Path,
                  data_root: str) -> None:
    """Teacher and student must name the same classes in the same order (the KD term compares class by class)."""
    t, s = list(teacher_classes), list(student_classes)
    if t == s:
        return
    diff = [f"#{i}: teacher '{a}' vs student '{b}'" for i, (a, b) in enumerate(zip(t, s)) if a != b][:3]
    only = [f"teacher only: {', '.join(sorted(set(t) - set(s))[:3]) or '-'}",
            f"student only: {', '.join(sorted(set(s) - set(t))[:3]) or '-'}"]
    raise ConfigError(
        f"'distill.teacher' = {teacher} was trained on {len(t)} classes, but the student's data ({data_root}) has "
        f"{len(s)}; distillation needs the same classes in the same order ({'; '.join(diff + only)}). Distil from a "
        "teacher trained on this data set, or set data.root/data.name to the teacher's data")


# -------------------------------------------------------------------- distiller
class Distiller:
    """The frozen teacher and the KD weights; ``distiller(images, out)`` turns a training step's output into the
    distilled one (``loss`` replaced, ``kd`` and ``student_loss`` added for the logs)."""

    def __init__(self, teacher: TrainedRun, alpha: float, temperature: float, student_data_config: dict[str, Any],
                 teacher_size: int) -> None:
        self.teacher, self.alpha, self.temperature = teacher, float(alpha), float(temperature)
        self.student_norm = (tuple(student_data_config["mean"]), tuple(student_data_config["std"]))
        self.teacher_norm = (tuple(teacher.data_config["mean"]), tuple(teacher.data_config["std"]))
        self.teacher_size = int(teacher_size)

    @torch.no_grad()
    def teacher_logits(self, images: Tensor) -> Tensor:
        """The teacher's headline logits ``B, K`` for the student's batch (converted to its preprocessing)."""
        x = to_teacher_inputs(images, *self.student_norm, *self.teacher_norm, self.teacher_size)
        return self.teacher.infer(x).prediction.float()

    def __call__(self, images: Tensor, out: dict[str, Tensor]) -> dict[str, Tensor]:
        logits = out.get("kd_logits", out["logits"])
        if torch.is_grad_enabled() and out["loss"].requires_grad and not logits.requires_grad:
            raise ConfigError(
                "distill: this method's training step reports its logits without gradient (RA-CNN returns its fused "
                "logits detached), so the KD term cannot train it; distil into baseline, wsdan, bcnn, cbam or se, or "
                "drop the distill section")
        student = out["loss"]
        loss, kd = distill_loss(student, logits, self.teacher_logits(images), self.alpha, self.temperature)
        return {**out, "loss": loss, "kd": kd.detach(), "student_loss": student.detach().float()}


def build_distiller(cfg: dict[str, Any], device: torch.device, amp: str, student_data_config: dict[str, Any],
                    class_names: Sequence[str]) -> Distiller | None:
    """The recipe's ``distill`` section as a :class:`Distiller` on ``device`` (None when the section is null). The
    teacher comes from :meth:`TrainedRun.load`, frozen and in eval mode, with the trainer's AMP mode; loading it
    leaves the RNG as it was, so the student starts from the same random state with or without a teacher."""
    spec = cfg.get("distill")
    if not spec:
        return None
    run_dir = check_teacher_dir(spec["teacher"], spec["checkpoint"])
    rng = capture_rng()
    try:
        teacher = TrainedRun.load(run_dir, spec["checkpoint"],
                                  overrides=[f"train.device={device.type}", f"train.threads={cfg['train']['threads']}"])
    finally:
        restore_rng(rng)
    check_classes(teacher.class_names, class_names, spec["teacher"], cfg["data"]["root"])
    teacher.runtime = Runtime(device, amp, teacher.runtime.channels_last, 0, teacher.runtime.env)
    teacher.runtime.prepare(teacher.method).eval()
    teacher.method.requires_grad_(False)
    scale = float(teacher.data_config.get("input_scale", 1.0))  # e.g. a WS-DAN teacher's zoom_source
    size = input_geometry(teacher.cfg["data"], scale)[0]
    log.info(f"distilling from {run_dir} ({teacher.cfg['model']['name']} on {teacher.cfg['model']['backbone']}, "
             f"{spec['checkpoint']} checkpoint, {teacher.weights} weights, {size} px): alpha {spec['alpha']:g}, "
             f"temperature {spec['temperature']:g}")
    return Distiller(teacher, spec["alpha"], spec["temperature"], student_data_config, size)
