"""Recipe loading: inheritance, overrides, validation messages."""
from pathlib import Path

import pytest

from fgvc import config

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_inheritance_merges_in_order(tmp_path):
    write(tmp_path / "_base_/a.yaml", "train: {lr: 0.1, epochs: 3}\ndata: {img_size: 64, resize: 72}\n")
    write(tmp_path / "_base_/b.yaml", "train: {lr: 0.2}\n")
    r = write(tmp_path / "r.yaml", "_base_: [_base_/a.yaml, _base_/b.yaml]\ntrain: {batch_size: 4}\n")
    cfg, origin = config.load_recipe(r)
    assert cfg["train"]["lr"] == 0.2 and cfg["train"]["epochs"] == 3 and cfg["train"]["batch_size"] == 4
    assert cfg["data"]["img_size"] == 64 and cfg["train"]["momentum"] == 0.9  # default kept
    assert origin["train.lr"].endswith("b.yaml")


def test_overrides_parse_yaml_values(tmp_path):
    r = write(tmp_path / "r.yaml", "train: {epochs: 2}\n")
    cfg, _ = config.load_recipe(r, ["train.lr=0.5", "train.max_steps=3", "model.pretrained=false", "model.args.drop_rate=0.1"])
    assert cfg["train"]["lr"] == 0.5 and cfg["train"]["max_steps"] == 3 and cfg["model"]["pretrained"] is False
    assert cfg["model"]["args"] == {"drop_rate": 0.1}


def test_unknown_key_names_key_file_and_closest(tmp_path):
    r = write(tmp_path / "r.yaml", "train: {learning_rate: 0.1}\n")
    with pytest.raises(config.ConfigError) as e:
        config.load_recipe(r)
    msg = str(e.value)
    assert "train.learning_rate" in msg and "r.yaml" in msg


def test_misspelled_key_suggests(tmp_path):
    r = write(tmp_path / "r.yaml", "train: {epocs: 3}\n")
    with pytest.raises(config.ConfigError, match="did you mean 'epochs'"):
        config.load_recipe(r)
    with pytest.raises(config.ConfigError, match="did you mean 'train.batch_size'"):
        config.load_recipe(write(tmp_path / "ok.yaml", "{}\n"), ["train.batch_sise=3"])


def test_wrong_type_names_expected(tmp_path):
    r = write(tmp_path / "r.yaml", "train: {epochs: three}\n")
    with pytest.raises(config.ConfigError, match="'train.epochs'.*must be int"):
        config.load_recipe(r)


def test_bool_is_not_a_number(tmp_path):
    with pytest.raises(config.ConfigError, match="train.lr"):
        config.load_recipe(write(tmp_path / "r.yaml", "train: {lr: true}\n"))


@pytest.mark.parametrize("override,key", [
    ("train.lr=-0.1", "train.lr"), ("data.resize=100", "data.resize"), ("train.batch_size=0", "train.batch_size"),
    ("train.device=tpu", "train.device"), ("train.ema_decay=1.5", "train.ema_decay"),
    ("train.clip_grad=-1", "train.clip_grad.* must be > 0 or null"), ("train.epochs=0", "train.epochs.*>= 1"),
])
def test_impossible_values(tmp_path, override, key):
    with pytest.raises(config.ConfigError, match=key):
        config.load_recipe(write(tmp_path / "r.yaml", "{}\n"), [override])


def test_stage_entries_checked(tmp_path):
    r = write(tmp_path / "r.yaml", "train: {stages: [{name: cls, epoch: 2}]}\n")
    with pytest.raises(config.ConfigError, match="did you mean 'epochs'"):
        config.load_recipe(r)


def test_override_syntax(tmp_path):
    with pytest.raises(config.ConfigError, match="override 'train.lr' must look like key.sub=value, e.g. train.lr=0.01"):
        config.load_recipe(write(tmp_path / "r.yaml", "{}\n"), ["train.lr"])


def test_inheritance_loop_detected(tmp_path):
    write(tmp_path / "a.yaml", "_base_: [b.yaml]\n")
    write(tmp_path / "b.yaml", "_base_: [a.yaml]\n")
    with pytest.raises(config.ConfigError, match="loops"):
        config.load_recipe(tmp_path / "a.yaml")


def test_missing_recipe_and_bad_yaml(tmp_path):
    with pytest.raises(config.ConfigError, match="not found"):
        config.load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(config.ConfigError, match="not valid YAML"):
        config.load_recipe(write(tmp_path / "bad.yaml", "train: {lr: [\n"))


