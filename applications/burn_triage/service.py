"""burn-triage as a long-running service (``burnscope serve burn-triage``).

The graph::

    C-STORE SCP ─┐                                             ┌─stat──▶ biomedclip_stat ─┐
    watched dir ─┴▶ medical_images ─▶ imaging ─▶ dynamic_batcher                          ├▶ lanes ─▶ burn_diagnosis
                        │ (STAT first)           (STAT first)  └─batch─▶ biomedclip ──────┘
                        └─errors─▶ error_records, settle         ▶ clinical_decision_support ─▶ reporting_pool
                                                                   (worker processes, STAT first) ─▶ emr_integration
                                                                   (folder + settle) [─▶ pacs_emr_delivery (outbox)]

Every queue lets STAT images overtake: the source's (files to decode, images to emit), the
batcher's, the reporting pool's. STAT batches have an image tower of their own, so a STAT image
never waits behind a routine batch (on a GPU that tower's work goes on a high-priority CUDA
stream). :class:`ServiceMonitorOp` ends the graph: on a stop request (SIGTERM/SIGINT) the source
stops accepting, the images in flight finish (at most ``service.shutdown_timeout_s``), the outbox
gets ``delivery.drain_timeout_s``; a second request ends it at once, with what was pending listed.
"""

from __future__ import annotations

import datetime
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from burnscope.operators.holoscan_runtime import holoscan  # noqa: F401  (preloads libcudart)
from holoscan.conditions import PeriodicCondition
from holoscan.core import Application, Operator, OperatorSpec

from burnscope.common.messages import DEMO_BANNER
from burnscope.operators.batching.core import LaneCredit
from burnscope.operators.batching.operator import DynamicBatcherOp, LaneJoinOp
from burnscope.operators.burn_severity.operator import BurnSeverityOp
from burnscope.operators.decision_support.operator import DecisionSupportOp
from burnscope.operators.dicom_loader.service import DicomServiceSourceOp
from burnscope.operators.flow.ledger import RunLedger
from burnscope.operators.inference.operator import InferenceOp
from burnscope.operators.monitoring.core import InFlight, ServiceMetrics
from burnscope.operators.monitoring.operator import SettleOp
from burnscope.operators.preprocess.operator import PreprocessOp
from burnscope.operators.priority.core import PriorityRules
from burnscope.operators.report.core import LONG_RUNNING_MAX_STUDIES, ReportEmitter
from burnscope.operators.report.operator import ReportPoolOp
from burnscope.operators.sinks.folder import FolderSink
from burnscope.operators.sinks.operator import ErrorSinkOp, NetworkSinkOp

from .app import TriageComponents, configure_scheduler, open_journal, scp_options

log = logging.getLogger(__name__)

#: Exit codes of ``burnscope serve``: stopped with everything reported; the graph failed (an
#: operator raised, e.g. at start); stopped with images pending or lost (listed in summary.json).
EXIT_OK, EXIT_FAILED, EXIT_PENDING = 0, 1, 3


def path_problems(settings: dict[str, Any], output_dir: Path, watch: Path | None, listen: bool) -> list[str]:
    """Sources that would read the output folder (reports picked up as input), one line each."""
    out = Path(output_dir).resolve()
    problems = []

    def overlaps(a: Path, b: Path) -> bool:
        return a == b or a in b.parents or b in a.parents

    if watch is not None and overlaps(Path(watch).resolve(), out):
        problems.append(f"--watch {watch} and -o/--output {output_dir} overlap: the watcher would read the reports "
                        "as new images; use separate folders")
    spool = (settings["source"].get("scp") or {}).get("spool_dir")
    # the spool may be a sub-folder of the output folder (<output>/spool is the default), never
    # the output folder itself or a folder around it
    if listen and spool and Path(spool).resolve() in (out, *out.parents):
        problems.append(f"source.scp.spool_dir {spool} holds -o/--output {output_dir}: use a sub-folder "
                        "(the default is <output>/spool) or a folder of its own")
    return problems


