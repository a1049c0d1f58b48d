"""The server's counters in the Prometheus text exposition format (``GET /metrics``), without a client library.

``fgvc_serve_requests_total{endpoint,code}``, ``fgvc_serve_errors_total{kind}``, ``fgvc_serve_images_total``,
``fgvc_serve_batch_size`` (a histogram of forward-pass batch sizes), ``fgvc_serve_queue_depth`` (images admitted and
not yet answered), ``fgvc_serve_request_seconds`` (a histogram of ``/predict`` latency) and ``fgvc_serve_ready``.
Updated from the event loop only, so no lock is needed.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable, Sequence

__all__ = ["Histogram", "Metrics", "BATCH_BUCKETS", "LATENCY_BUCKETS"]

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Histogram:
    """Cumulative buckets, a sum and a count, rendered as Prometheus ``_bucket`` / ``_sum`` / ``_count`` lines."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * len(self.buckets)
        self.total, self.count = 0.0, 0

    def observe(self, value: float) -> None:
        for i, edge in enumerate(self.buckets):
            if value <= edge:
                self.counts[i] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str) -> list[str]:
        out = [f'{name}_bucket{{le="{edge:g}"}} {n}' for edge, n in zip(self.buckets, self.counts)]
        out.append(f'{name}_bucket{{le="+Inf"}} {self.count}')
        return out + [f"{name}_sum {self.total:.6f}", f"{name}_count {self.count}"]


class Metrics:
    """Everything ``/metrics`` reports; ``queue_depth`` and ``ready`` are read when rendered."""

    def __init__(self, queue_depth: Callable[[], int], ready: Callable[[], bool]) -> None:
        self.requests: Counter[tuple[str, int]] = Counter()
        self.errors: Counter[str] = Counter()
        self.images = 0
        self.batch_size = Histogram(BATCH_BUCKETS)
        self.latency = Histogram(LATENCY_BUCKETS)
        self._queue_depth, self._ready = queue_depth, ready

    def request(self, endpoint: str, code: int) -> None:
        self.requests[(endpoint, code)] += 1

    def render(self) -> str:
        out = ["# HELP fgvc_serve_requests_total HTTP requests answered, by endpoint and status code.",
               "# TYPE fgvc_serve_requests_total counter"]
        out += [f'fgvc_serve_requests_total{{endpoint="{_label(e)}",code="{c}"}} {n}'
                for (e, c), n in sorted(self.requests.items())]
        out += ["# HELP fgvc_serve_errors_total Refused uploads and requests, by kind.",
                "# TYPE fgvc_serve_errors_total counter"]
        out += [f'fgvc_serve_errors_total{{kind="{_label(k)}"}} {n}' for k, n in sorted(self.errors.items())]
        out += ["# HELP fgvc_serve_images_total Images predicted.", "# TYPE fgvc_serve_images_total counter",
                f"fgvc_serve_images_total {self.images}",
                "# HELP fgvc_serve_batch_size Images per forward pass.", "# TYPE fgvc_serve_batch_size histogram",
                *self.batch_size.lines("fgvc_serve_batch_size"),
                "# HELP fgvc_serve_request_seconds Latency of POST /predict, from arrival to answer.",
                "# TYPE fgvc_serve_request_seconds histogram",
                *self.latency.lines("fgvc_serve_request_seconds"),
                "# HELP fgvc_serve_queue_depth Images admitted and not yet answered.",
                "# TYPE fgvc_serve_queue_depth gauge", f"fgvc_serve_queue_depth {self._queue_depth()}",
                "# HELP fgvc_serve_ready 1 once the model answered its warm-up batch.",
                "# TYPE fgvc_serve_ready gauge", f"fgvc_serve_ready {int(self._ready())}"]
        return "\n".join(out) + "\n"
