"""Classification criteria: focal loss (Lin et al. 2017) against cross-entropy and its formula, class-weighted
cross-entropy against the hand formula, the train-split frequencies reaching it through the builder, and the
criterion / feature-loss placement errors."""
import copy

import pytest
import torch
import torch.nn.functional as F

from fgvc.config import DEFAULTS
from fgvc.engine.builder import build_method_from_cfg
from fgvc.errors import ConfigError
from fgvc.losses import build_aux_losses, build_criterion
from fgvc.losses.classification import FocalLoss, WeightedCrossEntropy, class_weights
from fgvc.registry import LOSSES

torch.manual_seed(0)
LOGITS = torch.randn(6, 4)
Y = torch.tensor([0, 1, 1, 3, 2, 1])


def test_focal_is_cross_entropy_at_gamma_zero():
    torch.testing.assert_close(FocalLoss(gamma=0.0)(LOGITS, Y), F.cross_entropy(LOGITS, Y))
    soft = F.softmax(torch.randn(6, 4), 1)
    torch.testing.assert_close(FocalLoss(gamma=0.0)(LOGITS, soft), -(soft * F.log_softmax(LOGITS, 1)).sum(1).mean())


def test_focal_matches_its_formula_with_alpha():
    gamma, alpha = 2.0, [0.25, 0.5, 1.0, 2.0]
    p = F.softmax(LOGITS, 1)[torch.arange(6), Y]
    want = (-torch.tensor(alpha)[Y] * (1 - p) ** gamma * p.log()).mean()
    torch.testing.assert_close(LOSSES.build("focal", gamma=gamma, alpha=alpha)(LOGITS, Y), want)
    torch.testing.assert_close(FocalLoss(gamma, 0.25)(LOGITS, Y), 0.25 * FocalLoss(gamma)(LOGITS, Y))
    assert FocalLoss(2.0)(LOGITS, Y) < F.cross_entropy(LOGITS, Y)  # easy examples are down-weighted
    with pytest.raises(ConfigError, match="gamma"):
        FocalLoss(gamma=-1.0)
    with pytest.raises(ConfigError, match="3 weights but the data has 4 classes"):
        FocalLoss(alpha=[1.0, 1.0, 1.0])(LOGITS, Y)


def test_class_weights_are_inverse_frequency_with_mean_one_per_image():
    counts = [10, 30, 5, 5]
    w = class_weights(counts)
    torch.testing.assert_close(w, torch.tensor([50 / 40, 50 / 120, 50 / 20, 50 / 20]))  # N / (K n_c)
    assert float((w * torch.tensor(counts, dtype=torch.float)).sum()) == pytest.approx(50.0)
    torch.testing.assert_close(class_weights(counts, power=0.0), torch.ones(4))


def test_weighted_cross_entropy_equals_the_hand_formula():
    counts = [10, 30, 5, 5]
    w = torch.tensor([50 / 40, 50 / 120, 50 / 20, 50 / 20])
    nll = -F.log_softmax(LOGITS, 1)[torch.arange(6), Y]  # B
    want = (w[Y] * nll).sum() / w[Y].sum()
    torch.testing.assert_close(WeightedCrossEntropy(counts)(LOGITS, Y), want)
    soft = F.one_hot(Y, 4).float()
    torch.testing.assert_close(WeightedCrossEntropy(counts)(LOGITS, soft), (w[Y] * nll).mean())


def test_weighted_cross_entropy_gets_the_train_frequencies_from_the_builder():
    cfg = copy.deepcopy(DEFAULTS)
    cfg["model"].update(backbone="test_resnet.r160_in1k", pretrained=False)
    cfg["loss"] = {"name": "weighted_cross_entropy", "args": {"power": 0.5}, "aux": []}
    method = build_method_from_cfg(cfg, 4, [10, 30, 5, 5])
    torch.testing.assert_close(method.criterion.weight, class_weights([10, 30, 5, 5], 0.5))
    assert "weight" not in {k.split(".")[-1] for k in method.state_dict() if k.startswith("criterion")}
    # a run loaded for inference has no frequencies: it builds, and the loss refuses to run
    loaded = build_method_from_cfg(cfg, 4)
    with pytest.raises(ConfigError, match="no class frequencies"):
        loaded.criterion(LOGITS, Y)
    loaded.load_state_dict(method.state_dict())  # the weights are not part of checkpoints


def test_criteria_and_feature_losses_each_have_their_place():
    with pytest.raises(ConfigError, match="loss.name = triplet is a feature loss .* put it in loss.aux"):
        build_criterion({"name": "triplet"})
    with pytest.raises(ConfigError, match=r"loss.aux\[0\].name = focal is a classification criterion"):
        build_aux_losses([{"name": "focal"}], 8, 3)
    with pytest.raises(Exception, match="did you mean 'gamma'"):
        build_criterion({"name": "focal", "args": {"gama": 2}})
