"""Health and metrics of the burn-triage service (no Holoscan import): what an operations team
watches, in the Prometheus text format, plus the in-flight ledger the service drains by.

* :class:`ServiceMetrics` — every metric, on its own ``CollectorRegistry`` (prometheus_client):

  ==========================================  ==========================================================
  ``burnscope_images_total{outcome,priority}`` images settled: ``reported`` | ``error`` | ``skipped``
  ``burnscope_e2e_seconds{priority}``          accepted (C-STORE done / file complete) → report written
  ``burnscope_stage_seconds{stage}``           per image: decode, preprocess, batch_wait, inference,
                                               report_queue, render, write
  ``burnscope_queue_depth{queue}``             source, batcher, reporting (images waiting)
  ``burnscope_batch_size{lane}``               images per tower batch (``stat`` | ``routine``)
  ``burnscope_in_flight``                      accepted, not yet settled
  ``burnscope_outbox_deliveries{destination,status}``  ``pending`` | ``failed`` per destination
  ``burnscope_rejected_associations_total``    associations the SCP refused
  ``burnscope_model_info{...}``                model, weights, backend, precision, device, demo
  ``burnscope_gpu_memory_bytes{kind}``         ``allocated`` | ``reserved`` (only on a GPU)
  ``burnscope_ready`` / ``burnscope_accepting``  readiness; 0 while shutting down
  ==========================================  ==========================================================

* :class:`HealthServer` — ``/metrics``, ``/healthz`` (process alive), ``/readyz`` (every
  readiness check passes: model warm, sinks reachable, accepting), on 127.0.0.1 unless configured.
  The port is bound when the server is made, so a port in use is one clear error at start.
* :class:`InFlight` — accepted images by key until a report or an error record settles them:
  the end-to-end latencies, the counts, and what is still pending at shutdown.
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from burnscope.common.messages import PRIORITIES, ROUTINE, STAT, ImageContext
from burnscope.operators.flow.ledger import image_key  # the run ledger's keys: one key per image

log = logging.getLogger(__name__)

OUTCOMES = ("reported", "error", "skipped")
STAGES = ("decode", "preprocess", "batch_wait", "inference", "report_queue", "render", "write")
QUEUES = ("source", "batcher", "reporting")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class _Callback(Collector):
    """A gauge family whose samples a function gives at scrape time: ``fn() -> {labels tuple: value}``."""

    def __init__(self, name: str, documentation: str, labels: Iterable[str], fn: Callable[[], dict]) -> None:
        self.name, self.documentation, self.labels, self.fn = name, documentation, list(labels), fn

    def collect(self):
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labels)
        try:
            samples = self.fn() or {}
        except Exception as exc:  # noqa: BLE001 - a scrape never fails because one source did
            log.debug("metric %s: %s", self.name, exc)
            samples = {}
        for labels, value in samples.items():
            family.add_metric(list(labels), float(value))
        yield family


class ServiceMetrics:
    """The service's metrics (see the module docstring); operators call the ``observe_*`` /
    ``set_*`` methods, all thread-safe."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = reg = registry or CollectorRegistry()
        self.images = Counter("burnscope_images", "Images settled, by outcome and priority.",
                              ["outcome", "priority"], registry=reg)
        self.e2e = Histogram("burnscope_e2e_seconds", "Accepted → report written, seconds.", ["priority"],
                             buckets=LATENCY_BUCKETS, registry=reg)
        self.stage = Histogram("burnscope_stage_seconds", "Time per image in each stage, seconds.", ["stage"],
                               buckets=LATENCY_BUCKETS, registry=reg)
        self.queue = Gauge("burnscope_queue_depth", "Images waiting in each queue.", ["queue"], registry=reg)
        self.batch = Histogram("burnscope_batch_size", "Images per image-tower batch.", ["lane"],
                               buckets=BATCH_BUCKETS, registry=reg)
        self.in_flight = Gauge("burnscope_in_flight", "Images accepted and not yet settled.", registry=reg)
        self.rejected = Counter("burnscope_rejected_associations", "Associations the C-STORE SCP refused.",
                                registry=reg)
        self.model = Info("burnscope_model", "The model and engine in use (demo: random weights).", registry=reg)
        self.ready = Gauge("burnscope_ready", "1 when every readiness check passes.", registry=reg)
        self.accepting = Gauge("burnscope_accepting", "1 while the sources accept new images.", registry=reg)
        for outcome in OUTCOMES:
            for priority in PRIORITIES:
                self.images.labels(outcome, priority)
        for priority in PRIORITIES:
            self.e2e.labels(priority)
        for stage in STAGES:
            self.stage.labels(stage)
        for queue in QUEUES:
            self.queue.labels(queue).set(0)
        for lane in (STAT, ROUTINE):
            self.batch.labels(lane)
        self._rejections_seen = 0

    # -- what operators record ----------------------------------------------------------
    def observe_stage(self, stage: str, seconds: float, count: int = 1) -> None:
        child = self.stage.labels(stage)
        for _ in range(max(1, int(count))):
            child.observe(max(0.0, float(seconds)))

    def set_queue(self, queue: str, depth: int) -> None:
        self.queue.labels(queue).set(depth)

    def observe_batch(self, size: int, lane: str = ROUTINE, reason: str = "") -> None:
        self.batch.labels(lane).observe(size)

    def settled(self, outcome: str, priority: str = ROUTINE, e2e_s: float | None = None) -> None:
        self.images.labels(outcome, STAT if priority == STAT else ROUTINE).inc()
        if outcome == "reported" and e2e_s is not None:
            self.e2e.labels(STAT if priority == STAT else ROUTINE).observe(max(0.0, e2e_s))

    def set_model(self, info: Any) -> None:
        self.model.info({k: str(getattr(info, k, "")) for k in ("name", "weights", "backend", "precision", "device")}
                        | {"demo": str(bool(getattr(info, "demo", False))).lower()})

    def sync_rejections(self, total: int) -> None:
        """Brings the rejected-associations counter up to the SCP's own count."""
        if total > self._rejections_seen:
            self.rejected.inc(total - self._rejections_seen)
            self._rejections_seen = total

    # -- sampled at scrape time ----------------------------------------------------------
    def add_callback(self, name: str, documentation: str, labels: Iterable[str], fn: Callable[[], dict]) -> None:
        self.registry.register(_Callback(name, documentation, labels, fn))

    def watch_outbox(self, counts: Callable[[], dict[tuple[str, str], int]]) -> None:
        """``counts() -> {(destination, status): n}`` for status pending and failed."""
        self.add_callback("burnscope_outbox_deliveries", "Outbox deliveries not yet delivered, per destination.",
                          ["destination", "status"], counts)

    def watch_gpu(self) -> None:
        """GPU memory of this process (torch's allocator), when torch sees a GPU."""
        from burnscope.common.gpu import torch_cuda_usable

        if not torch_cuda_usable():
            return

        def memory() -> dict:
            import torch

            return {("allocated",): torch.cuda.memory_allocated(), ("reserved",): torch.cuda.memory_reserved()}

        self.add_callback("burnscope_gpu_memory_bytes", "GPU memory held by this process.", ["kind"], memory)

    def text(self) -> bytes:
        return generate_latest(self.registry)


