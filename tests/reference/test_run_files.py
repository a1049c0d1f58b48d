"""Every JSON key a run writes is documented in :mod:`fgvc.reference.run_files` (and so in
docs/reference/run-files.md): a tiny run with a validation split, its final.json, metrics.jsonl records,
environment.json and final.json's ``fit`` object checked key by key."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from fgvc.reference import run_files as doc


@pytest.fixture(scope="module")
def run(synthetic_set, tiny_run) -> Path:  # type: ignore[no-untyped-def]
    return tiny_run(synthetic_set(images_per_class=4), "data.val_split=val", "train.max_steps=2")


def test_every_key_of_a_trained_run_is_documented(run: Path) -> None:
    final = json.loads((run / "final.json").read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    env = json.loads((run / "environment.json").read_text())
    assert rows and "val_top1" in rows[-1] and isinstance(final["fit"], dict)  # the val keys are really there
    assert doc.undocumented(final, doc.FINAL) == [], "final.json keys missing from fgvc/reference/run_files.py FINAL"
    assert doc.undocumented(final["fit"], doc.FIT) == [], "fit keys missing from run_files_doc.FIT"
    for row in rows:
        assert doc.undocumented(row, doc.METRICS, doc.METRICS_METHOD) == [], "metrics.jsonl keys missing from METRICS"
    assert doc.undocumented(env, doc.ENVIRONMENT) == [], "environment.json keys missing from run_files_doc.ENVIRONMENT"


def test_undocumented_names_a_new_key_and_matches_head_wildcards() -> None:
    assert doc.undocumented(["top1", "raw_top1", "brand_new"], doc.FINAL) == ["brand_new"]
    assert doc.undocumented(["val_scale2_top1", "val_top1x"], doc.METRICS) == ["val_top1x"]
    assert doc.undocumented(["_top1"], doc.FINAL) == ["_top1"]


def test_every_fixed_key_a_run_writes_is_in_the_tables(run: Path) -> None:
    """The reverse: keys the tables promise for every run (no wildcard, not method- or extend-only) are written."""
    final = json.loads((run / "final.json").read_text())
    env = json.loads((run / "environment.json").read_text())
    assert set(doc.FINAL) - {"<head>_top1"} <= set(final)
    assert set(doc.FIT) <= set(final["fit"]) and set(doc.ENVIRONMENT) == set(env)
