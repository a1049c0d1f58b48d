"""A real server (``python -m fgvc.serve`` on a free loopback port) driven by httpx: 200 concurrent requests all
answered without a 5xx, bad uploads answered quickly, and SIGTERM finishing the requests in flight, exit code 0."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from serve_helpers import LiveServer
from serve_helpers import image_bytes, truncated_jpeg

pytestmark = pytest.mark.slow  # a real server process on a freshly trained run: ~5-40 s each


def photos(data: Path, k: int = 8) -> list[tuple[str, bytes]]:
    files = sorted(p for p in data.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:k]
    assert files, f"no images under {data}"
    return [(p.name, p.read_bytes()) for p in files]


async def burst(url: str, uploads: list[tuple[str, bytes]], n: int) -> list[httpx.Response | Exception]:
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=n)) as client:
        async def one(i: int) -> httpx.Response:
            name, data = uploads[i % len(uploads)]
            return await client.post("/predict", files={"image": (name, data)})

        return await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)


def test_200_concurrent_requests_all_answered(live_server: LiveServer, serve_data: Path) -> None:
    uploads = photos(serve_data) + [("notes.txt", b"not an image at all")]
    answers = asyncio.run(burst(live_server.url, uploads, 200))
    errors = [a for a in answers if isinstance(a, Exception)]
    assert not errors, errors[:3]
    codes = [a.status_code for a in answers]  # type: ignore[union-attr]
    assert not [c for c in codes if c >= 500]
    for i, a in enumerate(answers):
        name = uploads[i % len(uploads)][0]
        assert a.json()["results"][0]["path"] == name  # type: ignore[union-attr]
        assert a.status_code == (415 if name == "notes.txt" else 200)  # type: ignore[union-attr]
    metrics = httpx.get(live_server.url + "/metrics").text
    sizes = [line for line in metrics.splitlines() if line.startswith("fgvc_serve_batch_size_sum")]
    counts = [line for line in metrics.splitlines() if line.startswith("fgvc_serve_batch_size_count")]
    assert float(sizes[0].split()[1]) > float(counts[0].split()[1]), "no forward pass batched two requests"


def test_bad_uploads_over_the_wire(live_server: LiveServer) -> None:
    from PIL import Image
    import io

    big = io.BytesIO()
    Image.new("L", (12000, 10000)).save(big, "PNG")  # 120 MP: a decompression bomb of ~120 kB
    cases = [(("bomb.png", big.getvalue()), 413), (("a.txt", b"hello"), 415), (("e.png", b""), 400),
             (("cut.jpg", truncated_jpeg()), 400)]
    for upload, status in cases:
        t0 = time.perf_counter()
        r = httpx.post(live_server.url + "/predict", files={"image": upload}, timeout=30)
        assert time.perf_counter() - t0 < 1.0, upload[0]
        assert r.status_code == status and r.json()["error"], (upload[0], r.text)
    r = httpx.post(live_server.url + "/predict", files={"image": ("ok.png", image_bytes("red", size=(40, 40)))})
    assert r.status_code == 200 and len(r.json()["results"][0]["topk"]) == 3


def test_sigterm_answers_requests_in_flight_and_exits_0(serve_run: Path, serve_data: Path) -> None:
    server = LiveServer(str(serve_run), "--max-wait-ms", "300")  # requests wait in the batcher when SIGTERM comes

    async def scenario() -> tuple[list[httpx.Response | Exception], int]:
        task = asyncio.ensure_future(burst(server.url, photos(serve_data), 6))
        await asyncio.sleep(0.15)
        code = await asyncio.get_running_loop().run_in_executor(None, server.stop)
        return await task, code

    try:
        answers, code = asyncio.run(scenario())
    finally:
        server.stop()
    assert code == 0
    assert [getattr(a, "status_code", a) for a in answers] == [200] * 6
