"""fgvc.predict on an .onnx file (fp32 and INT8): the run's predictions, preprocessing from the metadata; a file
without fgvc metadata is refused unless --img-size/--mean/--std are given."""
from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from fgvc.export import main as export_main
from fgvc.predict import main as predict_main


@pytest.fixture(scope="module")
def exported(deploy_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    assert export_main([str(deploy_run), "--out", str(out), "--parity-images", "0"]) == 0
    return out


@pytest.fixture(scope="module")
def photos(deploy_data) -> Path:
    return deploy_data / "CUB_200_2011" / "images"


def _predict(capsys, *args: str) -> dict[str, list[dict]]:
    assert predict_main([*args, "--json", "--topk", "3"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    return {r["path"]: r["topk"] for r in rows}


def test_onnx_predicts_like_the_run(exported, deploy_run, photos, capsys):
    on_run = _predict(capsys, str(deploy_run), str(photos))
    on_onnx = _predict(capsys, str(exported), str(photos))
    assert len(on_run) == 12 and on_onnx.keys() == on_run.keys()
    for path, topk in on_run.items():
        assert [t["class"] for t in on_onnx[path]] == [t["class"] for t in topk]
        assert [t["prob"] for t in on_onnx[path]] == pytest.approx([t["prob"] for t in topk], abs=1e-5)


@pytest.mark.slow  # quantizes: ~3 s
def test_int8_file_predicts(deploy_run, photos, tmp_path, capsys):
    from fgvc.quantize import main as quantize_main

    out = tmp_path / "m.int8.onnx"
    assert quantize_main([str(deploy_run), "--calib", "3", "--repeats", "1", "--threads", "1", "--out",
                          str(out)]) == 0
    capsys.readouterr()
    got = _predict(capsys, str(out), str(photos))
    assert len(got) == 12 and all(len(t) == 3 for t in got.values())


def test_onnx_without_metadata_is_refused_unless_preprocessing_is_given(exported, deploy_run, photos, tmp_path,
                                                                         capsys):
    bare = tmp_path / "bare.onnx"
    model = onnx.load(str(exported))
    del model.metadata_props[:]
    onnx.save_model(model, str(bare))
    assert predict_main([str(bare), str(photos)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert all(flag in err for flag in ("--img-size", "--mean", "--std", "--classes"))
    meta = {p.key: json.loads(p.value) for p in onnx.load(str(exported)).metadata_props}
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(meta["class_names"]) + "\n")
    flags = ["--img-size", "32", "--crop-pct", str(32 / 36), "--mean", *map(str, meta["mean"]), "--std",
             *map(str, meta["std"])]
    with_flags = _predict(capsys, str(bare), str(photos), *flags, "--classes", str(classes))
    assert with_flags == _predict(capsys, str(exported), str(photos))
    unnamed = _predict(capsys, str(bare), str(photos), *flags)  # no --classes: class_0 .. class_2
    assert {t["class"] for topk in unnamed.values() for t in topk} == {"class_0", "class_1", "class_2"}


def test_onnx_flags_with_a_run_and_wrong_class_file_are_refused(exported, deploy_run, photos, tmp_path, capsys):
    assert predict_main([str(deploy_run), str(photos), "--img-size", "32"]) == 2
    classes = tmp_path / "two.txt"
    classes.write_text("a\nb\n")
    assert predict_main([str(exported), str(photos), "--classes", str(classes)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "apply to an .onnx file only" in err[0] and "names 2 classes, but the model has 3 outputs" in err[1]
