"""The service's source: a C-STORE SCP and a watched folder at once, feeding one graph, STAT first.

* :class:`ServiceStoreSCP` — :class:`~burnscope.operators.dicom_loader.scp.StoreSCP` that also
  keeps what the C-STORE request says about each instance (DIMSE Priority, calling AE, when it
  arrived), applies pynetdicom's timeouts (an association that sends nothing, or sends slowly,
  is closed after them; each association has its own thread, so it never holds up the others),
  and can stop accepting: new associations are then rejected (A-ASSOCIATE-RJ, rejected-transient,
  "local limit exceeded" — a modality retries later) while those under way finish.
* :class:`DicomServiceSourceOp` — the Holoscan source of ``burnscope serve``.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from burnscope.operators.holoscan_runtime import holoscan  # noqa: F401  (preloads libcudart)
from holoscan.core import Operator

from burnscope.common.messages import ROUTINE, STAT, ErrorRecord, ImageRecord, priority_rank
from burnscope.operators.dicom_loader.core import DEFAULT_IGNORE, DEFAULT_MAX_PIXELS, DicomLoader
from burnscope.operators.dicom_loader.operator import _as_selector, _ErrorsPortMixin, _with_poll_period
from burnscope.operators.dicom_loader.scp import StoreSCP
from burnscope.operators.dicom_loader.watcher import IN_PROGRESS_PATTERNS, FolderWatcher
from burnscope.operators.priority.core import PriorityQueue, PriorityRules, mark

log = logging.getLogger("burnscope.dicom_loader.service")

#: pynetdicom's timeouts (seconds): ACSE (association messages), DIMSE (a message of a service)
#: and network (an association silent for this long is closed).
DEFAULT_TIMEOUTS = {"acse_s": 30.0, "dimse_s": 30.0, "network_s": 60.0}


def apply_timeouts(scp: StoreSCP, timeouts: Mapping[str, float] | None = None, max_associations: int = 10) -> None:
    """pynetdicom's ACSE, DIMSE and network timeouts and the association limit on ``scp``'s AE."""
    t = {**DEFAULT_TIMEOUTS, **{k: v for k, v in (timeouts or {}).items() if v is not None}}
    ae = scp._ae
    ae.acse_timeout = float(t["acse_s"])
    ae.dimse_timeout = float(t["dimse_s"])
    ae.network_timeout = float(t["network_s"])
    ae.maximum_associations = int(max_associations)


class ServiceStoreSCP(StoreSCP):
    """See the module docstring. Extra parameters: ``timeouts`` (``acse_s``, ``dimse_s``,
    ``network_s``), ``priority_rules`` (for the DIMSE Priority and the calling AE), and
    ``max_associations`` (simultaneous associations; more are rejected transiently)."""

    def __init__(self, *args: Any, timeouts: Mapping[str, float] | None = None,
                 priority_rules: PriorityRules | None = None, max_associations: int = 10, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        apply_timeouts(self, timeouts, max_associations)
        self.max_associations = int(max_associations)
        self.priority_rules = priority_rules or PriorityRules()
        self.accepting = True
        self._transfers: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._own_rejections = 0

    # -- receiving -----------------------------------------------------------------------
    def _on_store(self, event) -> int:
        request = event.request
        uid = str(getattr(request, "AffectedSOPInstanceUID", "") or "")
        reason = self.priority_rules.from_transfer(getattr(request, "Priority", None),
                                                   getattr(event.assoc.requestor, "ae_title", None))
        status = super()._on_store(event)
        if status == 0x0000 and uid:
            with self._lock:
                self._transfers[uid] = (reason, time.time())
        return status

    def transfer_of(self, path: Path) -> tuple[str, float]:
        """``(STAT reason or '', received at)`` of a spooled file (by its SOP Instance UID name)."""
        with self._lock:
            return self._transfers.pop(Path(path).name.removesuffix(".dcm"), ("", time.time()))

    def peek_reason(self, path: Path) -> str:
        with self._lock:
            return self._transfers.get(Path(path).name.removesuffix(".dcm"), ("", 0.0))[0]

    # -- refusing ------------------------------------------------------------------------
    def _on_refused(self, event) -> None:
        with self._lock:
            self._own_rejections += 1
        requestor = event.assoc.requestor
        log.warning("rejected calling AE %r from %s%s", requestor.ae_title, requestor.address,
                    "" if self.accepting else ": shutting down")

    def start(self) -> None:
        super().start()
        if self._server is not None and not hasattr(self, "rejections"):  # the SCP counts nothing itself
            from pynetdicom import evt

            self._server.bind(evt.EVT_REJECTED, self._on_refused)

    @property
    def rejected(self) -> int:
        """Associations refused (by access control where the SCP has it, or while stopping)."""
        own = getattr(self, "rejected_associations", None)
        return int(own) if isinstance(own, int) else self._own_rejections

    def stop_accepting(self) -> None:
        """Reject new associations (transiently) from now on; those under way finish."""
        self.accepting = False
        # pynetdicom rejects when the acceptors alive exceed the limit; its setter refuses 0.
        self._ae._maximum_associations = 0

    @property
    def active_associations(self) -> int:
        return sum(1 for a in self._ae.active_associations if a.is_acceptor)


class DicomServiceSourceOp(_ErrorsPortMixin, Operator):
    """Images from a C-STORE SCP and a watched folder at once, decoded, STAT first.

    Named inputs:
        none (a source).

    Named outputs:
        images: ``list[ImageRecord]`` — up to ``batch_size`` decoded frames, STAT ones first, with
            ``context.priority`` set (DIMSE Priority HIGH, a STAT calling AE, an attribute rule,
            the sidecar) and ``context.received_at`` (C-STORE done, or file complete). Emitted only
            when there are images.
        errors: ``list[ErrorRecord]`` — files that could not be loaded. Emitted only when there
            are some.

    Ticks every ``poll_interval`` seconds. Files waiting to be decoded are ordered by what is
    known before decoding (the C-STORE request's priority), decoded images by their final
    priority; at most ``decode_per_tick`` files are decoded per tick so a STAT image never waits
    for a backlog to be decoded first.

    Stopping: :meth:`stop_accepting` makes the SCP reject new associations and the watcher stop
    picking up files; what was accepted (acknowledged C-STOREs, files already picked up) is
    still decoded and emitted, then :attr:`finished` is True. ``stop_after_idle`` (seconds
    without a new file) and ``max_files`` stop accepting by themselves.

    Parameters:
        scp: settings of :class:`ServiceStoreSCP` (``ae_title``, ``port``, ``bind_address``,
            ``sop_classes``, ``max_pdu``, ``spool_dir``, ``timeouts``, ...); None: no SCP.
        watch_path: folder to watch; None: no watched folder. At least one of the two.
        poll_interval, settle_seconds: as for ``DicomWatchSourceOp``.
        batch_size, workers, max_pixels, selector, isolate, decode_timeout_s, worker_memory_mb: as
            for ``DicomFolderSourceOp`` (untrusted C-STOREs are decoded in supervised workers).
        priority_rules: :class:`~burnscope.operators.priority.core.PriorityRules`.
        in_flight: optional ledger (``accept(context)``, ``error_accepted()``, ``skipped()``).
        metrics: optional recorder (``observe_stage``, ``set_queue``, ``sync_rejections``).
    """

    def __init__(
        self,
        fragment: Any,
        *args: Any,
        scp: Mapping[str, Any] | None = None,
        watch_path: str | os.PathLike | None = None,
        poll_interval: float = 0.05,
        settle_seconds: float = 1.0,
        batch_size: int = 8,
        workers: int | None = 1,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        selector: Any = None,
        priority_rules: PriorityRules | None = None,
        isolate: bool = True,
        decode_timeout_s: float = 30.0,
        worker_memory_mb: int | None = 4096,
        decode_per_tick: int | None = None,
        stop_after_idle: float | None = None,
        max_files: int | None = None,
        in_flight: Any = None,
        metrics: Any = None,
        errors_port: bool = True,
        **kwargs: Any,
    ) -> None:
        if scp is None and watch_path is None:
            raise ValueError("DicomServiceSourceOp needs an SCP, a watched folder, or both")
        self.errors_port = bool(errors_port)
        self.rules = priority_rules or PriorityRules()
        self.scp = ServiceStoreSCP(**dict(scp), priority_rules=self.rules) if scp is not None else None
        self.watcher = (FolderWatcher(watch_path, settle_seconds=settle_seconds,
                                      ignore=DEFAULT_IGNORE + IN_PROGRESS_PATTERNS) if watch_path is not None else None)
        self.loader = DicomLoader(max_pixels=max_pixels, workers=workers, selector=_as_selector(selector),
                                  priority_rules=self.rules, isolate=isolate, decode_timeout_s=decode_timeout_s,
                                  worker_memory_mb=worker_memory_mb)
        self.batch_size = int(batch_size)
        self.decode_per_tick = int(decode_per_tick or max(2 * self.batch_size, 8))
        self.stop_after_idle = stop_after_idle
        self.max_files = max_files
        self.in_flight = in_flight
        self.metrics = metrics
        self.accepting = True
        self.files_seen = 0
        self.files_done = 0
        self.files_skipped = 0
        self.images_emitted = 0
        self.errors_emitted = 0
        self._files: list[tuple[int, int, Path, Path, str, float]] = []  # (rank, seq, path, root, reason, at)
        self._seq = itertools.count()
        self._images: PriorityQueue[ImageRecord] = PriorityQueue()
        self._errors: list[ErrorRecord] = []
        self._last_activity = time.monotonic()
        self._started = threading.Event()
        args = _with_poll_period(fragment, args, poll_interval)
        super().__init__(fragment, *args, **kwargs)

    def start(self) -> None:
        self._check_errors_port()
        if self.scp is not None:
            self.scp.start()
        self._last_activity = time.monotonic()
        self._started.set()

    def stop(self) -> None:
        if self.scp is not None:
            self.scp.stop()
        self.loader.close()

    def wait_started(self, timeout: float | None = None) -> bool:
        """True once the SCP listens (the graph runs)."""
        return self._started.wait(timeout)

    @property
    def port(self) -> int | None:
        return self.scp.port if self.scp is not None else None

    # -- intake --------------------------------------------------------------------------
    def stop_accepting(self) -> None:
        """No new associations, no new files; what was accepted is still processed."""
        if self.accepting:
            self.accepting = False
            if self.scp is not None:
                self.scp.stop_accepting()
            log.info("source: no longer accepting images; finishing %d queued", self.queued)

    def _queue_file(self, path: Path, root: Path, reason: str, at: float) -> None:
        heapq.heappush(self._files, (priority_rank(STAT if reason else ROUTINE), next(self._seq), path, root, reason, at))
        self.files_seen += 1
        self._last_activity = time.monotonic()

    def _intake(self) -> None:
        if self.scp is not None:  # acknowledged C-STOREs are taken even while stopping
            for path in self.scp.drain():
                reason, at = self.scp.transfer_of(path)
                self._queue_file(path, self.scp.spool_dir, reason, at)
        if self.watcher is not None and self.accepting:
            now = time.time()
            ready = self.watcher.poll()
            if self.max_files is not None:
                ready = ready[: max(0, self.max_files - self.files_seen)]
            for path in ready:
                self._queue_file(path, self.watcher.root, "", now)

    def _decode(self) -> None:
        take = [heapq.heappop(self._files) for _ in range(min(self.decode_per_tick, len(self._files)))]
        if not take:
            return
        by_path = {path: (reason, at) for _, _, path, _, reason, at in take}
        started = time.perf_counter()
        for root in dict.fromkeys(t[3] for t in take):
            paths = [t[2] for t in take if t[3] == root]
            for result in self.loader.iter_file_results(paths, root):
                self.files_done += 1
                reason, at = by_path.get(Path(result.path), ("", time.time()))
                if result.skipped:
                    self.files_skipped += 1
                    if self.in_flight is not None:
                        self.in_flight.skipped()
                if result.error is not None:
                    self._errors.append(result.error)
                for image in result.images:
                    if reason:
                        mark([image.context], reason)
                    image.context.received_at = at
                    if self.in_flight is not None:
                        self.in_flight.accept(image.context)
                    self._images.push(image, image.context.priority)
        if self.metrics is not None:
            self.metrics.observe_stage("decode", (time.perf_counter() - started) / len(take), len(take))

    # -- the tick ------------------------------------------------------------------------
    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        self._intake()
        self._decode()
        images = self._images.pop_many(self.batch_size)
        if images:
            op_output.emit(images, "images")
            self.images_emitted += len(images)
        if self._errors:
            errors, self._errors = self._errors, []
            if self.in_flight is not None:
                self.in_flight.error_accepted(len(errors))
            self._emit_errors(op_output, errors)
            self.errors_emitted += len(errors)
        if self.metrics is not None:
            self.metrics.set_queue("source", len(self._images) + len(self._files))
            if self.scp is not None:
                self.metrics.sync_rejections(self.scp.rejected)
        if self.accepting:
            idle = (self.stop_after_idle is not None and not self._files and not self._images
                    and (self.watcher is None or self.watcher.pending == 0)
                    and time.monotonic() - self._last_activity >= self.stop_after_idle)
            full = self.max_files is not None and self.files_seen >= self.max_files
            if idle or full:
                self.stop_accepting()

    @property
    def queued(self) -> int:
        """Files waiting to be decoded and images waiting to be emitted."""
        return len(self._files) + len(self._images)

    @property
    def finished(self) -> bool:
        """Not accepting, and everything accepted has been emitted."""
        if self.accepting or self._files or self._images or self._errors:
            return False
        # associations under way when accepting stopped may still store: wait for them to end
        return self.scp is None or (self.scp.received.empty() and self.scp.active_associations == 0)


__all__ = ["DEFAULT_TIMEOUTS", "DicomServiceSourceOp", "ServiceStoreSCP", "apply_timeouts"]
