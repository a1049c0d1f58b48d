"""Shared helpers of the reliability suite: a tiny synthetic data set (CUB layout, 3 classes x 16 images of
32 px), tiny recipes (timm test_resnet, random init, CPU, 1 thread) and CLI runners (in-process and subprocess).

Imported by the tests in tests/reliability (pytest puts this folder on sys.path; no __init__.py).
"""
from __future__ import annotations

import atexit
import functools
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
TIMING_KEYS = {"epoch_seconds", "images_per_s", "seconds", "train_seconds"}


@functools.lru_cache(maxsize=None)
def pristine_root() -> Path:
    """The synthetic set, made once per process (3 classes x 16 images; 7 train + 1 val + 8 test per class)."""
    from fgvc.data import make_synthetic

    base = Path(tempfile.mkdtemp(prefix="fgvc-rel-data-"))
    atexit.register(shutil.rmtree, base, True)
    return make_synthetic(base / "syn", num_classes=3, images_per_class=16, render_size=32, progress=False)


def copy_data(dst: Path) -> Path:
    """A private copy of the synthetic set at ``dst`` (tests damage it)."""
    shutil.copytree(pristine_root(), dst)
    return dst


def cub_dir(root: Path) -> Path:
    return root / "CUB_200_2011"


def image_paths(root: Path, split: str = "train") -> list[Path]:
    """The images of one official split (train: is_train=1), in image-id order."""
    d = cub_dir(root)
    rel = dict(line.split(" ", 1) for line in (d / "images.txt").read_text().splitlines())
    is_train = dict(line.split() for line in (d / "train_test_split.txt").read_text().splitlines())
    want = "1" if split == "train" else "0"
    return [d / "images" / rel[i] for i in sorted(rel, key=int) if is_train[i] == want]


def base_recipe(root: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "seed": 3,
        "data": {"name": "cub200", "root": str(root), "img_size": 32, "resize": 36, "num_workers": 0,
                 "val_split": "val"},
        "model": {"name": "baseline", "backbone": "test_resnet.r160_in1k", "pretrained": False},
        "train": {"epochs": 2, "batch_size": 4, "lr": 0.01, "device": "cpu", "threads": 1, "deterministic": True,
                  "warmup_epochs": 0},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    return cfg


def write_recipe(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def train_inprocess(args: list[str], capsys: pytest.CaptureFixture | None = None) -> tuple[int, str]:
    """``fgvc.train.main(args)``: (exit code, stderr) ."""
    from fgvc.train import main

    rc = main([str(a) for a in args])
    err = capsys.readouterr().err if capsys is not None else ""
    return rc, err


def train_one_epoch(tmp: Path) -> Path:
    """A 1-epoch run of the base recipe on a copy of the pristine data in ``tmp`` (for module-scope fixtures, which
    cannot use ``torch_globals``: the process-wide torch settings are restored here); returns the run directory."""
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    recipe = write_recipe(tmp / "r.yaml", base_recipe(copy_data(tmp / "data"), train={"epochs": 1}))
    rc, _ = train_inprocess([recipe, "--output", tmp / "run"])
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(det)
    assert rc == 0
    return tmp / "run"


def run_module(module: str, args: list[Any], timeout: float = 300, env: dict[str, str] | None = None,
               cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m module args`` in a subprocess (1 thread), output captured."""
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=subprocess_env(env), cwd=cwd)


def subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("WORLD_SIZE", None)
    env.update(extra or {})
    return env


def one_line_error(err: str) -> str:
    """The single ``error: ...`` line a CLI prints for a user error: no traceback, exactly one error line, and it
    is the last thing printed (progress lines and library warnings may come before it)."""
    assert "Traceback" not in err, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    return errors[0]


def metrics_rows(run: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]


def without_timing(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in TIMING_KEYS}


@pytest.fixture
def torch_globals():
    """Restore the process-wide settings an in-process training run changes (threads, determinism, logging)."""
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(det, warn_only=warn_only)
    log = logging.getLogger("fgvc")
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
