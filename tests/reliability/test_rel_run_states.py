"""Every command that takes a run directory, on a run in an unusual state: it works (exit 0, no error line) where it
can, else exits 2 with one ``error:`` line and no traceback.

States (each built once per module by copying one tiny run and damaging the copy): interrupted (checkpoints/last.pt
but no final.json), stopped before its first checkpoint, a garbage or truncated last.pt, a config.yaml that is not
YAML or is missing, a final.json that is not JSON, a metrics.jsonl with a torn last line, a folder that is not a run,
a path that does not exist. Plus ``--resume`` with a changed recipe, and fgvc.ablate over such runs.
"""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image
from rel_helpers import one_line_error, torch_globals

from fgvc.embed import main as embed_main
from fgvc.engine.checkpoint import load_checkpoint
from fgvc.engine.resume_check import resume_changes
from fgvc.evaluate import main as evaluate_main
from fgvc.explain import main as explain_main
from fgvc.export import main as export_main
from fgvc.extend import main as extend_main
from fgvc.predict import main as predict_main
from fgvc.prune import main as prune_main
from fgvc.quantize import main as quantize_main
from fgvc.report import main as report_main
from fgvc.train import main as train_main
from fgvc.visualize import main as visualize_main

assert torch_globals  # a fixture, used by name below

# command -> (main, argv after the run given the run, a scratch folder and the module's data)
Argv = Callable[[Path, Path, dict], list]
LIGHT: dict[str, tuple[Callable, Argv]] = {
    "evaluate": (evaluate_main, lambda r, t, d: [r, "--backend", "eager"]),
    "embed": (embed_main, lambda r, t, d: [r, "--out", t / "e.npz"]),
    "visualize": (visualize_main, lambda r, t, d: [r, "--n", "1", "--out", t / "v.png"]),
    "explain": (explain_main, lambda r, t, d: [r, "--n", "1", "--output", t / "x"]),
    "predict": (predict_main, lambda r, t, d: [r, d["image"], "--backend", "eager"]),
    "report": (report_main, lambda r, t, d: [r, "--out", t / "r.html", "--cam", "none", "--projection", "none",
                                             "--no-audit"]),
    "train --resume": (train_main, lambda r, t, d: ["--resume", r]),
}
HEAVY: dict[str, tuple[Callable, Argv]] = {
    "export": (export_main, lambda r, t, d: [r, "--out", t / "m.onnx", "--parity-images", "2"]),
    "quantize": (quantize_main, lambda r, t, d: [r, "--out", t / "q.onnx", "--calib", "4", "--repeats", "1",
                                                 "--test-images", "4"]),
    "prune": (prune_main, lambda r, t, d: [r, "--amount", "0.3", "--output", t / "p"]),
    "extend": (extend_main, lambda r, t, d: [r, "--add", d["new"], "--shots", "1", "--output", t / "x"]),
}
COMMANDS = {**LIGHT, **HEAVY}

# state -> what the one error line must say (a run every command refuses)
BROKEN = {
    "no_checkpoint": ("has no checkpoint",),
    "garbage_checkpoint": ("is not an fgvc checkpoint",),
    "truncated_checkpoint": ("is corrupt (checksum mismatch",),
    "not_a_run": ("is not a run directory",),
    "empty_folder": ("is not a run directory",),
    "no_such_path": ("no such run directory",),
}
WORKING = ("interrupted", "bad_config", "no_config", "bad_final", "torn_metrics")


def _damage(run: Path, state: str) -> None:
    ckpt = run / "checkpoints" / "last.pt"
    if state in ("interrupted", "no_checkpoint"):
        for name in ("final.json", "curves.png"):
            (run / name).unlink()
        shutil.rmtree(run / "eval")
        if state == "no_checkpoint":
            shutil.rmtree(run / "checkpoints")
    elif state == "garbage_checkpoint":
        ckpt.write_bytes(np.random.default_rng(0).bytes(4096))
    elif state == "truncated_checkpoint":
        ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    elif state == "bad_config":
        (run / "config.yaml").write_text("model: [test_resnet\n  data: {: :\n")
    elif state == "no_config":
        (run / "config.yaml").unlink()
    elif state == "bad_final":
        (run / "final.json").write_text('{"top1": 33.3, "top5"')
    elif state == "torn_metrics":
        with open(run / "metrics.jsonl", "a") as f:
            f.write('{"epoch": 1, "stage": "main", "lo')
    elif state == "not_a_run":
        shutil.rmtree(run)
        run.mkdir()
        (run / "notes.txt").write_text("not a run\n")
    elif state == "empty_folder":
        shutil.rmtree(run)
        run.mkdir()
    elif state == "no_such_path":
        shutil.rmtree(run)


