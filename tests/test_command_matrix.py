"""The contract between methods and commands: every registered method x every command that takes a run.

Each pair either works on a tiny run (exit 0) or refuses in one ``error:`` line that says why (exit 2), never a
traceback. The observed outcomes must equal :data:`EXPECTED`, and the README prints the same matrix (checked by
:func:`test_readme_prints_the_matrix`), so a new refusal or a fixed one shows up in both places.

Runs: each method on a tiny CNN (``test_resnet``, 32 px) and, where the method takes one, on a tiny ViT
(``test_vit``); every command runs on the CNN run, and a representative set on the ViT run.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Callable

import pytest

pytestmark = pytest.mark.slow

CNN, VIT = "test_resnet.r160_in1k", "test_vit"
METHOD_ARGS = {
    "baseline": "{}",
    "wsdan": "{num_attentions: 2}",
    "bcnn": "{reduce_dim: 8}",
    "racnn": "{share_backbone: true, apn_hidden: 16, apn_channels: 4, apn_grid: 2}",
    "senet": "{}",
    "cbam": "{}",
}
CNN_ONLY = {"senet", "cbam"}
# methods outside the matrix, and where they are tested end to end instead
OUTSIDE = {"simclr": "label-free pretraining (its logits are an online probe): tests/methods/test_method_simclr.py "
                     "trains one and scores it with evaluate --protocol knn, and model.init_from fine-tunes from it"}

# command name -> argv builder (run dir, scratch dir, data root) -> the command's argv
Argv = Callable[[Path, Path, Path], list[str]]


def _image(data: Path) -> str:
    return str(sorted(data.rglob("*.jpg"))[0])


def _new_species(data: Path, root: Path) -> Path:
    """A folder data set (``root/{train,test}/new_<k>/``) of two species the runs never saw: links to the synthetic
    images of two classes under new names."""
    for k, cls in enumerate(sorted(p for p in data.rglob("images/*") if p.is_dir())[:2]):
        for split, files in (("train", sorted(cls.glob("*.jpg"))[:3]), ("test", sorted(cls.glob("*.jpg"))[3:5])):
            (root / split / f"new_{k}").mkdir(parents=True, exist_ok=True)
            for f in files:
                (root / split / f"new_{k}" / f.name).symlink_to(f)
    return root


COMMANDS: dict[str, tuple[str, Argv]] = {
    "evaluate": ("evaluate", lambda r, t, d: [str(r), "--output", str(t / "ev")]),
    "evaluate retrieval": ("evaluate", lambda r, t, d: [str(r), "--protocol", "retrieval", "--output", str(t / "ev")]),
    "evaluate knn": ("evaluate", lambda r, t, d: [str(r), "--protocol", "knn", "--output", str(t / "ev")]),
    "evaluate linear": ("evaluate", lambda r, t, d: [str(r), "--protocol", "linear", "--output", str(t / "ev")]),
    "embed": ("embed", lambda r, t, d: [str(r), "--out", str(t / "e.npz")]),
    "visualize": ("visualize", lambda r, t, d: [str(r), "--n", "2", "--out", str(t / "v.png")]),
    "explain": ("explain", lambda r, t, d: [str(r), "--n", "2", "--output", str(t / "cam")]),
    "predict": ("predict", lambda r, t, d: [str(r), _image(d), "--json"]),
    "predict onnx": ("predict", lambda r, t, d: [str(r / "export" / "model.onnx"), _image(d), "--json"]),
    "report": ("report", lambda r, t, d: [str(r), "--out", str(t / "report.html"), "--cam", "gradcam",
                                          "--projection", "pca", "--no-audit"]),
    "export onnx": ("export", lambda r, t, d: [str(r), "--format", "onnx", "--parity-images", "4"]),
    "export torchscript": ("export", lambda r, t, d: [str(r), "--format", "torchscript", "--parity-images", "4",
                                                      "--out", str(t / "m.pt")]),
    "export static": ("export", lambda r, t, d: [str(r), "--format", "onnx", "--static-batch", "--parity-images", "4",
                                                 "--out", str(t / "static.onnx")]),
    "quantize": ("quantize", lambda r, t, d: [str(r), "--calib", "6", "--repeats", "1", "--test-images", "6",
                                              "--out", str(t / "q.onnx")]),
    "prune": ("prune", lambda r, t, d: [str(r), "--amount", "0.25", "--output", str(t / "pruned")]),
    "extend": ("extend", lambda r, t, d: [str(r), "--add", str(_new_species(d, t / "new")), "--shots", "2",
                                          "--output", str(t / "ext")]),
}
# `predict onnx` reads the file `export onnx` wrote, so the order of COMMANDS matters for it
ORDER = ["evaluate", "evaluate retrieval", "evaluate knn", "evaluate linear", "embed", "visualize", "explain",
         "predict", "report", "export onnx", "predict onnx", "export torchscript", "export static", "quantize",
         "prune", "extend"]
VIT_COMMANDS = ["evaluate", "evaluate knn", "embed", "visualize", "explain", "predict", "export onnx", "predict onnx"]

OK, REFUSED = "ok", "refused"
# every pair not listed here must work; a refusal is listed with the words its one line must contain
EXPECTED_REFUSALS: dict[tuple[str, str], str] = {
    ("wsdan", "extend"): "there is nowhere to imprint new classes",  # its classifier reads part features of 2 views
    ("racnn", "extend"): "there is nowhere to imprint new classes",  # one classifier per scale
    ("racnn", "distil (student)"): "the KD term cannot train it",  # its fused logits are detached in training
}


def _cases() -> list[tuple[str, str, str]]:
    cases = [(m, "cnn", c) for m in METHOD_ARGS for c in ORDER]
    cases += [(m, "vit", c) for m in METHOD_ARGS if m not in CNN_ONLY for c in VIT_COMMANDS]
    cases += [(m, "cnn", "distil (student)") for m in METHOD_ARGS]
    return cases


def expected(method: str, arch: str, command: str) -> str:
    return REFUSED if (method, command) in EXPECTED_REFUSALS else OK


def _call(module: str, argv: list[str]) -> tuple[int, str, str]:
    import importlib

    main = importlib.import_module(f"fgvc.{module}").main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exit_:  # argparse
            rc = exit_.code if isinstance(exit_.code, int) else 1
    return int(rc or 0), out.getvalue(), err.getvalue()


def _recipe(path: Path, data: Path, method: str, backbone: str, extra: str = "") -> Path:
    size = 32
    path.write_text(f"""seed: 1
