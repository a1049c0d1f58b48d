"""A trained run's opinion of an audited data set: likely mislabelled images (``python -m fgvc.datasets audit --run``).

:func:`load_audit_run` loads the run so that it reads the audited folder in full (every image, unreadable ones
skipped: they are the audit's own findings); :func:`model_mislabels` passes it once over every audited split and hands
its softmax outputs and embeddings to :func:`fgvc.data.audit.mislabel_findings`, which flags the images whose label
a confident model and its nearest training images contradict.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fgvc.data import DataError
from fgvc.data.audit import Audit, Finding, mislabel_findings
from fgvc.engine.inference import TrainedRun

__all__ = ["load_audit_run", "model_mislabels"]


def load_audit_run(run_dir: str | Path, checkpoint: str, root: str | Path, name: str,
                   data_args: Sequence[str]) -> tuple[TrainedRun, str, dict[str, Any]]:
    """The run at ``run_dir`` reading ``root`` in full, its data set name and its data.args (``data_args``:
    ``KEY=VALUE`` overrides of them). ``name`` is the audited data set's name or ``auto``; a run trained on another
    data set is a :class:`~fgvc.data.DataError`."""
    overrides = [f"data.root={json.dumps(str(root))}", "data.max_images=null", "data.on_bad_image=skip"]
    run = TrainedRun.load(run_dir, checkpoint, overrides + [f"data.args.{item}" for item in data_args])
    trained_on = run.cfg["data"]["name"]
    if name not in ("auto", trained_on):
        raise DataError(f"--run {run_dir} was trained on data set '{trained_on}', not '{name}': audit it as "
                        f"`audit auto {root} --run {run_dir}` (or `audit {trained_on} ...`)")
    return run, trained_on, dict(run.cfg["data"]["args"])


def model_mislabels(run: TrainedRun, audit: Audit, k: int, confidence: float, min_agree: int,
                    source: str | Path) -> list[Finding]:
    """One pass of ``run`` over every split of ``audit``;
    :func:`fgvc.data.audit.mislabel_findings` on its outputs. ``source`` names the run in messages."""
    items = audit.items
    row = {(it.split, os.path.abspath(it.path)): i for i, it in enumerate(items)}
    probs = np.zeros((len(items), len(run.class_names)), dtype=np.float32)
    emb: Any = None
    valid = np.zeros(len(items), dtype=bool)
    for split in dict.fromkeys(it.split for it in items):
        ds = run.dataset(split)  # the run's classes, or a ConfigError
        ds.bad_log = None  # unreadable images are the audit's findings, not the run's log
        got = run.collect(split, ("logits", "embedding"), desc=f"model on {split}")
        if got.embedding is None:
            raise DataError(f"--run {source}: the method gives no embeddings, so no neighbours can be compared")
        emb = np.zeros((len(items), got.embedding.shape[1]), dtype=np.float32) if emb is None else emb
        p, e = got.prediction.float().softmax(1).numpy(), got.embedding.numpy()
        for r, s in enumerate(ds.samples):
            i = row.get((split, os.path.abspath(s.path)))
            if i is not None and audit.infos[i].error is None:  # a bad image's row holds the next image's outputs
                probs[i], emb[i], valid[i] = p[r], e[r], True
    train = {os.path.abspath(s.path) for s in run.dataset(run.cfg["data"]["train_split"]).samples}
    gallery = np.array([os.path.abspath(it.path) in train for it in items])
    return mislabel_findings(items, probs, emb, valid, gallery, run.class_names, k, confidence, min_agree)
