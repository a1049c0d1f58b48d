"""The HTTP API: ``POST /predict``, ``GET /classes``, ``/health``, ``/info``, ``/metrics`` and the page at ``/``.

``create_app(model, settings)`` returns a FastAPI app that owns a :class:`fgvc.serving.batching.Batcher`, a model
thread, a pool of decoding threads and its :class:`fgvc.serving.metrics.Metrics`; they start and stop with the app's
lifespan. A request's images are decoded and preprocessed on the decoding threads (never on the event loop), then
batched with those of concurrent requests. Answers of ``/predict``:

* 200 ``{"results": [...]}``: one object per uploaded image, in order, as ``fgvc.predict --json`` writes them
  (``path`` = the upload's file name, and ``topk`` or ``error``; with ``?cam=1`` also ``cam``, a PNG data URL);
* 4xx ``{"error": "...", "results": [...]}`` when no image could be predicted: 400 (no ``image`` field, a bad
  ``topk``, a truncated or corrupt image), 401 (``--token`` set and no matching ``Authorization: Bearer``), 413 (a
  body over ``max_bytes``, an image over ``max_pixels``), 415 (not an image);
* 503 with ``Retry-After`` when ``queue`` images are already pending: the server sheds load instead of growing.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

try:  # the serve extra (FastAPI): fgvc.serve checks that it is installed (and says how) before create_app runs
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
    from starlette.datastructures import Headers, UploadFile
except ImportError:  # without the extra, importing this module still works; nothing here runs without it
    FastAPI = Request = HTMLResponse = JSONResponse = PlainTextResponse = Headers = UploadFile = None  # type: ignore

from fgvc.errors import UserError
from fgvc.deploy.run_predictor import Item
from fgvc.serving.batching import Batcher
from fgvc.serving.limits import Limits, UploadError, decode_upload, upload_label
from fgvc.serving.metrics import Metrics
from fgvc.serving.model import ServedModel
from fgvc.serving.page import PAGE

__all__ = ["Settings", "create_app", "MAX_TOPK_DEFAULT"]

MAX_TOPK_DEFAULT = 5
RETRY_AFTER_S = 1
RAW_TYPES = ("image/", "application/octet-stream")  # a body that is the image itself (curl --data-binary)


@dataclass(frozen=True)
class Settings:
    """How one server batches and what it accepts (a field with a ``help`` is an ``fgvc.serve`` flag)."""

    max_batch: int = field(default=32, metadata={"help": "images per forward pass at most"})
    max_wait_ms: float = field(default=5.0, metadata={"help": "milliseconds the first image of a batch waits for "
                                                              "others"})
    limits: Limits = Limits()
    token: str | None = None
    decode_threads: int = 2


class _State:
    """The app's running parts: batcher, executors, admission count, readiness, metrics."""

    def __init__(self, model: ServedModel, settings: Settings) -> None:
        self.model, self.settings = model, settings
        self.admitted = 0  # images accepted and not yet answered (bounded by limits.queue)
        self.ready = False
        self.failed = ""  # why the warm-up failed, if it did
        self.metrics = Metrics(lambda: self.admitted, lambda: self.ready)
        self.batcher: Batcher | None = None
        self.model_thread: ThreadPoolExecutor | None = None
        self.decoders: ThreadPoolExecutor | None = None
        self.warmup: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.model_thread = ThreadPoolExecutor(1, thread_name_prefix="fgvc-model")
        self.decoders = ThreadPoolExecutor(max(1, self.settings.decode_threads), thread_name_prefix="fgvc-decode")
        self.batcher = Batcher(self.model.probabilities, self.model_thread, self.settings.max_batch,
                               self.settings.max_wait_ms, self.metrics.batch_size.observe)
        self.batcher.start()
        self.warmup = asyncio.get_running_loop().create_task(self._warm_up())

    async def _warm_up(self) -> None:
        import torch

        assert self.batcher is not None
        size = self.model.img_size
        try:
            await self.batcher.run_once(torch.zeros(1, 3, size, size))
        except Exception as e:  # the model cannot run: /health says why, and stays 503
            self.failed = f"the warm-up batch failed ({type(e).__name__}: {e})"
            print(f"fgvc.serve: error: {self.failed}", file=sys.stderr, flush=True)
            return
        self.ready = True

    async def stop(self) -> None:
        if self.warmup is not None and not self.warmup.done():
            self.warmup.cancel()
        if self.batcher is not None:
            await self.batcher.close()
        for pool in (self.decoders, self.model_thread):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)


