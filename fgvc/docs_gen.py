"""Generate the documentation's reference pages from the code, so that they cannot drift.

- ``docs/reference/commands.md``: every command of :data:`fgvc.__main__.COMMANDS` with every flag, read from the
  command's own argparse parser (subcommands included; :mod:`fgvc.reference.command_page`).
- ``docs/reference/recipe-keys.md``: every recipe key of :data:`fgvc.config_schema.DEFAULTS` with its type, default
  and meaning (:data:`fgvc.reference.config_keys.MEANINGS`), plus the keys of ``train.stages``, ``loss.aux`` and
  ``distill`` (:mod:`fgvc.reference.key_pages`).
- ``docs/reference/run-files.md``: every JSON key of a run's ``final.json``, ``metrics.jsonl`` and
  ``environment.json`` with its meaning (:mod:`fgvc.reference.run_files`, :mod:`fgvc.reference.key_pages`).
- ``docs/reference/registries.md`` and ``packages.md``: every registered component and every module
  (:mod:`fgvc.reference.inventory`), and ``docs/benchmarks/results.md``, which includes every ``benchmarks/results/*.md``.
- the layers table of ``README.md`` and ``docs/architecture.md`` (between their markers): the import-linter layers of
  ``pyproject.toml`` with each package's docstring (:mod:`fgvc.reference.layers`).

``python -m fgvc.docs_gen`` writes them; ``python -m fgvc.docs_gen --check`` exits 1 when the committed pages differ
(tests/test_docs_reference.py runs the same check). A key without a meaning is an error, so a new recipe key cannot
land undocumented.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from fgvc.__main__ import COMMANDS, EXIT_CODES
from fgvc.cli import friendly
from fgvc.errors import CheckFailed
from fgvc.reference import command_page
from fgvc.reference.inventory import packages_markdown, registries_markdown, results_markdown
from fgvc.reference.key_pages import recipe_keys_markdown, run_files_markdown
from fgvc.reference.layers import layers_markdown, splice

__all__ = ["command_parser", "commands_markdown", "recipe_keys_markdown", "run_files_markdown", "pages", "main"]

ROOT = Path(__file__).resolve().parents[1]


def command_parser(name: str) -> argparse.ArgumentParser:
    """The argparse parser of ``fgvc.<name>``, as its ``parse_args`` builds it, without parsing anything
    (:func:`fgvc.reference.command_page.captured_parser`)."""
    return command_page.captured_parser(importlib.import_module(f"fgvc.{name}"))


def commands_markdown() -> str:
    """The command reference page: every command of :data:`fgvc.__main__.COMMANDS`, every flag."""
    return command_page.commands_markdown(COMMANDS, EXIT_CODES, command_parser)


def pages() -> dict[Path, str]:
    """Every generated page: path under the repository -> its Markdown."""
    return {ROOT / "docs/reference/commands.md": commands_markdown(),
            ROOT / "docs/reference/recipe-keys.md": recipe_keys_markdown(),
            ROOT / "docs/reference/run-files.md": run_files_markdown(),
            ROOT / "docs/reference/registries.md": registries_markdown(),
            ROOT / "docs/reference/packages.md": packages_markdown(),
            ROOT / "docs/benchmarks/results.md": results_markdown(),
            **{ROOT / page: splice((ROOT / page).read_text(), layers) for page in ("README.md", "docs/architecture.md")
               for layers in [layers_markdown(ROOT / "fgvc", ROOT / "pyproject.toml")]}}


@friendly
def main(argv: list[str] | None = None) -> None:
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
        raise CheckFailed(f"out of date: {', '.join(map(str, stale))}; run: python -m fgvc.docs_gen")


if __name__ == "__main__":
    sys.exit(main())
