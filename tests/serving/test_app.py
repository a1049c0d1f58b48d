"""The API through FastAPI's test client, on a fake model whose class is the image's colour (no training): every
status code, batching of concurrent requests into one forward pass, results mapped back to their requests, token."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import pytest
from fastapi.testclient import TestClient

from fgvc.serving.app import Settings, create_app
from fgvc.serving.limits import Limits

from serve_helpers import COLOURS, FakeModel, image_bytes, truncated_jpeg


def wait_ready(client: TestClient, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if client.get("/health").status_code == 200:
            return
        time.sleep(0.02)
    raise AssertionError("never ready")


@pytest.fixture()
def fake() -> FakeModel:
    return FakeModel()


def client_for(fake: FakeModel, **settings) -> TestClient:
    return TestClient(create_app(fake.served(), Settings(**settings)))


@pytest.fixture()
def client(fake: FakeModel) -> Iterator[TestClient]:
    with client_for(fake, limits=Limits(max_bytes=200_000, max_pixels=100_000)) as c:
        wait_ready(c)
        yield c


def post(client: TestClient, *files: tuple[str, bytes], query: str = "", **kw):  # type: ignore[no-untyped-def]
    return client.post("/predict" + query, files=[("image", f) for f in files], **kw)


def test_each_image_gets_its_own_answer_in_order(client: TestClient) -> None:
    r = post(client, ("a.png", image_bytes("green")), ("b.jpg", image_bytes("blue", fmt="JPEG")),
             ("c.png", image_bytes("red")), query="?topk=2")
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["path"] for x in results] == ["a.png", "b.jpg", "c.png"]
    assert [x["topk"][0]["class"] for x in results] == ["green", "blue", "red"]
    assert all(len(x["topk"]) == 2 and x["topk"][0]["prob"] >= x["topk"][1]["prob"] for x in results)


def test_one_bad_image_among_good_ones_is_an_error_object(client: TestClient) -> None:
    r = post(client, ("ok.png", image_bytes("red")), ("notes.txt", b"hello, not an image"))
    assert r.status_code == 200
    ok, bad = r.json()["results"]
    assert ok["topk"][0]["class"] == "red" and "topk" not in bad
    assert bad["path"] == "notes.txt" and "not a readable image" in bad["error"]


def test_concurrent_requests_share_one_forward_pass(fake: FakeModel) -> None:
    colours = list(COLOURS) * 4  # 12 requests
    with client_for(fake, max_batch=32, max_wait_ms=400) as c:
        wait_ready(c)
        fake.batches.clear()
        barrier = threading.Barrier(len(colours))

        def one(i: int) -> tuple[int, str]:
            barrier.wait(10)
            r = post(c, (f"{i}.png", image_bytes(colours[i])))
            return r.status_code, r.json()["results"][0]["topk"][0]["class"]

        with ThreadPoolExecutor(len(colours)) as pool:
            answers = list(pool.map(one, range(len(colours))))
    assert answers == [(200, colour) for colour in colours]  # each request got its own image's class
    assert sum(fake.batches) == len(colours)
    assert max(fake.batches) > 1, f"no two requests shared a forward pass: batches {fake.batches}"
    assert len(fake.batches) < len(colours)


def test_max_batch_one_never_batches(fake: FakeModel) -> None:
    with client_for(fake, max_batch=1, max_wait_ms=200) as c:
        wait_ready(c)
        fake.batches.clear()
        with ThreadPoolExecutor(6) as pool:
            codes = list(pool.map(lambda i: post(c, (f"{i}.png", image_bytes("red"))).status_code, range(6)))
    assert codes == [200] * 6 and fake.batches == [1] * 6


BAD = [  # (what, files or raw kwargs, query, status, words in the error)
    ("not an image", [("notes.txt", b"just some text\n" * 10)], "", 415, "not a readable image"),
    ("truncated JPEG", [("cut.jpg", truncated_jpeg())], "", 400, "truncated"),
    ("empty file", [("empty.png", b"")], "", 400, "empty"),
    ("too many pixels", [("big.png", image_bytes("red", size=(400, 300)))], "", 413, "pixels"),
    ("too many bytes", [("huge.jpg", b"\xff" * 300_000)], "", 413, "--max-bytes"),
    ("bad topk", [("a.png", image_bytes("red"))], "?topk=0", 400, "topk"),
    ("cam on a fake model", [("a.png", image_bytes("red"))], "?cam=1", 400, "Grad-CAM"),
]


@pytest.mark.parametrize("what,files,query,status,words", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_quick_4xx_and_the_server_goes_on(client: TestClient, what, files, query, status,
                                                         words) -> None:
    t0 = time.perf_counter()
    r = post(client, *files, query=query)
    assert time.perf_counter() - t0 < 1.0
    assert r.status_code == status, r.text
    assert words in r.json()["error"]
    again = post(client, ("ok.png", image_bytes("blue")))
    assert again.status_code == 200 and again.json()["results"][0]["topk"][0]["class"] == "blue"


def test_requests_without_an_image(client: TestClient) -> None:
    assert client.post("/predict", files=[("photo", ("a.png", image_bytes()))]).status_code == 400
    r = client.post("/predict", json={"path": "/etc/passwd"})
    assert r.status_code == 400 and "multipart" in r.json()["error"]
    raw = client.post("/predict", content=image_bytes("green"), headers={"content-type": "image/png"})
    assert raw.status_code == 200 and raw.json()["results"][0]["topk"][0]["class"] == "green"


def test_no_request_names_a_file_on_the_server(client: TestClient, tmp_path) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(image_bytes("green"))
    r = post(client, (str(secret), b"not the file"), query=f"?path={secret}")
    assert r.status_code == 415
    assert r.json()["results"][0]["path"] == "secret.png"  # only the last component, as a label
    assert "topk" not in r.json()["results"][0]


def test_too_large_is_refused_from_content_length_before_reading(client: TestClient) -> None:
    r = client.post("/predict", content=b"x" * 10, headers={"content-type": "multipart/form-data; boundary=x",
                                                            "content-length": "999999999"})
    assert r.status_code == 413


def test_full_queue_answers_503_with_retry_after(fake: FakeModel) -> None:
    fake.gate = threading.Event()
    fake.gate.set()  # the warm-up passes
    with client_for(fake, limits=Limits(queue=1), max_wait_ms=0) as c:
        wait_ready(c)
        fake.gate.clear()  # the next forward pass hangs until the test opens it
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(post, c, ("a.png", image_bytes("red")))
            end = time.monotonic() + 10
            while time.monotonic() < end and "fgvc_serve_queue_depth 1" not in c.get("/metrics").text:
                time.sleep(0.02)
            t0 = time.perf_counter()
            second = post(c, ("b.png", image_bytes("blue")))
            assert time.perf_counter() - t0 < 1.0
            fake.gate.set()
            assert first.result(30).status_code == 200
        assert second.status_code == 503 and second.headers["retry-after"] == "1"
        assert "busy" in second.json()["error"]
        assert post(c, ("c.png", image_bytes("green"))).status_code == 200
        assert 'fgvc_serve_errors_total{kind="queue_full"} 1' in c.get("/metrics").text


def test_health_is_503_until_the_warm_up_batch_answered(fake: FakeModel) -> None:
    fake.gate = threading.Event()
    with client_for(fake) as c:
        r = c.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "starting"
        fake.gate.set()
        wait_ready(c)
        assert c.get("/health").json() == {"status": "ready"}


def test_health_says_why_when_the_warm_up_failed(fake: FakeModel) -> None:
    def broken(images):  # type: ignore[no-untyped-def]
        raise RuntimeError("no such kernel")

    served = fake.served()
    served.probabilities = broken
    with TestClient(create_app(served, Settings())) as c:
        end = time.monotonic() + 10
        while c.get("/health").json()["status"] == "starting" and time.monotonic() < end:
            time.sleep(0.02)
        r = c.get("/health")
    assert r.status_code == 503 and r.json()["status"] == "failed" and "no such kernel" in r.json()["error"]


def test_token(fake: FakeModel) -> None:
    with client_for(fake, token="s3cret") as c:
        wait_ready(c)  # /health and / are open
        assert c.get("/").status_code == 200
        for path in ("/classes", "/info", "/metrics"):
            assert c.get(path).status_code == 401
        r = post(c, ("a.png", image_bytes("red")))
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert post(c, ("a.png", image_bytes("red")), headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = post(c, ("a.png", image_bytes("red")), headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["results"][0]["topk"][0]["class"] == "red"
        assert c.get("/classes", headers={"Authorization": "bearer s3cret"}).json() == list(COLOURS)


def test_classes_info_metrics_page(client: TestClient) -> None:
    assert client.get("/classes").json() == ["red", "green", "blue"]
    info = client.get("/info").json()
    assert {"method", "backbone", "img_size", "classes", "backend", "version"} <= set(info)
    assert info["classes"] == 3 and info["ready"] is True
    post(client, ("a.png", image_bytes("red")), ("b.png", image_bytes("blue")))
    post(client, ("n.txt", b"nope"))
    text = client.get("/metrics").text
    assert 'fgvc_serve_requests_total{endpoint="/predict",code="200"} 1' in text
    assert 'fgvc_serve_requests_total{endpoint="/predict",code="415"} 1' in text
    assert 'fgvc_serve_errors_total{kind="not_an_image"} 1' in text
    assert "fgvc_serve_images_total 2" in text
    assert "fgvc_serve_batch_size_count" in text and "fgvc_serve_request_seconds_bucket" in text
    assert "fgvc_serve_queue_depth 0" in text
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "http://" not in page.text and "https://" not in page.text  # no external asset
