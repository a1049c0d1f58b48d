"""The data audit (fgvc.data.audit): planted duplicates and leakage are found, and nothing else; unreadable files and
size outliers are reported; likely mislabelled samples need a confident model *and* agreeing neighbours; on the real
cub200-mini no near duplicates are claimed."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fgvc.data import make_synthetic
from fgvc.data.audit import Item, audit_dataset, mislabel_findings
from fgvc.vis.audit_report import summary, write_all


def plant(root: Path, src_rel: str, new_name: str, is_train: int, data: bytes) -> str:
    """Add an image (``data``, the file's bytes) to the CUB-layout set at ``root`` as a copy of ``src_rel``'s
    annotations (class, box, parts) with a new id, in the train (1) or test (0) split; returns its relative path."""
    d = root / "CUB_200_2011"
    rows = [ln.split() for ln in (d / "images.txt").read_text().splitlines()]
    src = next(int(i) for i, rel in rows if rel == src_rel)
    new = max(int(i) for i, _ in rows) + 1
    rel = f"{Path(src_rel).parent.as_posix()}/{new_name}"
    (d / "images" / rel).write_bytes(data)
    for name, line in (("images.txt", f"{new} {rel}"), ("train_test_split.txt", f"{new} {is_train}")):
        with open(d / name, "a") as f:
            f.write(line + "\n")
    for name in ("image_class_labels.txt", "bounding_boxes.txt", "parts/part_locs.txt"):
        same = [ln.split(" ", 1)[1] for ln in (d / name).read_text().splitlines() if ln.split(" ", 1)[0] == str(src)]
        with open(d / name, "a") as f:
            f.writelines(f"{new} {rest}\n" for rest in same)
    return rel


def _encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> dict[str, object]:
    """A synthetic set (3 classes x 8 images, 96 px) with planted problems; returns the root and the planted paths."""
    root = make_synthetic(tmp_path_factory.mktemp("audit") / "s", num_classes=3, images_per_class=8, render_size=96,
                          progress=False)
    d = root / "CUB_200_2011"
    rows = [ln.split() for ln in (d / "images.txt").read_text().splitlines()]
    train = {i for i, t in (ln.split() for ln in (d / "train_test_split.txt").read_text().splitlines()) if t == "1"}
    a, b, c = [rel for i, rel in rows if i in train][:3]
    img = {k: Image.open(d / "images" / k).convert("RGB") for k in (a, b, c)}
    other = make_synthetic(tmp_path_factory.mktemp("other") / "s", num_classes=1, images_per_class=2, render_size=96,
                           seed=1, progress=False)
    wide = Image.open(next((other / "CUB_200_2011" / "images").rglob("*.jpg"))).convert("RGB").resize((300, 60))
    p = {
        "a": a, "a_copy": plant(root, a, "copy_of_a.jpg", 0, (d / "images" / a).read_bytes()),  # exact, into test
        "b": b, "b_small": plant(root, b, "small_b.jpg", 0, _encode(img[b].resize((72, 72)), "JPEG", quality=75)),
        "c": c, "c_png": plant(root, c, "c_again.png", 1, _encode(img[c], "PNG")),  # same split (train)
        "wide": plant(root, a, "wide.jpg", 1, _encode(wide, "JPEG", quality=90)),
        "broken": plant(root, b, "broken.jpg", 0, b"\xff\xd8 this is not a jpeg"),
    }
    return {"root": root, **{k: f"CUB_200_2011/images/{v}" for k, v in p.items()}}


def _rows(audit) -> list[tuple]:
    root = audit.root
    rel = lambda x: None if x is None else Path(x).relative_to(root).as_posix()  # noqa: E731
    return [(f.kind, f.leakage, f.split, rel(f.path), f.other_split, rel(f.other_path)) for f in audit.findings]


def test_audit_finds_exactly_the_planted_problems(planted):
    audit = audit_dataset("auto", planted["root"], {"val_fraction": 0}, progress=False)
    p = planted
    assert audit.name == "cub200" and "val" in audit.skipped_splits
    assert _rows(audit) == [  # leakage first, then within-split, unreadable, size
        ("exact_duplicate", True, "train", p["a"], "test", p["a_copy"]),
        ("near_duplicate", True, "train", p["b"], "test", p["b_small"]),
        ("near_duplicate", False, "train", p["c_png"], "train", p["c"]),
        ("unreadable", False, "test", p["broken"], "", None),
        ("size_outlier", False, "train", p["wide"], "", None),
    ]
    f = audit.findings
    assert f[0].score == 0 and "identical bytes" in f[0].detail and "leakage" in f[0].detail
    assert 0 <= f[1].score <= 6 and f[1].detail.endswith("96x96 vs 72x72 px")  # path (train) first
    assert "not a readable image" in f[3].detail and "aspect ratio 5.0:1" in f[4].detail
    s = summary(audit)
    assert s["n_images"] == 24 + 5 and s["splits"] == {"train": 12 + 2, "test": 12 + 3}
    assert s["counts"] == {"exact_duplicate": 1, "near_duplicate": 2, "unreadable": 1, "size_outlier": 1,
                           "mislabelled": 0}
    assert s["leakage_pairs"] == 2 and s["leakage"] == {"exact_duplicate": 1, "near_duplicate": 1}


def test_a_file_listed_in_two_splits_is_leakage(tmp_path):
    root = make_synthetic(tmp_path / "s", num_classes=2, images_per_class=4, render_size=64, progress=False)
    d = root / "CUB_200_2011"
    rel = (d / "images.txt").read_text().splitlines()[0].split()[1]
    split = dict(ln.split() for ln in (d / "train_test_split.txt").read_text().splitlines())
    plant(root, rel, "tmp.jpg", 1 - int(split["1"]), b"")  # the annotations of a second listing ...
    text = (d / "images.txt").read_text().replace("/tmp.jpg", "/" + Path(rel).name)  # ... of the same file
    (d / "images.txt").write_text(text)
    (d / "images" / Path(rel).parent / "tmp.jpg").unlink()
    audit = audit_dataset("cub200", root, {"val_fraction": 0}, progress=False)
    assert [(f.kind, f.leakage, f.detail) for f in audit.findings] == [
        ("exact_duplicate", True, "leakage: train image also in test; the same file is listed twice")]
    assert summary(audit)["n_images"] == 8


def test_report_files(planted, tmp_path):
    audit = audit_dataset("cub200", planted["root"], {"val_fraction": 0}, progress=False)
    out = write_all(audit, tmp_path / "out")
    rows = list(csv.DictReader(open(out / "findings.csv")))
    assert [r["kind"] for r in rows] == ["exact_duplicate", "near_duplicate", "near_duplicate", "unreadable",
                                         "size_outlier"]
    assert rows[0]["leakage"] == "yes" and rows[0]["path"] == planted["a"] and rows[2]["leakage"] == ""
    page = (out / "audit.html").read_text()
    assert page.count("data:image/jpeg;base64,") == 2 + 2 + 2 + 1  # pairs, pairs, pair, outlier; broken: a note
    assert "unreadable</span>" in page and "http" not in page.replace("<!DOCTYPE html>", "")
    assert "Leakage" in page.split("Exact duplicates within")[0]  # leakage table first


def test_mislabelled_needs_a_confident_model_and_agreeing_neighbours():
    rng = np.random.default_rng(0)
    centres = np.eye(3, 16) * 10
    labels = np.repeat(np.arange(3), 6)  # 18 images, 6 per class
    emb = centres[labels] + rng.normal(0, 0.5, (18, 16))
    labels = labels.copy()
    labels[2] = 1  # image 2 looks like class 0 but is labelled 1
    probs = np.full((18, 3), 0.05)
    probs[np.arange(18), np.repeat(np.arange(3), 6)] = 0.9  # the model says what the image looks like
    probs[7] = [0.9, 0.05, 0.05]  # confident, wrong, but its neighbours (class 1) side with the label
    probs[13] = [0.05, 0.5, 0.45]  # wrong but not confident
    items = [Item("train" if i else "test", Path(f"/x/{i}.jpg"), int(l), f"c{l}") for i, l in enumerate(labels)]
    gallery = np.array([it.split == "train" for it in items])
    found = mislabel_findings(items, probs, emb, np.ones(18, bool), gallery, ["c0", "c1", "c2"])
    assert [(f.path.name, f.label, f.predicted) for f in found] == [("2.jpg", "c1", "c0")]
    # its neighbours: the 4 other class-0 training images (image 0 is a test image) and one of another class
    assert found[0].score == pytest.approx(0.9 * 4 / 5) and "4/5 nearest training images are c0" in found[0].detail
    valid = np.ones(18, bool)
    valid[2] = False  # unreadable: no outputs
    assert mislabel_findings(items, probs, emb, valid, gallery, ["c0", "c1", "c2"]) == []
    # a training image is never its own neighbour: alone in its cluster, nothing agrees with the model
    lone = [Item("train", Path(f"/y/{i}.jpg"), 0, "c0") for i in range(3)]
    e = np.array([[1.0, 0], [0.0, 1], [0.0, 1]])
    p = np.array([[0.1, 0.9], [0.9, 0.1], [0.9, 0.1]])
    assert mislabel_findings(lone, p, e, np.ones(3, bool), np.ones(3, bool), ["c0", "c1"], k=1, min_agree=1) == []


@pytest.mark.slow  # hashes the real mini set: ~1-4 s
def test_real_cub_mini_claims_no_near_duplicates(shared_data):
    """cub200-mini (1,188 real photos): no duplicate pairs at the default distance (inspected: its closest distinct
    photos, two Scissor-tailed Flycatchers, are 8 bits apart), nothing unreadable, no size outliers."""
    root = shared_data / "cub200-mini"
    if not (root / "CUB_200_2011").is_dir():
        pytest.skip(f"{root} is absent")
    audit = audit_dataset("auto", root, progress=False, workers=2)
    s = summary(audit)
    assert s["n_images"] == 1188
    assert s["counts"] == {"exact_duplicate": 0, "near_duplicate": 0, "unreadable": 0, "size_outlier": 0,
                           "mislabelled": 0}
