"""Generated documentation of what the code holds: every registered component (methods, dataset readers, losses,
evaluation protocols, heads) with its recipe arguments, and every module of the package with the first paragraph of its
docstring. :mod:`fgvc.docs_gen` writes both pages; tests/test_docs_reference.py fails when they are stale."""
from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path
from typing import Any, Callable

from fgvc.registry import DATASETS, HEADS, LOSSES, METHODS, PROTOCOLS

__all__ = ["registries_markdown", "packages_markdown", "results_markdown"]

PACKAGE = Path(__file__).resolve().parents[1]  # fgvc/

# the modules whose import registers each registry's builders
_REGISTERING = ("fgvc.methods", "fgvc.data", "fgvc.losses", "fgvc.protocols", "fgvc.models.heads")
# arguments the engine supplies itself (not recipe keys)
_ENGINE_ARGS = {"self", "setup", "root", "split", "transform", "on_bad_image", "in_features", "num_classes",
                "feat_dim", "class_counts"}
_WHERE = {"method": "`model.name`", "dataset": "`data.name`", "loss": "`loss.name` or a `loss.aux` entry",
          "evaluation protocol": "`eval.protocols`, `fgvc.evaluate --protocol`", "head": "`model.args.head`"}
_ARGS_KEY = {"method": "model.args", "dataset": "data.args", "loss": "loss.args / loss.aux[].args",
             "evaluation protocol": "(none)", "head": "model.args.head_args"}


def _first_paragraph(text: str | None) -> str:
    return " ".join((text or "").strip().split("\n\n")[0].split())


def _summary(fn: Callable[..., Any]) -> str:
    own = fn.__dict__.get("__doc__") if inspect.isclass(fn) else fn.__doc__
    text = _first_paragraph(own) or _first_paragraph(inspect.getmodule(fn).__doc__)
    return text.replace("|", "\\|")


def _arguments(fn: Callable[..., Any]) -> str:
    out = []
    for name, p in inspect.signature(fn).parameters.items():
        if name in _ENGINE_ARGS or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        out.append(f"`{name}`" if p.default is p.empty else f"`{name}={p.default!r}`")
    return ", ".join(out).replace("|", "\\|")


def registries_markdown() -> str:
    """One table per registry: name, module, what it is, the arguments a recipe may pass."""
    for module in _REGISTERING:
        importlib.import_module(module)
    out = ["# Registered components", "",
           "Generated from the registries of `fgvc/registry.py` by `python -m fgvc.docs_gen`; do not edit by hand. "
           "A recipe names each component by its registered name; the arguments are checked against the builder's "
           "signature (the engine supplies the data set's root and split, the classes and the feature width itself).",
           ""]
    for reg in (METHODS, DATASETS, LOSSES, PROTOCOLS, HEADS):
        out += [f"## {reg.kind.capitalize()}s", "", f"Named by {_WHERE[reg.kind]}; arguments in "
                f"`{_ARGS_KEY[reg.kind]}`.", "", "| name | module | what it is | arguments (default) |",
                "|---|---|---|---|"]
        for name in reg.names():
            fn = reg.get(name)
            out.append(f"| `{name}` | `{fn.__module__}` | {_summary(fn)} | {_arguments(fn)} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def packages_markdown() -> str:
    """Every module of the package (from the files, without importing them) with its docstring's first paragraph."""
    out = ["# Packages and modules", "",
           "Generated from the source tree by `python -m fgvc.docs_gen`; do not edit by hand. Each module with the "
           "first paragraph of its docstring.", ""]
    files = _tracked(PACKAGE, "*.py", recursive=True)
    groups: dict[str, list[Path]] = {}
    for path in files:
        rel = path.relative_to(PACKAGE.parent)
        package = ".".join(rel.parts[:-1])
        groups.setdefault(package, []).append(path)
    for package, paths in groups.items():
        out += [f"## `{package}`", "", "| module | what it is |", "|---|---|"]
        for path in paths:
            doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
            first = _first_paragraph(doc)
            name = path.stem if path.stem != "__init__" else "(package)"
            out.append(f"| `{name}` | {first.replace('|', chr(92) + '|')} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _tracked(folder: Path, pattern: str, recursive: bool) -> list[Path]:
    """Files under ``folder`` matching ``pattern`` that git tracks (a file not committed yet is left out, so the pages
    match the commit); every such file on disk when this is not a git checkout."""
    import subprocess

    try:
        got = subprocess.run(["git", "ls-files", "--", pattern if recursive else f":(glob){pattern}"], cwd=folder,
                             capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return sorted(folder.rglob(pattern) if recursive else folder.glob(pattern))
    return sorted(folder / line for line in got.stdout.splitlines() if line and (folder / line).is_file())


def _result_files() -> list[Path]:
    return _tracked(PACKAGE.parent / "benchmarks/results", "*.md", recursive=False)


def results_markdown() -> str:
    """The benchmark results page: one section per ``benchmarks/results/*.md``, included by pymdownx.snippets from the
    file itself (never a copy), so a new result file appears once ``python -m fgvc.docs_gen`` has run."""
    names = sorted(p.name for p in _result_files())
    out = ["# Result files", "",
           "Each file of `benchmarks/results/`, included as it is in the repository (with machine, date and command). "
           "Generated by `python -m fgvc.docs_gen`.", ""]
    for name in names:
        out += [f"## {name}", "", f'--8<-- "benchmarks/results/{name}"', ""]
    return "\n".join(out).rstrip() + "\n"
