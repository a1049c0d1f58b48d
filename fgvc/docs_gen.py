"""Generate the documentation's reference pages from the code, so that they cannot drift.

- ``docs/reference/commands.md``: every command of :data:`fgvc.__main__.COMMANDS` with every flag, read from the
  command's own argparse parser (subcommands included).
- ``docs/reference/recipe-keys.md``: every recipe key of :data:`fgvc.config_schema.DEFAULTS` with its type, default
  and meaning (:data:`fgvc.reference.config_keys.MEANINGS`), plus the keys of ``train.stages``, ``loss.aux`` and
  ``distill``.
- ``docs/reference/run-files.md``: every JSON key of a run's ``final.json``, ``metrics.jsonl`` and
  ``environment.json`` with its meaning (:mod:`fgvc.reference.run_files`).
- ``docs/reference/registries.md`` and ``packages.md``: every registered component and every module
  (:mod:`fgvc.reference.inventory`), and ``docs/benchmarks/results.md``, which includes every ``benchmarks/results/*.md``.

``python -m fgvc.docs_gen`` writes them; ``python -m fgvc.docs_gen --check`` exits 1 when the committed pages differ
(tests/test_docs_reference.py runs the same check). A key without a meaning is an error, so a new recipe key cannot
land undocumented.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any, Iterator

__all__ = ["command_parser", "commands_markdown", "recipe_keys_markdown", "run_files_markdown", "pages", "main"]

ROOT = Path(__file__).resolve().parents[1]


class _Captured(Exception):
    """Raised instead of parsing: carries the parser a command built."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__(parser.prog)
        self.parser = parser


def command_parser(name: str) -> argparse.ArgumentParser:
    """The argparse parser of ``fgvc.<name>``, as its ``parse_args`` builds it, without parsing anything.

    Commands build their parser inside ``parse_args(argv)`` (``fgvc.datasets``: ``_parser()``); the first
    ``ArgumentParser.parse_args`` call is intercepted and its parser returned.
    """
    module = importlib.import_module(f"fgvc.{name}")
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
    raise RuntimeError(f"fgvc.{name}.parse_args returned without calling ArgumentParser.parse_args")


def _cell(text: str) -> str:
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
        yield f"| {name} | {_cell(value)} | {_cell(choices)} | {_cell(default)} | {_cell(helptext)} |"


def _portable(default: object) -> object:
    """A default inside the checkout as a path relative to it (so the page is the same in every clone)."""
    text = str(default)
    if isinstance(default, (str, Path)) and Path(text).is_absolute() and Path(text).is_relative_to(ROOT):
        return Path(text).relative_to(ROOT).as_posix()
    return default


def _parser_markdown(parser: argparse.ArgumentParser, title: str, level: int, what: str | None = None) -> list[str]:
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
                out += _parser_markdown(sub, f"`{parser.prog} {sub_name}`", level + 1, what)
    return out


def commands_markdown() -> str:
    """The command reference page: every command, every flag."""
    from fgvc.__main__ import COMMANDS, EXIT_CODES

    out = ["# Commands", "",
           "Generated from each command's argparse parser by `python -m fgvc.docs_gen`; do not edit by hand.",
           f"Every command is `python -m fgvc.NAME`, `fgvc NAME` and `fgvc-NAME`. {EXIT_CODES[0].upper()}"
           f"{EXIT_CODES[1:]}.", ""]
    for name, what in COMMANDS.items():
        parser = command_parser(name)
        parser.prog = f"python -m fgvc.{name}"
        out += _parser_markdown(parser, f"`{name}`: {what}", 2)
    return "\n".join(out).rstrip() + "\n"


