"""``fgvc.extend``: weight imprinting (exactly the class-mean direction, old-class logits kept by a cosine head), the
union run as an ordinary run (evaluate, embed, visualize), the EWC penalty and Fisher against their formulas,
rehearsal's N images per old class, and the one-line refusals (class clash, too few shots, a method without one
head on its embedding, an existing NEW_RUN)."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fgvc.data import build_dataset, make_synthetic
from fgvc.data.union import first_shots
from fgvc.embed import main as embed_main
from fgvc.engine import builder
from fgvc.engine.checkpoint import load_checkpoint
from fgvc.continual.ewc import EWCPenalty, diagonal_fisher
from fgvc.continual.extend import ExtendRequest, added_part, embedding_head, union_config
from fgvc.continual.imprint import centred_linear, fit_scale, imprinted_weights
from fgvc.engine.inference import TrainedRun
from fgvc.errors import CheckpointError
from fgvc.evaluate import main as evaluate_main
from fgvc.extend import main as extend_main
from fgvc.train import main as train_main
from fgvc.visualize import main as visualize_main

NEW = ("new_alpha", "new_beta")


def make_folder(root: Path, classes: dict[str, tuple[int, int]], seed: int = 0) -> Path:
    """``root/{train,test}/<class>/*.png``: noise around a colour per class; ``classes``: name -> (train, test)."""
    rng = np.random.default_rng(seed)
    for c, (name, counts) in enumerate(classes.items()):
        base = rng.integers(0, 256, 3)
        for split, n in zip(("train", "test"), counts):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for j in range(n):
                pixels = np.clip(base + rng.normal(0, 40, (40, 40, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{j}.png")
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory, tiny_recipe) -> SimpleNamespace:
    tmp = tmp_path_factory.mktemp("extend")
    old = make_synthetic(tmp / "old", num_classes=3, images_per_class=8, render_size=48, progress=False)
    new = make_folder(tmp / "new", {NEW[0]: (4, 2), NEW[1]: (5, 2)})
    runs = {}
    for head in ("linear", "cosine"):
        recipe = tiny_recipe(tmp / f"{head}.yaml", old)
        assert train_main([str(recipe), "--output", str(tmp / f"run_{head}"), "--set", f"model.args.head={head}"]) == 0
        runs[head] = tmp / f"run_{head}"
    return SimpleNamespace(tmp=tmp, old=old, new=new, runs=runs)


@pytest.fixture(scope="module")
def imprinted(data) -> Path:
    out = data.tmp / "imprinted"
    assert extend_main([str(data.runs["linear"]), "--add", str(data.new), "--shots", "3", "--output", str(out)]) == 0
    return out


def _shot_embeddings(run_dir: Path, new_root: Path, shots: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The old model's embeddings of the new classes' first ``shots`` training images, computed here by hand."""
    run = TrainedRun.load(run_dir)
    ds = build_dataset("folder", new_root, "train",
                       transform=builder.build_transform(run.cfg, False, run.data_config))
    keep = first_shots(ds.targets, shots, run.cfg["seed"])
    images = torch.stack([ds[i][0] for i in keep])
    return run.infer(images).embedding.float(), torch.tensor([ds.targets[i] for i in keep])


def test_imprinted_weight_is_the_normalised_mean_of_normalised_embeddings():
    g = torch.Generator().manual_seed(0)
    emb, labels = torch.randn(7, 5, generator=g) * 3, torch.tensor([0, 1, 1, 0, 2, 1, 0])
    got = imprinted_weights(emb, labels, 3)
    e = emb.numpy() / np.linalg.norm(emb.numpy(), axis=1, keepdims=True)
    for c in range(3):
        mean = e[labels.numpy() == c].mean(0)
        np.testing.assert_allclose(got[c].numpy(), mean / np.linalg.norm(mean), atol=1e-6)
    fallback = torch.eye(5)[:4]  # class 3 has no embedding: it keeps its fallback row
    kept = imprinted_weights(emb, labels, 4, fallback=fallback)
    torch.testing.assert_close(kept[:3], got)
    torch.testing.assert_close(kept[3], fallback[3])
    centre = torch.randn(5, generator=g)
    torch.testing.assert_close(imprinted_weights(emb, labels, 3, centre=centre),
                               imprinted_weights(emb - centre, labels, 3))
    weight, bias = centred_linear(got, centre, scale=8.0, unit=2.0)  # logits 8 / 2 * (e - centre) . rows
    torch.testing.assert_close(emb @ weight.T + bias, 4.0 * (emb - centre) @ got.T, atol=1e-5, rtol=1e-5)
    assert fit_scale(torch.eye(3) * 0.4, torch.arange(3)) == 64.0  # all right: the most confident scale
    wrong = torch.tensor([[0.4, 0.0], [0.0, 0.4], [0.3, 0.0]])  # the third one wrong: a finite optimum
    assert fit_scale(wrong, torch.tensor([0, 1, 1])) < 64.0
    assert first_shots([0, 1, 0, 1, 0], 2, 3) == first_shots([0, 1, 0, 1, 0], 2, 3)  # fixed, seeded
    assert sorted(np.bincount([[0, 1, 0, 1, 0][i] for i in first_shots([0, 1, 0, 1, 0], 2, 3)])) == [2, 2]


def test_imprinting_through_the_command_is_exactly_the_class_mean(data, imprinted):
    state = load_checkpoint(imprinted / "checkpoints" / "last.pt")
    assert state["class_names"][-2:] == list(NEW) and len(state["class_names"]) == 5
    w = state["model"]["fc.weight"]  # 5, D: a cosine head now (the linear head's bias is gone)
    assert "fc.bias" not in state["model"] and state["config"]["model"]["args"]["head"] == "cosine"
    emb, labels = _shot_embeddings(data.runs["linear"], data.new, 3)
    torch.testing.assert_close(F.normalize(w[3:], dim=1), imprinted_weights(emb, labels, 2), atol=1e-5, rtol=0)
    old = TrainedRun.load(data.runs["linear"]).collect("train", ["embedding"])  # every old training image
    torch.testing.assert_close(F.normalize(w[:3], dim=1), imprinted_weights(old.embedding, old.targets, 3), atol=1e-5,
                               rtol=0)
    final = json.loads((imprinted / "final.json").read_text())
    for key in ("top1", "old_top1", "new_top1", "old_top1_before", "shots", "finetune_epochs", "cosine_scale"):
        assert key in final, key
    assert final["shots"] == 3 and final["finetune_epochs"] == 0 and final["n_images"] == 12 + 4
    assert final["forgetting"] == "imprinting" and 4 <= final["cosine_scale"] <= 64
    assert final["old_weights"] == "imprinted" and final["head"] == "cosine" and final["shot_seed"] == 1
    counts = np.bincount(TrainedRun.load(imprinted).dataset("train", False).targets)
    assert counts[3:].tolist() == [3, 3]  # the union's train split holds exactly the shots imprinted


def test_old_weights_centred_is_the_centred_class_mean_in_the_linear_head(data, tmp_path):
    imprinted = tmp_path / "centred"
    assert extend_main([str(data.runs["linear"]), "--add", str(data.new), "--shots", "3", "--old-weights", "centred",
                        "--output", str(imprinted)]) == 0
    state = load_checkpoint(imprinted / "checkpoints" / "last.pt")
    assert state["class_names"][-2:] == list(NEW) and len(state["class_names"]) == 5
    w, b = state["model"]["fc.weight"].double(), state["model"]["fc.bias"].double()  # 5, D and 5: still linear
    assert state["config"]["model"]["args"].get("head", "linear") == "linear"
    emb, labels = _shot_embeddings(data.runs["linear"], data.new, 3)
    old = TrainedRun.load(data.runs["linear"]).collect("train", ["embedding"])  # every old training image
    centre = old.embedding.double().mean(0).numpy()

    def centred_mean(e: np.ndarray) -> np.ndarray:  # normalise(mean of normalise(e_i - centre))
        u = (e - centre) / np.linalg.norm(e - centre, axis=1, keepdims=True)
        return u.mean(0) / np.linalg.norm(u.mean(0))

    by_hand = [centred_mean(old.embedding.double().numpy()[old.targets.numpy() == c]) for c in range(3)]
    by_hand += [centred_mean(emb.double().numpy()[labels.numpy() == c]) for c in range(2)]
    np.testing.assert_allclose(F.normalize(w, dim=1).numpy(), np.stack(by_hand), atol=1e-5)
    final = json.loads((imprinted / "final.json").read_text())
    unit = np.linalg.norm(old.embedding.double().numpy() - centre, axis=1).mean()
    np.testing.assert_allclose(w.norm(dim=1).numpy(), final["cosine_scale"] / unit, rtol=1e-5)  # one scale for all
    np.testing.assert_allclose(b.numpy(), -(w.numpy() @ centre), rtol=1e-5, atol=1e-5)  # logits: w . (e - centre)
    for key in ("top1", "old_top1", "new_top1", "old_top1_before", "shots", "finetune_epochs", "cosine_scale"):
        assert key in final, key
    assert final["shots"] == 3 and final["finetune_epochs"] == 0 and final["n_images"] == 12 + 4
    assert final["forgetting"] == "imprinting" and 4 <= final["cosine_scale"] <= 64
    assert final["old_weights"] == "centred" and final["head"] == "linear"
    counts = np.bincount(TrainedRun.load(imprinted).dataset("train", False).targets)
    assert counts[3:].tolist() == [3, 3]  # the union's train split holds exactly the shots imprinted


def test_imprinting_alone_trains_nothing_and_says_so(data, imprinted):
    log = (imprinted / "train.log").read_text()
    assert "stage 1/1" not in log and "fit:" not in log  # no training stage, no over/underfitting verdict
    final = json.loads((imprinted / "final.json").read_text())
    assert final["steps"] == 0 and final["fit"] is None
    assert final["best_val_top1"] is None and final["best_val_epoch"] is None  # nothing was validated
    trained = json.loads((data.runs["linear"] / "final.json").read_text())  # trained with data.val_split: null
    assert trained["steps"] > 0 and trained["best_val_top1"] is None and trained["fit"] is not None


def test_shot_seed_draws_other_shots(data, tmp_path):
    run = TrainedRun.load(data.runs["linear"])
    new = added_part(data.new, (), run.cfg)
    picked = []
    for seed in (None, run.cfg["seed"], run.cfg["seed"] + 1):
        req = ExtendRequest(data.runs["linear"], data.new, tmp_path / "unused", shots=2, shot_seed=seed)
        ds = builder.build_split(union_config(run.cfg, new, req), "train", False, None)
        picked.append(sorted(str(s.path) for s in ds.samples if s.label >= 3))
        assert np.bincount(ds.targets, minlength=5)[3:].tolist() == [2, 2]
    assert picked[0] == picked[1]  # default: the run's seed
    assert picked[2] != picked[0]  # another seed, other shots (2 of 4 and 2 of 5 images)


def test_old_weights_normalised_keeps_the_linear_directions(data, tmp_path):
    out = tmp_path / "norm"
    assert extend_main([str(data.runs["linear"]), "--add", str(data.new), "--shots", "2", "--old-weights",
                        "normalised", "--output", str(out)]) == 0
    w = load_checkpoint(out / "checkpoints" / "last.pt")["model"]["fc.weight"]
    old_w = load_checkpoint(data.runs["linear"] / "checkpoints" / "last.pt")["model"]["fc.weight"]
    torch.testing.assert_close(w[:3], F.normalize(old_w, dim=1))
    assert json.loads((out / "final.json").read_text())["old_weights"] == "normalised"


def test_a_cosine_head_keeps_old_class_logits(data, tmp_path):
    out = tmp_path / "ext"
    assert extend_main([str(data.runs["cosine"]), "--add", str(data.new), "--shots", "2", "--output", str(out)]) == 0
    old, ext = TrainedRun.load(data.runs["cosine"]), TrainedRun.load(out)
    images = torch.stack([old.dataset("test")[i][0] for i in range(6)])
    before, after = old.infer(images).prediction, ext.infer(images).prediction
    torch.testing.assert_close(after[:, :3], before)  # same rows, same scale: old-class logits unchanged
    assert torch.equal(after[:, :3].argmax(1), before.argmax(1))
    assert load_checkpoint(out / "checkpoints" / "last.pt")["config"]["model"]["args"]["head"] == "cosine"
    assert json.loads((out / "final.json").read_text())["old_weights"] == "kept"


def test_the_union_run_is_an_ordinary_run(data, imprinted, tmp_path, capsys):
    assert evaluate_main([str(imprinted)]) == 0
    assert "reproduces final.json" in capsys.readouterr().out
    assert embed_main([str(imprinted), "--out", str(tmp_path / "e.npz")]) == 0
    with np.load(tmp_path / "e.npz") as f:
        assert f["classes"].tolist()[-2:] == list(NEW) and f["embeddings"].shape[0] == 16
    assert visualize_main([str(imprinted), "--n", "2"]) == 0
    assert (imprinted / "train.log").read_text().count("extending") == 1
    cfg = load_checkpoint(imprinted / "checkpoints" / "last.pt")["config"]
    assert cfg["data"]["name"] == "union" and [p["name"] for p in cfg["data"]["args"]["parts"]] == ["cub200", "folder"]


def test_an_extended_run_extends_again(data, imprinted, tmp_path):
    more = make_folder(tmp_path / "more", {"new_gamma": (2, 1)}, seed=3)
    out = tmp_path / "again"
    assert extend_main([str(imprinted), "--add", str(more), "--shots", "1", "--output", str(out)]) == 0
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["class_names"][-3:] == [*NEW, "new_gamma"]
    parts = state["config"]["data"]["args"]["parts"]
    assert [(p["name"], p.get("shots")) for p in parts] == [("cub200", None), ("folder", 3), ("folder", 1)]
    first = load_checkpoint(imprinted / "checkpoints" / "last.pt")["model"]["fc.weight"]
    torch.testing.assert_close(state["model"]["fc.weight"][:5], first)  # a cosine head keeps its rows
    assert json.loads((out / "final.json").read_text())["n_images"] == 17


def _error(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_refuses_a_class_that_clashes(data, tmp_path, capsys):
    old_name = TrainedRun.load(data.runs["linear"]).class_names[1]
    clash = make_folder(tmp_path / "clash", {old_name.lower().replace("_", " "): (3, 1), "fresh": (3, 1)})
    assert extend_main([str(data.runs["linear"]), "--add", str(clash), "--shots", "1",
                        "--output", str(tmp_path / "out")]) == 2
    err = _error(capsys)
    assert f"new class '{old_name.lower().replace('_', ' ')}'" in err and f"old class '{old_name}'" in err
    assert not (tmp_path / "out").exists()


def test_refuses_too_few_shots_naming_the_class(data, tmp_path, capsys):
    assert extend_main([str(data.runs["linear"]), "--add", str(data.new), "--shots", "5",
                        "--output", str(tmp_path / "out")]) == 2
    err = _error(capsys)
    assert f"'{NEW[0]}' has 4" in err and NEW[1] not in err and "--shots 5" in err and "lower --shots to 4" in err
    assert not (tmp_path / "out").exists()


def test_refuses_an_existing_output(data, tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert extend_main([str(data.runs["linear"]), "--add", str(data.new), "--output", str(tmp_path / "mine")]) == 2
    assert "already exists" in _error(capsys) and (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    assert extend_main([str(data.runs["linear"]), "--add", str(data.new), "--rehearsal", "2",
                        "--output", str(tmp_path / "x")]) == 2
    assert "--finetune-epochs" in _error(capsys)


def test_refuses_a_method_without_one_head_on_its_embedding(data, tmp_path, capsys, monkeypatch):
    from fgvc.losses import build_criterion
    from fgvc.methods import build_method

    model = {"name": "racnn", "backbone": "test_resnet.r160_in1k", "pretrained": False, "pretrained_file": None,
             "backbone_args": {}, "args": {"share_backbone": True, "apn_hidden": 4, "apn_channels": 2, "apn_grid": 2}}
    racnn = build_method(model, 3, build_criterion({"name": "cross_entropy"}), [])
    with pytest.raises(CheckpointError, match="model.name=racnn gives no embedding that a single classifier head reads"
                                              r" \(it classifies with one head per scale"):
        embedding_head(SimpleNamespace(cfg={"model": model}, method=racnn), Path("run/checkpoints/last.pt"))
    from fgvc.methods.baseline import Baseline

    monkeypatch.setattr(Baseline, "embedding_head", None)
    assert extend_main([str(data.runs["linear"]), "--add", str(data.new), "--output", str(tmp_path / "o")]) == 2
    err = _error(capsys)
    assert "gives no embedding" in err and "last.pt" in err and "baseline, bcnn, cbam and senet" in err


def test_ewc_penalty_and_fisher_equal_their_formulas():
    g = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(4, 3)
    xs, ys = torch.randn(6, 4, generator=g), [0, 2, 1, 1, 0, 2]
    params = dict(lin.named_parameters())
    fisher, n = diagonal_fisher(lin, params, zip(xs, ys))
    # softmax regression: d(-log p_y)/dW = (p - onehot(y)) x^T, d/db = p - onehot(y)
    p = torch.softmax(lin(xs), 1).detach()
    r = p - F.one_hot(torch.tensor(ys), 3).float()  # 6, 3
    assert n == 6
    torch.testing.assert_close(fisher["weight"], ((r[:, :, None] * xs[:, None, :]) ** 2).mean(0))
    torch.testing.assert_close(fisher["bias"], (r ** 2).mean(0))
    penalty = EWCPenalty(params, fisher, lam=7.0)
    assert float(penalty().detach()) == 0.0  # at the old weights
    old = {k: v.detach().clone() for k, v in params.items()}
    with torch.no_grad():
        lin.weight.add_(torch.randn(3, 4, generator=g))
        lin.bias.sub_(0.5)
    expect = 3.5 * sum((fisher[k] * (params[k] - old[k]) ** 2).sum() for k in params)
    torch.testing.assert_close(penalty(), expect)
    penalty().backward()  # differentiable: the fine-tune's optimizer sees it
    torch.testing.assert_close(lin.bias.grad, 7.0 * fisher["bias"] * (lin.bias - old["bias"]).detach())


def test_rehearsal_draws_n_per_old_class(data):
    run = TrainedRun.load(data.runs["linear"])
    new = added_part(data.new, (), run.cfg)
    for n in (2, 0):
        req = ExtendRequest(data.runs["linear"], data.new, data.tmp / "unused", shots=3, finetune_epochs=1, rehearsal=n)
        cfg = union_config(run.cfg, new, req)
        ds = builder.build_split(cfg, "train", False, None)
        assert ds.classes[3:] == list(NEW)
        assert np.bincount(ds.targets, minlength=5).tolist() == [n, n, n, 3, 3]
    ewc = union_config(run.cfg, new, ExtendRequest(data.runs["linear"], data.new, data.tmp / "u", 3, 1, ewc=1.0))
    assert [p.get("shots") for p in ewc["data"]["args"]["parts"]] == [0, 3]  # EWC: the new shots only
    joint = union_config(run.cfg, new, ExtendRequest(data.runs["linear"], data.new, data.tmp / "u", 3, 2))
    assert [p.get("shots") for p in joint["data"]["args"]["parts"]] == [None, 3]  # every old image
    assert joint["train"]["epochs"] == 2 and joint["train"]["lr"] == pytest.approx(0.001)
    assert added_part(data.new, ("name=csv", "args.manifest=m.csv"), run.cfg)["args"] == {"manifest": "m.csv"}


@pytest.mark.slow
@pytest.mark.parametrize("flags", [["--ewc", "100", "--set", "train.batch_size=2"], ["--rehearsal", "2"]])
def test_fine_tune_through_the_trainer(data, tmp_path, flags):
    out = tmp_path / "ft"
    assert extend_main([str(data.runs["linear"]), "--add", str(data.new), "--shots", "3", "--finetune-epochs", "1",
                        *flags, "--output", str(out)]) == 0
    final = json.loads((out / "final.json").read_text())
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert final["finetune_epochs"] == 1 and final["epochs"] == 1 and len(rows) == 1
    counts = np.bincount(TrainedRun.load(out).dataset("train", False).targets, minlength=5).tolist()
    if flags[0] == "--ewc":
        assert final["forgetting"] == "ewc" and final["fisher_images"] > 0
        # 3 steps (6 shots, batch 2): the penalty is 0 at the first step's (imprinted) weights, > 0 once they moved
        assert final["steps"] == 3 and rows[0]["ewc"] > 0
        assert counts == [0, 0, 0, 3, 3]
    else:
        assert final["forgetting"] == "rehearsal" and counts == [2, 2, 2, 3, 3] and "ewc" not in rows[0]
    assert evaluate_main([str(out)]) == 0


def test_freeze_norm_keeps_batchnorm_in_eval_mode_while_training():
    from fgvc.losses import build_criterion
    from fgvc.methods import build_method

    model = {"name": "baseline", "backbone": "test_resnet.r160_in1k", "pretrained": False, "pretrained_file": None,
             "backbone_args": {}, "args": {}}
    method = build_method(model, 3, build_criterion({"name": "cross_entropy"}), [])
    norms = [m for m in method.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and all(m.training for m in method.train().modules())
    method.freeze_norm = True
    method.train()
    assert method.training and method.fc.training and not any(m.training for m in norms)


@pytest.mark.slow
@pytest.mark.parametrize("method,args", [("bcnn", "{reduce_dim: 8}"), ("cbam", "{}"), ("senet", "{}")])
def test_every_single_head_method_extends(method, args, data, tiny_recipe, tmp_path):
    run = tmp_path / "run"
    assert train_main([str(tiny_recipe(tmp_path / "r.yaml", data.old)), "--output", str(run), "--set",
                       f"model.name={method}", f"model.args={args}", "train.max_steps=1"]) == 0
    assert extend_main([str(run), "--add", str(data.new), "--shots", "2", "--finetune-epochs", "1",
                        "--rehearsal", "1", "--output", str(tmp_path / "ext")]) == 0
    final = json.loads((tmp_path / "ext" / "final.json").read_text())
    assert final["n_old_classes"] == 3 and final["n_new_classes"] == 2 and final["head"] == "cosine"
