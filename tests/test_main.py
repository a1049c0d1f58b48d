"""``fgvc COMMAND``: every command module is listed and dispatched to with its own flags."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from fgvc.__main__ import COMMANDS, main

PACKAGE = Path(__file__).resolve().parents[1] / "fgvc"


def test_every_command_module_is_listed():
    modules = {p.stem for p in PACKAGE.glob("*.py") if re.search(r"^def main\(", p.read_text(), re.M)}
    assert modules - {"__main__", "docs_gen"} == set(COMMANDS)  # docs_gen: a developer's tool, not a user command


def test_help_lists_every_command_and_the_exit_codes(capsys):
    assert main(["--help"]) == 0 and main([]) == 0
    out = capsys.readouterr().out
    assert all(re.search(rf"^  {name}\s", out, re.M) for name in COMMANDS)
    assert "2 user error" in out


def test_a_command_gets_its_own_flags(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "recipes/demo.yaml", "--help"])
    assert exit_.value.code == 0 and "usage: fgvc-train" in capsys.readouterr().out


def test_an_unknown_command_is_one_line_with_the_closest(capsys):
    assert main(["trian"]) == 2
    assert capsys.readouterr().err == (f"error: unknown command 'trian' (did you mean 'train'?); commands: "
                                       f"{', '.join(COMMANDS)}\n")