OPEN_PATHS = ("/", "/health")  # answered without a token
KNOWN_PATHS = ("/", "/health", "/info", "/classes", "/metrics", "/predict")


class _Guard:
    """Plain ASGI middleware (cheaper than ``@app.middleware``): the token check, and counting every answer by
    endpoint and status code."""

    def __init__(self, app: Any, state: "_State") -> None:
        self.app, self.state = app, state

    def authorised(self, scope: dict[str, Any]) -> bool:
        token = self.state.settings.token
        if not token:
            return True
        given = Headers(scope=scope).get("authorization", "")
        scheme, _, value = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, code = scope["path"], 500

        async def counted(message: dict[str, Any]) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        try:
            if path not in OPEN_PATHS and not self.authorised(scope):
                self.state.metrics.errors["unauthorised"] += 1
                await _error(401, "this server needs a token: send 'Authorization: Bearer TOKEN'")(scope, receive,
                                                                                                    counted)
            else:
                await self.app(scope, receive, counted)
        finally:
            self.state.metrics.request(path if path in KNOWN_PATHS else "other", code)


def _error(status: int, message: str, results: list[dict[str, Any]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if results is not None:
        body["results"] = results
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
    if status == 401:
        headers = {"WWW-Authenticate": 'Bearer realm="fgvc"'}
    return JSONResponse(body, status_code=status, headers=headers)


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 from its declared length or as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise UploadError(400, "bad_request", f"Content-Length '{declared}' is not a number")
        if int(declared) > limit:
            raise UploadError(413, "too_large", f"the request body ({int(declared):,} bytes) is over this server's "
                                                f"limit of {limit:,} bytes (--max-bytes); send a smaller image")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise UploadError(413, "too_large", f"the request body is over this server's limit of {limit:,} bytes "
                                                f"(--max-bytes); send a smaller image")
    return bytes(body)


async def _uploads(request: Request, body: bytes, limits: Limits) -> list[tuple[str, bytes]]:
    """``(label, bytes)`` of each image of the request: the multipart field ``image`` (repeatable), or a raw body."""
    kind = request.headers.get("content-type", "").lower()
    if kind.startswith(RAW_TYPES):
        return [(upload_label(request.headers.get("x-filename")), body)]
    if not kind.startswith("multipart/form-data"):
        raise UploadError(400, "no_image", "send the image as multipart form data in the field 'image' (curl -F "
                                           "image=@photo.jpg), or as the raw body with Content-Type image/*")
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=limits.max_files, max_fields=limits.max_files,
                                                           max_part_size=limits.max_bytes)
    except Exception as e:  # starlette's MultiPartException / HTTPException: a malformed or oversized form
        detail = getattr(e, "detail", None) or getattr(e, "message", None) or str(e)
        raise UploadError(400, "bad_form", f"the multipart form cannot be read ({detail})") from None
    try:
        files = [f for f in form.getlist("image") if isinstance(f, UploadFile)]
        if not files:
            raise UploadError(400, "no_image", "no file in the form field 'image' (curl -F image=@photo.jpg)")
        return [(upload_label(f.filename), await f.read()) for f in files]
    finally:
        await form.close()


def _query(request: Request) -> tuple[int, bool]:
    """``(topk, cam)`` from the query string; a bad value is a 400."""
    raw = request.query_params.get("topk", str(MAX_TOPK_DEFAULT))
    if not raw.isdigit() or int(raw) < 1:
        raise UploadError(400, "bad_request", f"topk must be a whole number >= 1, got '{raw}'")
    cam = request.query_params.get("cam", "0").lower()
    if cam not in ("0", "1", "true", "false", "yes", "no"):
        raise UploadError(400, "bad_request", f"cam must be 0 or 1, got '{cam}'")
    return int(raw), cam in ("1", "true", "yes")


def create_app(model: ServedModel, settings: Settings = Settings()) -> FastAPI:
    """The FastAPI app serving ``model`` under ``settings`` (see the module doc)."""
    state = _State(model, settings)
    limits = settings.limits

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    app = FastAPI(title="fgvc", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.fgvc = state

    app.add_middleware(_Guard, state=state)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE, headers={"Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
                                           "style-src 'unsafe-inline'; script-src 'unsafe-inline'"})

    @app.get("/health")
    async def health() -> JSONResponse:
        if state.ready:
            return JSONResponse({"status": "ready"})
        if state.failed:
            return JSONResponse({"status": "failed", "error": state.failed}, status_code=503)
        return JSONResponse({"status": "starting"}, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})

    @app.get("/classes")
    async def classes() -> JSONResponse:
        return JSONResponse(list(model.class_names))

    @app.get("/info")
    async def info() -> JSONResponse:
        return JSONResponse({**model.info, "ready": state.ready, "max_batch": settings.max_batch,
                             "max_wait_ms": settings.max_wait_ms, "queue": limits.queue,
                             "max_bytes": limits.max_bytes, "max_pixels": limits.max_pixels,
                             "max_files": limits.max_files})

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(state.metrics.render(), media_type="text/plain; version=0.0.4")

    async def predict_one(label: str, data: bytes, topk: int, cam: bool) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        assert state.batcher is not None and state.decoders is not None
        try:
            image = await loop.run_in_executor(state.decoders, _prepare, data, label)
        except UploadError as e:
            state.metrics.errors[e.kind] += 1
            return {"path": label, "error": e.message, "_status": e.status}
        probs = await state.batcher.submit(image)
        values, indices = probs.topk(min(topk, len(model.class_names)))
        topk = [(model.class_names[i], p) for p, i in zip(values.tolist(), indices.tolist())]
        out: dict[str, Any] = Item(Path(label), topk=topk).as_dict()  # fgvc.predict --json's object
        out["path"] = label
        state.metrics.images += 1
        if cam and model.cam is not None:
            out["cam"] = await loop.run_in_executor(state.model_thread, model.cam, image)
        return out

    def _prepare(data: bytes, label: str) -> Any:
        array = decode_upload(data, label, limits.max_pixels)
        try:
            return model.transform(array)
        except Exception as e:  # a decodable image the transform cannot take
            raise UploadError(400, "unprocessable", f"{label}: cannot preprocess the image ({type(e).__name__}: "
                                                    f"{e})") from None

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        start = time.perf_counter()
        admitted = 0
        try:
            topk, cam = _query(request)
            if cam and model.cam is None:
                raise UploadError(400, "bad_request", f"cam=1: {model.cam_why_not}")
            if state.admitted >= limits.queue:
                raise UploadError(503, "queue_full", f"the server is busy ({state.admitted} images pending, "
                                                     f"--queue {limits.queue}); retry in a second")
            uploads = await _uploads(request, await _read_body(request, limits.max_bytes), limits)
            if state.admitted + len(uploads) > limits.queue:
                raise UploadError(503, "queue_full", f"the server is busy ({state.admitted} images pending, "
                                                     f"--queue {limits.queue}); retry in a second")
            admitted = len(uploads)
            state.admitted += admitted
            results = await asyncio.gather(*(predict_one(label, data, topk, cam) for label, data in uploads))
        except UploadError as e:
            state.metrics.errors[e.kind] += 1
            return _error(e.status, e.message)
        except UserError as e:  # e.g. Grad-CAM without its optional package
            state.metrics.errors["unavailable"] += 1
            return _error(400, str(e))
        finally:
            state.admitted -= admitted
            state.metrics.latency.observe(time.perf_counter() - start)
        statuses = [r.pop("_status") for r in results if "_status" in r]
        if len(statuses) == len(results):  # nothing predicted: the first problem's status
            return _error(statuses[0], results[0]["error"], list(results))
        return JSONResponse({"results": list(results)})

    return app


def default_decode_threads() -> int:
    """Decoding threads: the machine's cores, at most 4 (decoding is a small part of a request)."""
    return max(1, min(4, os.cpu_count() or 1))