@dataclass
class _Open:
    priority: str
    received_at: float
    label: str


class InFlight:
    """Accepted images until a report or an error record settles them (thread-safe).

    ``accept(context)`` when the source emits an image; ``reported(key)`` when its report is
    written; ``error()`` for a file the source could not decode (accepted and settled at once);
    ``skipped()`` for a file the series rules left out. :meth:`accounting` gives
    ``{accepted, reported, errors, skipped, pending}``.
    """

    def __init__(self, metrics: ServiceMetrics | None = None, clock: Callable[[], float] = time.time,
                 keep_latencies: bool = False) -> None:
        self.metrics = metrics
        #: ``(priority, e2e seconds, settled at)`` of every reported image (benchmarks; off by default)
        self.latencies: list[tuple[str, float, float]] | None = [] if keep_latencies else None
        self.clock = clock
        self._open: dict[str, _Open] = {}
        self._lock = threading.Lock()
        self.counts = {"accepted": 0, "reported": 0, "errors": 0, "skipped": 0}
        self._errors_open = 0

    def accept(self, context: ImageContext) -> str:
        key = image_key(context.source, context.frame_number)
        with self._lock:
            if key not in self._open:
                self.counts["accepted"] += 1
                self._open[key] = _Open(context.priority, context.received_at or self.clock(), context.label)
            depth = len(self._open)
        if self.metrics is not None:
            self.metrics.in_flight.set(depth)
        return key

    def reported(self, key: str, outcome: str = "reported") -> None:
        with self._lock:
            entry = self._open.pop(key, None)
            if entry is None:
                return  # a report of an image this run did not accept (e.g. a re-sent one)
            self.counts["reported" if outcome == "reported" else "errors"] += 1
            depth = len(self._open)
            now = self.clock()
            if self.latencies is not None:
                self.latencies.append((entry.priority, now - entry.received_at, now))
        if self.metrics is not None:
            self.metrics.in_flight.set(depth)
            self.metrics.settled(outcome, entry.priority, now - entry.received_at)

    def error_accepted(self, n: int = 1) -> None:
        """``n`` error records left the source (accepted; settled when they reach the sink)."""
        with self._lock:
            self.counts["accepted"] += n
            self._errors_open += n

    def error(self, priority: str = ROUTINE) -> None:
        """An error record reached its sink (one the source announced, or a new one)."""
        with self._lock:
            if self._errors_open > 0:
                self._errors_open -= 1
            else:
                self.counts["accepted"] += 1
            self.counts["errors"] += 1
        if self.metrics is not None:
            self.metrics.settled("error", priority)

    def skipped(self, n: int = 1) -> None:
        with self._lock:
            self.counts["accepted"] += n
            self.counts["skipped"] += n
        if self.metrics is not None:
            for _ in range(n):
                self.metrics.settled("skipped", ROUTINE)

    @property
    def open(self) -> int:
        """Accepted and not settled: images and error records on their way."""
        with self._lock:
            return len(self._open) + self._errors_open

    def pending_labels(self) -> list[str]:
        """SOP Instance UIDs or file names of the images not settled (never patient data)."""
        with self._lock:
            return sorted(e.label for e in self._open.values())

    def accounting(self) -> dict[str, int]:
        with self._lock:
            return {**self.counts, "pending": len(self._open) + self._errors_open}


