"""``python -m fgvc.zeroshot``: CLIP zero-shot classification on a tiny random open_clip model (no download): the
logits against a hand computation, templates, a saved checkpoint through --weights, and the files and keys that
fgvc.evaluate writes."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from fgvc.models.clip import create_clip
from fgvc.protocols.zeroshot import DEFAULT_TEMPLATES, class_text_features, read_templates, zero_shot_logits
from fgvc.zeroshot import main

open_clip = pytest.importorskip("open_clip")

TINY = {"embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(config .json, state dict .pt)`` of a tiny open_clip model with seeded random weights."""
    folder = tmp_path_factory.mktemp("zs")
    config = folder / "tiny-zs.json"
    config.write_text(json.dumps(TINY))
    open_clip.add_model_config(config)
    torch.manual_seed(0)
    weights = folder / "tiny-zs.pt"
    torch.save(open_clip.create_model("tiny-zs").state_dict(), weights)
    return config, weights


@pytest.fixture(scope="module")
def data_root(synthetic_set) -> Path:  # type: ignore[no-untyped-def]
    return synthetic_set(images_per_class=4)


def test_logits_equal_a_hand_computation(tiny: tuple[Path, Path]) -> None:
    model, tokenizer = create_clip(str(tiny[0]), tiny[1])
    names, templates = ["Black-footed Albatross", "Tree Swallow", "rose"], ["a photo of a {}.", "a {}, up close."]
    images = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        classes = class_text_features(lambda s: model.encode_text(tokenizer(s)), names, templates)
        logits = zero_shot_logits(model.encode_image(images), classes, model.logit_scale.exp())
        by_hand = torch.zeros(5, 3)
        for k, name in enumerate(names):
            sentences = [model.encode_text(tokenizer([t.format(name)]))[0] for t in templates]
            mean = sum(s / s.norm() for s in sentences) / len(sentences)
            for i in range(5):
                x = model.encode_image(images[i:i + 1])[0]
                by_hand[i, k] = model.logit_scale.exp() * (x / x.norm()) @ (mean / mean.norm())
    assert logits.shape == (5, 3) and torch.allclose(logits, by_hand, atol=1e-4)
    assert model.logit_scale.exp().item() == pytest.approx(1 / 0.07, rel=1e-4)  # CLIP's initial temperature


def test_templates_default_per_data_set_or_from_a_file(tmp_path: Path) -> None:
    assert read_templates("default", "cub200") == ["a photo of a {}, a type of bird."]
    assert read_templates("default", "flowers102") == ["a photo of a {}, a type of flower."]
    assert read_templates("default", "folder") == list(DEFAULT_TEMPLATES["generic"]) == ["a photo of a {}."]
    path = tmp_path / "t.txt"
    path.write_text("# birds\na photo of a {}.\n\n  a blurry photo of a {}.  \n")
    assert read_templates(str(path), "cub200") == ["a photo of a {}.", "a blurry photo of a {}."]


def test_end_to_end_writes_what_evaluate_writes(tiny: tuple[Path, Path], data_root: Path, tmp_path: Path,
                                                tiny_recipe, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tiny_recipe(tmp_path / "r.yaml", data_root)
    out = tmp_path / "zs"
    assert main([str(recipe), "--clip", str(tiny[0]), "--weights", str(tiny[1]), "--output", str(out)]) == 0
    metrics = json.loads((out / "zeroshot-test.json").read_text())
    # the classification protocol's keys (fgvc.metrics.accuracy.classification_metrics) and evaluate's
    assert {"top1", "top5", "mean_class_acc", "n_images", "prediction", "zeroshot_top1", "split", "weights",
            "tta_flip", "recipe"} <= set(metrics)
    assert metrics["n_images"] == 6 and metrics["prediction"] == "zeroshot" and metrics["top5"] == 100.0
    assert metrics["templates"] == ["a photo of a {}, a type of bird."] and len(metrics["prompt_names"]) == 3
    assert metrics["weights"] == str(tiny[1]) and metrics["split"] == "test"
    per_class = pd.read_csv(out / "zeroshot-test-per_class.csv")
    assert list(per_class.columns) == ["class_index", "class_name", "n_images", "correct", "accuracy",
                                       "most_confused_with", "n_confused"]
    confusion = pd.read_csv(out / "zeroshot-test-confusion.csv", index_col=0)
    assert confusion.shape == (3, 3) and confusion.to_numpy().sum() == 6
    assert per_class["correct"].sum() == round(metrics["top1"] * 6 / 100)
    assert "wrote" in capsys.readouterr().out


def test_a_registered_name_and_templates_file_score_the_same_weights_alike(tiny: tuple[Path, Path], data_root: Path,
                                                                 tmp_path: Path, tiny_recipe) -> None:
    recipe = tiny_recipe(tmp_path / "r.yaml", data_root)
    templates = tmp_path / "t.txt"
    templates.write_text("a photo of a {}.\na drawing of a {}.\n")
    runs = []
    for seed in (0, 0):
        torch.manual_seed(seed)
        weights = tmp_path / f"w{seed}.pt"
        torch.save(open_clip.create_model("tiny-zs").state_dict(), weights)
        out = tmp_path / f"out{len(runs)}"
        assert main([str(recipe), "--clip", "tiny-zs", "--weights", str(weights), "--templates", str(templates),
                     "--split", "train", "--output", str(out)]) == 0
        runs.append(pd.read_csv(out / "zeroshot-train-confusion.csv", index_col=0).to_numpy())
    assert (runs[0] == runs[1]).all() and runs[0].sum() == 3  # 1 train image per class (val_fraction holds 1 out)


@pytest.mark.parametrize("flags,message", [
    (["--clip", "ViT-B-33"], "unknown CLIP model 'ViT-B-33'"),
    (["--clip", "{config}", "--weights", "{missing}"], "CLIP weight file not found"),
    (["--clip", "{config}", "--weights", "{config}"], "could not load"),
    (["--clip", "{config}", "--weights", "{weights}", "--templates", "{bad}"], "line 2: 'a photo' needs exactly one"),
])
def test_user_errors_are_one_line(flags: list[str], message: str, tiny: tuple[Path, Path], data_root: Path,
                                  tmp_path: Path, tiny_recipe, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tiny_recipe(tmp_path / "r.yaml", data_root)
    bad = tmp_path / "bad.txt"
    bad.write_text("a photo of a {}.\na photo\n")
    fill = {"config": tiny[0], "weights": tiny[1], "missing": tmp_path / "none.pt", "bad": bad}
    argv = [str(recipe), *(f.format(**fill) for f in flags), "--output", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
