"""Bad recipes end to end through ``fgvc.train`` (and ``fgvc.evaluate``): each is refused before training starts
with one ``error:`` line that names the key (and the file it came from) and says how to fix it; nothing is trained
and no checkpoint is written. Covers num_classes-style mismatches between a recipe or a run and the data."""
from __future__ import annotations

import shutil

import pytest
from rel_helpers import (
    base_recipe, one_line_error, pristine_root, torch_globals, train_inprocess, train_one_epoch,
    write_recipe,
)

from fgvc.evaluate import main as evaluate_main

assert torch_globals  # a fixture, used by name below

# (recipe edits as {section: {key: value}} or --set overrides, what the one error line must name). The wording of
# each message is owned by the unit tests of the layer that raises it (tests/test_config.py, tests/methods,
# tests/data); here: the process-level behaviour, the same for every kind of bad recipe.
RECIPE_CASES = {
    "unknown_key": ({"train": {"lrr": 0.1}}, [], "'train.lrr' (from {recipe})"),
    "unknown_section": ({"optimiser": {"lr": 0.1}}, [], "'optimiser' (from {recipe})"),
    "wrong_type": ({"train": {"epochs": "three"}}, [], "'train.epochs' (from {recipe})"),
    "bool_not_number": ({"train": {"lr": True}}, [], "'train.lr' (from {recipe})"),
    "bad_choice": ({"train": {"optimizer": "adam"}}, [], "'train.optimizer' (from {recipe})"),
    "negative_lr": ({}, ["train.lr=-0.1"], "'train.lr' (from --set train.lr=-0.1)"),
    "zero_epochs": ({"train": {"epochs": 0}}, [], "'train.epochs' (from {recipe})"),
    "stage_without_epochs": ({"train": {"stages": [{"name": "main"}]}}, [], "train.stages[0] (from {recipe})"),
    "epochs_ignored_by_stages": ({"train": {"stages": [{"name": "main", "epochs": 1}]}}, ["train.epochs=3"],
                                 "'train.epochs' (from --set train.epochs=3)"),
    "crop_larger_than_resize": ({"data": {"img_size": 64, "resize": 36}}, [], "'data.resize' (from {recipe})"),
    "unknown_override": ({}, ["train.bogus=1"], "train.bogus"),
    "override_syntax": ({}, ["train.lr"], "override 'train.lr'"),
    "negative_clip": ({"train": {"clip_grad": -1.0}}, [], "'train.clip_grad' (from {recipe})"),
    "unknown_method": ({"model": {"name": "wsdna"}}, [], "'wsdna'"),
    "unknown_method_arg": ({"model": {"name": "wsdan", "args": {"num_attention": 4}}}, [], "'num_attention'"),
    "unknown_data_arg": ({"data": {"args": {"val_fractoin": 0.2}}}, [], "'val_fractoin'"),
    "num_classes_in_recipe": ({"model": {"args": {"num_classes": 5}}}, [], "model.args.num_classes"),
    "feature_loss_in_model_args": ({"model": {"args": {"aux_losses": [{"name": "center"}]}}}, [],
                                   "model.args.aux_losses"),
    "unknown_protocol": ({"eval": {"protocols": ["classification", "retrievl"]}}, [], "'retrievl'"),
    "fp16_on_cpu": ({"train": {"amp": "fp16"}}, [], "train.amp=fp16"),
    "transformer_in_cbam": ({"model": {"name": "cbam", "backbone": "test_vit"}}, [], "'test_vit'"),
    "data_root_missing": ({"data": {"root": "/nonexistent/cub"}}, [], "/nonexistent/cub"),
}


@pytest.mark.parametrize("case", list(RECIPE_CASES))
def test_bad_recipe_refused_before_training(tmp_path, capsys, torch_globals, case):
    """Exit code 2, exactly one ``error:`` line naming the culprit (no traceback), nothing trained or written."""
    edits, sets, culprit = RECIPE_CASES[case]
    cfg = base_recipe(pristine_root(), **edits)
    recipe = write_recipe(tmp_path / "r.yaml", cfg)
    run = tmp_path / "run"
    rc, err = train_inprocess([recipe, "--output", run, *(["--set", *sets] if sets else [])], capsys)
    assert rc == 2
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert culprit.format(recipe=recipe.resolve()) in lines[0], lines[0]
    assert "Traceback" not in err and not run.exists()


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("recipes")
    train_one_epoch(tmp)
    from fgvc.data import make_synthetic

    make_synthetic(tmp / "four", num_classes=4, images_per_class=4, render_size=32, progress=False)
    return tmp / "run", tmp / "four"


def test_resume_or_evaluate_on_data_with_other_classes_is_refused(tmp_path, capsys, torch_globals, one_epoch_run):
    src, four = one_epoch_run
    run = tmp_path / "run"
    shutil.copytree(src, run)
    rc, err = train_inprocess(["--resume", run, "--set", f"data.root={four}"], capsys)
    assert rc == 2
    assert one_line_error(err).startswith(
        f"error: cannot resume {run}: its checkpoint was trained on 3 classes, but {four} has 4 different ones")
    rc = evaluate_main([str(run), "--set", f"data.root={four}"])
    assert rc == 2
    assert one_line_error(capsys.readouterr().err) == (
        f"error: the classes of {four} (4) differ from the ones this model was trained on (3); use the run's own "
        "data set (drop --set data.root/data.name): classification, knn and linear need the run's classes, while "
        "--protocol retrieval and fgvc.embed take any species")


def test_run_directories_are_never_overwritten_or_guessed(tmp_path, capsys, torch_globals, one_epoch_run):
    src, _ = one_epoch_run
    run = tmp_path / "run"
    shutil.copytree(src, run)
    recipe = run / "config.yaml"
    rc, err = train_inprocess([recipe, "--output", run], capsys)
    assert rc == 2 and one_line_error(err) == (
        f"error: {run} already holds a run with a checkpoint; continue it with --resume {run}, or choose another "
        "--output (fgvc never overwrites a checkpoint of another run)")
    (run / "checkpoints" / "last.pt").unlink()
    rc, err = train_inprocess(["--resume", run], capsys)
    assert rc == 2 and one_line_error(err) == (
        f"error: {run} has no checkpoints/last.pt yet: start it again without --resume")
    rc, err = train_inprocess(["--resume", tmp_path / "nothing"], capsys)
    assert rc == 2 and one_line_error(err) == (
        f"error: no such run directory or checkpoint: {tmp_path / 'nothing'}")


def test_a_run_that_cannot_start_creates_and_announces_nothing(tmp_path, capsys, torch_globals, monkeypatch):
    """No ``runs/`` folder in the user's working directory and no "run directory:" line when the data are missing."""
    monkeypatch.chdir(tmp_path)
    recipe = write_recipe(tmp_path / "r.yaml", base_recipe(tmp_path / "no-data"))
    rc = train_inprocess([recipe])[0]
    out = capsys.readouterr()
    assert rc == 2 and "not found" in one_line_error(out.err)
    assert "run directory" not in out.out and sorted(p.name for p in tmp_path.iterdir()) == ["r.yaml"]

