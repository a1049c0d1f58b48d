"""fgvc.bench: the published table, the report's rows and Markdown on fake run directories, the report command."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Callable

import pytest

from fgvc import bench

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO / "benchmarks" / "published.csv"


def test_published_csv_parses_with_required_columns() -> None:
    rows = bench.load_published(PUBLISHED)
    assert rows and all(set(bench.PUBLISHED_COLUMNS) <= set(r) for r in rows)
    assert all(r["source"].strip() for r in rows)
    assert all(r["notes"].strip() for r in rows if r["top1"] is None)  # an empty number says why
    key: dict[tuple[str, str, str], float] = {}
    for r in rows:  # the first row of a (method, backbone, dataset) is the one the report matches
        if r["top1"] is not None:
            key.setdefault((r["method"], r["backbone"], r["dataset"]), r["top1"])
    assert key[("wsdan", "inception_v3", "cub200")] == 89.4
    assert key[("racnn", "vgg19", "cub200")] == 85.3
    assert key[("bcnn", "vgg16", "cub200")] == 84.0
    assert key[("bcnn_compact", "vgg16", "cub200")] == 84.0
    assert key[("baseline", "resnet50", "cub200")] == 84.5
    assert {r["method"] for r in rows if r["top1"] is None} >= {"senet", "cbam"}


def test_published_csv_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "p.csv"
    bad.write_text("method,top1\nx,1\n")
    with pytest.raises(bench.BenchError, match="lacks the column"):
        bench.load_published(bad)
    with pytest.raises(bench.BenchError, match="not found"):
        bench.load_published(tmp_path / "none.csv")


def test_match_prefers_backbone() -> None:
    rows = bench.load_published(PUBLISHED)
    row, how = bench.match_published(rows, "wsdan", "resnet101.tv_in1k", "cub200")
    assert how == "backbone" and row["top1"] == 88.8
    row, how = bench.match_published(rows, "wsdan", "resnet50", "CUB-200-2011")
    assert how == "other-backbone" and row["backbone"] == "inception_v3"
    assert bench.match_published(rows, "cbam", "resnet50", "cub200")[1] == "no-number"
    assert bench.match_published(rows, "racnn", "vgg19", "flowers102") == (None, "none")


def test_compare_runs_rows_gap_subset_and_citations(tmp_path: Path, fake_run: Callable[..., Path]) -> None:
    mini = fake_run(tmp_path, "mini-run", "baseline", "resnet50.a1_in1k", "../shared/data/cub200-mini", 60.0)
    full = fake_run(tmp_path, "full-run", "wsdan", "resnet50", "datasets/CUB_200_2011", 88.0)
    small = fake_run(tmp_path, "small-run", "baseline", "resnet50", "datasets/CUB_200_2011", 81.0, img_size=224)
    cbam = fake_run(tmp_path, "cbam-run", "cbam", "resnet50", "datasets/CUB_200_2011", None)
    report = bench.compare_runs([mini, full, small, cbam], PUBLISHED)
    r_mini, r_full, r_small, r_cbam = report.rows
    assert (r_mini.run, r_mini.match, r_mini.published) == ("mini-run", "backbone", 84.5)
    assert r_mini.gap == pytest.approx(-24.5) and r_mini.subset and r_mini.finished
    assert r_mini.images_per_s == pytest.approx(20.0) and r_mini.epochs == 2 and r_mini.steps == 376
    assert r_full.match == "other-backbone" and r_full.published_row["backbone"] == "inception_v3"
    assert r_full.gap == pytest.approx(88.0 - 89.4) and not r_full.subset
    assert r_cbam.match == "no-number" and r_cbam.published is None and r_cbam.gap is None
    assert not r_cbam.finished and r_cbam.top1 is None and r_cbam.epochs == 2  # epochs from metrics.jsonl
    # cited rows numbered in order of first citation; the same published row keeps its number
    assert [r.cite for r in report.rows] == [1, 2, 1, 3]
    assert report.sources == [r_mini.published_row, r_full.published_row, r_cbam.published_row]
    assert [r.img_size_differs for r in report.rows] == [False, False, True, False]
    assert report.any_subset and report.any_unfinished
    text = bench.format_markdown(report, generated=dt.datetime(2026, 1, 2, 3, 4, 5))
    assert "Generated 2026-01-02T03:04:05 " in text and f"`{PUBLISHED}`" in text
    assert "- `small-run`: trained at 224 px, the published number at 448 px." in text
    assert not list(tmp_path.rglob("*.png")) and not list(tmp_path.rglob("*.md"))  # computing writes nothing


def test_report_table_gap_and_honesty_note(tmp_path: Path, fake_run: Callable[..., Path],
                                           capsys: pytest.CaptureFixture) -> None:
    mini = fake_run(tmp_path, "mini-run", "baseline", "resnet50.a1_in1k", "../shared/data/cub200-mini", 60.0)
    full = fake_run(tmp_path, "full-run", "wsdan", "resnet50", "datasets/CUB_200_2011", 88.0)
    cbam = fake_run(tmp_path, "cbam-run", "cbam", "resnet50", "datasets/CUB_200_2011", None)
    out = tmp_path / "results" / "report.md"
    assert bench.main(["report", str(mini), str(full), str(cbam), "--published", str(PUBLISHED), "--out", str(out)]) == 0
    text = out.read_text()
    assert str(out) in capsys.readouterr().out
    lines = {ln.split("|")[1].strip(): ln for ln in text.splitlines() if ln.startswith("| `")}
    mini_row, full_row, cbam_row = lines["`mini-run` †"], lines["`full-run`"], lines["`cbam-run` ‡"]
    assert "84.5" in mini_row and "-24.5" in mini_row and "20.0" in mini_row  # published, gap, mean img/s
    assert "376" in mini_row and "1234" in mini_row
    assert "89.4 (inception_v3)" in full_row and "-1.4" in full_row
    assert "n/a" in cbam_row
    assert "not a like-for-like comparison" in text.lower()
    assert "ImageNet only" in text
    assert out.with_suffix(".png").is_file()


def test_report_on_a_non_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert bench.main(["report", str(tmp_path), "--published", str(PUBLISHED), "--out", str(tmp_path / "r.md")]) == 2
    assert "no config.yaml" in capsys.readouterr().err
