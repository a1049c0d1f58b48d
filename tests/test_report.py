"""fgvc.report and fgvc.metrics.confusions: the failure analysis on hand-made predictions, and the HTML page of a
tiny trained run checked as a file (self-contained, every section) and in a real browser (headless Chromium
through playwright: no console error, every image decodes, a screenshot)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from fgvc.data import make_synthetic
from fgvc.metrics.accuracy import confusion_matrix
from fgvc.metrics.confusions import confused_pairs, pair_examples, per_class, worst_mistakes
from fgvc.report import SECTION_TITLES, main as report_main
from fgvc.train import main as train_main
from fgvc.vis.browser import check_page, find_chromium


# ---------------------------------------------------------------- run_analysis
def _probs(preds: list[int], conf: list[float], k: int) -> np.ndarray:
    p = np.full((len(preds), k), 0.0)
    for i, (c, q) in enumerate(zip(preds, conf)):
        p[i] = (1 - q) / (k - 1)
        p[i, c] = q
    return p


def test_per_class_and_pairs_on_a_hand_made_confusion() -> None:
    targets = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    preds = np.array([0, 1, 1, 1, 0, 1, 2, 2])  # 0 -> 1 twice, 1 -> 0 once, class 2 perfect
    cm = confusion_matrix(preds, targets, 3)
    rows = per_class(cm, ["a", "b", "c"])
    assert [(r.n_images, r.correct) for r in rows] == [(3, 1), (3, 2), (2, 2)]
    assert rows[0].accuracy == pytest.approx(100 / 3) and rows[0].confused_with == "b" and rows[0].n_confused == 2
    assert rows[2].confused_with is None and rows[2].n_confused == 0
    pairs = confused_pairs(cm, 10)
    assert len(pairs) == 1 and (pairs[0].a, pairs[0].b, pairs[0].a_as_b, pairs[0].b_as_a) == (0, 1, 2, 1)
    assert pairs[0].total == 3
    probs = _probs(list(preds), [0.9, 0.6, 0.8, 0.95, 0.7, 0.5, 0.9, 0.9], 3)
    mistake, reference = pair_examples(probs, targets, pairs[0])
    assert mistake == 2  # of the two images of class 0 read as 1, the one with p(1) = 0.8
    assert reference == 3  # the class-1 image the model is surest of


def test_worst_mistakes_most_confident_first() -> None:
    targets = np.array([0, 1, 2, 0, 1])
    probs = _probs([1, 1, 0, 2, 0], [0.7, 0.9, 0.95, 0.5, 0.8], 3)
    assert worst_mistakes(probs, targets, 10) == [2, 4, 0, 3]  # image 1 is right
    assert worst_mistakes(probs, targets, 2) == [2, 4]
    assert worst_mistakes(_probs([0, 1], [0.9, 0.9], 3), np.array([0, 1])) == []


# ---------------------------------------------------------------- the page
@pytest.fixture(scope="module")
def report(tmp_path_factory, tiny_recipe) -> Path:
    base = tmp_path_factory.mktemp("report")
    root = make_synthetic(base / "syn", num_classes=3, images_per_class=6, render_size=48, progress=False)
    recipe = tiny_recipe(base / "r.yaml", root, "eval: {batch_size: 5, protocols: [classification]}")
    run = base / "run"
    assert train_main([str(recipe), "--output", str(run), "--set", "train.epochs=3", "data.val_split=test"]) == 0
    out = base / "page" / "report.html"
    assert report_main([str(run), "--out", str(out), "--projection", "pca", "--worst", "4"]) == 0
    return out


def test_report_is_one_self_contained_page(report: Path) -> None:
    html = report.read_text(encoding="utf-8")
    assert report.stat().st_size < 10e6
    for title in SECTION_TITLES:
        assert f"<h2>{title}</h2>" in html, title
    links = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert links and all(u.startswith(("data:", "#")) for u in links), [u[:40] for u in links
                                                                       if not u.startswith(("data:", "#"))]
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html
    assert "fit" in html and "table class=\"sortable\"" in html
    assert (report.parent.parent / "run" / "environment.json").is_file()  # fgvc.train records it


def test_report_refuses_a_recipe(tmp_path: Path, tiny_recipe, capsys) -> None:
    recipe = tiny_recipe(tmp_path / "r.yaml", tmp_path / "nowhere")
    assert report_main([str(recipe)]) == 2
    assert "needs a trained run" in capsys.readouterr().err


@pytest.mark.slow  # Chromium: ~3 s
def test_report_in_a_real_browser(report: Path, tmp_path: Path) -> None:
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
    if find_chromium() is None:
        pytest.skip("no chromium on this machine (.ci/run installs Debian's chromium: apt-get install -y chromium)")
    shot = tmp_path / "report.png"
    page = check_page(report, shot, click="table.sortable th:nth-child(5)")  # sort by accuracy: the script runs
    assert page.errors == []
    assert page.n_images >= 5 and page.broken_images == []
    assert page.headings == list(SECTION_TITLES)
    assert shot.stat().st_size > 10_000
