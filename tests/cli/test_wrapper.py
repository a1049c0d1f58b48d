"""The one error wrapper (fgvc.cli.friendly) and the exit-code table: 0 ok, 1 check failed, 2 user error, 130
interrupted; a bug keeps its traceback."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fgvc import errors
from fgvc.__main__ import main as fgvc_main
from fgvc.cli import friendly
from fgvc.deploy.export import ParityError

ROOT = Path(__file__).resolve().parents[2]


def _raising(exc: BaseException):  # noqa: ANN202
    @friendly
    def main(argv: list[str] | None = None) -> int:
        raise exc

    return main


def test_user_error_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert _raising(errors.ConfigError("train.lr: must be > 0; set it in the recipe"))() == 2
    assert capsys.readouterr().err == "error: train.lr: must be > 0; set it in the recipe\n"


def test_failed_check_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert _raising(errors.CheckFailed("parity: max |diff| 0.3 > 0.001"))() == 1
    assert capsys.readouterr().err == "error: parity: max |diff| 0.3 > 0.001\n"


def test_a_value_error_of_a_bug_keeps_its_traceback() -> None:
    with pytest.raises(ValueError, match="a bug"):
        _raising(ValueError("a bug"))()


def test_interrupted_is_exit_130(capsys: pytest.CaptureFixture[str]) -> None:
    assert _raising(KeyboardInterrupt())() == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_every_user_error_type_lives_in_errors() -> None:
    from fgvc import extras, predict, serve
    from fgvc.deploy import channel_pruning

    assert predict.PredictError is errors.PredictError and serve.ServeError is errors.ServeError
    assert channel_pruning.PruningError is errors.PruningError and extras.MissingExtraError is errors.MissingExtraError
    assert issubclass(ParityError, errors.CheckFailed) and not issubclass(ParityError, errors.UserError)
    assert not issubclass(errors.CheckFailed, errors.UserError)


def test_the_exit_code_table_is_in_fgvc_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert fgvc_main(["--help"]) == 0
    out = capsys.readouterr().out
    assert errors.exit_codes_text() in out
    assert [int(code) for code in errors.EXIT_CODES] == [0, 1, 2, 130]


def test_visualize_reports_a_bad_n_through_the_wrapper(capsys: pytest.CaptureFixture[str]) -> None:
    from fgvc.visualize import main as visualize_main

    assert visualize_main(["no-such-run", "--n", "0"]) == 2
    assert capsys.readouterr().err == "error: --n must be >= 1, got 0\n"


@pytest.mark.slow  # a fresh interpreter importing torch: ~4-10 s
def test_fgvc_train_recipe_help_prints_trains_help() -> None:
    done = subprocess.run([sys.executable, "-m", "fgvc", "train", "recipes/demo.yaml", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: fgvc-train") and "--set" in done.stdout and "--output" in done.stdout
