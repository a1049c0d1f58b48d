"""When ``--backend auto`` runs an exported file: only where it pays back its cost.

An ONNX export of a run costs seconds to a minute (torch.export tracing, the ONNX translation and its optimiser:
7.7 s for tf_efficientnet_lite0 at 160 px on a quiet 2-core AMD EPYC, ``fgvc.bench infer``; 24-44 s at 128 px on
the same CPU shared with other jobs; 6-29 s for the tiny test models of every method), while ONNX Runtime saves a few milliseconds per image (lite0 160 px, 2 cores: 2.5 ms
against 7.5 ms per image for PyTorch channels-last at batch 32, 9.7 ms at batch 1). So an export pays back only over
a large number of images (7.7 s / 5 ms: about 1,500 here), and never for a few photos.

:func:`decide` is the rule, on plain numbers (tested without timing anything). :class:`fgvc.deploy.fast_infer.Backend`
runs the first batch on PyTorch (a warm-up: with its one-off setup it took 245 ms per image against 87 ms for the
second, lite0 at 128 px in batches of 8 on the loaded 2-core CPU) and decides at the second, which PyTorch computes
anyway as the reference a file is checked against, from its time per image ``t``. With ``remaining`` images after
it and ONNX Runtime's expected speed-up ``s`` (:data:`ONNX_SPEEDUP`, below the measured 3-4x against the run's own
PyTorch path), the file saves ``remaining * t * (1 - 1/s)``; it costs the export (nothing for a file already
cached in ``RUN/cache/infer`` under the same weights key, which is then taken from the first batch on) plus its check
on that batch (``batch * t / s``).
``auto`` runs the file when the saving exceeds the cost. The export's cost is this run's last export on this
machine (recorded in ``RUN/cache/infer/export-seconds.json``) or else :data:`EXPORT_S_ESTIMATE`, set from the
loaded-CPU measurements: an estimate on the high side keeps auto from exporting where it may not pay (with lite0
timed at 502 ms per image on a CPU loaded 6x over, a 15 s estimate let a 100-image split export for 34 s).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ONNX_SPEEDUP", "EXPORT_S_ESTIMATE", "SECONDS_FILE", "Decision", "decide", "record_export_seconds",
           "export_seconds"]

ONNX_SPEEDUP = 2.5  # ONNX Runtime against the run's own PyTorch path: measured 2.96x (batch 32) and 4.2x (batch 1)
EXPORT_S_ESTIMATE = 30.0  # seconds, when this run was never exported here: lite0 took 7.7 s quiet, 24-44 s loaded
SECONDS_FILE = "export-seconds.json"


@dataclass(frozen=True)
class Decision:
    """Whether ``auto`` runs the exported file, and the one line saying why."""

    use_file: bool
    why: str


def decide(n_images: int | None, done: int, batch: int, pytorch_s_per_image: float, cached: str | None,
           export_s: float, export_measured: bool = False, speedup: float = ONNX_SPEEDUP,
           fmt: str = "onnx") -> Decision:
    """Run the exported ``fmt`` file for the rest of a command, or stay on PyTorch? (the module doc's rule)

    ``n_images``: the images the command runs (None: not known); ``done``: those PyTorch has computed so far, the
    last ``batch`` of them (the file's check) in ``pytorch_s_per_image`` seconds each; ``cached``: the path of a
    valid cached file, else None; ``export_s``: what an export would cost (``export_measured``: as an earlier export
    of this run took, rather than :data:`EXPORT_S_ESTIMATE`)."""
    if n_images is None:
        if cached:
            return Decision(True, "a cached export matches these weights")
        return Decision(False, f"the number of images is not known, so an {fmt} export (~{export_s:.0f} s) cannot "
                               f"be shown to pay back; --backend {fmt} exports and caches one")
    remaining = n_images - done
    if remaining <= 0:
        return Decision(False, f"all {n_images} image(s) are in the first batch(es), which PyTorch computes "
                               f"anyway as the reference a file is checked against")
    per_image = pytorch_s_per_image * (1.0 - 1.0 / speedup)  # seconds the file saves per image
    saving = remaining * per_image
    check = batch * pytorch_s_per_image / speedup
    basis = (f"{remaining} image(s) left x {1000.0 * pytorch_s_per_image:.3g} ms of PyTorch each x "
             f"(1 - 1/{speedup:g}, ONNX Runtime's expected speed-up)")
    if cached:
        if saving > check:
            return Decision(True, "a cached export matches these weights")
        return Decision(False, f"a cached export exists, but it would save ~{saving:.2g} s ({basis}), less than its "
                               f"check on a batch (~{check:.2g} s)")
    how = "as this run's last export took here" if export_measured else "estimated"
    if saving > export_s + check:
        return Decision(True, f"{n_images} images: an {fmt} export (~{export_s:.0f} s, {how}) saves ~{saving:.0f} s "
                              f"({basis})")
    pays = f"; it pays back from about {done + int((export_s + check) / per_image) + 1} images" if per_image else ""
    return Decision(False, f"{n_images} image(s): an {fmt} export (~{export_s:.0f} s, {how}) would save only "
                           f"~{saving:.2g} s ({basis}){pays} (--backend {fmt} exports and caches one in "
                           f"RUN/cache/infer, which auto then reuses)")


def record_export_seconds(folder: Path, fmt: str, seconds: float) -> None:
    """Remember how long exporting this run to ``fmt`` took (``folder/export-seconds.json``); best effort."""
    path = folder / SECONDS_FILE
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
        data = data if isinstance(data, dict) else {}
        data[fmt] = round(float(seconds), 2)
        path.write_text(json.dumps(data, indent=1) + "\n")
    except (OSError, ValueError):
        pass


def export_seconds(folder: Path | None, fmt: str) -> tuple[float, bool]:
    """``(seconds, measured)``: the recorded cost of this run's last ``fmt`` export, else the estimate."""
    if folder is not None:
        try:
            value = json.loads((folder / SECONDS_FILE).read_text()).get(fmt)
            if isinstance(value, (int, float)) and value > 0:
                return float(value), True
        except (OSError, ValueError, AttributeError):
            pass
    return EXPORT_S_ESTIMATE, False
