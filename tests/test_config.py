"""Recipe loading: inheritance, overrides, validation messages."""
from pathlib import Path

import pytest

from fgvc import config as C

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_inheritance_merges_in_order(tmp_path):
    write(tmp_path / "_base_/a.yaml", "train: {lr: 0.1, epochs: 3}\ndata: {img_size: 64, resize: 72}\n")
    write(tmp_path / "_base_/b.yaml", "train: {lr: 0.2}\n")
    r = write(tmp_path / "r.yaml", "_base_: [_base_/a.yaml, _base_/b.yaml]\ntrain: {batch_size: 4}\n")
    cfg, origin = C.load_recipe(r)
    assert cfg["train"]["lr"] == 0.2 and cfg["train"]["epochs"] == 3 and cfg["train"]["batch_size"] == 4
    assert cfg["data"]["img_size"] == 64 and cfg["train"]["momentum"] == 0.9  # default kept
    assert origin["train.lr"].endswith("b.yaml")


def test_overrides_parse_yaml_values(tmp_path):
    r = write(tmp_path / "r.yaml", "train: {epochs: 2}\n")
    cfg, _ = C.load_recipe(r, ["train.lr=0.5", "train.max_steps=3", "model.pretrained=false", "model.args.drop_rate=0.1"])
    assert cfg["train"]["lr"] == 0.5 and cfg["train"]["max_steps"] == 3 and cfg["model"]["pretrained"] is False
    assert cfg["model"]["args"] == {"drop_rate": 0.1}


def test_unknown_key_names_key_file_and_closest(tmp_path):
    r = write(tmp_path / "r.yaml", "train: {learning_rate: 0.1}\n")
    with pytest.raises(C.ConfigError) as e:
        C.load_recipe(r)
    msg = str(e.value)
    assert "train.learning_rate" in msg and "r.yaml" in msg


def test_misspelled_key_suggests(tmp_path):
    r = write(tmp_path / "r.yaml", "train: {epocs: 3}\n")
    with pytest.raises(C.ConfigError, match="did you mean 'epochs'"):
        C.load_recipe(r)
    with pytest.raises(C.ConfigError, match="did you mean 'train.batch_size'"):
        C.load_recipe(write(tmp_path / "ok.yaml", "{}\n"), ["train.batch_sise=3"])


def test_wrong_type_names_expected(tmp_path):
    r = write(tmp_path / "r.yaml", "train: {epochs: three}\n")
    with pytest.raises(C.ConfigError, match="'train.epochs'.*must be int"):
        C.load_recipe(r)


def test_bool_is_not_a_number(tmp_path):
    with pytest.raises(C.ConfigError, match="train.lr"):
        C.load_recipe(write(tmp_path / "r.yaml", "train: {lr: true}\n"))


@pytest.mark.parametrize("override,key", [
    ("train.lr=-0.1", "train.lr"), ("data.img_size=600", "data.resize"), ("train.batch_size=0", "train.batch_size"),
    ("train.device=tpu", "train.device"), ("train.ema_decay=1.5", "train.ema_decay"),
])
def test_impossible_values(tmp_path, override, key):
    with pytest.raises(C.ConfigError, match=key.replace(".", r"\.")):
        C.load_recipe(write(tmp_path / "r.yaml", "{}\n"), [override])


def test_stage_entries_checked(tmp_path):
    r = write(tmp_path / "r.yaml", "train: {stages: [{name: cls, epoch: 2}]}\n")
    with pytest.raises(C.ConfigError, match="did you mean 'epochs'"):
        C.load_recipe(r)


def test_inheritance_loop_detected(tmp_path):
    write(tmp_path / "a.yaml", "_base_: [b.yaml]\n")
    write(tmp_path / "b.yaml", "_base_: [a.yaml]\n")
    with pytest.raises(C.ConfigError, match="loops"):
        C.load_recipe(tmp_path / "a.yaml")


def test_missing_recipe_and_bad_yaml(tmp_path):
    with pytest.raises(C.ConfigError, match="not found"):
        C.load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(C.ConfigError, match="not valid YAML"):
        C.load_recipe(write(tmp_path / "bad.yaml", "train: {lr: [\n"))


def test_yaml_is_safe(tmp_path):
    r = write(tmp_path / "r.yaml", "seed: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(C.ConfigError):
        C.load_recipe(r)


@pytest.mark.parametrize("recipe", sorted(p.name for p in (REPO / "recipes").glob("*.yaml")))
def test_every_shipped_recipe_resolves(recipe):
    cfg, _ = C.load_recipe(REPO / "recipes" / recipe)
    for key in ("seed", "data.name", "data.root", "data.img_size", "data.num_workers", "model.name", "model.backbone",
                "model.pretrained", "model.pretrained_file", "train.epochs", "train.batch_size", "train.lr",
                "train.max_steps", "train.device"):
        assert key.split(".")[-1] in (C.get(cfg, key.rsplit(".", 1)[0]) if "." in key else cfg)
