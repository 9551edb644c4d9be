"""Run the burn-triage graph once and summarise it.

Used by ``burnscope run burn-triage``, by the headless benchmark
(:mod:`burnscope.benchmarks.burn_triage`, ``burnscope bench burn-triage``) and by the tests.

The summary's ``accounting`` block is the run's ledger: every image the source accepted ends as
a report, an error record or a counted skip; what did not is ``lost`` (or ``pending`` after an
interruption) and listed by SOP Instance UID and file name. :func:`exit_code` turns a summary
into the process exit status (docs/reliability.md):

====  ============================================================================================
0     every accepted image reported or recorded as an error (bad input files are not a failure)
1     nothing could be processed
2     bad options or input, before the run (the CLI's ``fail``)
3     images lost: accepted but neither reported nor recorded (or reported twice); listed
4     output failed: reports that could not be written (disk full, read-only) or handed to the
      outbox; listed
130   stopped by SIGINT (Ctrl-C), 143 by SIGTERM: in-flight images finished, or are ``pending``
====  ============================================================================================
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable

from burnscope.common.messages import DEMO_BANNER
from burnscope.operators.flow.monitor import StopRequest

from .app import BurnTriageApp, TriageComponents, configure_scheduler

log = logging.getLogger(__name__)

SOURCE_OP = "medical_images"
REPORT_SINK_OP = "emr_integration"

EXIT_OK, EXIT_NOTHING, EXIT_USAGE, EXIT_LOST, EXIT_OUTPUT = 0, 1, 2, 3, 4
EXIT_SIGNAL_BASE = 128
#: After a forced stop (a second signal), how long the main thread still waits for the graph.
HARD_STOP_WAIT_S = 10.0


def run_triage(
    settings: dict[str, Any],
    input_path: str | os.PathLike,
    output_dir: str | os.PathLike | None,
    components: TriageComponents,
    on_progress: Callable[..., None] | None = None,
    flow_log: str | os.PathLike | None = None,
    return_app: bool = False,
    stop: StopRequest | None = None,
    handle_signals: bool = False,
    on_ready: Callable[[], None] | None = None,
) -> dict[str, Any] | tuple[dict[str, Any], BurnTriageApp]:
    """Compose and run the graph once; return a summary (counts, findings per class, errors,
    accounting, how the run ended).

    ``flow_log``: when given, Holoscan's data-flow tracker logs every message's path with
    timestamps there (see :func:`burnscope.benchmarks.burn_triage.latencies_from_flow_log`). ``return_app``: also return the
    app, whose operators hold their counters. ``stop``: a :class:`StopRequest` the caller may set
    to end the run gracefully. ``handle_signals`` (main thread only): SIGINT and SIGTERM set it
    (a second one stops without waiting for in-flight work). ``on_ready``: see :class:`BurnTriageApp`.

    A graph error (an operator raised) does not escape: the summary says ``run.outcome: error``
    and the accounting lists what it cost.
    """
    from burnscope.engines.base import INSTRUMENT_REFUSAL, is_instrument

    if output_dir is not None and is_instrument(components.model_info):
        raise ValueError(INSTRUMENT_REFUSAL)  # the benchmark's tower stand-in writes no reports
    app = BurnTriageApp(settings, input_path, output_dir, components, on_progress=on_progress, stop=stop,
                        on_ready=on_ready)
    configure_scheduler(app, settings)
    started = time.perf_counter()
    error: BaseException | None = None
    try:
        if flow_log is not None:
            from holoscan.core import Tracker

            with Tracker(app, filename=str(flow_log), num_start_messages_to_skip=0, num_last_messages_to_discard=0):
                app.run()
        elif handle_signals and threading.current_thread() is threading.main_thread():
            _run_with_signals(app)
        else:
            app.run()
    except Exception as exc:  # an operator raised: Holoscan ends the graph and run() re-raises
        error = exc
        log.error("the graph stopped on an error: %s: %s", type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
    finally:
        if app.journal is not None:
            app.journal.close()
    wall_s = time.perf_counter() - started
    summary = summarise(app, wall_s, error=error)
    return (summary, app) if return_app else summary


def _run_with_signals(app: BurnTriageApp) -> None:
    """``app.run()`` with SIGINT/SIGTERM asking for a graceful stop instead of killing the graph.

    Holoscan installs its own interrupt handler when the graph starts (it stops the graph at
    once); the graph runs on a helper thread so that the main thread can install burnscope's
    handlers after Holoscan's and serve them.
    """
    stop = app.stop_request

    def on_signal(signum, _frame):
        first = not stop
        stop.request(signum)
        name = signal.Signals(signum).name
        if first:
            log.warning("%s: finishing the images in flight (at most %.0f s; again to stop now)", name, app.monitor.grace_s)
        else:
            log.warning("%s again: stopping now; images in flight are recorded as pending", name)

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, on_signal)
    future = app.run_async()
    try:
        installed_after_start = False
        forced_at: float | None = None
        while True:
            if not installed_after_start and (app.monitor.wait_started(0) or future.done()):
                for sig in previous:  # after Holoscan's own handler, which would stop the graph at once
                    signal.signal(sig, on_signal)
                installed_after_start = True
            if stop.forced and forced_at is None:
                forced_at = time.monotonic()
            if forced_at is not None and time.monotonic() - forced_at > app.monitor.grace_s + HARD_STOP_WAIT_S:
                app.stop_execution()
                log.error("the graph did not stop; giving up waiting for it")
                app.hung = True  # the caller exits without joining the graph's threads
                return
            try:
                future.result(timeout=0.1)
                return
            except FutureTimeout:
                continue
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if not app.hung:
            app.shutdown_async_executor()


def summarise(app: BurnTriageApp, wall_s: float, error: BaseException | None = None) -> dict[str, Any]:
    source = app.ops[SOURCE_OP]
    reports = app.ops[REPORT_SINK_OP]
    findings, errors = app.tallies["findings"], app.tallies["errors"]
    info = app.components.model_info
    summary = {
        "files": getattr(source, "files_total", source.files_done),
        "skipped_by_selection": getattr(source, "files_skipped", 0),
        "images": source.images_emitted,
        # reports the sink wrote (folder) or received (headless)
        "reports": reports.written if hasattr(reports, "written") else reports.count,
        "errors": source.errors_emitted,
        "findings": dict(sorted(findings.labels.items())),
        "error_reasons": dict(sorted(errors.labels.items())),
        "wall_s": round(wall_s, 3),
        "model": {
            "name": info.name,
            "weights": info.weights,
            "demo": info.demo,
            "backend": info.backend,
            "precision": info.precision,
            "device": info.device,
        },
        "output_dir": str(app.output_dir) if app.output_dir else None,
    }
    if hasattr(source, "rejected_associations"):  # the C-STORE SCP's access control
        summary["rejected_associations"] = source.rejected_associations
    network = app.ops.get("pacs_emr_delivery")
    if network is not None:
        summary["delivery"] = {
            "enqueued": network.enqueued, "delivered": network.delivered,
            "failed": network.failed, "pending": network.pending, "not_queued": network.not_queued,
        }
    stop = app.stop_request
    interrupted = bool(stop)
    outcome = app.monitor.outcome or ("error" if error is not None else "ended_by_scheduler")
    summary["accounting"] = app.ledger.accounting(interrupted=interrupted)
    summary["run"] = {
        "outcome": outcome,
        "signal": signal.Signals(stop.signum).name if stop.signum else None,
        "files_not_started": getattr(source, "files_not_started", 0),
    }
    if error is not None:
        summary["run"]["error"] = type(error).__name__
    if app.hung:
        summary["run"]["hung"] = True
    if app.journal is not None:
        summary["journal"] = {"path": str(app.journal.path), "failures": app.journal_failures}
    errors_sink = app.ops.get("error_records")
    if getattr(errors_sink, "sink", None) is not None and errors_sink.sink.write_failures:
        summary["accounting"]["error_record_write_failures"] = errors_sink.sink.write_failures
    if info.demo:
        summary["warning"] = DEMO_BANNER
    code, reason = exit_code(summary)
    summary["exit"] = {"code": code, "reason": reason}
    return summary


def exit_code(summary: dict[str, Any]) -> tuple[int, str]:
    """The process exit status for a run's summary, and why (the table in the module docstring)."""
    acc = summary.get("accounting") or {}
    run = summary.get("run") or {}
    if acc.get("lost") or acc.get("duplicates"):
        return EXIT_LOST, (f"{acc.get('lost', 0)} image(s) lost, {acc.get('duplicates', 0)} reported twice"
                           if acc.get("duplicates") else f"{acc['lost']} image(s) lost")
    if run.get("signal"):
        sig = getattr(signal, run["signal"], None)
        pending = acc.get("pending", 0)
        return EXIT_SIGNAL_BASE + int(sig or 0), f"stopped by {run['signal']}" + (f", {pending} pending" if pending else "")
    failures = len(acc.get("write_failures") or ()) + int(acc.get("not_queued") or 0) + int(
        acc.get("error_record_write_failures") or 0)
    if failures:
        return EXIT_OUTPUT, f"{failures} output(s) could not be written or queued"
    if not summary.get("reports"):
        return EXIT_NOTHING, "no image could be processed"
    return EXIT_OK, "ok"


def write_json(data: dict[str, Any], path: str | os.PathLike) -> None:
    from burnscope.common.private_files import write_private

    write_private(path, json.dumps(data, indent=2) + "\n")  # 0600, in a 0700 folder when it makes one
