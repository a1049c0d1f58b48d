"""Load test of ``fgvc.serve`` on this machine: throughput and latency, batched against ``--max-batch 1``, memory over
2,000 requests, and a soak with good and bad uploads. Results: ``benchmarks/results/serve.md`` (and ``.json``).

    python benchmarks/serve_load.py --work /tmp/fgvc-serve-bench            # prepare (once), then measure
    python benchmarks/serve_load.py --work /tmp/fgvc-serve-bench --prepare-only

Prepare: a tf_efficientnet_lite0 run (the real ImageNet weights of ../shared/weights, 128 px, a few steps on a
10-class synthetic set: its accuracy does not matter here, its cost per image does), its fp32 ONNX export
(``fgvc.export``) and INT8 file (``fgvc.quantize``). Measure, for each file, a server with the defaults
(``--max-batch 32 --max-wait-ms 5``) and one with ``--max-batch 1``: at concurrency 1, 8 and 32 a fixed number of
requests (one JPEG of the synthetic set each, after a warm-up), images/s and p50 / p95 / p99 latency; then on the
batched fp32 server the resident memory (VmRSS) after a warm-up and every 500 of 2,000 more requests; then a soak
(``--soak-s``) at concurrency 8 mixing good JPEGs with non-images, truncated JPEGs, oversized bodies and images over
the pixel limit, counting every status code (anything but 200 / 400 / 413 / 415 is a failure).

Every loop is bounded (a request count or a deadline), every server listens on 127.0.0.1 only, and the client runs
on the same CPU as the server: on a shared 2-core machine the numbers are as good as the load average beside them
(recorded before and after each phase).
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = Path(os.environ.get("FGVC_SHARED", REPO.parent / "shared")) / "weights" / "tf_efficientnet_lite0.safetensors"
RECIPE = """_base_: [{base}/schedules/cpu_short.yaml, {base}/models/lite0.yaml]
seed: 0
data:
  name: synthetic
  root: {data}
  img_size: 128
  crop_pct: 0.889
  val_split: null
  num_workers: 0
  args: {{num_classes: 10, images_per_class: 12, render_size: 128, seed: 0}}
  augment: {{hflip: false, color_jitter: 0.0}}
model: {{pretrained_file: {weights}}}
train: {{epochs: 1, max_steps: 3, batch_size: 16, device: cpu}}
"""
CONCURRENCY = (1, 8, 32)


def sh(cmd: list[str], timeout: int = 1800) -> None:
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, timeout=timeout, cwd=REPO)


def load() -> list[str]:
    """The 1, 5 and 15-minute load averages."""
    return [f"{x:.2f}" for x in os.getloadavg()]


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return f"load average {os.getloadavg()}"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def prepare(work: Path) -> dict[str, Path]:
    """The run, its fp32 ONNX file and its INT8 file (each made once)."""
    run, recipe = work / "run", work / "lite0_128.yaml"
    work.mkdir(parents=True, exist_ok=True)
    if not (run / "checkpoints" / "last.pt").exists():
        if not WEIGHTS.exists():
            sys.exit(f"error: {WEIGHTS} not found (the real lite0 weights); set FGVC_SHARED")
        recipe.write_text(RECIPE.format(base=REPO / "recipes" / "_base_", data=work / "data", weights=WEIGHTS))
        sh([sys.executable, "-m", "fgvc.train", str(recipe), "--output", str(run)])
    fp32 = run / "export" / "model.onnx"
    if not fp32.exists():
        sh([sys.executable, "-m", "fgvc.export", str(run), "--format", "onnx"])
    int8 = run / "export" / "model.int8.onnx"
    if not int8.exists():
        sh([sys.executable, "-m", "fgvc.quantize", str(fp32), "--calib", "64"])
    return {"run": run, "fp32": fp32, "int8": int8}


class Server:
    """``python -m fgvc.serve FILE --port 0 ...`` as a child process on 127.0.0.1."""

    def __init__(self, target: Path, *flags: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "fgvc.serve", str(target), "--host", "127.0.0.1",
                                      "--port", "0", *flags], cwd=REPO, stderr=subprocess.PIPE, text=True)
        self.url = ""
        deadline = time.monotonic() + 300
        assert self.proc.stderr is not None
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                raise RuntimeError(f"the server exited with {self.proc.wait()} before listening")
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                self.url = m.group(1)
                break
        import httpx

        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("the server never became ready")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
        return float("nan")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def batch_stats(url: str) -> tuple[float, float]:
    """(sum, count) of the server's batch-size histogram."""
    import httpx

    text = httpx.get(url + "/metrics", timeout=10).text
    total = float(re.search(r"^fgvc_serve_batch_size_sum (\S+)$", text, re.M).group(1))  # type: ignore[union-attr]
    count = float(re.search(r"^fgvc_serve_batch_size_count (\S+)$", text, re.M).group(1))  # type: ignore[union-attr]
    return total, count


