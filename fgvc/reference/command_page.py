"""The command reference page (``docs/reference/commands.md``): every flag of every command, read from the
command's own argparse parser (subcommands included), so that the page cannot drift from the code.

:func:`captured_parser` gets a command module's parser without parsing anything; :func:`parser_markdown` renders one
parser (and its subcommands) as Markdown tables, without argparse's usage text (whose line wrapping depends on the
terminal and the Python version); :func:`commands_markdown` assembles the page. ``python -m fgvc.docs_gen`` writes it.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator, Mapping

__all__ = ["captured_parser", "cell", "parser_markdown", "commands_markdown"]

ROOT = Path(__file__).resolve().parents[2]


class _Captured(Exception):
    """Raised instead of parsing: carries the parser a command built."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__(parser.prog)
        self.parser = parser


def captured_parser(module: ModuleType) -> argparse.ArgumentParser:
    """The argparse parser of the command ``module``, as its ``parse_args`` builds it, without parsing anything.

    Commands build their parser inside ``parse_args(argv)`` (``fgvc.datasets``: ``_parser()``); the first
    ``ArgumentParser.parse_args`` call is intercepted and its parser returned.
    """
    if hasattr(module, "_parser"):
        return module._parser()
    original = argparse.ArgumentParser.parse_args

    def capture(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        raise _Captured(self)

    argparse.ArgumentParser.parse_args = capture  # type: ignore[method-assign]
    try:
        module.parse_args([])
    except _Captured as got:
        return got.parser
    finally:
        argparse.ArgumentParser.parse_args = original  # type: ignore[method-assign]
    raise RuntimeError(f"{module.__name__}.parse_args returned without calling ArgumentParser.parse_args")


def cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _flag_rows(parser: argparse.ArgumentParser) -> Iterator[str]:
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if action.option_strings:
            name = ", ".join(f"`{o}`" for o in action.option_strings)
        else:
            name = f"`{action.metavar or action.dest}`"
        if action.nargs == 0:
            value = ""
        else:
            metavar = action.metavar or (action.dest.upper() if action.option_strings else action.dest)
            value = f"`{' '.join(metavar) if isinstance(metavar, tuple) else metavar}`"
            if action.nargs in ("*", "+"):
                value += " ..."
            elif action.nargs == "?":
                value = f"[{value}]"
        choices = ", ".join(f"`{c}`" for c in action.choices) if action.choices else ""
        default = "" if action.default in (None, argparse.SUPPRESS, False) or action.nargs == 0 \
            else f"`{_portable(action.default)}`"
        helptext = (action.help or "").replace("%(default)s", str(_portable(action.default))) \
            if action.help != argparse.SUPPRESS else ""
        yield f"| {name} | {cell(value)} | {cell(choices)} | {cell(default)} | {cell(helptext)} |"


def _portable(default: object) -> object:
    """A default inside the checkout as a path relative to it (so the page is the same in every clone)."""
    text = str(default)
    if isinstance(default, (str, Path)) and Path(text).is_absolute() and Path(text).is_relative_to(ROOT):
        return Path(text).relative_to(ROOT).as_posix()
    return default


def parser_markdown(parser: argparse.ArgumentParser, title: str, level: int, what: str | None = None) -> list[str]:
    """One parser's section (and its subcommands' sections one level down); no argparse usage text, whose line
    wrapping depends on the terminal and the Python version."""
    out = [f"{'#' * level} {title}", ""]
    for text in (what, parser.description):
        if text:
            out += [" ".join(text.split()), ""]
    rows = list(_flag_rows(parser))
    if rows:
        out += ["| flag | value | choices | default | meaning |", "|---|---|---|---|---|", *rows, ""]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for sub_name, sub in action.choices.items():
                what = helps.get(sub_name)
                if what and sub.description and " ".join(what.split()) == " ".join(sub.description.split()):
                    what = None
                out += parser_markdown(sub, f"`{parser.prog} {sub_name}`", level + 1, what)
    return out


def commands_markdown(commands: Mapping[str, str], exit_codes: str,
                      parser_of: Callable[[str], argparse.ArgumentParser]) -> str:
    """The command reference page: every command of ``commands`` (name -> what it does), every flag of its parser
    (``parser_of(name)``); ``exit_codes`` is the sentence on exit statuses."""
    out = ["# Commands", "",
           "Generated from each command's argparse parser by `python -m fgvc.docs_gen`; do not edit by hand.",
           f"Every command is `python -m fgvc.NAME`, `fgvc NAME` and `fgvc-NAME`. {exit_codes[0].upper()}"
           f"{exit_codes[1:]}.", ""]
    for name, what in commands.items():
        parser = parser_of(name)
        parser.prog = f"python -m fgvc.{name}"
        out += parser_markdown(parser, f"`{name}`: {what}", 2)
    return "\n".join(out).rstrip() + "\n"
