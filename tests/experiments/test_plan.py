"""fgvc.ablate's plan: step parsing, did-you-mean errors, refusal of no-op steps and study keys, cumulative vs
independent rows, recipe-file steps and --steps-file."""
from pathlib import Path

import pytest

from fgvc.errors import ConfigError, RegistryError
from fgvc.experiments.plan import Step, parse_step, resolve_rows, steps_from_file


@pytest.fixture()
def base(tmp_path, tiny_recipe) -> Path:
    return tiny_recipe(tmp_path / "base.yaml", tmp_path / "no-data-needed")


def test_parse_step_names_keys_and_spaced_values():
    step = parse_step("+ center loss: loss.aux=[{name: center, weight: 0.001}] train.lr=0.02")
    assert step == Step("+ center loss", ("loss.aux=[{name: center, weight: 0.001}]", "train.lr=0.02"))
    assert parse_step("train.ema=true") == Step("train.ema=true", ("train.ema=true",))  # no name: the keys name it
    step = parse_step("WS-DAN: recipes/cub200_wsdan_lite0.yaml model.args.num_attentions=8")
    assert step.recipe == Path("recipes/cub200_wsdan_lite0.yaml") and step.overrides == ("model.args.num_attentions=8",)


@pytest.mark.parametrize("text, msg", [
    ("EMA:", "sets nothing"),
    ("EMA: ema on", "neither key=value nor a recipe file"),
    ("lr: train.lr=[1, 2", "not valid YAML"),
])
def test_parse_step_refuses_malformed(text, msg):
    with pytest.raises(ConfigError, match=msg):
        parse_step(text)


def test_key_typo_gets_the_did_you_mean_of_set(base):
    with pytest.raises(ConfigError) as err:
        resolve_rows(base, [parse_step("+ EMA: train.emma=true")])
    assert "step 1 '+ EMA'" in str(err.value) and "unknown key 'train.emma'" in str(err.value)
    assert "train.ema" in str(err.value).split("unknown key")[1]  # the suggestion
    with pytest.raises(RegistryError, match="takes no argument 'label_smothing'.*label_smoothing"):
        resolve_rows(base, [parse_step("LS: loss.args.label_smothing=0.1")])


def test_noop_step_is_refused(base):
    with pytest.raises(ConfigError, match=r"step 1 'same lr' changes nothing.*train.lr is already 0.01"):
        resolve_rows(base, [parse_step("same lr: train.lr=0.01")])
    # cumulative: the same value again is a no-op against the row before, not against row 0
    with pytest.raises(ConfigError, match="step 2 'again' changes nothing"):
        resolve_rows(base, [parse_step("lr: train.lr=0.02"), parse_step("again: train.lr=0.02")], cumulative=True)
    rows = resolve_rows(base, [parse_step("lr: train.lr=0.02"), parse_step("again: train.lr=0.02")])
    assert [r.changes for r in rows[1:]] == [[("train.lr", 0.01, 0.02)]] * 2  # independent: both differ from row 0


@pytest.mark.parametrize("item", ["seed=3", "output.root=elsewhere"])
def test_study_keys_are_refused(base, item):
    with pytest.raises(ConfigError, match="set by the study itself"):
        resolve_rows(base, [parse_step(f"x: {item}")])
    with pytest.raises(ConfigError, match="--set: 'seed'|--set: 'output"):
        resolve_rows(base, [], [item])


def test_cumulative_and_independent_rows(base):
    steps = [parse_step("lr: train.lr=0.02"), parse_step("ema: train.ema=true")]
    ind = resolve_rows(base, steps, ["train.epochs=2"])
    cum = resolve_rows(base, steps, ["train.epochs=2"], cumulative=True)
    assert [r.cfg["train"]["epochs"] for r in ind + cum] == [2] * 6  # the study's --set reaches every row
    assert ind[2].cfg["train"]["lr"] == 0.01 and ind[2].parent == 0
    assert cum[2].cfg["train"]["lr"] == 0.02 and cum[2].cfg["train"]["ema"] is True and cum[2].parent == 1
    assert cum[2].changes == [("train.ema", False, True)]
    assert [r.slug for r in cum] == ["r0-baseline", "r1-lr", "r2-ema"]


def test_recipe_file_step_keeps_the_study_and_earlier_steps(base, tmp_path):
    other = tmp_path / "wsdan.yaml"
    other.write_text("_base_: [base.yaml]\nmodel: {name: wsdan, args: {num_attentions: 4}}\n")
    steps = [parse_step("lr: train.lr=0.02"), parse_step(f"WS-DAN: {other} model.args.num_attentions=2")]
    rows = resolve_rows(base, steps, ["train.epochs=2"], cumulative=True)
    ws = rows[2]
    assert ws.recipe == other and ws.cfg["model"]["name"] == "wsdan" and ws.cfg["train"]["lr"] == 0.02
    assert ws.cfg["train"]["epochs"] == 2 and ws.cfg["model"]["args"]["num_attentions"] == 2
    assert ("model.name", "baseline", "wsdan") in ws.changes
    ind = resolve_rows(base, steps, cumulative=False)[2]
    assert ind.cfg["train"]["lr"] == 0.01 and ind.parent == 0  # alone: the earlier step does not carry over


def test_steps_file(base, tmp_path):
    (tmp_path / "other.yaml").write_text("_base_: [base.yaml]\ntrain: {lr: 0.05}\n")
    f = tmp_path / "steps.yaml"
    f.write_text("- 'lr: train.lr=0.02'\n"
                 "- {name: mixup, set: {train.mixup: 0.2, loss.aux: [{name: center, weight: 0.01}]}}\n"
                 "- {name: other, recipe: other.yaml, set: [train.ema=true]}\n")
    steps = steps_from_file(f)
    assert steps[1] == Step("mixup", ("train.mixup=0.2", 'loss.aux=[{"name": "center", "weight": 0.01}]'))
    assert steps[2].recipe == tmp_path / "other.yaml"
    rows = resolve_rows(base, steps, cumulative=True)
    assert rows[2].cfg["loss"]["aux"] == [{"name": "center", "weight": 0.01}] and rows[3].cfg["train"]["lr"] == 0.02  # the earlier step wins over the recipe
    f.write_text("- {name: x, sett: {train.lr: 1}}\n")
    with pytest.raises(ConfigError, match="step 1"):
        steps_from_file(f)


def test_cli_prints_one_error_line(base, tmp_path, capsys):
    from fgvc.ablate import main

    assert main([str(base), "--step", "x: train.emma=true", "--output", str(tmp_path / "s"), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: step 1 'x': --set train.emma: unknown key") and "\n" not in err
    assert main([str(base), "--seeds", "0", "0", "--output", str(tmp_path / "s")]) == 2
    assert not (tmp_path / "s").exists()  # nothing written before the plan is valid
