"""fgvc.ablate's table on hand-written run directories: means, sample stds, paired deltas and t-tests, one CSV line
per row, incomplete rows kept, the chart written."""
import csv
import json
import math
import statistics
from pathlib import Path

import pytest

from fgvc.experiments.plan import Row
from fgvc.experiments.table import collect, csv_text, markdown, paired, verdict, write_tables

SEEDS = [0, 1, 2]
# row -> seed -> (test top-1, final-epoch val top-1)
SCORES = {0: {0: (80.0, 70.0), 1: (82.0, 72.0), 2: (84.0, 71.0)},
          1: {0: (81.0, 73.0), 1: (83.5, 74.0), 2: (84.5, 75.0)},   # +1, +1.5, +0.5: small but consistent
          2: {0: (90.0, 80.0), 1: (79.0, 70.0), 2: (86.0, 76.0)},   # +9, -4.5, +1.5 vs row 1: noise
          3: {0: (88.0, 77.0)}}                                     # one of three seeds finished


def fake_run(run_dir: Path, test: float, val: float) -> None:
    run_dir.mkdir(parents=True)
    epochs = [{"epoch": 0, "loss": 2.0, "val_top1": 10.0}, {"epoch": 1, "loss": 1.0, "val_top1": val}]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in epochs))
    (run_dir / "final.json").write_text(json.dumps({"top1": test, "top5": 99.0, "train_seconds": 10.0 + test}))


@pytest.fixture()
def study(tmp_path):
    rows = [Row(i, name, Path("r.yaml"), [], {}, None if i == 0 else i - 1, [] if i == 0 else [("train.lr", 0.01, i)])
            for i, name in enumerate(["baseline", "+ a", "+ b", "+ c"])]
    rows[3].recipe, rows[3].changes = Path("w.yaml"), [(f"model.args.k{j}", None, j) for j in range(6)]  # a method
    for i, seeds in SCORES.items():
        for s, (test, val) in seeds.items():
            fake_run(tmp_path / "runs" / rows[i].slug / f"seed{s}", test, val)
    (tmp_path / "runs" / rows[3].slug / "seed1" / "checkpoints").mkdir(parents=True)  # a partial run: not counted
    return rows, tmp_path


def test_paired_t_test_matches_the_formula():
    a, b = {0: 81.0, 1: 83.5, 2: 84.5}, {0: 80.0, 1: 82.0, 2: 84.0}
    delta, p, n = paired(a, b)
    d = [1.0, 1.5, 0.5]
    t = statistics.fmean(d) / (statistics.stdev(d) / math.sqrt(3))
    assert n == 3 and delta == pytest.approx(1.0) and t == pytest.approx(3.4641, abs=1e-3)
    assert p == pytest.approx(0.0742, abs=1e-3)  # two-sided, 2 degrees of freedom
    assert paired({0: 1.0, 1: 2.0}, {0: 0.0, 1: 0.0})[1:] == (None, 2)  # two pairs: no test
    assert paired({0: 2.0, 1: 3.0, 2: 4.0}, {0: 1.0, 1: 2.0, 2: 3.0})[1] == 0.0  # identical differences
    assert paired({0: 1.0}, {1: 1.0}) == (None, None, 0)
    assert verdict(1.0, 0.0742, 3) == "inside the noise (p=0.07)" and verdict(2.0, 0.01, 3) == "significant (p=0.010)"


def test_table_arithmetic_and_csv(study):
    rows, out = study
    results = collect(rows, SEEDS, out)
    assert [len(r.test) for r in results] == [3, 3, 3, 1]
    lines = csv_text(results).splitlines()
    assert len(lines) == 1 + len(rows)  # a header, then one line per row
    table = list(csv.DictReader(lines))
    r0, r1, r2, r3 = table
    assert float(r0["test_top1_mean"]) == 82.0 and float(r0["test_top1_std"]) == 2.0
    assert float(r0["val_top1_mean"]) == 71.0 and float(r0["val_top1_std"]) == 1.0  # the final epoch's val, not epoch 0
    assert r0["delta_vs_row0"] == "" and r0["p_vs_prev"] == "" and float(r0["train_seconds_mean"]) == 92.0
    assert float(r1["delta_vs_prev"]) == 1.0 and float(r1["p_vs_prev"]) == pytest.approx(0.074, abs=1e-3)
    assert float(r2["delta_vs_prev"]) == pytest.approx(2.0) and float(r2["delta_vs_row0"]) == pytest.approx(3.0)
    assert float(r2["test_top1_std"]) == pytest.approx(statistics.stdev([90, 79, 86]), abs=5e-3)
    assert "inside the noise" in r2["note"]
    # the incomplete row: its one seed, paired with that seed of the rows before
    assert (r3["seeds_done"], r3["seeds_total"], r3["test_top1_std"]) == ("1", "3", "")
    assert float(r3["delta_vs_prev"]) == -2.0 and float(r3["delta_vs_row0"]) == 8.0
    assert r3["note"].startswith("incomplete: 1/3 seeds") and "no test (needs 3)" in r3["note"]
    assert r1["change"] == "train.lr: 0.01 -> 1"
    assert r3["change"].startswith("recipe w.yaml: model.args.k0: null -> 0;") and "k5: null -> 5" in r3["change"]


def test_markdown_and_files(study):
    rows, out = study
    results = collect(rows, SEEDS, out)
    md = markdown(results, cumulative=True)
    assert "| 0 | baseline | r.yaml | 82.00 ± 2.00 | 71.00 ± 1.00 |" in md
    assert "| 3 | 88.00 / 77.00 | not done | not done |" in md and "cumulative" in md
    assert "k3: null -> 3; and 2 more keys (ablation.csv) |" in md  # long changes are cut in the Markdown only
    paths = write_tables(results, out / "tables", cumulative=True, header="# my study\n")
    assert [p.name for p in paths] == ["ablation.md", "ablation.csv", "ablation.png"]
    assert all(p.stat().st_size > 0 for p in paths)
    assert (out / "tables" / "ablation.md").read_text().startswith("# my study\n")
