"""Run burn-triage as fragments in this process (``--driver``/``--worker``/``--fragments``) and summarise.

Holoscan's exit status cannot tell a lost worker from a finished run (a process whose peer died
ends with 0, and a driver whose worker died waits for ever), so burnscope keeps its own account:

* every fragment sends heartbeats and a counted end of stream (:mod:`.link_ops`);
* a :class:`LinkWatchdog` thread in every process watches the fragments upstream of its own:
  none heard within ``distributed.startup_timeout_s`` of the start (a worker that never
  connected), or one silent for ``distributed.link_timeout_s`` before the end of stream (a host
  gone, a link cut) ends the process with exit code 3, after writing the summary (the process
  that runs ``reporting``: ``summary.json`` with the accounting and the images not reported);
* a process whose fragments ended without the end of stream exits 3 as well.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from burnscope.common.messages import DEMO_BANNER

from .fragments import DistributedOptions, DistributedTriageApp, apply_environment_defaults
from .link_ops import INFERENCE, INGEST, REPORTING

log = logging.getLogger(__name__)

EXIT_LINK_LOST = 3

#: The fragments whose heartbeats a fragment receives.
UPSTREAM = {INGEST: (), INFERENCE: (INGEST,), REPORTING: (INGEST, INFERENCE)}


class LinkWatchdog(threading.Thread):
    """Watches the heartbeats of the fragments upstream of this process's fragments.

    Parameters:
        app: the :class:`DistributedTriageApp` (its ``stats`` and ``local`` fragments).
        done: ``() -> bool``: the run has everything it needs (nothing more to watch).
        on_lost: ``(reason: dict)``, called once from this thread when a link is lost; it is
            expected not to return (it writes the summary and ends the process).
        startup_timeout_s, link_timeout_s: see the module docstring.
    """

    def __init__(self, app: DistributedTriageApp, done: Callable[[], bool], on_lost: Callable[[dict], None],
                 startup_timeout_s: float = 120.0, link_timeout_s: float = 30.0, poll_s: float = 0.2) -> None:
        super().__init__(name="link-watchdog", daemon=True)
        self.app, self.done, self.on_lost = app, done, on_lost
        self.startup_timeout_s, self.link_timeout_s, self.poll_s = float(startup_timeout_s), float(link_timeout_s), poll_s
        self.watched = sorted({f for local in app.local for f in UPSTREAM[local]} - {None})
        self._stop = threading.Event()
        self.fired: dict | None = None

    def stop(self) -> None:
        self._stop.set()

    def check(self, now: float) -> dict | None:
        """The reason to give up, or None (one check; the thread calls it every ``poll_s``)."""
        stats = self.app.stats
        for fragment in self.watched:
            if fragment in stats.eos:
                continue
            heard = stats.last_heard(fragment)
            if heard is None:
                if now - stats.started_at >= self.startup_timeout_s:
                    # which links did come up tells a worker that never joined from a link that never opened
                    return {"outcome": "link_lost", "fragment": fragment, "why": "never connected",
                            "waited_s": round(now - stats.started_at, 1),
                            "heard": sorted(f for f in self.watched if stats.last_heard(f) is not None)}
            elif now - heard >= self.link_timeout_s:
                return {"outcome": "link_lost", "fragment": fragment, "why": "went silent",
                        "silent_s": round(now - heard, 1)}
        return None

    def run(self) -> None:
        while not self._stop.wait(self.poll_s):
            if self.done():
                return
            reason = self.check(time.monotonic())
            if reason is not None:
                self.fired = reason
                self.on_lost(reason)
                return


def run_distributed(
    settings: dict[str, Any],
    input_path: str | os.PathLike | None,
    output_dir: str | os.PathLike | None,
    options: DistributedOptions,
    model: str | None = None,
    components: Any = None,
    on_progress: Callable[..., None] | None = None,
    summary_path: str | os.PathLike | None = None,
    exit_on_lost: bool = True,
    handle_signals: bool = False,
) -> dict[str, Any]:
    """Run this process's fragments; return its summary (see :func:`summarise_distributed`).

    ``summary_path``: where the reporting process writes ``summary.json`` also when the run is
    cut short by the watchdog (which then ends the process with :data:`EXIT_LINK_LOST` unless
    ``exit_on_lost`` is False, for tests: the summary is then returned once ``run()`` ends).
    ``handle_signals`` (main thread only): in the process that runs ``reporting``, SIGINT/SIGTERM
    ask for a graceful stop as in a single-process run (the source here stops taking input, what
    is in flight drains for ``run.grace_s``); elsewhere Holoscan's own handler stops at once.
    """
    options.validate()
    apply_environment_defaults()
    app = DistributedTriageApp(settings, input_path, output_dir, options, model=model, components=components,
                               on_progress=on_progress)
    d = settings.get("distributed") or {}
    started = time.perf_counter()

    def on_lost(reason: dict) -> None:
        summary = summarise_distributed(app, time.perf_counter() - started, lost=reason)
        if summary_path is not None:
            _write(summary, summary_path)
        heard = f" (heard from: {', '.join(reason['heard']) or 'none'})" if "heard" in reason else ""
        line = (f"burnscope: fragment '{reason['fragment']}' {reason['why']}{heard}; "
                f"{summary['exit']['reason']}")
        print(line, file=sys.stderr, flush=True)
        if exit_on_lost:
            logging.shutdown()
            os._exit(EXIT_LINK_LOST)  # Holoscan would wait for the lost worker for ever

    watchdog = LinkWatchdog(app, done=lambda: _done(app), on_lost=on_lost,
                            startup_timeout_s=float(d.get("startup_timeout_s", 120.0)),
                            link_timeout_s=float(d.get("link_timeout_s", 30.0)))
    watchdog.start()
    error: BaseException | None = None
    try:
        if handle_signals and REPORTING in app.local and threading.current_thread() is threading.main_thread():
            from .runner import _run_with_signals

            _run_with_signals(app)
        else:
            app.run()
    except Exception as exc:  # an operator of a local fragment raised
        error = exc
        log.error("the graph stopped on an error: %s: %s", type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
    finally:
        watchdog.stop()
        if app.journal is not None:
            app.journal.close()
    summary = summarise_distributed(app, time.perf_counter() - started, lost=watchdog.fired, error=error)
    if summary_path is not None and REPORTING in app.local:
        _write(summary, summary_path)
    return summary


def _done(app: DistributedTriageApp) -> bool:
    """This process has had all it waits for from upstream."""
    ops = app.ops
    if REPORTING in app.local:
        control = ops.get("reporting_control")
        return bool(control is not None and control.ended)
    if INFERENCE in app.local:
        control = ops.get("inference_control")
        return bool(control is not None and control.eos_sent)
    return True


def _local_complete(app: DistributedTriageApp) -> bool:
    ops = app.ops
    checks = {
        INGEST: lambda: bool(getattr(ops.get("ingest_control"), "eos_sent", False)),
        INFERENCE: lambda: bool(getattr(ops.get("inference_control"), "eos_sent", False)),
        REPORTING: lambda: bool(getattr(ops.get("reporting_control"), "ended", False)),
    }
    return all(checks[f]() for f in app.local)


def summarise_distributed(app: DistributedTriageApp, wall_s: float, lost: dict | None = None,
                          error: BaseException | None = None) -> dict[str, Any]:
    """The run's summary from this process's point of view.

    The process that runs ``reporting`` gives the same keys as a single-process run
    (:func:`~.runner.summarise`) plus ``distributed`` (fragments here, bytes per link); another
    process gives ``distributed`` and ``exit`` only.
    """
    stats = app.stats
    complete = _local_complete(app) and lost is None and error is None
    dist: dict[str, Any] = {
        "fragments": list(app.local),
        "links": stats.table(),
        "end_of_stream": {f: True for f in stats.eos},
        "complete": complete,
    }
    if lost is not None:
        dist["lost"] = lost
    summary: dict[str, Any] = {}
    if REPORTING in app.local:
        summary = _reporting_summary(app, wall_s)
    summary["distributed"] = dist
    summary["wall_s"] = round(wall_s, 3)
    if error is not None:
        summary.setdefault("run", {})["error"] = type(error).__name__
    code, reason = _exit(summary, complete, lost, error)
    summary["exit"] = {"code": code, "reason": reason}
    return summary


def _reporting_summary(app: DistributedTriageApp, wall_s: float) -> dict[str, Any]:
    """The keys of a single-process summary, from the reporting fragment's ledger and sinks."""
    stats = app.stats
    eos = stats.eos.get(INGEST)
    counters = dict(eos.counters) if eos is not None else {}
    source = app.ops.get("medical_images")
    if source is not None:  # ingest here too: its own counters, also when cut short
        counters = {"files": getattr(source, "files_total", source.files_done),
                    "skipped_by_selection": getattr(source, "files_skipped", 0),
                    "images": source.images_emitted, "errors": source.errors_emitted,
                    "files_not_started": getattr(source, "files_not_started", 0)}
    reports = app.ops.get("emr_integration")
    findings, errors = app.tallies.get("findings"), app.tallies.get("errors")
    info = stats.model
    summary: dict[str, Any] = {
        "files": counters.get("files", 0),
        "skipped_by_selection": counters.get("skipped_by_selection", 0),
        "images": counters.get("images", 0),
        "reports": reports.written if reports is not None else 0,
        "errors": counters.get("errors", 0),
        "findings": dict(sorted(findings.labels.items())) if findings is not None else {},
        "error_reasons": dict(sorted(errors.labels.items())) if errors is not None else {},
        "model": ({"name": info.name, "weights": info.weights, "demo": info.demo, "backend": info.backend,
                   "precision": info.precision, "device": info.device} if info is not None else None),
        "output_dir": str(app.output_dir) if app.output_dir else None,
    }
    network = app.ops.get("pacs_emr_delivery")
    if network is not None:
        summary["delivery"] = {"enqueued": network.enqueued, "delivered": network.delivered, "failed": network.failed,
                               "pending": network.pending, "not_queued": network.not_queued}
    stop = app.stop_request
    summary["accounting"] = app.ledger.accounting(interrupted=bool(stop))
    join = app.ops.get("reporting_join")
    sent = max([stats.sent_batches(INGEST)] + ([eos.batches] if eos is not None else []))
    joined = join.joined if join is not None else 0
    if sent > joined:  # batches ingest sent that never reached the ledger here (another host's images)
        summary["accounting"]["batches_not_received"] = sent - joined
    summary["run"] = {
        "outcome": app.monitor.outcome or "ended_by_scheduler",
        "signal": signal.Signals(stop.signum).name if stop.signum else None,
        "files_not_started": counters.get("files_not_started", 0),
    }
    if app.hung:
        summary["run"]["hung"] = True
    if app.journal is not None:
        summary["journal"] = {"path": str(app.journal.path), "failures": app.journal_failures}
    if info is not None and info.demo:
        summary["warning"] = DEMO_BANNER
    return summary


def _exit(summary: dict[str, Any], complete: bool, lost: dict | None, error: BaseException | None) -> tuple[int, str]:
    """The exit status of this process: :func:`~.runner.exit_code`'s table, and 3 when a link was lost."""
    from .runner import EXIT_LOST, exit_code

    acc = summary.get("accounting") or {}
    missing = int(acc.get("lost") or 0) + int(acc.get("pending") or 0)
    unseen = int(acc.get("batches_not_received") or 0)
    tail = f"{missing} image(s) not reported" + (f", {unseen} batch(es) never received" if unseen else "")
    if lost is not None:
        return EXIT_LOST, f"link to '{lost['fragment']}' lost ({lost['why']}); {tail}"
    if error is not None:
        return 1, f"a fragment stopped on an error ({type(error).__name__})"
    if not complete:
        return EXIT_LOST, f"the fragments ended without the end of stream; {tail}"
    if "accounting" in summary:
        return exit_code(summary)
    return 0, "ok"


def _write(data: dict[str, Any], path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


__all__ = ["EXIT_LINK_LOST", "LinkWatchdog", "run_distributed", "summarise_distributed"]
