"""SimCLR (fgvc.methods.simclr): NT-Xent and SupCon against hand computations, the memory queue's size, order and saved state,
the two-view batch, the online probe's detachment, and a tiny end-to-end run scored with ``--protocol knn`` and
fine-tuned from with ``model.init_from``."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fgvc.engine.checkpoint import load_checkpoint
from fgvc.engine.run_state import init_backbone_from
from fgvc.errors import ConfigError
from fgvc.evaluate import main as evaluate_main
from fgvc.methods import build_method
from fgvc.methods.simclr import SimCLR, split_views
from fgvc.train import main as train_main

pytest.importorskip("pytorch_metric_learning")

CNN = "test_resnet.r160_in1k"


def _simclr(**args) -> SimCLR:
    torch.manual_seed(0)
    m = build_method({"name": "simclr", "backbone": CNN, "pretrained": False, "args": args}, 3)
    assert isinstance(m, SimCLR)
    return m


def _nt_xent_by_hand(z1: torch.Tensor, z2: torch.Tensor, t: float) -> float:
    """The SimCLR paper's loss, written out: mean over the 2B anchors of -log(exp(s_ap / t) / sum_{k != a} exp(s_ak / t))."""
    z = F.normalize(torch.cat([z1, z2]).double(), dim=1)
    n, b = z.shape[0], z1.shape[0]
    total = 0.0
    for a in range(n):
        pos = (a + b) % n
        sims = [float(z[a] @ z[k]) / t for k in range(n) if k != a]
        total += -(float(z[a] @ z[pos]) / t - math.log(sum(math.exp(s) for s in sims)))
    return total / n


def test_nt_xent_equals_the_hand_computed_value_on_4_embeddings():
    m = _simclr(temperature=1.0)
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    # views identical, images orthogonal: each anchor has cos 1 to its positive and 0 to its 2 negatives
    loss = m.contrastive_loss(torch.stack([e1, e2]), torch.stack([e1, e2]))
    assert float(loss) == pytest.approx(math.log(1 + 2 / math.e), abs=1e-6)  # -log(e / (e + 2)) = 0.5514
    z1, z2 = torch.tensor([[1.0, 2.0, 0.5], [0.3, -1.0, 2.0]]), torch.tensor([[0.9, 2.2, 0.1], [1.0, -0.2, 1.5]])
    m = _simclr(temperature=0.5)
    assert float(m.contrastive_loss(z1, z2)) == pytest.approx(_nt_xent_by_hand(z1, z2, 0.5), abs=1e-5)


def test_with_a_queue_past_views_are_extra_negatives():
    m = _simclr(queue_size=8, proj_dim=3, temperature=0.5)
    old = torch.randn(4, 3)
    m.contrastive_loss(old[:2], old[2:])
    m.seen += 2
    z = torch.randn(4, 3)
    loss = float(m.contrastive_loss(z[:2], z[2:]))
    allz = F.normalize(torch.cat([z, old]).double(), dim=1)  # 4 current views, then the 4 queued ones
    want = 0.0
    for a in range(4):
        sims = [float(allz[a] @ allz[k]) / 0.5 for k in range(8) if k != a]
        want += -(float(allz[a] @ allz[(a + 2) % 4]) / 0.5 - math.log(sum(math.exp(s) for s in sims))) / 4
    assert loss == pytest.approx(want, abs=1e-5)


def _supcon_by_hand(z: torch.Tensor, labels: list[int], t: float) -> float:
    """Khosla et al. 2020, eq. 2 (L_out): for each anchor with a positive, the mean over its positives p of
    -log(exp(s_ap / t) / sum_{k != a} exp(s_ak / t)); the mean over those anchors."""
    z = F.normalize(z.double(), dim=1)
    n = z.shape[0]
    per_anchor = []
    for a in range(n):
        pos = [p for p in range(n) if p != a and labels[p] == labels[a]]
        log_denom = math.log(sum(math.exp(float(z[a] @ z[k]) / t) for k in range(n) if k != a))
        if pos:
            per_anchor.append(-sum(float(z[a] @ z[p]) / t - log_denom for p in pos) / len(pos))
    return sum(per_anchor) / len(per_anchor)