@pytest.fixture(scope="module")
def world(tmp_path_factory, synthetic_set, tiny_run) -> dict:
    """One tiny run, a copy of it in every state, an image to predict, a folder of new classes to extend with."""
    data_root = synthetic_set(images_per_class=8, render_size=40)
    base = tiny_run(data_root)
    states = tmp_path_factory.mktemp("states")
    for state in (*BROKEN, *WORKING):
        shutil.copytree(base, states / state)
        _damage(states / state, state)
    new = tmp_path_factory.mktemp("new")
    for c, name in enumerate(("new_alpha", "new_beta")):
        for split in ("train", "test"):
            (new / split / name).mkdir(parents=True)
            for j in range(2):
                Image.new("RGB", (40, 40), (80 * c, 200 - 60 * j, 90)).save(new / split / name / f"{j}.png")
    image = next((data_root / "CUB_200_2011" / "images").rglob("*.jpg"))
    return {"base": base, "states": states, "image": image, "new": new, "data_root": data_root}


def _copy(world: dict, state: str, tmp: Path) -> Path:
    """A private copy of the run in ``state`` (a command that writes into it must not change the state for others)."""
    src, dst = world["states"] / state, tmp / state
    if src.exists():
        shutil.copytree(src, dst)
    return dst


def _call(command: str, run: Path, tmp: Path, world: dict) -> int:
    main, argv = COMMANDS[command]
    return main([str(a) for a in argv(run, tmp, world)])


@pytest.mark.parametrize("state", list(BROKEN))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_run_no_command_can_use_gives_one_error_line(command, state, world, tmp_path, capsys, torch_globals):
    run = world["states"] / state
    before = sorted(p.relative_to(run) for p in run.rglob("*")) if run.exists() else None
    assert _call(command, run, tmp_path, world) == 2
    line = one_line_error(capsys.readouterr().err)
    assert any(says in line for says in BROKEN[state]), line
    assert str(run) in line, line  # names the path
    assert (sorted(p.relative_to(run) for p in run.rglob("*")) if run.exists() else None) == before  # untouched


