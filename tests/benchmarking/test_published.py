"""fgvc.report's "gap vs paper" line: a gap only for a run in the published setting (full data, same backbone and
image size, finished); otherwise the reasons it is not comparable, and no number."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from fgvc.benchmarking.published import compare_run, compare_runs
from fgvc.vis.run_report import results_section

REPO = Path(__file__).resolve().parents[2]
PUBLISHED = REPO / "benchmarks" / "published.csv"
HERE = {"what": "final-epoch weights", "split": "test", "top1": 80.0, "n": 5794}


def test_gap_only_in_the_published_setting(tmp_path: Path, fake_run: Callable[..., Path]) -> None:
    same = fake_run(tmp_path, "same", "baseline", "resnet50", "datasets/CUB_200_2011", 83.0, img_size=448)
    # the filed case: WS-DAN on a 20-class mini set at 128 px, 2 epochs, against the paper's 89.4
    mini = fake_run(tmp_path, "mini", "wsdan", "tf_efficientnet_lite0", "../shared/data/cub200-mini", 89.12,
                    img_size=128)
    r_same, r_mini = compare_runs([same, mini], PUBLISHED).rows
    assert r_same.comparable and r_same.caveats == []
    assert not r_mini.comparable and r_mini.published == 89.4
    assert len(r_mini.caveats) == 3 and "128 px" in r_mini.caveats[2] and "subset" in r_mini.caveats[0]

    html = results_section(mini, {"top1": 89.12}, HERE, str(PUBLISHED), compare_run(mini, PUBLISHED)).body
    assert "NOT comparable" in html and "-0.28" not in html and "gap -" not in html
    assert "tf_efficientnet_lite0" in html and "128 px" in html
    html = results_section(same, {"top1": 83.0}, HERE, str(PUBLISHED), compare_run(same, PUBLISHED)).body
    assert "gap -1.50 points" in html and "NOT comparable" not in html


def test_no_comparison_says_why(tmp_path: Path, fake_run: Callable[..., Path]) -> None:
    """A table that cannot be read: the Results section says so instead of a comparison."""
    run = fake_run(tmp_path, "same", "baseline", "resnet50", "datasets/CUB_200_2011", 83.0, img_size=448)
    why = compare_run(run, tmp_path / "none.csv")
    assert isinstance(why, str) and "published results table not found" in why
    html = results_section(run, {"top1": 83.0}, HERE, str(tmp_path / "none.csv"), why).body
    assert "published results table not found" in html and "gap" not in html