data: {{name: cub200, root: {data}, img_size: {size}, resize: {size + 4}, num_workers: 0, val_split: null,
        augment: {{hflip: false}}}}
model: {{name: {method}, backbone: {backbone}, pretrained: false, args: {METHOD_ARGS[method]}}}
train: {{epochs: 1, batch_size: 4, lr: 0.01, device: cpu, threads: 1, warmup_epochs: 0, max_steps: 2}}
eval: {{batch_size: 6}}
{extra}""")
    return path


@pytest.fixture(scope="module")
def data(synthetic_set) -> Path:
    return synthetic_set(6)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, data: Path) -> Callable[[str, str], Path]:
    """``runs(method, arch)``: the tiny run of ``method`` on the CNN or the ViT, trained once per module."""
    made: dict[tuple[str, str], Path] = {}

    def get(method: str, arch: str) -> Path:
        if (method, arch) not in made:
            base = tmp_path_factory.mktemp(f"{method}-{arch}")
            recipe = _recipe(base / "r.yaml", data, method, CNN if arch == "cnn" else VIT)
            rc, out, err = _call("train", [str(recipe), "--output", str(base / "run")])
            assert rc == 0, err[-2000:]
            made[(method, arch)] = base / "run"
        return made[(method, arch)]

    return get


def outcome(rc: int, err: str) -> str:
    """ok, refused (exit 2 and exactly one ``error:`` line), or what went wrong."""
    if rc == 0:
        return OK
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    if rc == 2 and "Traceback" not in err and sum(ln.startswith("error:") for ln in lines) == 1:
        return REFUSED
    return f"exit {rc}: {err.strip()[-1500:]}"


@pytest.mark.parametrize("method,arch,command", _cases())
def test_every_method_with_every_command(method, arch, command, runs, data, tmp_path):
    run = runs(method, arch)
    if command == "distil (student)":
        teacher = runs("baseline", "cnn")
        recipe = _recipe(tmp_path / "s.yaml", data, method, CNN,
                         extra=f"distill: {{teacher: {teacher}, alpha: 0.5, temperature: 2.0}}")
        rc, out, err = _call("train", [str(recipe), "--output", str(tmp_path / "student")])
    else:
        module, argv = COMMANDS[command]
        if command == "predict onnx" and not (run / "export" / "model.onnx").exists():
            rc, out, err = _call("export", COMMANDS["export onnx"][1](run, tmp_path, data))
            assert rc == 0, err
        rc, out, err = _call(module, argv(run, tmp_path, data))
    got = outcome(rc, err)
    assert got == expected(method, arch, command), f"{method} ({arch}) x {command}: {got}"
    if got == REFUSED:
        assert EXPECTED_REFUSALS[(method, command)] in err


def matrix_markdown() -> str:
    """The README's table: one row per command, one column per method; ✓ works, ✗ refuses (with the reason below)."""
    head = "| command | " + " | ".join(METHOD_ARGS) + " |"
    rows = [head, "|---" * (len(METHOD_ARGS) + 1) + "|"]
    rows.append("| train | " + " | ".join("✓" if m in CNN_ONLY else "✓ (+ViT)" for m in METHOD_ARGS) + " |")
    for command in ORDER + ["distil (student)"]:
        cells = []
        for m in METHOD_ARGS:
            mark = "✓" if expected(m, "cnn", command) == OK else "✗"
            if m not in CNN_ONLY and command in VIT_COMMANDS:
                mark += " (+ViT)"
            cells.append(mark)
        rows.append(f"| {command} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def test_readme_prints_the_matrix():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert matrix_markdown() in readme, "README's method x command matrix is out of date; paste:\n" + matrix_markdown()


def test_every_registered_method_is_in_the_matrix():
    from fgvc.methods import METHODS

    assert set(METHODS.names()) == set(METHOD_ARGS) | set(OUTSIDE)
