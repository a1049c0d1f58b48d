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

# (recipe edits as {section: {key: value}} or --set overrides, the start of the message after "error: ")
RECIPE_CASES = {
    "unknown_key": ({"train": {"lrr": 0.1}}, [], "unknown recipe key 'train.lrr' (from {recipe}) (did you mean 'lr'?); "
                                               "valid keys here: amp, backbone_lr_scale, batch_size"),
    "unknown_section": ({"optimiser": {"lr": 0.1}}, [], "unknown recipe key 'optimiser' (from {recipe}); valid keys"),
    "wrong_type": ({"train": {"epochs": "three"}}, [], "'train.epochs' (from {recipe}) must be int, got 'three' (str)"),
    "bool_not_number": ({"train": {"lr": True}}, [], "'train.lr' (from {recipe}) must be float, got True (bool)"),
    "bad_choice": ({"train": {"optimizer": "adam"}}, [], "'train.optimizer' (from {recipe}) must be one of "
                                                         "['sgd', 'adamw'], got 'adam' (did you mean 'adamw'?)"),
    "negative_lr": ({}, ["train.lr=-0.1"], "'train.lr' (from --set train.lr=-0.1) = -0.1: the learning rate must be "
                                           "> 0 (e.g. 0.01 for SGD, 1e-3 for AdamW)"),
    "zero_epochs": ({"train": {"epochs": 0}}, [], "'train.epochs' (from {recipe}) = 0: must be >= 1"),
    "crop_larger_than_resize": ({"data": {"img_size": 64, "resize": 36}}, [],
                                "'data.resize' (from {recipe}) = 36: the crop data.img_size=64 is larger than the "
                                "resize; set data.resize >= data.img_size (e.g. 73) or data.resize=null"),
    "unknown_override": ({}, ["train.bogus=1"], "--set train.bogus: unknown key 'train.bogus'"),
    "override_syntax": ({}, ["train.lr"], "override 'train.lr' must look like key.sub=value, e.g. train.lr=0.01"),
    "negative_clip": ({"train": {"clip_grad": -1.0}}, [], "'train.clip_grad' (from {recipe}) = -1.0: must be > 0 or "
                                                          "null"),
    "unknown_method": ({"model": {"name": "wsdna"}}, [], "unknown method 'wsdna' (did you mean 'wsdan'?); "
                                                         "registered methods:"),
    "unknown_method_arg": ({"model": {"name": "wsdan", "args": {"num_attention": 4}}}, [],
                           "method 'wsdan' takes no argument 'num_attention' in model.args (did you mean "
                           "'num_attentions'?)"),
    "unknown_data_arg": ({"data": {"args": {"val_fractoin": 0.2}}}, [],
                         "dataset 'cub200' takes no argument 'val_fractoin' in data.args (did you mean "
                         "'val_fraction'?)"),
    "num_classes_in_recipe": ({"model": {"args": {"num_classes": 5}}}, [],
                              "model.args may not set num_classes: the trainer passes them (num_classes comes from "
                              "the data: 3 classes here;"),
    "data_root_missing": ({"data": {"root": "/nonexistent/cub"}}, [],
                          "CUB-200-2011 not found: /nonexistent/cub/CUB_200_2011/images.txt does not exist"),
}


@pytest.mark.parametrize("case", list(RECIPE_CASES))
def test_bad_recipe_refused_before_training(tmp_path, capsys, torch_globals, case):
    edits, sets, expected = RECIPE_CASES[case]
    cfg = base_recipe(pristine_root(), **edits)
    recipe = write_recipe(tmp_path / "r.yaml", cfg)
    run = tmp_path / "run"
    rc, err = train_inprocess([recipe, "--output", run, *(["--set", *sets] if sets else [])], capsys)
    assert rc == 2
    line = one_line_error(err)
    assert line.startswith("error: " + expected.format(recipe=recipe.resolve())), line
    assert not (run / "checkpoints").exists() and not (run / "metrics.jsonl").exists()


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("recipes")
    train_one_epoch(tmp)
    from fgvc.data import make_synthetic

    make_synthetic(tmp / "four", num_classes=4, images_per_class=4, img_size=32, progress=False)
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
        f"error: the classes of {four} (4) differ from the ones this model was trained on (3); evaluate on the same "
        "data set")


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
        f"error: {tmp_path / 'nothing'} is not an fgvc run directory (no config.yaml)")