def multipart(name: str, data: bytes, boundary: str = "fgvcbenchboundary") -> tuple[bytes, str]:
    """The body and content type of a one-file form (field ``image``)."""
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    """Send one prepared HTTP/1.1 request on a kept-alive connection, read the whole answer; its status code."""
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next((int(h.split(":", 1)[1]) for h in lines if h.lower().startswith("content-length:")), 0)
    await reader.readexactly(length)
    return int(lines[0].split()[1])


async def drive(url: str, uploads: list[tuple[str, bytes]], n: int, concurrency: int,
                deadline_s: float = 600.0) -> tuple[list[float], dict[int, int], float]:
    """``n`` POST /predict requests from ``concurrency`` workers (upload ``i % len(uploads)``), each worker on one
    kept-alive connection (a broken one is reopened); latencies (s) of the 200s, status counts, wall seconds.
    Bounded by ``n`` and ``deadline_s``. The client is raw asyncio streams with the requests built beforehand, so it
    takes little of the CPU it shares with the server (httpx took more than the server at concurrency 32)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    prepared = []
    for name, data in uploads:
        body, kind = multipart(name, data)
        prepared.append(f"POST /predict HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {kind}\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = iter(range(n))
    end = time.monotonic() + deadline_s

    async def worker() -> None:
        conn = None
        try:
            for i in counter:
                if time.monotonic() > end:
                    return
                t0 = time.perf_counter()
                try:
                    if conn is None:
                        conn = await asyncio.open_connection(host, int(port))
                    code = await asyncio.wait_for(_exchange(*conn, prepared[i % len(prepared)]), 120)
                except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError):
                    code, conn = -1, None  # the connection failed or was closed: counted, never retried
                if code == 200:
                    latencies.append(time.perf_counter() - t0)
                elif code != -1 and conn is not None and code >= 400:
                    conn[1].close()  # the server may close after an error answer: start a fresh connection
                    conn = None
                statuses[code] = statuses.get(code, 0) + 1
        finally:
            if conn is not None:
                conn[1].close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, statuses, time.perf_counter() - start


def good_uploads(data: Path, k: int = 32) -> list[tuple[str, bytes]]:
    files = sorted(p for p in data.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:k]
    if not files:
        sys.exit(f"error: no images under {data}")
    return [(p.name, p.read_bytes()) for p in files]


def bad_uploads(max_bytes: int) -> list[tuple[str, bytes]]:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (2600, 2000), (90, 120, 30)).save(buf, format="PNG")  # 5.2 MP: over --max-pixels 4e6
    jpeg = io.BytesIO()
    Image.new("RGB", (300, 200), (10, 200, 30)).save(jpeg, format="JPEG")
    return [("notes.txt", b"this is not an image\n" * 20), ("cut.jpg", jpeg.getvalue()[: len(jpeg.getvalue()) // 2]),
            ("huge.jpg", os.urandom(max_bytes + 1000)), ("bomb.png", buf.getvalue())]


def level(server: "Server", uploads: list[tuple[str, bytes]], n: int, c: int) -> dict[str, Any]:
    """One timed level (after a warm-up at the same concurrency)."""
    asyncio.run(drive(server.url, uploads, max(2 * c, 20), c))
    s0, c0 = batch_stats(server.url)
    before = load()
    lat, statuses, wall = asyncio.run(drive(server.url, uploads, n, c))
    s1, c1 = batch_stats(server.url)
    ms = np.asarray(lat) * 1000.0 if lat else np.asarray([float("nan")])
    return {"concurrency": c, "requests": n, "ok": statuses.get(200, 0), "statuses": statuses,
            "images_per_s": statuses.get(200, 0) / wall, "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_batch": (s1 - s0) / max(c1 - c0, 1), "load_before": before, "load_after": load()}


SERVERS = (("batched (32, 5 ms)", []), ("--max-batch 1", ["--max-batch", "1"]))


def measure_levels(target: Path, uploads: list[tuple[str, bytes]], n: int) -> list[dict[str, Any]]:
    """Both servers of ``target`` up at once, their levels interleaved (batched, then unbatched, at each
    concurrency), so that a change of the neighbours' load hits both alike."""
    servers = []
    rows: list[dict[str, Any]] = []
    try:
        for _, flags in SERVERS:
            servers.append(Server(target, *flags))
        for c in CONCURRENCY:
            for (label, _), server in zip(SERVERS, servers):
                rows.append({"server": label, **level(server, uploads, n, c)})
                print(f"  {target.name} {label} c={c}: {rows[-1]['images_per_s']:.1f} img/s, p50 "
                      f"{rows[-1]['p50_ms']:.0f} ms, p99 {rows[-1]['p99_ms']:.0f} ms, batch "
                      f"{rows[-1]['mean_batch']:.1f}, load {rows[-1]['load_before']}", file=sys.stderr, flush=True)
    finally:
        codes = [server.stop() for server in servers]
    for r in rows:
        r["exit_code"] = codes[[label for label, _ in SERVERS].index(r["server"])]
    return rows


