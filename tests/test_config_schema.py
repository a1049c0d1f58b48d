"""The schema's numeric ranges (checked when a recipe loads) and the derived values it resolves, each in one function:
``data.resize: null``, ``eval.batch_size: 0`` and the split a command scores (``data.test_split``)."""
import re
from pathlib import Path

import pytest
import yaml

from fgvc import config
from fgvc.config_schema import RANGES, TYPES

REPO = Path(__file__).resolve().parents[1]
OLD_RUN = REPO / "tests" / "fixtures" / "run_v0_1" / "run"


def _recipe(tmp_path: Path) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text("train: {batch_size: 12}\n")
    return path


@pytest.mark.parametrize("value", [0, 0.0, -0.2, 1.5])
def test_layer_decay_out_of_range_fails_at_load_in_one_line(tmp_path, value):
    with pytest.raises(config.ConfigError) as e:
        config.load_recipe(_recipe(tmp_path), [f"train.layer_decay={value}"])
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("'train.layer_decay' (from --set train.layer_decay=") and f"= {value!r}:" in msg
    assert "must be in (0, 1] or null" in msg


@pytest.mark.parametrize("value", [1, 0.75, 1e-3, None])
def test_layer_decay_in_range_or_null_loads(tmp_path, value):
    cfg, _ = config.load_recipe(_recipe(tmp_path), [f"train.layer_decay={'null' if value is None else value}"])
    assert cfg["train"]["layer_decay"] == value


def _default(key: str):
    node = config.DEFAULTS
    for part in key.split("."):
        node = node[part]
    return node


def test_every_range_names_a_numeric_key_whose_default_it_allows():
    for key, allowed in RANGES.items():
        default = _default(key)
        assert default is None or allowed.allows(default), key
        assert isinstance(default, (int, float)) or float in TYPES.get(key, ()) or int in TYPES.get(key, ()), key


# one value just outside each range (and the range's text in the message)
OUTSIDE = {"train.lr": (0, "> 0"), "train.epochs": (0, ">= 1"), "train.momentum": (1, "in [0, 1)"),
           "train.ema_decay": (1, "in (0, 1)"), "train.clip_grad": (0, "> 0 or null"), "train.max_steps": (0, ">= 1"),
           "train.eval_every": (0, ">= 1"), "train.checkpoint_every_steps": (-1, ">= 0"), "train.threads": (-1, ">= 0"),
           "train.decay_epochs": (0, "> 0"), "train.decay_rate": (0, "> 0"), "train.min_lr": (-0.1, ">= 0"),
           "train.warmup_lr": (-0.1, ">= 0"), "data.img_size": (8, ">= 16"), "data.crop_pct": (1.2, "in [0.1, 1]"),
           "data.augment.color_jitter": (-0.1, ">= 0"), "eval.batch_size": (-1, ">= 0")}


@pytest.mark.parametrize("key", sorted(OUTSIDE))
def test_out_of_range_values_fail_at_load_naming_key_and_range(tmp_path, key):
    value, text = OUTSIDE[key]
    with pytest.raises(config.ConfigError, match=re.escape(f"'{key}' (from --set {key}={value}) = {value!r}: must be "
                                                           f"{text}")):
        config.load_recipe(_recipe(tmp_path), [f"{key}={value}"])


@pytest.mark.parametrize("scale", ["[0.5, 0.2]", "[0, 1]", "[0.5]", "[0.5, 1.5]", "[a, 1]"])
def test_rrc_scale_checked_at_load(tmp_path, scale):
    with pytest.raises(config.ConfigError, match=r"'data.augment.rrc_scale'.*0 < min <= max <= 1"):
        config.load_recipe(_recipe(tmp_path), [f"data.augment.rrc_scale={scale}"])


def test_eval_batch_size_zero_resolves_in_one_function(tmp_path):
    cfg, _ = config.load_recipe(_recipe(tmp_path))
    assert cfg["eval"]["batch_size"] == 0  # the config keeps the recipe's 0
    # per process: train.batch_size (over all processes) split among them, as in training
    assert [config.eval_batch_size(cfg, w) for w in (1, 2, 4, 24)] == [12, 6, 3, 1]
    assert [config.train_batch_per_process(cfg, w) for w in (1, 2, 4, 24)] == [12, 6, 3, 1]
    assert config.eval_batch_size(cfg) == 12  # a single-process pass (fgvc.prune, fgvc.extend)
    cfg, _ = config.load_recipe(_recipe(tmp_path), ["eval.batch_size=5"])
    assert [config.eval_batch_size(cfg, w) for w in (1, 2, 4)] == [5, 5, 5]  # set: already per process


def test_input_geometry_scales_crop_and_derived_resize_alike(tmp_path):
    cfg, _ = config.load_recipe(_recipe(tmp_path), ["data.img_size=448"])
    assert config.input_geometry(cfg["data"]) == (448, 512)  # resize: 448 / 0.875
    assert config.input_geometry(cfg["data"], 1.5) == (672, 768)  # e.g. WS-DAN's zoom_source
    cfg, _ = config.load_recipe(_recipe(tmp_path), ["data.img_size=32", "data.resize=36"])
    assert config.input_geometry(cfg["data"], 2.0) == (64, 72)


def test_scored_split_defaults_to_data_test_split(tmp_path):
    cfg, _ = config.load_recipe(_recipe(tmp_path), ["data.test_split=holdout"])
    assert config.scored_split(cfg) == "holdout" and config.scored_split(cfg, None) == "holdout"
    assert config.scored_split(cfg, "val") == "val"


# every reader of these keys goes through the one function above (fgvc/reference holds generated pages)
SOLE_READER = {r"\[[\"']eval[\"']\]\[[\"']batch_size[\"']\]": "eval_batch_size",
               r"\[[\"']test_split[\"']\]": "scored_split",
               r"batch_size[\"']\] // .*world_size": "train_batch_per_process"}


@pytest.mark.parametrize("pattern", sorted(SOLE_READER))
def test_derived_keys_are_read_only_by_their_resolver(pattern):
    readers = [f"{p.relative_to(REPO)}:{i}" for p in sorted((REPO / "fgvc").rglob("*.py"))
               if "reference" not in p.relative_to(REPO / "fgvc").parts[:1] and p.name != "config_schema.py"
               for i, line in enumerate(p.read_text().splitlines(), 1) if re.search(pattern, line)]
    assert readers == [], f"read these through fgvc.config.{SOLE_READER[pattern]}"


def test_resolving_leaves_the_stored_config_as_written(tmp_path):
    cfg, _ = config.load_recipe(_recipe(tmp_path))
    stored = yaml.safe_load(config.dump(cfg))  # what a new run's config.yaml holds
    assert stored["data"]["resize"] is None and stored["eval"]["batch_size"] == 0
    assert config.from_saved(stored) == cfg  # and loading it again is idempotent
    old = yaml.safe_load((OLD_RUN / "config.yaml").read_text())
    once = config.from_saved(old)
    assert config.from_saved(once) == once
    assert once["data"]["resize"] == old["data"]["resize"] == 36 and config.resolved_resize(once["data"]) == 36
    assert once["eval"]["batch_size"] == old["eval"]["batch_size"]
    assert config.scored_split(once) == old["data"]["test_split"]
