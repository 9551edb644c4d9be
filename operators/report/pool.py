"""Reporting off the hot path: standards rendering in a pool of worker processes (no Holoscan).

SR, PDF, Encapsulated PDF, FHIR and SC rendering cost tens of milliseconds per image on a CPU
core; in the graph they would hold up inference. :class:`ReportingPool` renders
:class:`~burnscope.operators.report.core.RenderTask` s (:func:`~.core.render_standard`) in worker
processes while the emitter — which keeps the per-run state: report names, instance numbers,
study roll-ups — stays in the main process (:meth:`~.core.ReportEmitter.prepare` before,
:meth:`~.core.ReportEmitter.finish` after). What crosses the process boundary is the task: the
decision (finding, case data, a 128-px thumbnail — never the image's pixels), the report dict and
the planned identifiers; what comes back is the rendered bytes. Reports are byte-identical to
rendering in the graph, by construction (the same three steps).

Priority: at most one task per worker is handed to the processes; the rest wait here in a
:class:`~burnscope.operators.priority.core.PriorityQueue`, so a STAT report overtakes every
queued routine one. A worker that dies (a native crash in a renderer) costs the standards
artefacts of the reports it held — they become ``report_<format>_failed`` error records, the JSON
and text reports are still written — and the pool is restarted.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from burnscope.common.messages import ROUTINE, ErrorRecord
from burnscope.operators.priority.core import PriorityQueue
from burnscope.operators.report.core import RenderTask, render_standard

log = logging.getLogger(__name__)


def default_workers(cores: int | None = None) -> int:
    """Worker processes for ``cores`` CPU cores: one core is left to the graph (inference,
    decoding), at least one worker, at most eight."""
    if cores is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            cores = os.cpu_count() or 1
    return max(1, min(8, int(cores) - 1))


def _warm_worker(source_date_epoch: str | None = None) -> None:
    """Worker initializer: import the renderers' libraries once, not on the first report.

    ``source_date_epoch``: the caller's ``SOURCE_DATE_EPOCH`` now — a forkserver child inherits
    the environment the server had when it first started, not the caller's current one, and the
    PDF renderer reads it (reproducible reports must not depend on which pool started first).
    """
    import logging as _logging

    if source_date_epoch is None:
        os.environ.pop("SOURCE_DATE_EPOCH", None)
    else:
        os.environ["SOURCE_DATE_EPOCH"] = source_date_epoch

    _logging.getLogger("highdicom").setLevel(_logging.WARNING)
    from burnscope.operators.report import dicom, fhir, pdf, secondary_capture, standards  # noqa: F401


def _render_in_worker(task: RenderTask) -> tuple[RenderTask, float]:
    started = time.perf_counter()
    done = render_standard(task)
    return done, time.perf_counter() - started


@dataclass
class Rendered:
    """A finished task and its times: ``queued_s`` waiting for a worker, ``render_s`` rendering."""

    task: RenderTask
    queued_s: float
    render_s: float
    priority: str = ROUTINE


class ReportingPool:
    """See the module docstring.

    Parameters:
        workers: worker processes; 0 renders in the calling thread (what the graph did before);
            None: :func:`default_workers`.
        start_method: multiprocessing start method (``forkserver``: forking a process that runs
            Holoscan's threads is unsafe).
    """

    def __init__(self, workers: int | None = None, start_method: str = "forkserver") -> None:
        self.workers = default_workers() if workers is None else max(0, int(workers))
        self.start_method = start_method
        self._queue: PriorityQueue[tuple[RenderTask, float, str]] = PriorityQueue()
        self._done: list[Rendered] = []
        self._in_flight: dict[Future, tuple[RenderTask, float, float, str]] = {}
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self.restarts = 0
        self.rendered = 0
        self.failed = 0

    # -- life cycle ----------------------------------------------------------------------
    def start(self) -> "ReportingPool":
        """Start the worker processes and wait until each has imported the renderers."""
        if self.workers and self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=multiprocessing.get_context(self.start_method),
                initializer=_warm_worker, initargs=(os.environ.get("SOURCE_DATE_EPOCH"),),
            )
            # one no-op per worker so every process is up (and warm) before the first image
            for f in [self._executor.submit(time.sleep, 0.05) for _ in range(self.workers)]:
                f.result()
        return self

    def close(self, wait: bool = True) -> None:
        """Stop the workers (``wait``: after the tasks they hold; queued tasks are dropped — call
        :meth:`drain` first to finish them)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=wait, cancel_futures=True)

    def __enter__(self) -> "ReportingPool":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- work ----------------------------------------------------------------------------
    def submit(self, task: RenderTask, priority: str = ROUTINE) -> None:
        """Queue ``task`` (STAT first); it is handed to a worker as soon as one is free. A task
        with no standards format (JSON and text only) is finished here: nothing to send away."""
        if not self.workers or not task.formats:  # in the calling thread
            started = time.perf_counter()
            render_standard(task)
            with self._lock:
                self._done.append(Rendered(task, 0.0, time.perf_counter() - started, priority))
                self.rendered += 1
            return
        self._queue.push((task, time.perf_counter(), priority), priority)
        self._dispatch()

    def _dispatch(self) -> None:
        with self._lock:
            if self._executor is None and self._queue:
                self.start()
            while len(self._in_flight) < self.workers and self._queue:
                task, queued_at, priority = self._queue.pop()
                try:
                    future = self._executor.submit(_render_in_worker, task)
                except BrokenProcessPool:
                    self._queue.push((task, queued_at, priority), priority)
                    self._restart_locked()
                    continue
                self._in_flight[future] = (task, queued_at, time.perf_counter(), priority)

    def _restart_locked(self) -> None:
        log.error("a report renderer process died; restarting the reporting pool")
        broken, self._executor = self._executor, None
        if broken is not None:
            broken.shutdown(wait=False, cancel_futures=True)
        self.restarts += 1
        self.start()

    def _fail(self, task: RenderTask, why: str) -> RenderTask:
        ctx = task.decision.finding.context
        for name in task.formats:
            message = f"{why} while rendering"
            task.bundle.errors.append(ErrorRecord(ctx.source, f"report_{name}_failed", message,
                                                  ctx.sop_instance_uid, stage="report"))
            task.report.setdefault("render_errors", []).append({"format": name, "message": message})
        return task

    def collect(self) -> list[Rendered]:
        """Finished tasks since the last call (STAT ones first among them), and hands queued tasks
        to the workers that became free."""
        broken = False
        with self._lock:
            for future in [f for f in self._in_flight if f.done()]:
                task, queued_at, sent_at, priority = self._in_flight.pop(future)
                try:
                    done, render_s = future.result()
                    self.rendered += 1
                except BrokenProcessPool:
                    done, render_s, broken = self._fail(task, "the renderer process died"), 0.0, True
                    self.failed += 1
                except Exception as exc:  # noqa: BLE001 - e.g. a task that cannot be pickled
                    done, render_s = self._fail(task, type(exc).__name__), 0.0
                    self.failed += 1
                self._done.append(Rendered(done, sent_at - queued_at, render_s, priority))
            if broken:
                self._restart_locked()
            out, self._done = sorted(self._done, key=lambda r: r.priority != "stat"), []
        self._dispatch()
        return out

    def drain(self, timeout_s: float | None = None, poll_s: float = 0.005) -> list[Rendered]:
        """Everything queued and in flight, finished (or what finished before ``timeout_s``)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        out: list[Rendered] = []
        while self.pending:
            out += self.collect()
            if deadline is not None and time.monotonic() >= deadline:
                break
            time.sleep(poll_s)
        return out + self.collect()

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def pending(self) -> int:
        """Tasks not yet collected: queued, in a worker, or finished and waiting for :meth:`collect`."""
        with self._lock:
            return len(self._queue) + len(self._in_flight) + len(self._done)


__all__ = ["ReportingPool", "Rendered", "default_workers"]
