"""train.tensorboard: per-epoch scalars and maps (WS-DAN's attention, a baseline's activation map) to RUN/tb, only
when the key is on."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fgvc.train import main as train_main

pytest.importorskip("tensorboard")


@pytest.fixture(scope="module")
def data_root(synthetic_set) -> Path:
    return synthetic_set(4)


def _train(tiny_recipe, root: Path, out: Path, *sets: str) -> int:
    recipe = tiny_recipe(out.parent / f"{out.name}.yaml", root)
    return train_main([str(recipe), "--output", str(out), "--set", "data.val_split=val", "train.epochs=2", *sets])


def test_scalars_and_attention_images_are_written(data_root, tmp_path, tiny_recipe):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "wsdan"
    assert _train(tiny_recipe, data_root, out, "train.tensorboard=true", "model.name=wsdan",
                  "model.args={num_attentions: 4}") == 0
    assert list((out / "tb").glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(out / "tb"), size_guidance={"images": 0}).Reload()
    scalars = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/top1", "val/top1", "val/loss"} <= scalars
    assert any(t.startswith("lr/") for t in scalars)
    assert [e.step for e in acc.Scalars("val/loss")] == [1, 2]  # 1-based epochs, as in train.log
    images = acc.Images("attention/val")
    assert [e.step for e in images] == [1, 2]


def test_methods_without_part_maps_log_their_activation_map(data_root, tmp_path, tiny_recipe):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "baseline"
    assert _train(tiny_recipe, data_root, out, "train.tensorboard=true") == 0
    acc = EventAccumulator(str(out / "tb"), size_guidance={"images": 0}).Reload()
    assert acc.Tags()["images"] == ["activation/val"]
    assert [e.step for e in acc.Images("activation/val")] == [1, 2]


def test_off_by_default_and_tensorboard_not_imported(data_root, tmp_path, tiny_recipe, monkeypatch):
    for name in [m for m in sys.modules if m.startswith("torch.utils.tensorboard")]:
        monkeypatch.delitem(sys.modules, name)
    out = tmp_path / "plain"
    assert _train(tiny_recipe, data_root, out) == 0
    assert not (out / "tb").exists() and "torch.utils.tensorboard" not in sys.modules


def test_missing_package_is_a_clear_error(data_root, tmp_path, tiny_recipe, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # any import of it raises ImportError
    out = tmp_path / "missing"
    assert _train(tiny_recipe, data_root, out, "train.tensorboard=true") == 2
    assert "pip install -e '.[explain]'" in capsys.readouterr().err
    assert not out.exists()  # refused before anything was written
