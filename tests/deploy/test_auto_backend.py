"""When ``--backend auto`` runs an exported file (fgvc.deploy.auto_backend.decide), on plain numbers: never for a few
photos or a 100-image split, always with a valid cached file and enough images, from the break-even count it reports;
and the Backend asks it at the right batch, with the export cost this run's last export took."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fgvc.deploy.auto_backend import (EXPORT_S_ESTIMATE, ONNX_SPEEDUP, SECONDS_FILE, decide, export_seconds,
                                      record_export_seconds)

LITE0_S = 0.02  # PyTorch seconds per image, lite0 128 px on a busy 2-core CPU (measured 5-90 ms)


def test_the_reported_cases_stay_on_pytorch():
    predict = decide(3, 3, 3, LITE0_S, None, 19.0, export_measured=True)  # 3 photos: all in the first batch
    assert not predict.use_file and "all 3 image(s) are in the first batch" in predict.why
    evaluate = decide(100, 64, 32, LITE0_S, None, EXPORT_S_ESTIMATE)  # 100 images in batches of 32
    assert not evaluate.use_file
    assert evaluate.why.startswith("100 image(s): an onnx export (~30 s, estimated) would save only ~0.43 s")
    assert "36 image(s) left x 20 ms of PyTorch each" in evaluate.why
    assert "--backend onnx exports and caches" in evaluate.why


def test_a_large_split_exports():
    d = decide(5794, 64, 32, 0.2, None, 36.0)  # CUB test at 448 px
    assert d.use_file and d.why.startswith("5794 images: an onnx export (~36 s, estimated) saves ~688 s")


def test_break_even_is_where_the_decision_turns():
    why = decide(1000, 64, 32, LITE0_S, None, 15.0).why
    n = int(why.split("pays back from about ")[1].split(" images")[0])
    assert 64 < n and decide(n, 64, 32, LITE0_S, None, 15.0).use_file
    assert not decide(n - 1, 64, 32, LITE0_S, None, 15.0).use_file
    # n images save what the export and the check cost: (n - 64) * t * (1 - 1/s) ~ 15 + 32 * t / s
    assert (n - 64) * LITE0_S * (1 - 1 / ONNX_SPEEDUP) == pytest.approx(15.0 + 32 * LITE0_S / ONNX_SPEEDUP, abs=0.02)


def test_a_cached_file_is_used_when_the_rest_outweighs_its_check():
    assert decide(40, 8, 8, LITE0_S, "c.onnx", 15.0).use_file  # 32 left: nothing to export
    assert decide(None, 8, 8, LITE0_S, "c.onnx", 15.0).use_file  # an unknown count: a cached file costs nothing
    small = decide(9, 8, 8, LITE0_S, "c.onnx", 15.0)  # 1 image left: its saving < the file's pass over 8
    assert not small.use_file and "less than its check on a batch" in small.why
    assert not decide(8, 8, 8, LITE0_S, "c.onnx", 15.0).use_file  # nothing left


def test_an_unknown_count_never_exports():
    d = decide(None, 32, 32, 1.0, None, 15.0)
    assert not d.use_file and "number of images is not known" in d.why


def test_a_measured_export_cost_is_named_and_used():
    assert "as this run's last export took here" in decide(500, 64, 32, LITE0_S, None, 40.0, True).why
    assert decide(5000, 64, 32, LITE0_S, None, 4.0, True).use_file
    assert not decide(5000, 64, 32, LITE0_S, None, 400.0, True).use_file


def test_export_seconds_round_trip(tmp_path):
    assert export_seconds(tmp_path, "onnx") == (EXPORT_S_ESTIMATE, False)
    assert export_seconds(None, "onnx") == (EXPORT_S_ESTIMATE, False)
    record_export_seconds(tmp_path, "onnx", 12.345)
    record_export_seconds(tmp_path, "torchscript", 1.0)
    assert export_seconds(tmp_path, "onnx") == (12.35, True)
    (tmp_path / SECONDS_FILE).write_text("not json")
    assert export_seconds(tmp_path, "onnx") == (EXPORT_S_ESTIMATE, False)  # a damaged record: the estimate


class _Run:
    """What Backend needs of a TrainedRun, with logits of a fixed model (no file, no timing read by the test)."""

    def __init__(self, folder: Path) -> None:
        from types import SimpleNamespace

        self.recipe, self.run_dir, self.checkpoint, self.weights = None, folder, "last", "model"
        self.runtime = SimpleNamespace(device=torch.device("cpu"), amp="none", env=SimpleNamespace(enabled=False),
                                       channels_last=True, prepare=lambda m: m)
        self.method = torch.nn.Linear(1, 1)

    def infer(self, images, tta=False):
        from fgvc.methods.base import Outputs

        return Outputs({"logits": images.flatten(1)[:, :3].float()}, "logits", None, None)

    def inputs(self, images):
        return images


@pytest.fixture()
def fake_run(tmp_path, monkeypatch):
    from fgvc.deploy import fast_infer

    monkeypatch.setattr(fast_infer, "check_available", lambda run, name: None)
    built: list[str] = []

    def build(run, name, folder=None, cache=False):
        built.append(name)
        return fast_infer.InferPath(name, lambda x: x.flatten(1)[:, :3].float(), detail="test file")

    monkeypatch.setattr(fast_infer, "build_path", build)
    monkeypatch.setattr(fast_infer, "cached_file", lambda run, fmt, folder: None)
    return _Run(tmp_path), built


@pytest.mark.parametrize("n_images,record,exports", [(6, None, False), (10**9, 1e-9, True), (10**9, 1e9, False)])
def test_backend_decides_at_the_second_batch(fake_run, n_images, record, exports):
    from fgvc.deploy.fast_infer import Backend

    run, built = fake_run
    folder = run.run_dir / "cache" / "infer"
    if record is not None:
        folder.mkdir(parents=True)
        record_export_seconds(folder, "onnx", record)
    lines: list[str] = []
    backend = Backend(run, "auto", n_images, lines.append)
    images = torch.rand(2, 3, 4, 4)
    backend.outputs(images)  # the warm-up batch: nothing decided, nothing said
    assert lines == [] and built == [] and backend.state == "unchecked"
    backend.outputs(images)  # decided here
    assert len(lines) == 1 and lines[0].startswith("backend auto: onnx" if exports else "backend auto: channels_last")
    assert built == (["onnx"] if exports else []) and backend.ran == ("onnx" if exports else "channels_last")
    backend.outputs(images)
    assert len(lines) == 1  # said once