def test_yaml_is_safe(tmp_path):
    r = write(tmp_path / "r.yaml", "seed: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(config.ConfigError):
        config.load_recipe(r)


def test_stage_without_epochs_is_refused_before_training(tmp_path):
    r = write(tmp_path / "r.yaml", "train: {stages: [{name: classifier, epochs: 2}, {name: finetune}]}\n")
    with pytest.raises(config.ConfigError, match=r"train.stages\[1\].*lacks epochs"):
        config.load_recipe(r)


def test_stages_own_the_epoch_count(tmp_path):
    staged = "train: {stages: [{name: classifier, epochs: 2}, {name: finetune, epochs: 3}]}\n"
    cfg, _ = config.load_recipe(write(tmp_path / "r.yaml", staged))
    assert cfg["train"]["epochs"] == 5  # derived: what config.yaml records
    config.load_recipe(write(tmp_path / "same.yaml", staged.replace("train: {", "train: {epochs: 5, ")))
    with pytest.raises(config.ConfigError, match=r"train.epochs.* = 3 has no effect.*classifier 2 \+ finetune 3 = 5"):
        config.load_recipe(tmp_path / "r.yaml", ["train.epochs=3"])  # would be silently ignored


def test_eval_protocols_must_score_classification(tmp_path):
    with pytest.raises(config.ConfigError, match="eval.protocols.*includes classification"):
        config.load_recipe(write(tmp_path / "r.yaml", "eval: {protocols: [retrieval]}\n"))


def test_legacy_keys_of_older_recipes_and_runs_are_migrated(tmp_path, monkeypatch):
    old = write(tmp_path / "old.yaml", """
data: {name: synthetic, args: {img_size: 96}}
model: {name: wsdan, args: {num_attentions: 8, backbone_args: {out_index: 3}}}
train: {amp: bf16, cpu_amp: false}
""")
    notes: list[str] = []
    monkeypatch.setattr(config.log, "warning", notes.append)
    cfg, _ = config.load_recipe(old)
    assert cfg["train"]["amp"] == "auto" and "cpu_amp" not in cfg["train"]  # bf16 on CUDA only, as it meant
    assert cfg["model"]["backbone_args"] == {"out_index": 3} and cfg["model"]["args"] == {"num_attentions": 8}
    assert cfg["data"]["args"] == {"render_size": 96}
    assert len(notes) == 3 and all("old.yaml" in n and "update the recipe" in n for n in notes)
    tree = {"train": {"amp": "bf16", "cpu_amp": True}}
    assert config.migrate(tree) and tree == {"train": {"amp": "bf16"}}  # cpu_amp: true meant bf16 everywhere


@pytest.mark.parametrize("recipe", sorted(p.name for p in (REPO / "recipes").glob("*.yaml")))
def test_every_shipped_recipe_resolves_without_legacy_keys(recipe):
    raw = {}
    for path in [REPO / "recipes" / recipe, *(REPO / "recipes").glob("_base_/*/*.yaml")]:
        raw = __import__("yaml").safe_load(path.read_text()) or {}
        assert config.migrate(raw) == [], f"{path} uses a legacy key"
    cfg, _ = config.load_recipe(REPO / "recipes" / recipe)
    from fgvc.registry import METHODS, PROTOCOLS, DATASETS
    import fgvc.data, fgvc.methods, fgvc.protocols  # noqa: F401,E401  (register)

    assert cfg["model"]["name"] in METHODS and cfg["data"]["name"] in DATASETS
    assert all(p in PROTOCOLS for p in cfg["eval"]["protocols"])


def test_resize_is_derived_from_crop_pct(tmp_path):
    cfg, _ = config.load_recipe(write(tmp_path / "r.yaml", "data: {img_size: 448}\n"))
    assert cfg["data"]["resize"] is None and config.resolved_resize(cfg["data"]) == 512  # 448 / 0.875
    cfg, _ = config.load_recipe(tmp_path / "r.yaml", ["data.img_size=160"])
    assert config.resolved_resize(cfg["data"]) == 183 and config.crop_warnings(cfg["data"]) == []
    cfg, _ = config.load_recipe(tmp_path / "r.yaml", ["data.crop_pct=0.8"])
    assert config.resolved_resize(cfg["data"]) == 560
    cfg, origin = config.load_recipe(tmp_path / "r.yaml", ["data.img_size=160", "data.resize=512"])  # explicit wins
    assert config.resolved_resize(cfg["data"]) == 512
    (warning,) = config.crop_warnings(cfg["data"], origin)
    assert "central 31% of the shorter side" in warning and "--set data.resize=512" in warning
    with pytest.raises(config.ConfigError, match="data.crop_pct"):
        config.load_recipe(tmp_path / "r.yaml", ["data.crop_pct=1.5"])


def test_shipped_bases_derive_the_resize_of_their_crop():
    for recipe, resize in (("cub200_wsdan", 512), ("flowers102_resnet50", 512), ("cub200_lite0", 184), ("demo", 144)):
        cfg, _ = config.load_recipe(REPO / "recipes" / f"{recipe}.yaml")
        assert config.resolved_resize(cfg["data"]) == resize, recipe
        cfg, _ = config.load_recipe(REPO / "recipes" / f"{recipe}.yaml", ["data.img_size=96"])
        assert config.crop_warnings(cfg["data"]) == [], recipe  # a smaller crop keeps the whole object


def test_exponent_floats_in_overrides_and_recipes(tmp_path):
    cfg, _ = config.load_recipe(write(tmp_path / "r.yaml", "train: {lr: 1e-3, weight_decay: 5E-5, min_lr: .5e-6}\n"),
                                ["train.warmup_lr=1e-4", "train.stages=[{name: main, epochs: 1, lr: 2e-2}]"])
    tr = cfg["train"]
    assert (tr["lr"], tr["weight_decay"], tr["min_lr"], tr["warmup_lr"]) == (1e-3, 5e-5, 5e-7, 1e-4)
    assert tr["stages"][0]["lr"] == 0.02
    assert config.parse_yaml("[1e, e5, 1.5, 10]") == ["1e", "e5", 1.5, 10]  # only numbers become floats
