"""``fgvc.embed``: the .npz it writes (embeddings, labels, paths, classes) from a run and from a recipe, for every
method, on species the model never saw, and its one-line errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fgvc.data import make_synthetic
from fgvc.embed import main as embed_main
from fgvc.engine.inference import TrainedRun
from fgvc.train import main as train_main

SMALL_ARGS = {
    "baseline": "{}", "senet": "{}", "cbam": "{}", "wsdan": "{num_attentions: 2}", "bcnn": "{reduce_dim: 8}",
    "racnn": "{share_backbone: true, apn_hidden: 16, apn_channels: 4, apn_grid: 2}",
}


def _recipe(path: Path, root: Path, method: str = "baseline") -> Path:
    path.write_text(f"""
seed: 1
data: {{name: cub200, root: {root}, img_size: 32, resize: 36, num_workers: 0, val_split: null,
        augment: {{hflip: false}}}}
model: {{name: {method}, backbone: test_resnet.r160_in1k, pretrained: false, args: {SMALL_ARGS[method]}}}
train: {{epochs: 1, batch_size: 4, lr: 0.01, device: cpu, threads: 1, warmup_epochs: 0}}
eval: {{batch_size: 5}}
""")
    return path


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("syn")
    return (make_synthetic(tmp / "seen", num_classes=3, images_per_class=8, render_size=48, progress=False),
            make_synthetic(tmp / "other", num_classes=4, images_per_class=6, render_size=48, seed=5, progress=False))


@pytest.fixture(scope="module")
def run_dir(roots, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("runs")
    assert train_main([str(_recipe(tmp / "tiny.yaml", roots[0])), "--output", str(tmp / "run")]) == 0
    return tmp / "run"


def _read(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:  # no pickled objects: plain arrays only
        return {k: f[k] for k in f.files}


def test_embed_a_run(run_dir, tmp_path, capsys):
    out = tmp_path / "sub" / "test.npz"
    assert embed_main([str(run_dir), "--out", str(out)]) == 0
    got = _read(out)
    assert set(got) == {"embeddings", "labels", "paths", "classes"}
    emb, labels, paths, classes = got["embeddings"], got["labels"], got["paths"], got["classes"]
    run = TrainedRun.load(run_dir)
    ds = run.dataset("test")
    assert emb.dtype == np.float32 and labels.dtype == np.int64 and emb.shape[0] == labels.shape[0] == len(ds) == 12
    assert labels.tolist() == ds.targets and paths.tolist() == [str(Path(s.path).absolute()) for s in ds.samples]
    assert classes.tolist() == run.class_names and paths.dtype.kind == classes.dtype.kind == "U"
    np.testing.assert_array_equal(emb, run.collect("test", ["embedding"]).embedding.numpy())  # one pass, in order
    assert capsys.readouterr().out.splitlines() == [
        f"test (last checkpoint, model weights): 12 images x {emb.shape[1]} dimensions, 3 classes", f"wrote {out}"]
    assert embed_main([str(run_dir), "--split", "train", "--checkpoint", "last", "--out",
                       str(tmp_path / "tr.npz")]) == 0
    assert _read(tmp_path / "tr.npz")["labels"].tolist() == run.dataset("train").targets


def test_embed_species_the_model_never_saw(run_dir, roots, tmp_path):
    other = roots[1]
    out = tmp_path / "other.npz"
    assert embed_main([str(run_dir), "--set", f"data.root={other}", "--out", str(out)]) == 0
    got = _read(out)
    assert len(got["classes"]) == 4 and sorted(set(got["labels"].tolist())) == [0, 1, 2, 3]
    assert all(p.startswith(str(other)) for p in got["paths"].tolist())
    final = json.loads((run_dir / "final.json").read_text())
    assert final["n_images"] == 12  # the run itself is untouched


def test_paths_are_absolute_from_a_relative_root(run_dir, roots, tmp_path, monkeypatch):
    """A data root given relative to the working directory still gives paths that open from anywhere."""
    other = roots[1]
    monkeypatch.chdir(other.parent)
    out = tmp_path / "rel.npz"
    assert embed_main([str(run_dir), "--set", f"data.root={other.name}", "--out", str(out)]) == 0
    monkeypatch.chdir(tmp_path)
    paths = _read(out)["paths"].tolist()
    assert paths and all(Path(p).is_absolute() and Path(p).is_file() for p in paths)


@pytest.mark.parametrize("method", sorted(SMALL_ARGS))
def test_embed_a_recipe_for_every_method(method, roots, tmp_path, capsys):
    """A recipe embeds with its (here untrained) backbone: the frozen-features baseline; every method's
    ``infer(...).embedding``."""
    recipe = _recipe(tmp_path / f"{method}.yaml", roots[0], method)
    out = tmp_path / "e.npz"
    assert embed_main([str(recipe), "--out", str(out)]) == 0
    got = _read(out)
    assert got["embeddings"].ndim == 2 and got["embeddings"].shape[0] == 12
    assert np.isfinite(got["embeddings"]).all() and len(got["classes"]) == 3
    assert capsys.readouterr().out.startswith(f"test (recipe {method}.yaml: random-init backbone, untrained head)")


def test_embed_errors_are_one_line(run_dir, tmp_path, capsys):
    assert embed_main([str(tmp_path / "nope"), "--out", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no such run directory or checkpoint")
    with pytest.raises(SystemExit):  # --out is required
        embed_main([str(run_dir)])
