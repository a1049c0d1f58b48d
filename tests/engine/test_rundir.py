"""The run directory's files: JSON floats rounded, every file at the umask's mode (atomic writes included), and
curves.png's panels (like with like, whole-number epochs, a title that agrees with the marked epoch)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fgvc.engine.checkpoint import atomic_write_bytes, save_checkpoint
from fgvc.engine.rundir import append_metrics, curves_figure, round_float, truncate_metrics, write_json


def test_json_floats_are_rounded_to_six_significant_digits(tmp_path: Path) -> None:
    write_json(tmp_path / "final.json", {"top1": 92.59999990463257, "lr": 1.2345678e-05, "seconds": 1234567.89,
                                         "nested": [{"loss": 0.123456789}], "n": 1000, "bad": float("nan")})
    text = (tmp_path / "final.json").read_text()
    assert '"top1": 92.6,' in text and "92.5999" not in text
    got = json.loads(text)
    assert got == {"top1": 92.6, "lr": 1.23457e-05, "seconds": 1234568.0, "nested": [{"loss": 0.123457}],
                   "n": 1000, "bad": None}
    append_metrics(tmp_path, {"epoch": 0, "val_top1": 84.00000095367432, "loss": 0.6931471805599453})
    append_metrics(tmp_path, {"epoch": 1, "val_top1": 91.23456789, "loss": 0.5})
    truncate_metrics(tmp_path, 2)  # the resume path rewrites the file: still rounded
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == {"epoch": 0, "val_top1": 84.0, "loss": 0.693147}
    assert json.loads(lines[1])["val_top1"] == 91.2346
    assert round_float(round_float(91.23456789)) == round_float(91.23456789) == 91.2346


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_writes_get_the_umask_mode_like_other_run_files(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        write_json(tmp_path / "final.json", {"top1": 1.0})
        atomic_write_bytes(tmp_path / "environment.json", b"{}")
        save_checkpoint({"x": 1}, tmp_path / "checkpoints" / "last.pt")
        (tmp_path / "train.log").write_text("plain open()\n")
    finally:
        os.umask(old)
    want = 0o666 & ~umask
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.rglob("*") if p.is_file()}
    assert modes == {"final.json": want, "environment.json": want, "last.pt": want, "train.log": want}
    assert not list(tmp_path.rglob("*.tmp"))


def _wsdan_rows() -> list[dict]:
    # WS-DAN logs its objective (three views + center loss) as "loss" and the raw view's cross-entropy as "ce_raw"
    return [{"epoch": e, "loss": 3.0 - 0.3 * e, "ce_raw": 1.5 - 0.2 * e, "train_top1": 60 + 8 * e,
             "val_top1": 55 + 7 * e, "val_loss": 1.4 - 0.15 * e} for e in range(3)]


def _lines(ax) -> dict[str, list[float]]:
    return {line.get_label(): list(line.get_ydata()) for line in ax.get_lines()}


def test_curves_compare_train_ce_of_the_raw_view_with_val_ce_on_whole_epochs() -> None:
    import matplotlib.pyplot as plt

    fig = curves_figure(_wsdan_rows(), "wsdan-run", label_smoothing=0.1)
    loss_ax, top1_ax = fig.axes[:2]
    got = _lines(loss_ax)
    assert set(got) == {"train CE (raw view, label smoothing 0.1)", "val CE"}
    assert got["train CE (raw view, label smoothing 0.1)"] == pytest.approx([1.5, 1.3, 1.1])  # not the 3-view loss
    assert loss_ax.get_ylabel() == "cross-entropy (nats)" and len(fig.axes) == 2
    fig.canvas.draw()
    for ax in (loss_ax, top1_ax):
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)
    plt.close(fig)
    objective_only = [{k: v for k, v in r.items() if k != "ce_raw"} for r in _wsdan_rows()]
    fig = curves_figure(objective_only, "racnn-run")  # no cross-entropy logged: its objective on its own axis
    assert "val CE" in _lines(fig.axes[0]) and "train objective (right axis)" in _lines(fig.axes[2])
    plt.close(fig)


@pytest.mark.parametrize("fit,marked,words", [
    ({"verdict": "overfitting", "epoch": 2}, True, "overfitting after epoch 2"),
    ({"verdict": "overfitting", "epoch": None}, False, "no onset epoch"),
    ({"verdict": "inconclusive", "epoch": None, "val_images": 100}, False, "within the noise of 100 val images"),
    ({"verdict": "good fit", "epoch": None}, False, "good fit"),
])
def test_the_title_names_an_epoch_only_when_one_is_marked(fit: dict, marked: bool, words: str) -> None:
    import matplotlib.pyplot as plt

    fig = curves_figure(_wsdan_rows(), "run", fit)
    title = fig._suptitle.get_text()
    vlines = [line for line in fig.axes[0].get_lines() if line.get_label().startswith("overfitting after")]
    assert words in title and bool(vlines) == marked
    assert ("epoch" in title.replace("no onset epoch", "")) == marked
    plt.close(fig)