def memory(target: Path, uploads: list[tuple[str, bytes]], total: int = 2000, step: int = 500) -> dict[str, Any]:
    server = Server(target)
    try:
        asyncio.run(drive(server.url, uploads, 200, 32))  # warm-up: allocator pools, thread pools, caches
        points = [(0, server.rss_mb())]
        statuses: dict[int, int] = {}
        for done in range(step, total + 1, step):
            _, st, _ = asyncio.run(drive(server.url, uploads, step, 32))
            for k, v in st.items():
                statuses[k] = statuses.get(k, 0) + v
            points.append((done, server.rss_mb()))
    finally:
        code = server.stop()
    return {"points": points, "statuses": statuses, "growth_mb": points[-1][1] - points[0][1], "exit_code": code}


def soak(target: Path, good: list[tuple[str, bytes]], seconds: float, max_bytes: int = 300_000,
         max_pixels: int = 4_000_000) -> dict[str, Any]:
    bad = bad_uploads(max_bytes)
    rng = random.Random(0)
    mix = [good[i % len(good)] if rng.random() < 0.7 else bad[rng.randrange(len(bad))] for i in range(500)]
    server = Server(target, "--max-bytes", str(max_bytes), "--max-pixels", str(max_pixels))
    try:
        rss0 = server.rss_mb()
        slowest_bad = 0.0
        statuses: dict[int, int] = {}
        end = time.monotonic() + seconds
        rounds = 0
        while time.monotonic() < end and rounds < 10_000:
            _, st, _ = asyncio.run(drive(server.url, mix, len(mix), 8, deadline_s=max(1.0, end - time.monotonic())))
            for k, v in st.items():
                statuses[k] = statuses.get(k, 0) + v
            rounds += 1
        import httpx

        for name, data in bad:  # each bad kind alone, timed, on the soaked server
            t0 = time.perf_counter()
            httpx.post(server.url + "/predict", files={"image": (name, data)}, timeout=30)
            slowest_bad = max(slowest_bad, time.perf_counter() - t0)
        rss1 = server.rss_mb()
        still = httpx.post(server.url + "/predict", files={"image": good[0]}, timeout=30).status_code
    finally:
        code = server.stop()
    unexpected = {k: v for k, v in statuses.items() if k not in (200, 400, 413, 415)}
    return {"seconds": seconds, "statuses": statuses, "unexpected": unexpected, "rss_mb": [rss0, rss1],
            "slowest_bad_s": slowest_bad, "good_after": still, "exit_code": code}