@pytest.mark.parametrize("state", WORKING)
@pytest.mark.parametrize("command", list(LIGHT))
def test_a_damaged_but_usable_run_still_works(command, state, world, tmp_path, capsys, torch_globals):
    run = _copy(world, state, tmp_path)
    assert _call(command, run, tmp_path, world) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error:" not in err, err
    if command == "train --resume":  # the run is finished again: a readable final.json and metrics.jsonl
        assert json.loads((run / "final.json").read_text())["n_images"] > 0
        assert [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [0]
        assert (run / "config.yaml").is_file()
    if state in ("bad_config", "no_config") and command == "train --resume":
        assert "resuming with the config saved in" in err
    if command == "report":
        page = (tmp_path / "r.html").read_text()
        if state == "interrupted":
            assert "has no final.json: the run did not finish" in page and "has no final.json" in err
        if state == "bad_final":
            assert "final.json is damaged" in page


@pytest.mark.slow
@pytest.mark.parametrize("command", list(HEAVY))
def test_the_deploy_and_derive_commands_work_on_an_interrupted_run(command, world, tmp_path, capsys, torch_globals):
    run = _copy(world, "interrupted", tmp_path)
    assert _call(command, run, tmp_path, world) == 0, capsys.readouterr().err
    assert "Traceback" not in capsys.readouterr().err


def test_evaluate_says_what_is_missing(world, tmp_path, capsys, torch_globals):
    run = _copy(world, "interrupted", tmp_path)
    assert evaluate_main([str(run), "--backend", "eager"]) == 0
    assert f"note: {run} has no final.json: the run did not finish" in capsys.readouterr().out
    assert evaluate_main([str(run), "--backend", "eager", "--checkpoint", "best"]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert line.startswith(f"error: {run} has no checkpoints/best.pt (it has last.pt)") and "--checkpoint last" in line


def test_a_run_stopped_before_its_first_checkpoint_starts_again_cleanly(world, tmp_path, capsys, torch_globals):
    run = _copy(world, "no_checkpoint", tmp_path)
    assert train_main(["--resume", str(run)]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert f"train it again with python -m fgvc.train {run / 'config.yaml'} --output {run}" in line
    assert train_main([str(run / "config.yaml"), "--output", str(run)]) == 0
    assert [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [0]  # no stale rows


@pytest.mark.parametrize("change, key", [
    (["--set", "model.backbone=resnet18"], "model.backbone: test_resnet.r160_in1k -> resnet18"),
    (["--set", "data.img_size=48", "data.resize=54"], "data.img_size: 32 -> 48"),
    (["--set", "model.name=wsdan"], "model.name: baseline -> wsdan"),
    (["--set", "train.lr=0.5"], "train.lr: 0.01 -> 0.5"),
    (["--set", "loss.name=focal"], "loss.name: cross_entropy -> focal"),
])
def test_resume_refuses_a_change_of_model_or_data_in_one_line(change, key, world, tmp_path, capsys, torch_globals):
    run = _copy(world, "interrupted", tmp_path)
    assert train_main(["--resume", str(run), *change]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert line.startswith(f"error: cannot resume {run} with its config.yaml and --set ") and key in line, line
    assert "size mismatch" not in line and not (run / "final.json").exists()


def test_resume_with_a_changed_recipe_names_the_keys(world, tmp_path, capsys, torch_globals):
    run = _copy(world, "interrupted", tmp_path)
    recipe = tmp_path / "changed.yaml"
    recipe.write_text((run / "config.yaml").read_text().replace("baseline", "wsdan").replace("img_size: 32",
                                                                                              "img_size: 30"))
    assert train_main([str(recipe), "--resume", str(run)]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert f"with the recipe {recipe}" in line and "data.img_size: 32 -> 30" in line and "model.name" in line


def test_resume_accepts_more_epochs_and_other_eval_settings(world, tmp_path, capsys, torch_globals):
    run = _copy(world, "interrupted", tmp_path)
    assert train_main(["--resume", str(run), "--set", "train.epochs=2", "eval.batch_size=3", "data.num_workers=0",
                       "train.threads=1"]) == 0
    assert [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [0, 1]
    assert json.loads((run / "final.json").read_text())["epochs"] == 2
    assert load_checkpoint(run / "checkpoints" / "last.pt")["config"]["train"]["epochs"] == 2


def test_a_model_override_on_a_trained_run_is_one_line(world, tmp_path, capsys, torch_globals):
    run = world["states"] / "interrupted"
    assert evaluate_main([str(run), "--backend", "eager", "--set", "model.backbone=resnet18"]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert "its weights do not fit the model" in line and "drop --set model.backbone=resnet18" in line


def test_resume_changes_sorts_keys_into_allowed_and_refused():
    from fgvc import config

    saved = config.from_saved({"train": {"stages": [{"name": "a", "epochs": 2}, {"name": "b", "epochs": 3}]}})
    new = config.from_saved({"train": {"stages": [{"name": "a", "epochs": 2}, {"name": "b", "epochs": 6},
                                                  {"name": "c", "epochs": 1}], "max_steps": 9},
                             "eval": {"tta_flip": True}, "output": {"root": "elsewhere"}, "data": {"root": "/d"}})
    refused, allowed = resume_changes(saved, new)
    assert refused == [] and set(allowed) == {"train.epochs", "train.stages", "train.max_steps", "eval.tta_flip",
                                              "output.root", "data.root"}
    renamed = config.from_saved({"train": {"stages": [{"name": "x", "epochs": 2}, {"name": "b", "epochs": 3}]},
                                 "model": {"args": {"num_parts": 4}}, "data": {"val_split": None}})
    refused, _ = resume_changes(saved, renamed)
    assert [k for k, _, _ in refused] == ["data.val_split", "train.stages", "model.args.num_parts"]


@pytest.mark.slow  # trains a study: ~2-6 s
def test_ablate_resumes_a_run_whose_final_json_or_config_is_damaged(world, tmp_path, monkeypatch, capsys,
                                                                   torch_globals):
    from fgvc.ablate import main as ablate_main
    from fgvc.experiments import ablate as runner

    monkeypatch.setattr(runner, "launch", lambda cmd: train_main(cmd[3:]))  # in-process fgvc.train
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text((world["base"].parent / "r.yaml").read_text())
    argv = [str(recipe), "--step", "lr: train.lr=0.02", "--seeds", "0", "--output", str(tmp_path / "study")]
    assert ablate_main(argv) == 0
    first, second = (tmp_path / "study" / "runs" / slug / "seed0" for slug in ("r0-baseline", "r1-lr"))
    top1 = json.loads((first / "final.json").read_text())["top1"]
    (first / "final.json").write_text("{not json")
    (second / "config.yaml").write_text(": : [")
    (tmp_path / "study" / "timing.json").write_text("[1,")
    capsys.readouterr()
    assert ablate_main(argv) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error:" not in err, err
    assert json.loads((first / "final.json").read_text())["top1"] == top1  # re-evaluated by the resume, same number
    table = list(csv.DictReader((tmp_path / "study" / "ablation.csv").read_text().splitlines()))
    assert [(r["name"], r["seeds_done"]) for r in table] == [("baseline", "1"), ("lr", "1")]


def test_a_full_disk_while_writing_results_is_one_line(world, tmp_path, monkeypatch, capsys, torch_globals):
    import errno

    import fgvc.protocols.base

    def full(path, data):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(fgvc.protocols.base, "write_json", full)  # what evaluate's results are written with
    run = _copy(world, "interrupted", tmp_path)
    assert evaluate_main([str(run), "--backend", "eager"]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert line.startswith(f"error: {run / 'eval'}") and "No space left on device; free disk space" in line, line