def _flatten(tree: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    from fgvc.config_schema import FREE_FORM

    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value and dotted not in FREE_FORM:
            yield from _flatten(value, dotted + ".")
        else:
            yield dotted, value


def _type_name(types: tuple[type, ...]) -> str:
    return " or ".join("null" if t is type(None) else t.__name__ for t in types)


def recipe_keys_markdown() -> str:
    """The recipe-key reference page: every key with type, default and meaning."""
    from fgvc.reference.config_keys import MEANINGS, SUB_KEY_MEANINGS
    from fgvc.config_schema import (AUX_KEYS, AUX_REQUIRED, CHOICES, DEFAULTS, DISTILL_DEFAULTS, DISTILL_KEYS,
                                    STAGE_KEYS, STAGE_REQUIRED, TYPES)

    keys = list(_flatten(DEFAULTS))
    missing = [k for k, _ in keys if k not in MEANINGS]
    if missing:
        raise KeyError(f"recipe keys without a meaning in fgvc/reference/config_keys.py MEANINGS: {', '.join(missing)}")
    stale = sorted(set(MEANINGS) - {k for k, _ in keys})
    if stale:
        raise KeyError(f"fgvc/reference/config_keys.py MEANINGS names keys the schema does not have: {', '.join(stale)}")
    out = ["# Recipe keys", "",
           "Generated from `fgvc/config_schema.py` (types, defaults, choices) and `fgvc/reference/config_keys.py` "
           "(meanings) by `python -m fgvc.docs_gen`; do not edit by hand. Any key can be set on the command line "
           "with `--set key.sub=value`.", ""]
    section = None
    for dotted, default in keys:
        top = dotted.split(".")[0]
        if top != section:
            section = top
            out += ["", f"## `{top}`", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        types = TYPES.get(dotted) or (type(default),)
        kind = _type_name(types)
        if dotted in CHOICES:
            kind += ": " + ", ".join(f"`{c}`" for c in CHOICES[dotted])
        shown = default if isinstance(default, str) else json.dumps(default)  # YAML spelling: null, true, [...]
        out.append(f"| `{dotted}` | {_cell(kind)} | `{_cell(shown)}` | {_cell(MEANINGS[dotted])} |")
    for title, spec, required, defaults, prefix in (
            ("`train.stages` entries", STAGE_KEYS, STAGE_REQUIRED, {}, "stages"),
            ("`loss.aux` entries", AUX_KEYS, AUX_REQUIRED, {}, "aux"),
            ("`distill` keys", DISTILL_KEYS, ("teacher",), DISTILL_DEFAULTS, "distill")):
        out += ["", f"## {title}", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        for key, typ in spec.items():
            default = "required" if key in required else f"`{defaults.get(key, 'null')}`"
            out.append(f"| `{key}` | {typ.__name__} | {default} | {_cell(SUB_KEY_MEANINGS[f'{prefix}.{key}'])} |")
    return "\n".join(out).rstrip() + "\n"


def run_files_markdown() -> str:
    """The run-files reference page: every JSON key of a run's files with its meaning."""
    from fgvc.reference.run_files import TABLES

    out = ["# Run files: JSON keys", "",
           "Generated from `fgvc/reference/run_files.py` by `python -m fgvc.docs_gen`; do not edit by hand. The files "
           "themselves are listed in [Run directory](run-directory.md). `<head>` stands for a head name of the method "
           "(`logits` for most, WS-DAN `raw`, RA-CNN `scale1`...)."]
    for title, (what, keys) in TABLES.items():
        out += ["", f"## {title}", "", what, "", "| key | meaning |", "|---|---|"]
        out += [f"| `{key}` | {_cell(meaning)} |" for key, meaning in keys.items()]
    return "\n".join(out).rstrip() + "\n"


def pages() -> dict[Path, str]:
    """Every generated page: path under the repository -> its Markdown."""
    from fgvc.reference.inventory import packages_markdown, registries_markdown, results_markdown

    return {ROOT / "docs/reference/commands.md": commands_markdown(),
            ROOT / "docs/reference/recipe-keys.md": recipe_keys_markdown(),
            ROOT / "docs/reference/run-files.md": run_files_markdown(),
            ROOT / "docs/reference/registries.md": registries_markdown(),
            ROOT / "docs/reference/packages.md": packages_markdown(),
            ROOT / "docs/benchmarks/results.md": results_markdown()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fgvc.docs_gen", description="Write (or --check) the generated "
                                 "reference pages under docs/reference/.")
    ap.add_argument("--check", action="store_true", help="exit 1 when a committed page differs from the code")
    args = ap.parse_args(argv)
    stale = []
    for path, text in pages().items():
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(path.relative_to(ROOT))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"out of date: {', '.join(map(str, stale))}; run: python -m fgvc.docs_gen", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
