"""Attention rollout (fgvc.vis.rollout) and its place in ``fgvc.visualize``: the arithmetic (rows sum to 1, the
identity residual), a planted case on hand-made attention and on a ViT whose weights make the class token look at one
patch, maps of real tiny ViT / DeiT / register models (shape, non-negative, mass with the prefix tokens = 1, timm's
fused attention restored, outputs unchanged), the families it does not apply to, and ``--map-source``."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from fgvc.models.backbone import Backbone
from fgvc.vis.rollout import ROLLOUT_NOTE, AttentionRollout, class_token_maps, fold, rollout, rollout_unsupported

SMALL_VIT = {"depth": 2, "embed_dim": 32, "num_heads": 2}
SWIN = {"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2], "window_size": 2}


def _softmax_rows(b: int, heads: int, n: int, seed: int) -> torch.Tensor:
    return torch.randn(b, heads, n, n, generator=torch.Generator().manual_seed(seed)).softmax(-1)


def test_rollout_rows_sum_to_one_and_uniform_attention_mixes_with_the_identity() -> None:
    r = rollout([_softmax_rows(2, 3, 5, s) for s in range(4)])
    assert r.shape == (2, 5, 5) and bool((r >= 0).all())
    torch.testing.assert_close(r.sum(-1), torch.ones(2, 5))
    uniform = torch.full((1, 2, 4, 4), 0.25)
    torch.testing.assert_close(fold(None, uniform)[0], 0.5 * torch.eye(4) + 0.125)  # (A + I) / 2: rows of A sum to 1
    with pytest.raises(ValueError, match="at least one block"):
        rollout([])


def test_planted_attention_peaks_where_the_class_token_looks() -> None:
    n, target = 1 + 9, 1 + 7  # class token + a 3 x 3 patch grid; every block's class token looks at patch 7
    blocks = []
    for s in range(3):
        a = _softmax_rows(1, 2, n, s)
        a[:, :, 0] = 0.0
        a[:, :, 0, target] = 1.0
        blocks.append(a)
    row = rollout(blocks)[0, 0, 1:]
    assert int(row.argmax()) == 7 and float(row[7]) > 2 * float(row.sort().values[-2])


def _planted_vit(patch: int) -> Backbone:
    """A 1-block ViT (32 px, 2 x 2 patches) whose class token attends to itself and to patch ``patch`` only: the
    patch embedding is zero, so token = position embedding; the class token's and that patch's are ``v``, the
    others ``-v``; q = 10 LN(x), k = LN(x)."""
    b = Backbone("vit_tiny_patch16_224", depth=1, embed_dim=8, num_heads=1, img_size=32, qkv_bias=False).eval()
    m, d = b.model, 8
    v = torch.tensor([1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 1.5, -1.5])
    with torch.no_grad():
        m.patch_embed.proj.weight.zero_()
        m.patch_embed.proj.bias.zero_()
        m.cls_token.zero_()
        pos = -v.repeat(1, 5, 1)
        pos[0, 0] = v
        pos[0, 1 + patch] = v
        m.pos_embed.copy_(pos)
        qkv = m.blocks[0].attn.qkv.weight  # 3d, d
        qkv.copy_(torch.cat([10 * torch.eye(d), torch.eye(d), torch.eye(d)]))
    return b


@pytest.mark.parametrize("patch", [0, 1, 2, 3])
def test_planted_vit_rollout_finds_the_patch(patch: int) -> None:
    maps = class_token_maps(_planted_vit(patch), torch.randn(2, 3, 32, 32))
    assert maps.shape == (2, 1, 2, 2)
    flat = maps.flatten(1)
    assert (flat.argmax(1) == patch).all()
    # softmax splits the class token's attention between itself and the patch: rollout row (3/4, ..., 1/4 at patch)
    torch.testing.assert_close(flat[:, patch], torch.full((2,), 0.25), atol=1e-3, rtol=0)


@pytest.mark.parametrize("name,extra,prefix", [
    ("vit_tiny_patch16_224", {}, 1),
    ("deit_tiny_distilled_patch16_224", {}, 2),  # class + distillation token
    ("vit_tiny_patch16_224", {"reg_tokens": 4}, 5),  # class + 4 register tokens
])
def test_maps_of_real_vits(name: str, extra: dict, prefix: int) -> None:
    torch.manual_seed(0)
    b = Backbone(name, **SMALL_VIT, **extra).eval()
    x = torch.randn(2, 3, 64, 96)
    fused = [blk.attn.fused_attn for blk in b.model.blocks]
    with torch.no_grad():
        reference = b(x)
        with AttentionRollout(b.model) as rec:
            captured = b(x)
    torch.testing.assert_close(captured, reference, atol=1e-5, rtol=1e-5)  # unfused attention: the same features
    assert [blk.attn.fused_attn for blk in b.model.blocks] == fused and not rec._hooks
    assert rec.result.shape == (2, prefix + 4 * 6, prefix + 4 * 6)
    maps = class_token_maps(b, x)
    assert maps.shape == (2, 1, 4, 6) and bool((maps >= 0).all())
    torch.testing.assert_close(maps.flatten(1).sum(1) + rec.result[:, 0, :prefix].sum(1), torch.ones(2))


@pytest.mark.parametrize("name,args,why", [
    ("swin_tiny_patch4_window7_224", SWIN, "Swin's attention is windowed"),
    ("test_convnext", {}, "is a CNN"),
    ("vit_tiny_patch16_224", {**SMALL_VIT, "class_token": False, "global_pool": "avg"}, "not a class token"),
    ("eva02_tiny_patch14_224", {"depth": 1, "embed_dim": 32, "num_heads": 2}, "global_pool='avg'"),
])
def test_rollout_says_where_it_does_not_apply(name: str, args: dict, why: str) -> None:
    b = Backbone(name, **args)
    assert why in rollout_unsupported(b)
    with pytest.raises(ValueError, match="does not apply|no self-attention"):
        class_token_maps(b, torch.randn(1, 3, 64, 64))


# ------------------------------------------------------------------ visualize
def _untrained(name: str, backbone: str, bargs: dict, args: dict | None = None):
    from fgvc import config
    from fgvc.engine.builder import build_method_from_cfg
    from fgvc.engine.inference import Runtime, TrainedRun

    cfg = copy.deepcopy(config.DEFAULTS)
    cfg["model"].update(name=name, backbone=backbone, pretrained=False, args=args or {}, backbone_args=bargs)
    cfg["train"]["device"] = "cpu"
    method = build_method_from_cfg(cfg, 3).eval()
    return TrainedRun(cfg, method, method.data_config(), ["a", "b", "c"], Runtime(torch.device("cpu")))


def test_map_sources_choose_rollout_method_maps_or_the_feature_mean() -> None:
    from fgvc.visualize import display_maps

    x = torch.randn(2, 3, 64, 64)
    vit = _untrained("baseline", "vit_tiny_patch16_224", SMALL_VIT)
    out, name, note = display_maps(vit, x, vit.infer(x), "auto")  # a class-token ViT without maps: rollout
    assert name == ROLLOUT_NOTE and note is None and out.maps.shape == (2, 1, 4, 4)
    assert display_maps(vit, x, vit.infer(x), "features")[0].maps is None
    wsdan = _untrained("wsdan", "vit_tiny_patch16_224", SMALL_VIT, {"num_attentions": 3})
    out, name, _ = display_maps(wsdan, x, wsdan.infer(x), "auto")  # the method's part maps
    assert name is None and out.maps.shape == (2, 3, 4, 4)
    assert display_maps(wsdan, x, wsdan.infer(x), "rollout")[0].maps.shape == (2, 1, 4, 4)
    swin = _untrained("baseline", "swin_tiny_patch4_window7_224", SWIN)
    out, name, note = display_maps(swin, x, swin.infer(x), "rollout")
    assert out.maps is None and name is None and "Swin's attention is windowed" in note and "feature mean" in note
    assert display_maps(swin, x, swin.infer(x), "auto")[2] is None  # auto falls back without a note


class _Split(torch.utils.data.Dataset):
    classes = ["a", "b", "c"]

    def __init__(self) -> None:
        self.x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], i % 3


def test_visualize_cli_draws_rollout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from PIL import Image

    from fgvc import visualize
    from fgvc.engine import builder
    from fgvc.engine.checkpoint import save_checkpoint
    from fgvc.vis.attention_figure import figure_pixels

    run = _untrained("baseline", "vit_tiny_patch16_224", SMALL_VIT)
    run.cfg["data"].update(img_size=64, resize=None, root="datasets/fake-mini")
    save_checkpoint({"model": run.method.state_dict(), "ema": None, "extra": {}, "config": run.cfg,
                     "class_names": ["a", "b", "c"], "data_config": {"mean": [0.5] * 3, "std": [0.5] * 3}},
                    tmp_path / "run" / "checkpoints" / "last.pt")
    monkeypatch.setattr(builder, "build_split", lambda cfg, split, train, dc: _Split())
    assert visualize.main([str(tmp_path / "run"), "--n", "2", "--map-source", "rollout"]) == 0
    png = tmp_path / "run" / "vis" / "attention-test-last-mean-rollout.png"
    assert png.is_file() and str(png) in capsys.readouterr().out
    assert Image.open(png).size == figure_pixels(2, 2)
