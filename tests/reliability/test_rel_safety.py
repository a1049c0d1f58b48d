"""Safety: no unsafe loading or shell calls anywhere in fgvc/ (checked on the syntax tree); a run whose checkpoint
was replaced by a malicious pickle is refused by ``fgvc.evaluate`` and ``--resume`` without running its code;
recipes and ``--set`` values with Python YAML tags are refused; ``fgvc.datasets fetch`` refuses archives with
``..`` paths, absolute paths or links leaving the target, and writes nothing outside its root."""
from __future__ import annotations

import ast
import hashlib
import io
import pickle
import shutil
import tarfile
from pathlib import Path

import pytest
import torch
from rel_helpers import (
    REPO, base_recipe, one_line_error, run_module, torch_globals, train_inprocess, train_one_epoch,
    write_recipe,
)

from fgvc.engine.checkpoint import MAGIC
from fgvc.evaluate import main as evaluate_main

assert torch_globals  # a fixture, used by name below
SOURCES = sorted((REPO / "fgvc").rglob("*.py"))


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name):  # a bare call: eval(...), open(...)
                yield node, "<builtin>", f.id
            elif isinstance(f, ast.Attribute):  # owner.name(...); owner is None for a.b.name(...)
                yield node, f.value.id if isinstance(f.value, ast.Name) else None, f.attr


def _kw(node: ast.Call, key: str):
    for k in node.keywords:
        if k.arg == key:
            return k.value.value if isinstance(k.value, ast.Constant) else "<expr>"
    return None


def test_sources_use_only_safe_loading_and_no_shell():
    assert len(SOURCES) > 20
    problems, torch_loads = [], 0
    for path in SOURCES:
        for node, owner, name in _calls(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(REPO)}:{node.lineno}"
            if owner == "torch" and name == "load":
                torch_loads += 1
                if _kw(node, "weights_only") is not True:
                    problems.append(f"{where}: torch.load without weights_only=True")
            if owner == "yaml" and name in ("load", "load_all", "unsafe_load", "full_load", "full_load_all"):
                problems.append(f"{where}: yaml.{name} (use yaml.safe_load)")
            if owner in ("pickle", "cPickle", "dill", "marshal") and name in ("load", "loads"):
                problems.append(f"{where}: {owner}.{name}")
            if owner == "os" and name in ("system", "popen") or owner == "subprocess" and name == "getoutput":
                problems.append(f"{where}: {owner}.{name}")
            if _kw(node, "shell") not in (None, False):
                problems.append(f"{where}: shell=True")
            if owner == "<builtin>" and name in ("eval", "exec"):
                problems.append(f"{where}: {name}()")
            if owner in ("np", "numpy") and name == "load" and _kw(node, "allow_pickle") not in (None, False):
                problems.append(f"{where}: np.load(allow_pickle=True)")
    assert not problems, "\n".join(problems)
    assert torch_loads >= 1  # the checkpoint loader is found, so the check is looking at the right calls


