"""The package's shape (issue 24): layers and no cycles (import-linter's contracts in pyproject.toml), imports
between fgvc modules at module top, a small engine, no file over 400 lines."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fgvc"


def _fgvc_modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _local_fgvc_imports(path: Path, root: Path = PACKAGE.parent) -> list[str]:
    """``file:line module`` of every import of an fgvc module inside a function of ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if not node.level else ["(relative)"]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            found += [f"{path.relative_to(root)}:{node.lineno} {n}" for n in names
                      if n == "(relative)" or n == "fgvc" or n.startswith("fgvc.")]
    return found


def test_no_fgvc_import_inside_a_function() -> None:
    """Imports between fgvc modules sit at module top, where import-linter and a reader see them; a function-local
    import is only for an optional third-party package."""
    local = [hit for path in _fgvc_modules() for hit in _local_fgvc_imports(path)]
    assert not local, "fgvc imports inside functions (move them to the module's top):\n" + "\n".join(local)


def test_the_scan_finds_a_function_local_import(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("import torch\nfrom fgvc.errors import UserError\n\n\ndef f():\n    import numpy\n"
                   "    from fgvc.engine import trainer\n    return trainer\n")
    assert _local_fgvc_imports(src, tmp_path) == ["m.py:7 fgvc.engine"]


def test_engine_is_small_and_no_file_is_long() -> None:
    engine = [p for p in (PACKAGE / "engine").glob("*.py")]
    assert len(engine) <= 20, f"fgvc/engine holds {len(engine)} files (at most 20: the loop and run plumbing)"
    long = [f"{p.relative_to(PACKAGE.parent)}: {n} lines" for p in _fgvc_modules()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400]
    assert not long, "files over 400 lines:\n" + "\n".join(long)


@pytest.mark.skipif(shutil.which("lint-imports") is None and not (Path(sys.executable).parent / "lint-imports").exists(),
                    reason="import-linter not installed (pip install -e '.[dev]')")
def test_import_contracts_are_kept() -> None:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    got = subprocess.run([exe, "--config", str(PACKAGE.parent / "pyproject.toml")], cwd=PACKAGE.parent,
                         capture_output=True, text=True, timeout=300)
    assert got.returncode == 0, got.stdout[-3000:] + got.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken." in got.stdout
