"""The documentation's generated reference cannot drift: docs/reference/commands.md and recipe-keys.md must equal
what :mod:`fgvc.docs_gen` builds from the argparse parsers and the config schema, every recipe key needs a meaning,
and the site builds with ``mkdocs build --strict`` where mkdocs is installed."""
from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fgvc import config_schema, docs_gen
from fgvc.reference import key_pages
from fgvc.__main__ import COMMANDS

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_committed_reference_pages_equal_the_generated_ones() -> None:
    """A flag or recipe key added (or changed) without `python -m fgvc.docs_gen` fails here."""
    for path, text in docs_gen.pages().items():
        assert path.is_file(), f"{path} missing; run: python -m fgvc.docs_gen"
        assert path.read_text() == text, f"{path.relative_to(ROOT)} is out of date; run: python -m fgvc.docs_gen"


@pytest.mark.slow
def test_every_flag_of_every_command_is_in_the_committed_reference() -> None:
    page = (ROOT / "docs/reference/commands.md").read_text()
    for name in COMMANDS:
        parsers = [docs_gen.command_parser(name)]
        for action in parsers[0]._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers += list(action.choices.values())
        flags = [o for p in parsers for a in p._actions for o in a.option_strings if o not in ("-h", "--help")]
        assert flags or name in {"datasets", "bench"}, f"fgvc.{name}: no flags captured"
        for flag in flags:
            assert f"`{flag}`" in page, f"fgvc.{name} {flag} is not in docs/reference/commands.md"


def test_command_parser_returns_the_parser_without_parsing() -> None:
    parser = docs_gen.command_parser("embed")
    assert parser.prog == "fgvc-embed"
    assert "--out" in {o for a in parser._actions for o in a.option_strings}
    assert argparse.ArgumentParser.parse_args.__name__ == "parse_args"  # the interception is undone


def test_a_recipe_key_without_a_meaning_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(config_schema.DEFAULTS, "train", {**config_schema.DEFAULTS["train"], "new_key": 1})
    with pytest.raises(KeyError, match="train.new_key"):
        docs_gen.recipe_keys_markdown()


def test_recipe_key_page_lists_every_schema_key_with_type_and_default() -> None:
    text = docs_gen.recipe_keys_markdown()
    assert "| `train.lr` | float, > 0 | `0.01` |" in text
    assert "| `train.layer_decay` | float or int or null, in (0, 1] | `null` |" in text  # the ranges checked at load
    assert "| `train.amp` | str: `none`, `auto`, `bf16`, `fp16` | `none` |" in text
    assert "| `data.resize` | int or null | `null` |" in text
    for key, _ in key_pages.flatten(config_schema.DEFAULTS):
        assert f"| `{key}` |" in text


def test_registry_page_lists_every_registered_component() -> None:
    from fgvc.reference.inventory import registries_markdown
    from fgvc.registry import DATASETS, HEADS, LOSSES, METHODS, PROTOCOLS

    text = registries_markdown()
    for reg in (METHODS, DATASETS, LOSSES, PROTOCOLS, HEADS):
        assert reg.names(), f"no {reg.kind} registered"
        for name in reg.names():
            assert f"| `{name}` | `fgvc." in text, f"{reg.kind} {name}"
    assert "`num_attentions=32`" in text  # a method's own argument with its default


def test_packages_page_lists_every_module() -> None:
    from fgvc.reference.inventory import PACKAGE, _tracked, packages_markdown

    text = packages_markdown()
    modules = _tracked(PACKAGE, "*.py", recursive=True)
    assert PACKAGE / "docs_gen.py" in modules and PACKAGE / "engine" / "trainer.py" in modules
    for path in modules:
        if path.stem != "__init__":
            assert f"| `{path.stem}` |" in text, path


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None,
                    reason="mkdocs-material not installed (pip install -e '.[docs]')")
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    exe = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    cmd = [exe] if exe else [sys.executable, "-m", "mkdocs"]
    got = subprocess.run(cmd + ["build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, env={**__import__("os").environ,
                                                                           "NO_MKDOCS_2_WARNING": "1"})
    assert got.returncode == 0, got.stderr[-4000:]
    for page in ("index.html", "getting-started/index.html", "guides/own-dataset/index.html",
                 "reference/commands/index.html", "reference/recipe-keys/index.html", "methods/wsdan/index.html",
                 "benchmarks/results/index.html", "architecture/index.html"):
        assert (tmp_path / "site" / page).is_file(), page
    results = (tmp_path / "site/benchmarks/results/index.html").read_text()
    assert "--8&lt;--" not in results and "--8<--" not in results, "a snippet include was not resolved"