@dataclass
class StopRequest:
    """What a signal asked for: ``requested`` (finish what is in flight) and ``forced`` (now)."""

    requested: threading.Event = field(default_factory=threading.Event)
    forced: threading.Event = field(default_factory=threading.Event)
    signum: int | None = None
    at: float | None = None

    def request(self, signum: int | None = None) -> None:
        if self.requested.is_set():
            self.forced.set()
            return
        self.signum, self.at = signum, time.monotonic()
        self.requested.set()


def _cpu_decode_options(source: dict[str, Any], image_size: int) -> dict[str, Any]:
    """The loader options of the service source: as ``run``'s watch and SCP sources (isolated
    CPU decoding, scaled JPEG decoding)."""
    from .decode_paths import loader_options

    options = loader_options(source, image_size, gpu=False)
    options.pop("gpu_jpeg")
    return options


class ServiceMonitorOp(Operator):
    """Ends the service graph when it is done (see the module docstring); ticks every 50 ms.

    Named inputs / outputs: none.

    Parameters:
        app: the :class:`BurnTriageService` (its source, batcher, pool and ledger).
        stop: the :class:`StopRequest`.
        timeout_s: longest wait for the images in flight after a stop request.
    """

    def __init__(self, fragment: Any, *args: Any, app: Any, stop: StopRequest, timeout_s: float, **kwargs: Any) -> None:
        self.app, self.stop_request, self.timeout_s = app, stop, float(timeout_s)
        self.outcome: str | None = None
        self._quiet_ticks = 0
        period = PeriodicCondition(fragment, recess_period=datetime.timedelta(milliseconds=50), name="monitor_tick")
        super().__init__(fragment, period, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        pass

    def _end(self, outcome: str) -> None:
        if self.outcome is None:
            self.outcome = outcome
            log.info("service: %s; ending the graph", outcome)
            self.fragment.stop_execution()

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        app, stop = self.app, self.stop_request
        if self.outcome is not None:
            return
        if stop.forced.is_set():
            return self._end("forced")
        if stop.requested.is_set():
            app.source.stop_accepting()
            if time.monotonic() - (stop.at or time.monotonic()) > self.timeout_s:
                return self._end("shutdown_timeout")
        app.metrics.accepting.set(1 if app.source.accepting else 0)
        idle = app.source.finished and app.in_flight.open == 0 and app.batcher.depth == 0 and app.pool.pending == 0
        self._quiet_ticks = self._quiet_ticks + 1 if idle else 0
        if self._quiet_ticks >= 3:  # settled on three ticks in a row: nothing is on its way
            self._end("drained")


class BurnTriageService(Application):
    """The service graph (see the module docstring).

    Parameters:
        settings: validated settings; ``source.scp`` is used when ``listen`` is True.
        output_dir: reports, ``errors.jsonl``, ``summary.json``, the outbox by default.
        components: from :func:`~.app.build_components` (with ``stat_engine`` for the emergency lane).
        listen: run the C-STORE SCP; watch: the folder to watch (None: none).
        metrics, in_flight, stop: shared with the HTTP server and the signal handling.
    """

    def __init__(self, settings: dict[str, Any], output_dir: str | os.PathLike, components: TriageComponents, *,
                 listen: bool, watch: str | os.PathLike | None, metrics: ServiceMetrics, in_flight: InFlight,
                 stop: StopRequest, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings, self.components = settings, components
        self.output_dir = Path(output_dir)
        self.listen, self.watch = listen, (Path(watch).absolute() if watch is not None else None)
        self.metrics, self.in_flight, self.stop_request = metrics, in_flight, stop
        self.name = "burn_triage_service"
        self.ops: dict[str, Any] = {}
        # the intake journal and the per-file ledger that marks it, as for `run --watch/--listen`
        self.journal = open_journal(settings, self.output_dir, service=True)
        # (with delivery, a file is done once its reports are in the outbox too)
        deliveries = bool((settings.get("delivery") or {}).get("destinations"))
        self.ledger = (RunLedger(deliveries=deliveries, on_file_done=self.journal.settle)
                       if self.journal is not None else None)

    def compose(self) -> None:
        s, c, m = self.settings, self.components, self.metrics
        src, batching = s["source"], s["batching"]
        stat_lane = bool(s["priority"]["stat_lane"]) and c.stat_engine is not None
        scp = scp_options(src, self.output_dir) if self.listen else None
        self.source = DicomServiceSourceOp(
            self, name="medical_images", scp=scp, watch_path=self.watch,
            poll_interval=min(0.05, float(src["watch"]["poll_interval"])),
            settle_seconds=float(src["watch"]["settle_seconds"]), batch_size=int(batching["max_batch"]),
            selector=src.get("select"), **_cpu_decode_options(src, c.preprocessor.image_size),
            priority_rules=PriorityRules.from_settings(s["priority"]), stop_after_idle=src.get("stop_after_idle"),
            max_files=src.get("max_files"), in_flight=self.in_flight, metrics=m, journal=self.journal,
            ledger=self.ledger,
        )
        imaging = PreprocessOp(self, name="imaging", preprocessor=c.preprocessor,
                               keep_thumbnails=s["preprocess"]["keep_thumbnails"], metrics=m)
        routine, stat = LaneCredit(), (LaneCredit() if stat_lane else None)
        self.batcher = DynamicBatcherOp(self, name="dynamic_batcher", max_batch=batching["max_batch"],
                                        max_delay_ms=batching["max_delay_ms"], routine_lane=routine,
                                        stat_lane=stat, metrics=m)
        tower = InferenceOp(self, name="biomedclip", engine=c.engine, lane=routine, metrics=m)
        diagnosis = BurnSeverityOp(self, name="burn_diagnosis", head=c.head)
        decision = DecisionSupportOp(self, name="clinical_decision_support",
                                     default_case=s["decision_support"].get("default_case") or {})
        # reports mirror the watched folder's sub-folders when it is the only source; else flat names
        root = str(self.watch) if self.watch is not None and not self.listen else None
        # max_studies: months of images must not grow the emitter's per-run state without bound
        emitter = ReportEmitter(s["report"]["formats"], source_root=root, date_format=s["report"]["date_format"],
                                max_studies=LONG_RUNNING_MAX_STUDIES)
        self.pool = ReportPoolOp(self, name="reporting_pool", emitter=emitter, workers=s["reporting"]["workers"],
                                 study_rollup=bool(s["report"].get("study_rollup", False)), metrics=m)
        settle = SettleOp(self, name="emr_integration", in_flight=self.in_flight, sink=FolderSink(self.output_dir),
                          metrics=m, ledger=self.ledger)
        errors = ErrorSinkOp(self, name="error_records", out_dir=self.output_dir)
        monitor = ServiceMonitorOp(self, name="service_monitor", app=self, stop=self.stop_request,
                                   timeout_s=s["service"]["shutdown_timeout_s"])
        self.add_operator(monitor)

        self.add_flow(self.source, imaging, {("images", "images")})
        self.add_flow(self.source, errors, {("errors", "errors")})
        self.add_flow(self.source, settle, {("errors", "errors")})
        self.add_flow(imaging, self.batcher, {("batch", "batch")})
        self.add_flow(self.batcher, tower, {("batch", "batch")})
        if stat_lane:
            tower_stat = InferenceOp(self, name="biomedclip_stat", engine=c.stat_engine, lane=stat, metrics=m)
            lanes = LaneJoinOp(self, name="lanes")
            self.add_flow(self.batcher, tower_stat, {("stat", "batch")})
            self.add_flow(tower_stat, lanes, {("embeddings", "stat")})
            self.add_flow(tower, lanes, {("embeddings", "routine")})
            self.add_flow(lanes, diagnosis, {("embeddings", "embeddings")})
        else:
            self.add_flow(tower, diagnosis, {("embeddings", "embeddings")})
        self.add_flow(diagnosis, decision, {("findings", "findings")})
        self.add_flow(decision, self.pool, {("decisions", "decisions")})
        self.add_flow(self.pool, settle, {("reports", "reports")})
        delivery = s.get("delivery") or {}
        if delivery.get("destinations"):
            self.network = NetworkSinkOp(
                self, name="pacs_emr_delivery", outbox_path=delivery.get("outbox") or self.output_dir / "outbox.sqlite",
                destinations=delivery["destinations"], echo=bool(delivery.get("echo", True)),
                drain_timeout_s=float(delivery.get("drain_timeout_s", 30)), max_attempts=delivery.get("max_attempts"),
                ledger=self.ledger,
            )
            self.add_flow(self.pool, self.network, {("reports", "reports")})
            self.ops[self.network.name] = self.network
        self.monitor = monitor
        self.ops.update({op.name: op for op in (self.source, imaging, self.batcher, tower, self.pool, settle, errors)})


def _outbox_counts(path: Path) -> Callable[[], dict]:
    """Outbox pending/failed per destination, read at scrape time (its own connection)."""
    import sqlite3

    def counts() -> dict:
        if not path.exists():
            return {}
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2) as db:
            rows = db.execute("SELECT destination, status, COUNT(*) FROM deliveries "
                              "WHERE status IN ('pending', 'delivering', 'failed') GROUP BY destination, status").fetchall()
        out: dict = {}
        for destination, status, n in rows:
            key = (destination, "failed" if status == "failed" else "pending")
            out[key] = out.get(key, 0) + n
        return out

    return counts


def add_readiness_checks(server: Any, settings: dict[str, Any], output_dir: Path, app_ref: dict) -> None:
    """``/readyz``: the model is warm and the graph runs, the source accepts, the output folder is
    writable, and (``metrics.check_destinations``) every network destination answers on TCP."""
    from urllib.parse import urlsplit

    from burnscope.operators.monitoring.core import CachedCheck, tcp_reachable

    def running() -> tuple[bool, str]:
        app = app_ref.get("app")
        ok = app is not None and getattr(app, "source", None) is not None and app.source.wait_started(0)
        return ok, "model warm, graph running" if ok else "loading the model / starting the graph"

    def accepting() -> tuple[bool, str]:
        app = app_ref.get("app")
        ok = app is not None and getattr(app, "source", None) is not None and app.source.accepting
        return ok, "accepting images" if ok else "not accepting (starting or shutting down)"

    def writable() -> tuple[bool, str]:
        ok = os.access(output_dir, os.W_OK)
        return ok, f"{output_dir} {'writable' if ok else 'not writable'}"

    server.add_check("model_warm", running)
    server.add_check("accepting", accepting)
    server.add_check("output_folder", writable)
    if settings["metrics"]["check_destinations"]:
        for d in (settings.get("delivery") or {}).get("destinations") or []:
            if d["kind"] == "cstore":
                host, port = d["host"], d["port"]
            else:
                url = urlsplit(d["url"])
                host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
            server.add_check(f"destination:{d['name']}", CachedCheck(lambda h=host, p=port: tcp_reachable(h, p)))


def serve_triage(
    settings: dict[str, Any],
    output_dir: str | os.PathLike,
    components: TriageComponents,
    *,
    listen: bool,
    watch: str | os.PathLike | None,
    metrics: ServiceMetrics | None = None,
    server: Any = None,
    stop: StopRequest | None = None,
    install_signals: bool = True,
    on_started: Callable[[BurnTriageService], None] | None = None,
    in_flight: InFlight | None = None,
) -> tuple[dict[str, Any], int]:
    """Run the service until it is stopped or done; returns ``(summary, exit code)``.

    ``server``: a started :class:`~burnscope.operators.monitoring.core.HealthServer` (its
    readiness checks are added here). ``install_signals``: SIGTERM/SIGINT request a stop (the
    second one: at once), installed once the graph runs (Holoscan installs its own at start);
    False when called from another thread than the main one (benchmarks, embedding code).
    """
    output_dir = Path(output_dir)
    metrics = metrics or ServiceMetrics()
    in_flight = in_flight or InFlight(metrics)
    stop = stop or StopRequest()
    metrics.set_model(components.model_info)
    metrics.watch_gpu()
    delivery = settings.get("delivery") or {}
    if delivery.get("destinations"):
        metrics.watch_outbox(_outbox_counts(Path(delivery.get("outbox") or output_dir / "outbox.sqlite")))
    app = BurnTriageService(settings, output_dir, components, listen=listen, watch=watch, metrics=metrics,
                            in_flight=in_flight, stop=stop)
    configure_scheduler(app, settings)
    app_ref = {"app": app}
    if server is not None:
        add_readiness_checks(server, settings, output_dir, app_ref)
    started = time.perf_counter()
    future = app.run_async()
    # compose() runs in Holoscan's thread: wait for the source, then for it to start (the SCP listens)
    while not future.done() and not (getattr(app, "source", None) is not None and app.source.wait_started(0.05)):
        time.sleep(0.01)
    if install_signals:
        previous = {sig: signal.signal(sig, lambda signum, _frame: stop.request(signum))
                    for sig in (signal.SIGTERM, signal.SIGINT)}
    if on_started is not None and not future.done():
        on_started(app)
    forced_at = None
    try:
        while not future.done():
            if stop.forced.is_set() and forced_at is None:
                forced_at = time.monotonic()
            if forced_at is not None and time.monotonic() - forced_at > 5:
                # the graph did not end in time (a stage stuck in native code): record, then go
                summary = summarise_service(app, time.perf_counter() - started, "forced")
                write_summary(summary, output_dir)
                log.error("forced stop: %d image(s) pending, listed in summary.json", summary["accounting"]["pending"])
                os._exit(EXIT_PENDING)
            time.sleep(0.05)
        future.result()
    finally:
        if install_signals:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    # the monitor ends every healthy run; without its outcome an operator failed (Holoscan logged it)
    outcome = getattr(getattr(app, "monitor", None), "outcome", None) or "failed"
    summary = summarise_service(app, time.perf_counter() - started, outcome)
    write_summary(summary, output_dir)
    if app.journal is not None:
        app.journal.close()
    if outcome == "failed":
        log.error("the service graph stopped on an error (see the log above); summary.json lists what was pending")
        return summary, EXIT_FAILED
    code = EXIT_OK if summary["accounting"]["pending"] == 0 and summary["accounting"]["lost"] == 0 else EXIT_PENDING
    return summary, code


def summarise_service(app: BurnTriageService, wall_s: float, outcome: str) -> dict[str, Any]:
    """summary.json of a service run: what was accepted and how it ended (no patient data)."""
    ledger = app.in_flight.accounting()
    if getattr(app, "source", None) is None:  # compose() never ran
        return {"mode": "serve", "outcome": outcome, "accounting": {**ledger, "lost": 0}, "pending": []}
    pending = app.in_flight.pending_labels()
    accounting = {"accepted": ledger["accepted"], "reported": ledger["reported"], "errors": ledger["errors"],
                  "skipped": ledger["skipped"], "pending": ledger["pending"],
                  # a stop with images pending (forced, timed out) leaves them pending in the intake
                  # journal, their files in the spool / watched folder: the next start reports them
                  "lost": 0}
    info = app.components.model_info
    source = app.source
    summary: dict[str, Any] = {
        "mode": "serve",
        "outcome": outcome,
        "sources": {"scp": source.scp is not None, "watch": str(app.watch) if app.watch else None},
        "accounting": accounting,
        "pending": pending,
        "files": source.files_seen,
        "skipped_by_selection": source.files_skipped,
        "images": source.images_emitted,
        "reports": ledger["reported"],
        "errors": source.errors_emitted,
        "rejected_associations": source.scp.rejected if source.scp is not None else 0,
        "batches": dict(app.batcher.batches_emitted),
        "wall_s": round(wall_s, 3),
        "model": {"name": info.name, "weights": info.weights, "demo": info.demo, "backend": info.backend,
                  "precision": info.precision, "device": info.device},
        "output_dir": str(app.output_dir),
    }
    if app.journal is not None:
        left = app.journal.pending()  # files, undecoded ones too: what the next start reports
        summary["journal"] = {"path": str(app.journal.path), "pending": len(left), "failures": app.journal.failures,
                              "pending_files": [e.path.name for e in left[:1000]]}  # names only, no folders
    network = app.ops.get("pacs_emr_delivery")
    if network is not None:
        summary["delivery"] = {"enqueued": network.enqueued, "delivered": network.delivered,
                               "failed": network.failed, "pending": network.pending}
    if info.demo:
        summary["warning"] = DEMO_BANNER
    return summary


def write_summary(summary: dict[str, Any], output_dir: Path) -> None:
    from .runner import write_json

    write_json(summary, Path(output_dir) / "summary.json")


__all__ = ["BurnTriageService", "EXIT_FAILED", "EXIT_OK", "EXIT_PENDING", "ServiceMonitorOp", "StopRequest", "path_problems",
           "serve_triage", "summarise_service"]
