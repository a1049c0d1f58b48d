"""Every shared flag is declared once (fgvc.cli.flags): each command that takes it parses it under the same name, into
the same dest with the same default and help; old spellings (--out, --batch, --batches) still parse."""
from __future__ import annotations

import argparse
import importlib

import pytest

from fgvc.__main__ import COMMANDS
from fgvc.cli.flags import SHARED
from fgvc.reference.command_page import captured_parser

RUN = {"--set", "--checkpoint", "--weights", "--split"}  # add_run_arguments
# command (or "command subcommand") -> the shared flags it must take
EXPECTED: dict[str, set[str]] = {
    "train": {"--set", "--output"},
    "evaluate": RUN | {"--backend", "--output"},
    "embed": RUN | {"--output"},
    "explain": RUN | {"--output"},
    "visualize": RUN | {"--output"},
    "project": RUN | {"--output"},
    "report": RUN | {"--output"},
    "export": RUN | {"--output"},
    "quantize": {"--set", "--checkpoint", "--weights", "--output", "--threads"},
    "predict": {"--set", "--checkpoint", "--weights", "--backend", "--batch-size"},
    "serve": {"--set", "--checkpoint", "--weights", "--backend", "--threads"},
    "extend": {"--set", "--checkpoint", "--output"},
    "prune": {"--set", "--checkpoint", "--output"},
    "ablate": {"--set", "--output"},
    "datasets audit": {"--checkpoint", "--output"},
    "datasets cache": {"--output"},
    "datasets convert": {"--output"},
    "bench report": {"--output"},
    "bench tables": {"--output"},
    "bench speed": {"--batch-size", "--device", "--threads"},
    "bench pipeline": {"--set", "--batch-size", "--device"},
    "bench steps": {"--batch-size", "--device", "--threads"},
    "bench infer": {"--set", "--checkpoint", "--weights", "--batch-size", "--device", "--threads"},
    "zeroshot": {"--set", "--split", "--batch-size", "--device", "--output"},
}
# a flag spelled as a shared one that means something else in that command, as its issue asks: zeroshot's
# --weights FILE is a CLIP state dict (issue 26), not a run's auto|ema|model weights
OWN_MEANING = {("zeroshot", "--weights")}
VARYING_DEFAULT = {"--batch-size", "--output"}  # what a batch or an output is differs by command: the dest does not
VARYING_HELP = {"--batch-size", "--output", "--threads"}  # the help names what is batched, written or threaded


def _parsers() -> dict[str, argparse.ArgumentParser]:
    """Every command's parser and every subcommand's, by ``"command"`` or ``"command subcommand"``."""
    out: dict[str, argparse.ArgumentParser] = {}
    for name in COMMANDS:
        parser = captured_parser(importlib.import_module(f"fgvc.{name}"))
        out[name] = parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                out.update({f"{name} {sub}": p for sub, p in action.choices.items()})
    return out


PARSERS = _parsers()


def _shared_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {flag: a for a in parser._actions for flag in a.option_strings if flag in SHARED}


def test_every_command_is_covered() -> None:
    assert set(COMMANDS) <= {name.split()[0] for name in EXPECTED}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_command_takes_its_shared_flags(name: str) -> None:
    got = set(_shared_actions(PARSERS[name]))
    assert EXPECTED[name] <= got, f"fgvc {name} lacks {sorted(EXPECTED[name] - got)}"


@pytest.mark.parametrize("flag", sorted(SHARED))
def test_a_shared_flag_has_one_dest_default_and_help(flag: str) -> None:
    dest, default = SHARED[flag]
    actions = {name: _shared_actions(p)[flag] for name, p in PARSERS.items()
               if flag in _shared_actions(p) and (name, flag) not in OWN_MEANING}
    assert len(actions) >= 2, f"{flag} is shared by fewer than two commands"
    for name, action in actions.items():
        assert action.dest == dest, f"fgvc {name} {flag}: dest {action.dest}"
        if flag not in VARYING_DEFAULT:
            assert action.default == default, f"fgvc {name} {flag}: default {action.default!r}"
    if flag not in VARYING_HELP:
        assert len({a.help for a in actions.values()}) == 1, f"{flag}: help differs between commands"
        assert len({tuple(a.choices or ()) for a in actions.values()}) == 1, f"{flag}: choices differ"


def test_threads_means_torchs_count_by_default_and_for_zero() -> None:
    for name in ("quantize", "serve", "bench speed", "bench steps", "bench infer"):
        action = _shared_actions(PARSERS[name])["--threads"]
        assert action.default is None and action.type("0") is None and action.type("3") == 3, name


@pytest.mark.parametrize("name", ["embed", "visualize", "project", "export", "quantize", "report", "bench report",
                                  "bench tables"])
def test_out_is_kept_as_the_old_spelling_of_output(name: str) -> None:
    action = _shared_actions(PARSERS[name])["--output"]
    assert action.option_strings == ["--output", "--out"]


def test_old_batch_spellings_still_parse() -> None:
    speed = PARSERS["bench speed"].parse_args(["--backbone", "resnet50", "--batch", "8"])
    infer = PARSERS["bench infer"].parse_args(["run", "--batches", "1", "4"])
    assert speed.batch_size == 8 and infer.batch_size == [1, 4]
    predict = importlib.import_module("fgvc.predict").parse_args(["run", "a.jpg", "--batch-size", "2"])
    assert predict.batch_size == 2


def test_embed_parses_out_and_output_alike() -> None:
    embed = importlib.import_module("fgvc.embed")
    assert embed.parse_args(["run", "--out", "a.npz"]).output == embed.parse_args(["run", "--output", "a.npz"]).output


def test_bench_infer_takes_weights() -> None:
    args = PARSERS["bench infer"].parse_args(["run", "--weights", "ema"])
    assert args.weights == "ema"
