"""fgvc.ablate end to end on the tiny recipe: a study killed after its first finished run resumes without retraining
it (and continues a half-finished run with the trainer's own resume), the dry run shows the plan, and a changed
study refuses to reuse runs of another setting."""
import csv
import sys

import pytest

from fgvc.ablate import main
from fgvc.experiments import ablate as runner
from fgvc.train import main as train_main


@pytest.fixture(scope="module")
def data_root(synthetic_set):
    return synthetic_set(images_per_class=6, render_size=40)


@pytest.mark.slow  # trains a study of runs: ~15 s
def test_stopped_study_resumes_without_retraining(tmp_path, data_root, tiny_recipe, monkeypatch, crash_after_step,
                                                  capsys):
    recipe = tiny_recipe(tmp_path / "tiny.yaml", data_root)
    out = tmp_path / "study"
    argv = [str(recipe), "--step", "lr: train.lr=0.02", "--seeds", "0", "--output", str(out),
            "--set", "train.checkpoint_every_steps=1"]
    calls = []

    def kill_after_first(cmd):
        calls.append(cmd)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the study is stopped right after its first run finished
        return subprocess_call(cmd)

    subprocess_call = runner.launch
    monkeypatch.setattr(runner, "launch", kill_after_first)
    assert main(argv) == 130
    first, second = out / "runs" / "r0-baseline" / "seed0", out / "runs" / "r1-lr" / "seed0"
    assert (first / "final.json").is_file() and not second.exists()
    assert len(list(csv.DictReader((out / "ablation.csv").read_text().splitlines()))) == 2  # tables after each run
    stamp = (first / "final.json").stat().st_mtime_ns

    # the second run half-trains (its own fgvc.train command, killed after step 1's checkpoint)
    cmd = runner.train_command(runner.plan_runs(_rows(recipe), [0], out)[1])
    assert cmd[:3] == [sys.executable, "-m", "fgvc.train"] and cmd[-1] == str(second)
    crash_after_step(1)
    with pytest.raises(crash_after_step.Crash):
        train_main(cmd[3:])
    monkeypatch.setattr(runner, "launch", subprocess_call)
    assert (second / "checkpoints" / "last.pt").is_file() and not (second / "final.json").exists()

    capsys.readouterr()
    assert main([*argv, "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "row 1 'lr'" in plan and "vs row 0: train.lr: 0.01 -> 0.02" in plan
    assert "r0-baseline: seed 0 done" in plan and "(1 finished run(s))" in plan
    assert "r1-lr: seed 0 partial (0/1 epochs)" in plan and "estimated time left: ~" in plan
    assert "1 run(s) of rows with no measured epoch are counted as the mean measured row" in plan

    calls.clear()
    monkeypatch.setattr(runner, "launch", lambda c: calls.append(c) or subprocess_call(c))
    assert main(argv) == 0
    assert calls == [[sys.executable, "-m", "fgvc.train", "--resume", str(second)]]  # nothing retrained
    assert (first / "final.json").stat().st_mtime_ns == stamp and (second / "final.json").is_file()
    lines = (out / "ablation.csv").read_text().splitlines()
    assert len(lines) == 3 and [r["seeds_done"] for r in csv.DictReader(lines)] == ["1", "1"]
    assert (out / "ablation.png").is_file() and "| 1 | lr | train.lr: 0.01 -> 0.02 |" in (out / "ablation.md").read_text()

    calls.clear()  # a finished study trains nothing; a changed one refuses the runs of the old setting
    assert main(argv) == 0 and calls == []
    assert main([*argv, "train.lr=0.03"]) == 2
    assert "holds a run of another setting" in capsys.readouterr().err


def _rows(recipe):
    from fgvc.experiments.plan import parse_step, resolve_rows

    return resolve_rows(recipe, [parse_step("lr: train.lr=0.02")], ["train.checkpoint_every_steps=1"])