class _Payload:
    """Unpickling this would create ``path``: evidence that code from the file ran."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _with_header(payload: bytes) -> bytes:
    """An fgvc checkpoint header with a *valid* checksum: only weights_only=True stands in the way."""
    return MAGIC + hashlib.sha256(payload).digest() + payload


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("safety")
    return train_one_epoch(tmp)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("kind", ["raw_pickle", "pickle_with_valid_header", "torch_save_with_valid_header"])
def test_malicious_checkpoint_is_refused_and_never_executed(tmp_path, capsys, torch_globals, trained_run, kind):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    marker = tmp_path / "pwned"
    evil = {"format": "fgvc-checkpoint-v1", "model": _Payload(marker)}
    if kind == "raw_pickle":
        blob = pickle.dumps(evil)
    elif kind == "pickle_with_valid_header":
        blob = _with_header(pickle.dumps(evil))
    else:
        buf = io.BytesIO()
        torch.save(evil, buf)
        blob = _with_header(buf.getvalue())
    control = tmp_path / "control"  # the payload is live: unpickling it unsafely does create its marker file
    pickle.loads(pickle.dumps({"model": _Payload(control)}))
    assert control.exists()
    (run / "checkpoints" / "last.pt").write_bytes(blob)
    for cli, args in ((evaluate_main, [str(run)]), (None, ["--resume", str(run)])):
        rc = cli(args) if cli else train_inprocess(args)[0]
        line = one_line_error(capsys.readouterr().err)
        assert rc == 2 and not marker.exists(), line
        if kind == "raw_pickle":
            assert "is not an fgvc checkpoint (it lacks the fgvc header)" in line
        else:
            assert "was refused: it needs arbitrary unpickling" in line and "never runs code from a file" in line
        assert str(run / "checkpoints" / "last.pt") in line


def test_yaml_python_tags_are_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    tag = f"!!python/object/apply:os.system ['touch {marker}']"
    recipe = tmp_path / "evil.yaml"
    recipe.write_text(f"seed: {tag}\n")
    rc, err = train_inprocess([recipe, "--output", tmp_path / "run"], capsys)
    line = one_line_error(err)
    assert rc == 2 and line.startswith(f"error: {recipe} is not valid YAML") and not marker.exists()
    assert "Python tags (!!python/...) are refused" in line
    good = write_recipe(tmp_path / "good.yaml", base_recipe(tmp_path / "nodata"))
    rc, err = train_inprocess([good, "--output", tmp_path / "run", "--set", f"train.lr={tag}"], capsys)
    assert rc == 2 and "value is not valid YAML" in one_line_error(err) and not marker.exists()


def _evil_tar(path: Path, outside: Path) -> Path:
    """A CUB-looking archive whose members try to escape: '..', an absolute path, links out of the target."""
    members = [
        ("CUB_200_2011/images.txt", "file", b"1 a.jpg\n"),
        ("../../escape.txt", "file", b"escaped"),
        (str(outside / "abs.txt"), "file", b"absolute"),
        ("CUB_200_2011/passwd", "sym", "/etc/passwd"),
        ("CUB_200_2011/up", "sym", "../../.."),
        ("CUB_200_2011/hard", "hard", "../../../etc/passwd"),
    ]
    with tarfile.open(path, "w:gz") as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                info.linkname = payload
                tar.addfile(info)
    return path


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("only", [pytest.param(None, marks=pytest.mark.slow), 1, 2, 3, 4, 5])  # None (all): ~5 s
def test_fetch_refuses_unsafe_archive_and_writes_nothing_outside(tmp_path, capsys, only):
    """``only``: an archive holding the safe member plus just that unsafe member (None: all of them, via the
    real command line in a subprocess)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    full = _evil_tar(tmp_path / "all.tgz", outside)
    archive = full
    if only is not None:
        archive = tmp_path / "one.tgz"
        with tarfile.open(full) as src, tarfile.open(archive, "w:gz") as dst:
            ms = src.getmembers()
            for m in (ms[0], ms[only]):
                dst.addfile(m, src.extractfile(m) if m.isfile() else None)
    root = tmp_path / "a" / "b" / "root"
    before = _tree(tmp_path)
    args = ["fetch", "cub200", "--root", str(root), "--archive", str(archive), "--force", "--no-progress"]
    if only is None:
        res = run_module("fgvc.datasets", args, timeout=120)
        rc, err = res.returncode, res.stderr
    else:
        from fgvc.datasets import main as datasets_main

        with pytest.warns(UserWarning, match="md5"):  # --force installs despite the md5 mismatch ...
            rc = datasets_main(args)
        err = capsys.readouterr().err
    assert rc == 2, err
    line = one_line_error(err)  # ... but never an unsafe member
    assert line.startswith(f"error: refusing to extract {archive}: member '") and "nothing was extracted" in line
    reason = {None: "'..' path component", 1: "'..' path component", 2: "absolute path",
              3: "link to an absolute path (/etc/passwd)", 4: "link pointing outside the target folder (../../..)",
              5: "link pointing outside the target folder (../../../etc/passwd)"}[only]
    assert f"unsafe ({reason})" in line, line
    after = _tree(tmp_path)
    assert not (tmp_path / "a" / "escape.txt").exists() and not (outside / "abs.txt").exists()
    new = sorted(after - before)
    assert all(p == "a" or p.startswith("a/b") for p in new), new  # only the root itself was created
    assert not [p for p in root.rglob("*") if p.name != root.name], list(root.rglob("*"))
