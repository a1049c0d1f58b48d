"""Fixtures shared by every test folder."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

TINY_RECIPE = """
seed: 1
data: {{name: cub200, root: {root}, img_size: 32, resize: 36, num_workers: 0, val_split: null,
        augment: {{hflip: false}}}}
model: {{name: baseline, backbone: test_resnet.r160_in1k, pretrained: false}}
train: {{epochs: 1, batch_size: 4, lr: 0.01, device: cpu, threads: 1, warmup_epochs: 0}}
eval: {{batch_size: 5}}
{extra}"""


def write_tiny_recipe(path: Path, root: Path, extra: str = "") -> Path:
    """A CPU-second recipe on a synthetic set at ``root`` (tiny ResNet, 32 px, no pretrained weights), plus ``extra``
    YAML lines."""
    path.write_text(TINY_RECIPE.format(root=root, extra=extra))
    return path


@pytest.fixture(scope="session")
def synthetic_set(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``synthetic_set(images_per_class=8, render_size=48)``: a fresh 3-class synthetic set (CUB layout) in a new
    temporary folder, for a test module's ``data_root`` fixture."""
    from fgvc.data import make_synthetic

    def make(images_per_class: int = 8, render_size: int = 48) -> Path:
        return make_synthetic(tmp_path_factory.mktemp("syn") / "s", num_classes=3, images_per_class=images_per_class,
                              render_size=render_size, progress=False)

    return make


def write_fake_run(root: Path, name: str, method: str, backbone: str, data_root: str, top1: float | None,
                   img_size: int = 448) -> Path:
    """A run directory without weights, as the bench report and the published-gap line read it: config.yaml
    (``method`` on ``backbone``, CUB at ``data_root``, ``img_size``), two metrics.jsonl rows and, unless ``top1`` is
    None (an unfinished run), a final.json of 2 epochs."""
    import copy
    import json

    from fgvc import config

    cfg = copy.deepcopy(config.DEFAULTS)
    cfg["model"].update(name=method, backbone=backbone)
    cfg["data"].update(name="cub200", root=data_root, img_size=img_size)
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(config.dump(cfg))
    rows = [{"epoch": 0, "loss": 2.0, "images_per_s": 10.0}, {"epoch": 1, "loss": 1.0, "images_per_s": 30.0}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if top1 is not None:
        final = {"top1": top1, "top5": 97.0, "mean_class_acc": top1 - 0.5, "n_images": 5794, "epochs": 2,
                 "steps": 376, "train_seconds": 1234.5}
        (run / "final.json").write_text(json.dumps(final))
    return run


@pytest.fixture(scope="session")
def fake_run() -> Callable[..., Path]:
    """:func:`write_fake_run`: ``fake_run(root, name, method, backbone, data_root, top1, img_size=448)``."""
    return write_fake_run


@pytest.fixture(scope="session")
def tiny_recipe() -> Callable[..., Path]:
    """:func:`write_tiny_recipe`: ``tiny_recipe(path, data_root, extra="")`` writes the recipe and returns its path."""
    return write_tiny_recipe


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``tiny_run(data_root, *sets)``: train the tiny recipe on ``data_root`` (with ``--set`` items) into a new
    temporary run directory and return it."""
    from fgvc.train import main as train_main

    def train(data_root: Path, *sets: str) -> Path:
        out = tmp_path_factory.mktemp("runs") / "run"
        recipe = write_tiny_recipe(out.parent / "r.yaml", data_root)
        assert train_main([str(recipe), "--output", str(out), *(["--set", *sets] if sets else [])]) == 0
        return out

    return train


class Crash(BaseException):
    """A simulated kill right after a checkpoint (not an error fgvc would catch)."""


@pytest.fixture()
def crash_after_step(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], Callable[[], None]]:
    """``undo = crash_after_step(step)``: from now on the trainer raises ``crash_after_step.Crash`` right after it
    saved ``last.pt`` at global step ``step`` (the kill-equivalent of resume tests); ``undo()`` restores it."""
    from fgvc.engine import trainer as trainer_mod

    real = trainer_mod.save_checkpoint

    def arm(step: int) -> Callable[[], None]:
        def save(state, path):  # type: ignore[no-untyped-def]
            real(state, path)
            if state["progress"]["global_step"] == step and path.name == "last.pt":
                raise Crash

        monkeypatch.setattr(trainer_mod, "save_checkpoint", save)
        return lambda: monkeypatch.setattr(trainer_mod, "save_checkpoint", real)

    arm.Crash = Crash  # type: ignore[attr-defined]
    return arm
