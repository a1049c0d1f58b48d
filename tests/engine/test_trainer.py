"""The trainer end to end on a tiny synthetic set (in-process, a few seconds each)."""
import json
from pathlib import Path

import pytest
import torch

from fgvc.evaluate import main as evaluate_main
from fgvc.train import main as train_main


@pytest.fixture(scope="module")
def syn_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("syn")


def recipe(tmp_path: Path, root: Path, extra: str = "") -> Path:
    text = f"""
seed: 3
data:
  name: synthetic
  root: {root}
  img_size: 32
  resize: 36
  num_workers: 0
  args: {{num_classes: 3, images_per_class: 12, render_size: 40, seed: 0, val_fraction: 0.25}}
model: {{name: baseline, backbone: test_resnet.r160_in1k, pretrained: false}}
train: {{epochs: 2, batch_size: 4, lr: 0.01, device: cpu, amp: none, threads: 1, warmup_epochs: 0}}
{extra}
"""
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def run(tmp_path, root, extra="", sets=()):
    out = tmp_path / "run"
    assert train_main([str(recipe(tmp_path, root, extra)), "--output", str(out), *(["--set", *sets] if sets else [])]) == 0
    return out, json.loads((out / "final.json").read_text())


def test_run_directory_and_evaluate_reproduces(tmp_path, syn_root, capsys):
    out, final = run(tmp_path, syn_root)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]
    for key in ("loss", "lr", "train_top1", "val_top1", "epoch_seconds", "images_per_s"):
        assert key in rows[0]
    for key in ("top1", "top5", "mean_class_acc", "n_images", "seconds"):
        assert key in final
    assert final["n_images"] == 18 and final["epochs"] == 2
    for name in ("config.yaml", "train.log", "curves.png", "checkpoints/last.pt", "checkpoints/best.pt",
                 "eval/per_class.csv", "eval/confusion.csv"):
        assert (out / name).is_file(), name
    capsys.readouterr()
    assert evaluate_main([str(out)]) == 0
    assert "reproduces final.json" in capsys.readouterr().out


def test_refuses_to_overwrite_a_run(tmp_path, syn_root, capsys):
    out, _ = run(tmp_path, syn_root, sets=["train.max_steps=1"])
    before = (out / "checkpoints" / "last.pt").read_bytes()
    assert train_main([str(tmp_path / "r.yaml"), "--output", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert (out / "checkpoints" / "last.pt").read_bytes() == before


def test_max_steps_caps_optimisation(tmp_path, syn_root):
    _, final = run(tmp_path, syn_root, sets=["train.max_steps=3"])
    assert final["steps"] == 3


def test_accumulation_ema_mixup_clip(tmp_path, syn_root):
    out, final = run(tmp_path, syn_root, sets=["train.grad_accum=2", "train.ema=true", "train.mixup=0.2",
                                                "train.clip_grad=1.0", "train.scheduler=step"])
    assert final["weights"] == "ema" and final["steps"] == 4  # 4 batches/epoch, 2 per update, 2 epochs
    assert torch.isfinite(torch.tensor(final["top1"]))


def test_stages_freeze_what_the_method_says(tmp_path, syn_root):
    out, final = run(tmp_path, syn_root, sets=["model.name=bcnn", "model.args={pooling: compact, compact_dim: 256}",
                                                "train.stages=[{name: classifier, epochs: 1, lr: 0.1}, "
                                                "{name: finetune, epochs: 1, lr: 0.01}]"])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in rows] == ["classifier", "finetune"] and final["epochs"] == 2


def test_unknown_method_argument_fails_before_training(tmp_path, syn_root, capsys):
    rc = train_main([str(recipe(tmp_path, syn_root)), "--output", str(tmp_path / "x"), "--set", "model.args={drop_rat: 0.1}"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "drop_rat" in err and "drop_rate" in err


def test_warns_when_a_flip_changes_the_class(tmp_path, syn_root, monkeypatch):
    from fgvc.data.base import FGVCDataset

    monkeypatch.setattr(FGVCDataset, "hflip_problem", lambda self: "classes a and b are mirror images")
    out, _ = run(tmp_path, syn_root, sets=["train.max_steps=1", "data.augment.hflip=true"])
    log = (out / "train.log").read_text()
    assert "data.augment.hflip=true, but classes a and b are mirror images: set data.augment.hflip=false" in log
    assert "eval.tta_flip" not in log