class _Handler(BaseHTTPRequestHandler):
    server: "HealthServer"

    def log_message(self, fmt: str, *args: Any) -> None:  # scrapes are not news
        log.debug("http %s", fmt % args)

    def _send(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _authorised(self) -> bool:
        token = self.server.token
        if token is None:
            return True
        given = self.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = self.path.split("?", 1)[0]
        if path in ("/metrics", "/readyz") and not self._authorised():  # /healthz: a liveness probe, says only "ok"
            self._send(401, b"unauthorised: send Authorization: Bearer <metrics token>\n")
        elif path == "/metrics":
            self._send(200, self.server.metrics.text(), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            self._send(200, b"ok\n")
        elif path == "/readyz":
            ready, checks = self.server.readiness()
            body = json.dumps({"ready": ready, "checks": checks}, indent=1).encode() + b"\n"
            self._send(200 if ready else 503, body, "application/json")
        else:
            self._send(404, b"not found: try /metrics, /healthz or /readyz\n")


class HealthServer(ThreadingHTTPServer):
    """``/metrics``, ``/healthz``, ``/readyz`` (see the module docstring).

    Raises ``OSError`` (e.g. address in use) when the port cannot be bound; :func:`bind_error`
    words it. Readiness checks are ``name -> fn() -> (ok, detail)``, added with :meth:`add_check`.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, metrics: ServiceMetrics, port: int, host: str = "127.0.0.1", token: str | None = None) -> None:
        self.metrics = metrics
        #: when set, /metrics and /readyz need ``Authorization: Bearer <token>`` (401 otherwise)
        self.token = token
        self._checks: dict[str, Callable[[], tuple[bool, str]]] = {}
        self._thread: threading.Thread | None = None
        super().__init__((host, int(port)), _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def add_check(self, name: str, fn: Callable[[], tuple[bool, str]]) -> None:
        self._checks[name] = fn

    def readiness(self) -> tuple[bool, dict[str, dict[str, Any]]]:
        checks = {}
        for name, fn in self._checks.items():
            try:
                ok, detail = fn()
            except Exception as exc:  # noqa: BLE001
                ok, detail = False, type(exc).__name__
            checks[name] = {"ok": bool(ok), "detail": detail}
        ready = bool(checks) and all(c["ok"] for c in checks.values())
        self.metrics.ready.set(1 if ready else 0)
        return ready, checks

    def start(self) -> "HealthServer":
        self._thread = threading.Thread(target=self.serve_forever, name="burnscope-metrics", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def bind_error(exc: OSError, host: str, port: int, option: str = "--metrics-port") -> str:
    """One line for a port that cannot be bound."""
    import errno

    why = {errno.EADDRINUSE: "is in use by another process", errno.EACCES: "needs privileges (ports below 1024)",
           errno.EADDRNOTAVAIL: "is not an address of this machine"}.get(exc.errno, exc.strerror or str(exc))
    return f"{option} {port} on {host}: {'the address' if exc.errno == errno.EADDRNOTAVAIL else 'the port'} {why}"


def tcp_reachable(host: str, port: int, timeout_s: float = 2.0) -> tuple[bool, str]:
    """Whether a TCP connection to ``host:port`` opens (a destination's reachability)."""
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return True, f"{host}:{port} reachable"
    except OSError as exc:
        return False, f"{host}:{port} unreachable ({exc.strerror or type(exc).__name__})"


class CachedCheck:
    """A readiness check run at most every ``every_s`` seconds (network checks on every scrape
    would be slow and noisy)."""

    def __init__(self, fn: Callable[[], tuple[bool, str]], every_s: float = 15.0) -> None:
        self.fn, self.every_s = fn, every_s
        self._at, self._value = -1e18, (False, "not checked yet")
        self._lock = threading.Lock()

    def __call__(self) -> tuple[bool, str]:
        with self._lock:
            if time.monotonic() - self._at >= self.every_s:
                self._value, self._at = self.fn(), time.monotonic()
            return self._value


__all__ = [
    "CachedCheck", "HealthServer", "InFlight", "OUTCOMES", "QUEUES", "STAGES", "ServiceMetrics", "bind_error",
    "image_key", "tcp_reachable",
]