def test_supcon_makes_every_view_of_the_same_class_a_positive():
    m = _simclr(supcon=True, temperature=0.5, proj_dim=3)
    torch.manual_seed(1)
    z1, z2 = torch.randn(3, 3), torch.randn(3, 3)
    targets = torch.tensor([0, 1, 0])  # images 0 and 2 share a class: 3 positives for each of their 4 views
    got = float(m.contrastive_loss(z1, z2, targets))
    assert got == pytest.approx(_supcon_by_hand(torch.cat([z1, z2]), [0, 1, 0, 0, 1, 0], 0.5), abs=1e-5)
    # with all classes distinct, SupCon's only positive is the other view: NT-Xent's loss
    distinct = float(m.contrastive_loss(z1, z2, torch.tensor([0, 1, 2])))
    assert distinct == pytest.approx(_nt_xent_by_hand(z1, z2, 0.5), abs=1e-5)
    mixed = F.one_hot(targets, 3).float() * 0.7 + 0.1  # mixup-style soft targets: their argmax is the class
    assert float(m.contrastive_loss(z1, z2, mixed)) == pytest.approx(got, abs=1e-6)
    with pytest.raises(ConfigError, match="supcon needs labels"):
        m.contrastive_loss(z1, z2)
    out = m.training_step(torch.randn(2, 3, 64, 32), torch.tensor([0, 0]))  # two 32 px views stacked
    assert "supcon" in out and "nt_xent" not in out and torch.isfinite(out["loss"])


def test_memory_queue_size_order_and_saved_position():
    m = _simclr(queue_size=6, proj_dim=3)
    mem = m.contrastive
    assert mem.embedding_memory.shape == (6, 3)
    steps = [torch.randn(4, 3) for _ in range(2)]  # two steps of B = 2 images: 4 projected views each
    for z in steps:
        m.contrastive_loss(z[:2], z[2:])
        m.seen += 2
    # step 1 filled rows 0-3, step 2 wrote rows 4, 5, then wrapped to 0, 1 (oldest overwritten first)
    torch.testing.assert_close(mem.embedding_memory[4:6], steps[1][:2])
    torch.testing.assert_close(mem.embedding_memory[0:2], steps[1][2:])
    torch.testing.assert_close(mem.embedding_memory[2:4], steps[0][2:])
    assert mem.label_memory.tolist() == [2, 3, 0, 1, 2, 3]  # instance labels unique across steps (step 2: 2, 3)
    assert m.extra_state() == {"seen": 4, "queue_idx": 2, "filled": True}
    fresh = _simclr(queue_size=6, proj_dim=3)
    fresh.load_state_dict(m.state_dict())
    fresh.load_extra_state(m.extra_state())
    assert (fresh.contrastive.queue_idx, fresh.contrastive.has_been_filled, fresh.seen) == (2, True, 4)
    torch.testing.assert_close(fresh.contrastive.embedding_memory, mem.embedding_memory)


def test_training_step_splits_the_stacked_views_and_the_probe_is_detached():
    m = _simclr().train()
    x = torch.randn(4, 3, 64, 32)  # B, 3, 2S, S
    v1, v2 = split_views(x)
    assert v1.shape == v2.shape == (4, 3, 32, 32) and torch.equal(torch.cat([v1, v2], 2), x)
    out = m.training_step(x, torch.tensor([0, 1, 2, 0]))
    assert out["logits"].shape == (4, 3) and torch.isfinite(out["loss"]) and "nt_xent" in out and "probe_ce" in out
    out["probe_ce"].backward()  # the probe's loss reaches the probe only
    assert m.probe.weight.grad is not None
    assert all(p.grad is None for p in m.backbone.parameters()) and all(p.grad is None for p in m.projector.parameters())
    assert m.seen == 4
    with pytest.raises(ConfigError, match="two views of each image stacked along the height"):
        m.training_step(torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0]))


def test_infer_returns_the_embedding_before_the_projection_head():
    m = _simclr().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = m.infer(x)
        assert torch.equal(out.embedding, m.backbone.forward_pooled(x)[1])
    assert out.embedding.shape == (2, m.backbone.num_features) and out.prediction.shape == (2, 3)


@pytest.fixture(scope="module")
def ssl_run(synthetic_set, tmp_path_factory) -> Path:
    root = synthetic_set()
    out = tmp_path_factory.mktemp("ssl") / "run"
    recipe = out.parent / "r.yaml"
    recipe.write_text(f"""
seed: 1
data: {{name: cub200, root: {root}, img_size: 32, resize: 36, num_workers: 0, val_split: null,
        augment: {{simclr: {{scale: [0.3, 1.0]}}}}}}
model: {{name: simclr, backbone: {CNN}, pretrained: false, args: {{queue_size: 16}}}}
train: {{epochs: 1, batch_size: 4, lr: 0.01, optimizer: lars, device: cpu, threads: 1, warmup_epochs: 0}}
eval: {{batch_size: 5, protocols: [classification, knn]}}
""")
    assert train_main([str(recipe), "--output", str(out)]) == 0
    return out


