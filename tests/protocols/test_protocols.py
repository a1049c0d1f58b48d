"""Evaluation protocols: the registry, the classification metrics of every head, result file names and tables."""
from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch

from fgvc.config import DEFAULTS
from fgvc.protocols import PROTOCOLS, ProtocolResult, build_protocol, split_roles
from fgvc.metrics.accuracy import classification_metrics
from fgvc.protocols.classification import classification_tables
from fgvc.registry import RegistryError


def test_registry_and_unknown_names():
    assert "classification" in PROTOCOLS and build_protocol("classification").roles == ("test",)
    with pytest.raises(RegistryError, match="unknown evaluation protocol 'clasification' \\(did you mean"):
        build_protocol("clasification")


def test_classification_scores_the_headline_and_every_head():
    targets = torch.tensor([0, 1, 2, 2])
    good = torch.eye(3)[targets] * 5  # always right
    bad = torch.eye(3)[torch.tensor([1, 1, 0, 2])] * 5  # right on 2 of 4
    m = classification_metrics({"refined": good, "raw": bad}, "refined", targets)
    assert m["prediction"] == "refined" and m["top1"] == 100.0 and m["n_images"] == 4
    assert m["refined_top1"] == 100.0 and m["raw_top1"] == 50.0
    tables = classification_tables(bad, targets, ["a", "b", "c"])
    assert tables["confusion"].loc["a", "b"] == 1 and tables["confusion"].loc["c", "c"] == 1
    assert list(tables["per_class"]["accuracy"]) == [0.0, 100.0, 50.0]


def test_result_files_and_tables(tmp_path):
    cls = build_protocol("classification")
    assert cls.file_stem("test", "last") == "classification-test-last"
    assert cls.file_stem("val", "best", True) == "classification-val-best-tta"
    res = ProtocolResult({"top1": 1.0}, {"per_class": pd.DataFrame({"x": [1]}),
                                         "confusion": pd.DataFrame([[1]], index=["a"], columns=["a"])})
    paths = res.write_tables(tmp_path, prefix="p-")
    assert [p.name for p in paths] == ["p-per_class.csv", "p-confusion.csv"]
    assert (tmp_path / "p-per_class.csv").read_text() == "x\n1\n"  # a plain table: no index column
    assert (tmp_path / "p-confusion.csv").read_text().startswith(",a\na,1")  # rows named by class


def test_split_roles_follow_the_recipe():
    cfg = copy.deepcopy(DEFAULTS)
    assert split_roles(cfg) == {"train": "train", "val": "val", "test": "test"}
    cfg["data"]["val_split"] = None
    assert split_roles(cfg, "val") == {"train": "train", "test": "val"}
