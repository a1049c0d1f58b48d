"""fgvc.engine.speed through `python -m fgvc.bench speed`: one JSON line per measurement, naming the machine."""
import json
from pathlib import Path

import pytest

from fgvc import bench
from fgvc.engine.speed import SpeedError, measure_speed


def test_speed_writes_a_json_line(tmp_path: Path) -> None:
    pytest.importorskip("fgvc.methods")
    results = tmp_path / "speed.jsonl"
    argv = ["speed", "--backbone", "test_resnet.r160_in1k", "--img-size", "32", "--batch", "2", "--steps", "1",
            "--warmup", "0", "--device", "cpu", "--results", str(results)]
    assert bench.main(argv) == 0
    rec = json.loads(results.read_text().splitlines()[-1])
    assert rec["train_images_per_s"] > 0 and rec["infer_images_per_s"] > 0
    assert rec["backbone"] == "test_resnet.r160_in1k" and rec["img_size"] == 32 and rec["batch"] == 2
    assert rec["command"].startswith("python -m fgvc.bench speed") and rec["date"]
    for key in ("platform", "cpu_count", "torch", "device_name"):
        assert key in rec["machine"]
    assert bench.main(argv[:-2] + ["--amp", "fp16", "--results", str(results)]) == 2  # fp16 needs CUDA


def test_fp16_on_the_cpu_is_refused() -> None:
    import argparse

    args = argparse.Namespace(device="cpu", amp="fp16")
    with pytest.raises(SpeedError, match="fp16 needs --device cuda"):
        measure_speed(args)
