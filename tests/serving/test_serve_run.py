"""A real (tiny) trained run behind the API: the same answers as ``fgvc.predict --json``, the Grad-CAM overlay, an
exported .onnx file, and the command's usage errors."""
from __future__ import annotations

import base64
import io
import json
import socket
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fgvc.serving.app import Settings, create_app
from fgvc.serving.model import load_model
from fgvc.serve import main


def some_images(data: Path, k: int = 3) -> list[Path]:
    files = sorted(p for p in data.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    assert len(files) >= k
    return files[:: max(1, len(files) // k)][:k]


def ready(client: TestClient) -> TestClient:
    end = time.monotonic() + 60
    while client.get("/health").status_code != 200:
        assert time.monotonic() < end, "never ready"
        time.sleep(0.05)
    return client


def served_results(model, images: list[Path], query: str = "") -> list[dict]:  # type: ignore[no-untyped-def]
    with TestClient(create_app(model, Settings(max_wait_ms=20))) as c:
        r = ready(c).post("/predict" + query, files=[("image", (p.name, p.read_bytes())) for p in images])
        assert r.status_code == 200, r.text
        return r.json()["results"]


def predict_json(capsys, target: Path, images: list[Path]) -> list[dict]:  # type: ignore[no-untyped-def]
    from fgvc.predict import main as predict_main

    capsys.readouterr()
    backend = [] if target.suffix == ".onnx" else ["--backend", "eager"]
    assert predict_main([str(target), *map(str, images), "--json", *backend]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def assert_same(served: list[dict], predicted: list[dict]) -> None:
    assert [s["path"] for s in served] == [Path(p["path"]).name for p in predicted]
    for s, p in zip(served, predicted):
        assert [t["class"] for t in s["topk"]] == [t["class"] for t in p["topk"]]
        assert [t["prob"] for t in s["topk"]] == pytest.approx([t["prob"] for t in p["topk"]], abs=1e-4)


def test_a_run_answers_as_fgvc_predict_does(serve_run: Path, serve_data: Path, capsys) -> None:
    images = some_images(serve_data)
    model = load_model(serve_run, backend="eager")
    assert model.info["format"] == "run" and model.info["classes"] == 3 and model.info["img_size"] == 32
    assert_same(served_results(model, images), predict_json(capsys, serve_run, images))


def test_cam_overlay_of_a_run(serve_run: Path, serve_data: Path) -> None:
    pytest.importorskip("pytorch_grad_cam", reason="Grad-CAM needs the explain extra")
    from PIL import Image

    result = served_results(load_model(serve_run, backend="eager"), some_images(serve_data, 1), "?cam=1")[0]
    assert result["cam"].startswith("data:image/png;base64,")
    picture = Image.open(io.BytesIO(base64.b64decode(result["cam"].split(",", 1)[1])))
    assert picture.size == (32, 32) and picture.mode == "RGB"


@pytest.mark.slow  # the export: 5-25 s
def test_an_onnx_export_answers_as_fgvc_predict_does(serve_run: Path, serve_data: Path, tmp_path: Path,
                                                      capsys) -> None:
    pytest.importorskip("onnxruntime", reason="the deploy extra is not installed")
    from fgvc.export import main as export_main

    onnx = tmp_path / "model.onnx"
    assert export_main([str(serve_run), "--format", "onnx", "--out", str(onnx), "--parity-images", "0"]) == 0
    model = load_model(onnx)
    assert model.info["format"] == "onnx" and model.cam is None and model.class_names == load_model(serve_run).class_names
    images = some_images(serve_data)
    assert_same(served_results(model, images), predict_json(capsys, onnx, images))


def test_usage_errors_are_one_line_exit_2(serve_run: Path, tmp_path: Path, capsys) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    recipe = tmp_path / "r.yaml"
    recipe.write_text("seed: 0\n")
    try:
        cases = [
            ([str(tmp_path / "nothing")], "no such run directory"),
            ([str(recipe)], "recipe"),
            ([str(serve_run), "--max-batch", "0"], "--max-batch must be >= 1"),
            ([str(serve_run), "--queue", "0"], "--queue must be >= 1"),
            ([str(serve_run), "--img-size", "64"], "apply to an .onnx file only"),
            ([str(serve_run), "--port", str(port)], f"port {port} on 127.0.0.1 is in use"),
        ]
        for argv, words in cases:
            capsys.readouterr()
            assert main(argv) == 2, argv
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and err[0].startswith("error: ") and words in err[0], (argv, err)
    finally:
        busy.close()


@pytest.mark.slow  # a fresh interpreter imports torch: ~5 s here
def test_without_the_serve_extra_serve_says_how_to_install_it() -> None:
    """fgvc.serving.app imports FastAPI at module top (no import inside a function), yet without the serve extra the
    command still imports and names the pip command in one line."""
    import subprocess
    import sys

    code = ("import sys\n"
            "for m in ('fastapi', 'fastapi.responses', 'starlette', 'starlette.datastructures', 'uvicorn'):\n"
            "    sys.modules[m] = None\n"
            "from fgvc.serve import main\n"
            "sys.exit(main(['tests/fixtures/run_v0_1/run']))\n")
    root = Path(__file__).resolve().parents[2]
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=120)
    assert got.returncode == 2, got.stderr
    assert got.stderr.strip().splitlines()[-1].startswith("error: serving a model needs the package 'fastapi'")
    assert "pip install -e '.[serve]'" in got.stderr and "Traceback" not in got.stderr
