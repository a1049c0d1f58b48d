"""data.exclude: listed images leave the training split only; a findings.csv of the audit works as is; an unmatched
path is a warning that names it; a missing list is a clear error."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from fgvc import config
from fgvc.data import DataError, make_synthetic
from fgvc.data.audit import audit_dataset
from fgvc.vis.audit_report import write_all
from fgvc.engine import builder


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def data_log():
    """Records of the 'fgvc.data' logger (caplog misses them once a run has set propagate=False on 'fgvc')."""
    handler, log = _Records(), logging.getLogger("fgvc.data")
    old = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    yield handler.records
    log.removeHandler(handler)
    log.setLevel(old)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("ex") / "s", num_classes=3, images_per_class=6, render_size=48,
                          progress=False)


def _cfg(tiny_recipe, root: Path, tmp_path: Path, *sets: str) -> dict:
    cfg, _ = config.load_recipe(tiny_recipe(tmp_path / "r.yaml", root), list(sets))
    return cfg


def test_listed_paths_leave_the_training_split_only(root, tiny_recipe, tmp_path, data_log):
    cfg = _cfg(tiny_recipe, root, tmp_path)
    train = builder.build_split(cfg, "train", True, None).samples
    a, b, c = (s.path for s in train[:3])
    listing = tmp_path / "drop.txt"
    listing.write_text(f"# bad ones\n{a.resolve()}\n\n{Path(b).relative_to(root).as_posix()}\n"
                       f"{c.parent.name}/{c.name}\nnope/none.jpg\n")  # absolute, root-relative, images.txt-style
    cfg = _cfg(tiny_recipe, root, tmp_path, f"data.exclude={listing}")
    kept = builder.build_split(cfg, "train", True, None).samples
    assert [s.path for s in kept] == [s.path for s in train[3:]]
    assert len(builder.build_split(cfg, "train", False, None).samples) == len(train)  # evaluation: untouched
    assert len(builder.build_split(cfg, "test", False, None).samples) == 9
    msgs = [(r.levelname, r.getMessage()) for r in data_log]
    assert [m for lvl, m in msgs if lvl == "WARNING"] == [
        f"data.exclude: nope/none.jpg (listed in {listing}) matches no image of the training split 'train' under "
        f"{root}; check the path (absolute, or relative to data.root)"]
    assert any(lvl == "INFO" and f"dropped 3 of {len(train)} images of the training split 'train'" in m
               for lvl, m in msgs)


def test_the_audit_findings_csv_drops_the_training_copies(tiny_recipe, tmp_path, data_log):
    root = make_synthetic(tmp_path / "s", num_classes=2, images_per_class=6, render_size=48, progress=False)
    cfg = _cfg(tiny_recipe, root, tmp_path, "data.args={val_fraction: 0}")
    train = builder.build_split(cfg, "train", True, None).samples
    d = root / "CUB_200_2011"
    copy = train[0].path.parent / "leaked.jpg"  # a training image copied into the test split
    copy.write_bytes(train[0].path.read_bytes())
    n = len((d / "images.txt").read_text().splitlines())
    for name, line in (("images.txt", copy.relative_to(d / "images").as_posix()), ("train_test_split.txt", "0"),
                       ("image_class_labels.txt", "1"), ("bounding_boxes.txt", "1 1 10 10")):
        with open(d / name, "a") as f:
            f.write(f"{n + 1} {line}\n")
    out = write_all(audit_dataset("auto", root, {"val_fraction": 0}, progress=False), tmp_path / "audit")
    rows = (out / "findings.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith(f"exact_duplicate,yes,train,{train[0].path.relative_to(root)},test,")
    cfg = _cfg(tiny_recipe, root, tmp_path, f"data.exclude={out / 'findings.csv'}", "data.args={val_fraction: 0}")
    assert [s.path for s in builder.build_split(cfg, "train", True, None).samples] == [s.path for s in train[1:]]
    assert len(builder.build_split(cfg, "test", False, None).samples) == 6 + 1  # the test copy stays
    assert not [r for r in data_log if r.levelname == "WARNING"]


def test_a_missing_list_is_a_clear_error(root, tiny_recipe, tmp_path):
    cfg = _cfg(tiny_recipe, root, tmp_path, f"data.exclude={tmp_path / 'nothere.txt'}")
    with pytest.raises(DataError, match="data.exclude: cannot read .*nothere.txt"):
        builder.build_split(cfg, "train", True, None)
    bad = tmp_path / "bad.csv"
    bad.write_text("file,why\na.jpg,x\n")
    cfg = _cfg(tiny_recipe, root, tmp_path, f"data.exclude={bad}")
    with pytest.raises(DataError, match="without a 'path' column"):
        builder.build_split(cfg, "train", True, None)
