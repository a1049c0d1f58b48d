"""fgvc.prune: structured channel pruning (torch-pruning DepGraph) of a trained run into an ordinary, loadable run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from fgvc.deploy.channel_pruning import PruningError, prune_method
from fgvc.engine.checkpoint import load_checkpoint
from fgvc.engine.inference import TrainedRun
from fgvc.engine.pruned_arch import apply_pruned, pruned_layers
from fgvc.evaluate import main as evaluate_main
from fgvc.methods import build_method
from fgvc.prune import main as prune_main
from fgvc.train import main as train_main

pytest.importorskip("torch_pruning")


@pytest.fixture(scope="module")
def data_root(synthetic_set) -> Path:
    return synthetic_set(8)  # 12 train images: 3 batches of 4 per epoch


@pytest.fixture(scope="module")
def run_dir(data_root, tiny_run) -> Path:
    return tiny_run(data_root, "train.max_steps=2")


@pytest.fixture(scope="module")
def pruned(run_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pruned") / "p"
    assert prune_main([str(run_dir), "--amount", "0.3", "--output", str(out), "--latency-threads", "1"]) == 0
    return out


def _method(name: str, backbone: str = "test_resnet.r160_in1k") -> nn.Module:
    return build_method({"name": name, "backbone": backbone, "pretrained": False, "pretrained_file": None,
                         "backbone_args": {}, "args": {}}, 3, nn.CrossEntropyLoss(), []).eval()


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_pruned_run_is_smaller_loads_and_evaluates_as_reported(run_dir, pruned, tmp_path):
    report = json.loads((pruned / "prune.json").read_text())
    before, after = report["before"], report["after_prune"]
    assert after["params"] < 0.8 * before["params"] and after["macs"] < 0.8 * before["macs"]
    assert report["groups_pruned"] > 0 and report["channels_after"] < report["channels_before"]
    assert report["latency_threads"] == 1 and after["latency_ms"] > 0
    state = load_checkpoint(pruned / "checkpoints" / "last.pt")  # weights_only load of the record
    assert state["pruned"] and all(isinstance(v, dict) for v in state["pruned"].values())
    run, original = TrainedRun.load(pruned), TrainedRun.load(run_dir)
    assert _n_params(run.method) == after["params"] < _n_params(original.method) == before["params"]
    narrower = [k for k, v in run.method.state_dict().items() if v.shape != original.method.state_dict()[k].shape]
    assert any(k.endswith("conv1.weight") for k in narrower)
    out = run.infer(torch.randn(2, 3, 32, 32))
    assert out.prediction.shape == (2, 3) and torch.isfinite(out.prediction).all()
    assert evaluate_main([str(pruned), "--output", str(tmp_path / "ev")]) == 0
    evaluated = json.loads((tmp_path / "ev" / "classification-test-last.json").read_text())
    final = json.loads((pruned / "final.json").read_text())
    assert evaluated["top1"] == pytest.approx(after["top1"]) == pytest.approx(final["top1"])


@pytest.mark.slow  # trains twice: ~2-4 s
def test_fine_tune_trains_and_resumes_exactly(run_dir, tmp_path, crash_after_step, capsys):
    args = [str(run_dir), "--amount", "0.3", "--finetune-epochs", "2", "--set", "train.checkpoint_every_steps=1"]
    full, part = tmp_path / "full", tmp_path / "part"
    assert prune_main([*args, "--output", str(full)]) == 0
    assert "after 2 fine-tune epoch(s)" in capsys.readouterr().out  # the before / after table
    report = json.loads((full / "prune.json").read_text())
    rows = (full / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 2 and report["after_finetune"]["params"] == report["after_prune"]["params"]
    assert report["after_finetune"]["top1"] == json.loads((full / "final.json").read_text())["top1"]
    undo = crash_after_step(4)  # die right after the checkpoint of that step
    with pytest.raises(crash_after_step.Crash):
        prune_main([*args, "--output", str(part)])
    undo()
    assert train_main(["--resume", str(part)]) == 0
    a, b = (load_checkpoint(d / "checkpoints" / "last.pt")["model"] for d in (full, part))
    assert all(torch.equal(a[k], b[k]) for k in a)
    top1 = [json.loads((d / "final.json").read_text())["top1"] for d in (full, part)]
    assert top1[0] == top1[1]


@pytest.mark.parametrize("args, says", [
    (["--amount", "0"], "(0, 1)"),
    (["--amount", "1"], "(0, 1)"),
    (["--amount", "1.5"], "(0, 1)"),
    (["--amount", "0.3", "--checkpoint", "best"], "no checkpoints/best.pt"),
    (["--amount", "0.3", "--finetune-epochs", "-1"], ">= 0"),
])
def test_bad_input_is_refused_and_nothing_is_written(run_dir, tmp_path, capsys, args, says):
    out = tmp_path / "new"
    assert prune_main([str(run_dir), *args, "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and says in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_refuses_an_existing_output_and_a_missing_run(run_dir, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    assert prune_main([str(run_dir), "--amount", "0.3", "--output", str(taken)]) == 2
    assert "already exists" in capsys.readouterr().err and [p.name for p in taken.iterdir()] == ["keep.txt"]
    assert prune_main([str(tmp_path / "nowhere"), "--amount", "0.3", "--output", str(tmp_path / "n")]) == 2
    assert "no such run directory" in capsys.readouterr().err and not (tmp_path / "n").exists()


def test_refuses_a_vision_transformer_backbone():
    with pytest.raises(PruningError, match="vision transformer"):
        prune_method(_method("baseline", "test_vit.r160_in1k"), torch.randn(1, 3, 32, 32), 0.3)


@pytest.mark.parametrize("name, backbone, importance", [
    ("baseline", "test_efficientnet.r160_in1k", "l1"),  # depthwise convolutions: groups shrink with the channels
    ("cbam", "test_resnet.r160_in1k", "l2"),
    ("senet", "test_resnet.r160_in1k", "taylor"),
    ("bcnn", "test_resnet.r160_in1k", "l1"),
    ("wsdan", "test_resnet.r160_in1k", "l1"),
])
def test_every_cnn_method_prunes_and_rebuilds_from_its_record(name, backbone, importance):
    torch.manual_seed(0)
    method, x = _method(name, backbone), torch.randn(1, 3, 32, 32)
    widths = {k: v.shape for k, v in method.state_dict().items()}
    n_before, logits_before = _n_params(method), method.infer(x).logits
    batches = [(torch.randn(2, 3, 32, 32), torch.tensor([0, 2]))]
    summary = prune_method(method, x, 0.3, importance, batches, name)
    assert summary.groups_pruned > 0 and _n_params(method) < n_before
    out = method.infer(x)
    assert {k: v.shape for k, v in out.logits.items()} == {k: v.shape for k, v in logits_before.items()}
    for key in ("fc.weight", "attention.0.weight", "centers"):  # heads, WS-DAN's maps and centers keep their sizes
        if key in widths:
            assert method.state_dict()[key].shape == widths[key]
    fresh = _method(name, backbone)
    apply_pruned(fresh, pruned_layers(method), method.state_dict())
    fresh.load_state_dict(method.state_dict())
    assert torch.allclose(fresh.eval().infer(x).prediction, out.prediction)