def table(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| file | server | concurrency | images/s | p50 ms | p95 ms | p99 ms | mean batch | load (1/5/15 min) |",
           "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        out.append(f"| {r['file']} | {r['server']} | {r['concurrency']} | {r['images_per_s']:.1f} | {r['p50_ms']:.0f} | "
                   f"{r['p95_ms']:.0f} | {r['p99_ms']:.0f} | {r['mean_batch']:.1f} | {', '.join(r['load_before'])} |")
    return out


def report(result: dict[str, Any]) -> str:
    """``serve.md``: the tables, the batched / unbatched ratio at each concurrency, memory, soak, and the load."""
    rows = result["rows"]
    out = ["# fgvc.serve under load", "",
           f"Generated by `python benchmarks/serve_load.py` on {result['machine']} ({result['date']}); "
           f"tf_efficientnet_lite0 at 128 px (a few-step run on a 10-class synthetic set; its accuracy does not "
           f"matter here), served as the fp32 ONNX export and the static INT8 file of `fgvc.quantize`. Each "
           f"server: `python -m fgvc.serve FILE` with the defaults (`--max-batch 32 --max-wait-ms 5`) or with "
           f"`--max-batch 1`; each level {result['requests']} timed requests (one 128 px synthetic JPEG each, "
           f"multipart) after a warm-up, from a raw asyncio client on the same CPU, 127.0.0.1 only.", "",
           "Load on the machine (`uptime`), other jobs included:", "",
           f"- start: `{result['uptime_start']}`", f"- after the throughput runs: `{result['uptime_mid']}`",
           f"- end: `{result['uptime_end']}`", ""]
    cores = os.cpu_count() or 1
    loads = [float(x) for r in rows for x in r["load_before"]][::3]
    if loads and max(loads) > cores:
        out += [f"**Contention:** the 1-minute load average was {min(loads):.1f}-{max(loads):.1f} on {cores} cores "
                f"while these ran (other jobs shared the CPU), so absolute images/s and latencies are low and noisy; "
                f"the ratio of batched to unbatched at the same concurrency (the two servers measured back to back, "
                f"level by level) is the meaningful number, and even it carries the noise of the neighbours.", ""]
    out += ["## Throughput and latency", "", *table(rows), ""]
    out += ["Batched against `--max-batch 1` (images/s ratio):", ""]
    for name in ("fp32", "int8"):
        for c in CONCURRENCY:
            b = next(r for r in rows if r["file"] == name and r["server"].startswith("batched") and r["concurrency"] == c)
            u = next(r for r in rows if r["file"] == name and r["server"] == "--max-batch 1" and r["concurrency"] == c)
            out.append(f"- {name}, concurrency {c}: {b['images_per_s']:.1f} / {u['images_per_s']:.1f} = "
                       f"**{b['images_per_s'] / u['images_per_s']:.2f}x** (p99 {b['p99_ms']:.0f} ms against "
                       f"{u['p99_ms']:.0f} ms)")
    c1 = [(b["images_per_s"] / u["images_per_s"], b["p50_ms"] - u["p50_ms"])
          for b in rows for u in rows if b["concurrency"] == u["concurrency"] == 1 and b["file"] == u["file"]
          and b["server"].startswith("batched") and u["server"] == "--max-batch 1"]
    c1_text = ", ".join(f"{ratio:.2f}x (p50 {dp50:+.0f} ms)" for ratio, dp50 in c1)
    out += ["", "At concurrency 1 there is nothing to gather: a lone request waits its `--max-wait-ms` (5 ms) for "
            "company and then runs alone, after a hand-off to the batcher's model thread that `--max-batch 1` also "
            f"pays. Here the batched server was {c1_text} at concurrency 1: where that is below 1x by more than "
            "the 5 ms wait explains on a quiet machine (the load column), it is a cost of batching that is not yet "
            "profiled, not noise. `--max-wait-ms 0` removes the wait (it then batches only what queued during a forward pass). "
            "From concurrency 8 on, the batched server runs a fraction of the forward passes (mean batch above), "
            "sharing each pass's fixed cost and ONNX Runtime's per-call overhead."]
    mem = result["memory"]
    pts = mem["points"]
    first = pts[1][1] - pts[0][1] if len(pts) > 1 else 0.0
    rest = pts[-1][1] - pts[1][1] if len(pts) > 1 else 0.0
    out += ["", "## Memory over 2,000 requests (fp32, batched, concurrency 32)", "",
            "| requests after the warm-up | VmRSS (MB) |", "|---:|---:|",
            *[f"| {n} | {mb:.1f} |" for n, mb in mem["points"]], "",
            f"Growth from the warm-up to 2,000 requests: {mem['growth_mb']:+.1f} MB, of which {first:+.1f} MB in "
            f"the first {pts[1][0] if len(pts) > 1 else 0} (likely allocator arenas and ONNX Runtime buffers for "
            f"batch shapes the warm-up had not seen) and {rest:+.1f} MB over the remaining requests; statuses "
            f"{mem['statuses']}; exit code after SIGTERM {mem['exit_code']}.", ""]
    soak_ = result["soak"]
    out += [f"## Soak: {soak_['seconds']:.0f} s, concurrency 8, good and bad uploads", "",
            "70 % good JPEGs, 30 % bad: a text file, a JPEG cut in half, a body over `--max-bytes 300000`, a "
            "5.2 MP PNG over `--max-pixels 4000000`.", "",
            f"- statuses: {soak_['statuses']}; unexpected (anything but 200/400/413/415, or a failed connection): "
            f"{soak_['unexpected'] or 'none'}",
            f"- slowest bad upload answered, after the soak: {soak_['slowest_bad_s'] * 1000:.0f} ms; a good upload "
            f"after it: {soak_['good_after']}",
            f"- VmRSS {soak_['rss_mb'][0]:.1f} MB at the start (a fresh server, no warm-up), "
            f"{soak_['rss_mb'][1]:.1f} MB at the end; exit code "
            f"after SIGTERM {soak_['exit_code']}", ""]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/fgvc-serve-bench"), help="run, exports and data here")
    ap.add_argument("--requests", type=int, default=400, help="timed requests per concurrency level")
    ap.add_argument("--soak-s", type=float, default=180.0, help="soak duration in seconds")
    ap.add_argument("--prepare-only", action="store_true")
    ap.add_argument("--render", action="store_true", help="only rewrite serve.md from an existing serve.json")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "serve.md")
    args = ap.parse_args()
    if args.render:
        args.out.write_text(report(json.loads(args.out.with_suffix(".json").read_text())) + "\n")
        return 0
    files = prepare(args.work)
    if args.prepare_only:
        return 0
    uploads = good_uploads(args.work / "data")
    result: dict[str, Any] = {"machine": f"{cpu_name()}, {os.cpu_count()} cores", "requests": args.requests,
                              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                              "uptime_start": uptime(), "rows": []}
    for name in ("fp32", "int8"):
        for r in measure_levels(files[name], uploads, args.requests):
            result["rows"].append({"file": name, **r})
    result["uptime_mid"] = uptime()
    result["memory"] = memory(files["fp32"], uploads)
    result["soak"] = soak(files["fp32"], uploads, args.soak_s)
    result["uptime_end"] = uptime()
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    args.out.write_text(report(result) + "\n")
    print(report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