@pytest.mark.slow
def test_a_tiny_ssl_run_is_scored_by_knn(ssl_run: Path, capsys):
    assert (ssl_run / "eval" / "knn-test-last.json").is_file()  # eval.protocols at the end of training
    assert evaluate_main([str(ssl_run), "--protocol", "knn", "--output", str(ssl_run / "again")]) == 0
    got = json.loads((ssl_run / "again" / "knn-test-last.json").read_text())
    assert 0 <= got["top1"] <= 100
    assert got["top1"] == json.loads((ssl_run / "eval" / "knn-test-last.json").read_text())["top1"]


@pytest.mark.slow
def test_init_from_copies_the_backbone_only_and_refuses_other_shapes(ssl_run: Path, synthetic_set, tmp_path):
    saved = load_checkpoint(ssl_run / "checkpoints" / "last.pt")["model"]
    torch.manual_seed(5)
    ft = build_method({"name": "baseline", "backbone": CNN, "pretrained": False}, 3)
    fc_before = ft.fc.weight.detach().clone()
    assert init_backbone_from(ft, ssl_run) == len(ft.backbone.state_dict())
    for k, v in ft.backbone.state_dict().items():
        assert torch.equal(v, saved["backbone." + k]), k
    assert torch.equal(ft.fc.weight, fc_before)  # the head is not touched
    other = build_method({"name": "baseline", "backbone": "test_vit", "pretrained": False}, 3)
    with pytest.raises(ConfigError, match="model.init_from"):
        init_backbone_from(other, ssl_run)
    # through the trainer: a supervised recipe starting from the SSL run
    root = synthetic_set()
    recipe = tmp_path / "ft.yaml"
    recipe.write_text(f"""
seed: 1
data: {{name: cub200, root: {root}, img_size: 32, resize: 36, num_workers: 0, val_split: null}}
model: {{name: baseline, backbone: {CNN}, pretrained: false, init_from: {ssl_run}}}
train: {{epochs: 1, batch_size: 4, lr: 0.01, backbone_lr_scale: 0, device: cpu, threads: 1, warmup_epochs: 0}}
""")
    assert train_main([str(recipe), "--output", str(tmp_path / "ft")]) == 0
    last = load_checkpoint(tmp_path / "ft" / "checkpoints" / "last.pt")["model"]
    conv = next(k for k in last if k.startswith("backbone.") and k.endswith("conv1.weight"))
    assert torch.equal(last[conv], saved[conv])  # backbone_lr_scale 0: the weights are the SSL run's


@pytest.mark.slow
def test_a_run_trained_on_a_folder_without_labels_is_scored_by_knn_on_labelled_data(synthetic_set, tmp_path, capsys):
    """data.name unlabeled: a folder of images, one pseudo-class; its embedding is then scored by kNN and the linear
    probe on a labelled set (their own labels), while classification is refused in one line."""
    root = synthetic_set()
    folder = tmp_path / "photos"
    for i, jpg in enumerate(sorted((root / "CUB_200_2011" / "images").rglob("*.jpg"))):
        (folder / f"{i % 2}").mkdir(parents=True, exist_ok=True)
        (folder / f"{i % 2}" / f"{i}.jpg").write_bytes(jpg.read_bytes())
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""
seed: 1
data: {{name: unlabeled, root: {folder}, img_size: 32, resize: 36, num_workers: 0, val_split: null,
        test_split: train}}
model: {{name: simclr, backbone: {CNN}, pretrained: false}}
train: {{epochs: 1, batch_size: 4, lr: 0.01, device: cpu, threads: 1, warmup_epochs: 0, max_steps: 2}}
eval: {{batch_size: 5, protocols: [classification]}}
""")
    run = tmp_path / "run"
    assert train_main([str(recipe), "--output", str(run)]) == 0
    labelled = ["--set", "data.name=cub200", f"data.root={root}", "data.test_split=test"]
    for protocol in ("knn", "linear"):
        assert evaluate_main([str(run), "--protocol", protocol, "--output", str(tmp_path / "eval"), *labelled]) == 0
        got = json.loads((tmp_path / "eval" / f"{protocol}-test-last.json").read_text())
        assert 0 <= got["top1"] <= 100
    capsys.readouterr()
    assert evaluate_main([str(run), "--output", str(tmp_path / "eval"), *labelled]) == 2
    assert "trained without labels" in capsys.readouterr().err
