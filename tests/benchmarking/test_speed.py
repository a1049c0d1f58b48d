"""fgvc.benchmarking.speed: the typed spec, the step timer and `python -m fgvc.bench speed`'s JSON line."""
import json
import shlex
import time
from pathlib import Path

import pytest

from fgvc import bench
from fgvc.benchmarking import speed
from fgvc.benchmarking.speed import SpeedError, SpeedSpec, measure_speed, time_steps

REPO = Path(__file__).resolve().parents[2]


def test_speed_writes_a_json_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    results = tmp_path / "speed.jsonl"
    argv = ["speed", "--backbone", "test_resnet.r160_in1k", "--img-size", "32", "--batch", "2", "--steps", "2",
            "--warmup", "0", "--device", "cpu", "--results", str(results)]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == str(results) and "train " in out[-2] and "img/s, inference " in out[-2]
    rec = json.loads(results.read_text().splitlines()[-1])
    assert rec["train_images_per_s"] > 0 and rec["infer_images_per_s"] > 0
    assert rec["backbone"] == "test_resnet.r160_in1k" and rec["img_size"] == 32 and rec["batch"] == 2
    assert rec["command"] == "python -m fgvc.bench " + shlex.join(argv) and rec["date"]
    # the same keys, in the same order, as the lines already in benchmarks/results/speed.jsonl
    old = json.loads((REPO / "benchmarks" / "results" / "speed.jsonl").read_text().splitlines()[0])
    assert list(rec) == list(old) and list(rec["machine"]) == list(old["machine"])
    assert bench.main(argv[:-2] + ["--amp", "fp16", "--results", str(results)]) == 2  # fp16 needs CUDA
    assert "fp16 needs --device cuda" in capsys.readouterr().err
    assert len(results.read_text().splitlines()) == 1


def test_spec_defaults_are_the_cli_defaults_and_its_command_round_trips() -> None:
    assert bench.speed_spec(bench.parse_args(["speed", "--backbone", "resnet50"])) == SpeedSpec(backbone="resnet50")
    spec = SpeedSpec(backbone="resnet50", method="wsdan", img_size=224, batch=8, warmup=0, device="cuda", amp="bf16",
                     channels_last=True, compile=True, num_classes=102)
    command = spec.command()
    assert command.startswith("python -m fgvc.bench speed --backbone resnet50 --method wsdan")
    assert "--steps" not in command  # default flags are left out
    assert bench.speed_spec(bench.parse_args(shlex.split(command)[3:])) == spec


def test_spec_rejects_bad_values() -> None:
    with pytest.raises(SpeedError, match="batch must be >= 1"):
        SpeedSpec(backbone="resnet50", batch=0)
    with pytest.raises(SpeedError, match="warmup"):
        SpeedSpec(backbone="resnet50", warmup=-1)
    with pytest.raises(SpeedError, match="amp must be"):
        SpeedSpec(backbone="resnet50", amp="fp8")  # type: ignore[arg-type]


def test_fp16_on_the_cpu_is_refused() -> None:
    with pytest.raises(SpeedError, match="fp16 needs --device cuda"):
        measure_speed(SpeedSpec(backbone="test_resnet.r160_in1k", device="cpu", amp="fp16"))


def test_time_steps_times_only_the_steps_after_the_warmup(monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    # a clock that ticks once per step call: the time measured is the number of steps timed
    monkeypatch.setattr(speed.time, "perf_counter", lambda: float(events.count("step")))
    seconds = time_steps(lambda: events.append("step"), warmup=2, steps=3, sync=lambda: events.append("sync"))
    assert seconds == 3.0
    assert events == ["step", "step", "sync", "step", "step", "step", "sync"]
    monkeypatch.setattr(speed.time, "perf_counter", time.perf_counter)
    assert time_steps(lambda: None, warmup=0, steps=2) >= 0  # sync is optional
