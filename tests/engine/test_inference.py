"""TrainedRun and the evaluation protocols: one loader of runs, one pass per split, in dataset order; the commands
that stand on them (evaluate --protocol/--output, visualize) on CNN and vision-transformer runs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fgvc.engine.inference import TrainedRun
from fgvc.evaluate import main as evaluate_main
from fgvc.train import main as train_main
from fgvc.visualize import main as visualize_main

VIT = "vit_tiny_patch16_224"


@pytest.fixture(scope="module")
def data_root(synthetic_set) -> Path:
    return synthetic_set(8)


def _train(tiny_recipe, root: Path, out: Path, *sets: str) -> Path:
    recipe = tiny_recipe(out.parent / f"{out.name}.yaml", root)
    assert train_main([str(recipe), "--output", str(out), "--set", *sets] if sets else
                      [str(recipe), "--output", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def wsdan_run(data_root, tmp_path_factory, tiny_recipe) -> Path:
    return _train(tiny_recipe, data_root, tmp_path_factory.mktemp("runs") / "wsdan", "model.name=wsdan",
                  "model.args={num_attentions: 4}")


def test_collect_is_one_pass_in_dataset_order(wsdan_run):
    run = TrainedRun.load(wsdan_run)
    final = json.loads((wsdan_run / "final.json").read_text())
    got = run.collect("test", ["logits", "embedding", "maps", "boxes", "feature_map"])
    n = final["n_images"]
    assert got.targets.tolist() == run.dataset("test").targets and got.headline == "refined"
    assert set(got.logits) == {"refined", "raw"} and got.prediction.shape == (n, 3)
    assert got.embedding.shape[0] == got.maps.shape[0] == got.boxes.shape[0] == got.feature_map.shape[0] == n
    top1 = 100.0 * float((got.prediction.argmax(1) == got.targets).float().mean())
    assert top1 == pytest.approx(final["top1"], abs=1e-4)  # the trainer's final test: same path
    images = torch.stack([run.dataset("test")[i][0] for i in (0, 1)])  # float, normalised by the dataset
    torch.testing.assert_close(run.infer(images).prediction.cpu(), got.prediction[:2])  # collect: uint8 batches
    from fgvc.engine.inference import _uint8_view

    ds = run.dataset("test")
    view = _uint8_view(ds, run.data_config)
    assert view.transform.output == "uint8" and ds.transform.output == "float" and view.samples is ds.samples
    as_uint8 = torch.stack([view[i][0] for i in (0, 1)])
    assert as_uint8.dtype == torch.uint8 and torch.allclose(run.inputs(as_uint8), images, atol=1e-5, rtol=0)
    assert _uint8_view(ds, {**run.data_config, "mean": (0.1, 0.2, 0.3)}) is ds  # normalised otherwise: left alone
    only = run.collect("test", ["embedding"])
    assert only.logits == {} and only.maps is None and torch.equal(only.embedding, got.embedding)
    tta = run.collect("test", ["logits"], tta=True).prediction
    flipped = run.infer(torch.flip(images, dims=[3])).prediction.cpu()
    expect = (run.infer(images).prediction.cpu().softmax(1) + flipped.softmax(1)).log()
    torch.testing.assert_close(tta[:2], expect)
    with pytest.raises(ValueError, match="unknown output field"):
        run.collect("test", ["attention"])


def test_evaluate_protocol_and_output_dir(wsdan_run, tmp_path, capsys):
    assert evaluate_main([str(wsdan_run), "--protocol", "classification", "--output", str(tmp_path / "ev")]) == 0
    out = capsys.readouterr().out
    assert "reproduces final.json" in out and "refined" in out and "raw" in out
    assert {p.name for p in (tmp_path / "ev").iterdir()} == {"classification-test-last.json",
                                                              "classification-test-last-per_class.csv",
                                                              "classification-test-last-confusion.csv"}
    assert evaluate_main([str(wsdan_run), "--protocol", "clasification"]) == 2
    assert "unknown evaluation protocol 'clasification' (did you mean 'classification'?)" in capsys.readouterr().err


def test_visualize_draws_maps_and_the_object_box_from_one_pass(wsdan_run, monkeypatch):
    from fgvc.methods.wsdan import WSDAN

    calls = []
    original = WSDAN.infer
    monkeypatch.setattr(WSDAN, "infer", lambda self, x: calls.append(len(x)) or original(self, x))
    assert visualize_main([str(wsdan_run), "--n", "3", "--maps", "top4"]) == 0
    assert calls == [3]  # maps, box and predictions of the figure: one infer call
    assert (wsdan_run / "vis" / "attention-test-last-top4.png").is_file()


def test_runs_written_by_earlier_versions_still_load(wsdan_run, tmp_path, capsys):
    """A checkpoint whose config predates eval.protocols and model.backbone_args and still has train.cpu_amp."""
    import shutil

    from fgvc.engine.checkpoint import load_checkpoint, save_checkpoint

    old = tmp_path / "old"
    shutil.copytree(wsdan_run, old)
    state = load_checkpoint(old / "checkpoints" / "last.pt")
    cfg = state["config"]
    del cfg["eval"]["protocols"]
    cfg["model"]["args"]["backbone_args"] = cfg["model"].pop("backbone_args")
    cfg["train"].update(amp="bf16", cpu_amp=False)
    save_checkpoint(state, old / "checkpoints" / "last.pt")
    run = TrainedRun.load(old)
    assert run.cfg["eval"]["protocols"] == ["classification"] and run.runtime.amp == "none"  # bf16 meant CUDA only
    assert evaluate_main([str(old)]) == 0 and "reproduces final.json" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("method", ["baseline", "wsdan", "bcnn"])
def test_transformer_backbone_trains_and_draws(method, data_root, tmp_path, tiny_recipe):
    sets = [f"model.name={method}", f"model.backbone={VIT}", "model.pretrained=false", "train.max_steps=2"]
    sets += {"wsdan": ["model.args={num_attentions: 4}"], "bcnn": ["model.args={reduce_dim: 8}"]}.get(method, [])
    run = _train(tiny_recipe, data_root, tmp_path / method, *sets)
    assert json.loads((run / "final.json").read_text())["steps"] == 2
    assert visualize_main([str(run), "--n", "2"]) == 0
    assert (run / "vis" / "attention-test-last-mean.png").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("method,name", [("cbam", "CBAM"), ("senet", "SE")])
def test_cbam_and_se_refuse_a_transformer_with_one_line(method, name, data_root, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"data: {{name: cub200, root: {data_root}, img_size: 32, resize: 36, num_workers: 0}}\n"
                      f"model: {{name: {method}, backbone: {VIT}, pretrained: false}}\ntrain: {{device: cpu}}\n")
    assert train_main([str(recipe), "--output", str(tmp_path / "run")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and name in err[0] and "vision transformer" in err[0]
    assert not (tmp_path / "run").exists()
