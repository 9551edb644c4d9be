"""Holoscan source operator around :class:`~burnscope.operators.dicom_loader.core.DicomLoader`."""

from __future__ import annotations

import datetime
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from burnscope.operators.holoscan_runtime import holoscan  # noqa: F401  (preloads libcudart)
from holoscan.conditions import PeriodicCondition
from holoscan.core import Operator, OperatorSpec

from burnscope.operators.dicom_loader.core import DEFAULT_IGNORE, DEFAULT_MAX_PIXELS, DicomLoader, FileResult
from burnscope.operators.dicom_loader.isolation import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S
from burnscope.operators.dicom_loader.watcher import IN_PROGRESS_PATTERNS, FolderWatcher
from burnscope.common.messages import ErrorRecord, ImageRecord

#: ``on_progress(files_done, files_total, result)``: called after each file is loaded.
ProgressCallback = Callable[[int, int, FileResult], None]


def _as_selector(rules: Any) -> Any:
    if rules is None or callable(rules):
        return rules
    from burnscope.operators.dicom_loader.selector import SeriesSelector

    return SeriesSelector(rules)


class _ErrorsPortMixin:
    """The optional ``errors`` port of the sources.

    ``errors_port=False`` declares no such port: bad files are then logged (by file name) and
    counted, nothing more. With the port declared (the default) it must be connected: Holoscan
    would otherwise never tick the source (its transmitter has no receiver), so :meth:`start`
    raises, naming the port, instead of the app ending silently with nothing processed. (Relaxing
    the port's condition instead would drop error records whenever their sink is busy.)
    """

    def setup(self, spec: OperatorSpec) -> None:
        """The sources' ports: ``images``, and ``errors`` unless ``errors_port=False``."""
        spec.output("images")
        if self.errors_port:
            spec.output("errors")

    def _check_errors_port(self) -> None:
        if not self.errors_port:
            return
        graph = self.fragment.graph
        if not any("errors" in graph.get_port_map(self, nxt) for nxt in graph.get_next_nodes(self)):
            raise RuntimeError(
                f"{type(self).__name__} {self.name!r}: output port 'errors' is not connected; connect it "
                "(for example to ErrorSinkOp) or create the operator with errors_port=False"
            )

    def _emit_errors(self, op_output: Any, errors: list[ErrorRecord]) -> None:
        if self.errors_port:
            op_output.emit(errors, "errors")


class DicomFolderSourceOp(_ErrorsPortMixin, Operator):
    """Reads a folder (recursive, DICOMDIR-aware) or files and emits decoded images in batches.

    Named inputs:
        none (a source).

    Named outputs:
        images: ``list[ImageRecord]`` — up to ``batch_size`` decoded frames, H×W×3 uint8 RGB,
            with study/series/instance context and sidecar case data. May be empty.
        errors: ``list[ErrorRecord]`` — files that could not be loaded (reason codes
            ``not_dicom``, ``no_pixel_data``, ``unsupported_transfer_syntax``, ``decode_failed``,
            ``too_large``, ``truncated``, ``decoder_crashed``, ``decode_timeout``). May be empty.
            Optional: ``errors_port=False`` leaves it out (errors are then only logged); declared,
            it must be connected (checked at start).

    Both ports are emitted on every tick. After the last batch the operator stops itself
    (``stop_execution``), so an app with only this source ends when the input is exhausted;
    an empty input emits one tick of two empty lists. When ``stop`` is set, the batch already
    decoded is emitted and no further file is read (``files_not_started`` counts the rest).

    Parameters:
        input_path: a folder, a file, a DICOMDIR, or a list of them.
        batch_size: images per emitted batch (default 8).
        workers: decode worker processes (isolated, the default) or threads (default: min(8, CPU count)).
        isolate: decode in supervised worker processes (the default; with ``gpu_jpeg`` the default
            is in-process): a codec crash or hang costs one file (``decoder_crashed`` /
            ``decode_timeout``), never the run. False only for trusted input.
        decode_timeout_s: seconds one file may take to decode (isolated; default 30).
        worker_memory_mb: address-space limit per decode worker (isolated; default 4096; 0: none).
        max_pixels: per-file limit on rows × columns × frames (``too_large`` beyond).
        ignore: file-name patterns the folder scan skips (sidecars, docs, hidden files).
        on_progress: optional callback ``(files_done, files_total, FileResult)``; called from
            the operator's thread.
        executor: without isolation, ``"thread"`` (default) or ``"process"`` (see ``DicomLoader``).
        decoding_plugin: pydicom pixel-data plugin to prefer (e.g. ``"pillow"``); default: pydicom's choice.
        selector: series-selection rules (dict, JSON text or path, or a ``SeriesSelector``);
            files of other series are skipped (counted in ``files_skipped``).
        gpu_jpeg: decode colour JPEG and JPEG 2000 photographs on the GPU (nvImageCodec, a batch
            at a time) when possible; their ``pixels`` are then CuPy arrays that stay on the
            device for preprocessing.
        frame_source: decodes the frames it can (e.g. ``scaled.ScaledJpegFrames``: large JPEG
            photographs at the size the model needs); see ``DicomLoader``.
        ledger: a :class:`~burnscope.operators.flow.ledger.RunLedger`: every loaded file is
            accepted there, every tick counted, and the end announced (``finish``).
        stop: a stop request (anything truthy when set, e.g. a
            :class:`~burnscope.operators.flow.monitor.StopRequest`): stop taking input.

    Counters readable while or after the app runs: ``files_total``, ``files_done``,
    ``files_skipped``, ``images_emitted``, ``errors_emitted``, ``batches_emitted``,
    ``files_not_started``.
    """

    def __init__(
        self,
        fragment: Any,
        *args: Any,
        input_path: str | os.PathLike | Sequence[str | os.PathLike],
        batch_size: int = 8,
        workers: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        ignore: Sequence[str] = DEFAULT_IGNORE,
        on_progress: ProgressCallback | None = None,
        executor: str = "thread",
        decoding_plugin: str = "",
        selector: Any = None,
        gpu_jpeg: bool = False,
        frame_source: Any = None,
        errors_port: bool = True,
        isolate: bool | None = None,
        decode_timeout_s: float = DEFAULT_TIMEOUT_S,
        worker_memory_mb: int | None = DEFAULT_MEMORY_MB,
        ledger: Any = None,
        stop: Any = None,
        **kwargs: Any,
    ) -> None:
        self.errors_port = bool(errors_port)
        self.ledger = ledger
        self.stop_request = stop
        self.input_paths = [input_path] if isinstance(input_path, (str, os.PathLike)) else list(input_path)
        self.batch_size = int(batch_size)
        self.loader = DicomLoader(
            max_pixels=max_pixels, workers=workers, ignore=ignore, executor=executor,
            decoding_plugin=decoding_plugin, selector=_as_selector(selector), gpu_jpeg=gpu_jpeg,
            isolate=isolate, decode_timeout_s=decode_timeout_s, worker_memory_mb=worker_memory_mb,
            frame_source=frame_source,
        )
        self.on_progress = on_progress
        self.files_total = 0
        self.files_done = 0
        self.files_skipped = 0
        self.images_emitted = 0
        self.errors_emitted = 0
        self.batches_emitted = 0
        self._units_read = 0  # images and error records read from files (some may wait for the next batch)
        self._lock = threading.Lock()
        self._batches: Iterator[tuple[list[ImageRecord], list[ErrorRecord]]] | None = None
        self._next: tuple[list[ImageRecord], list[ErrorRecord]] | None = None
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.output("images")
        if self.errors_port:
            spec.output("errors")

    @property
    def files_not_started(self) -> int:
        return max(0, self.files_total - self.files_done)

    def _file_done(self, result: FileResult) -> None:
        if self.ledger is not None:
            self.ledger.accept(result)
        with self._lock:
            self._units_read += len(result.images) + (result.error is not None)
            self.files_done += 1
            self.files_skipped += int(result.skipped)
            done = self.files_done
        if self.on_progress is not None:
            self.on_progress(done, self.files_total, result)

    def _batch_generator(self) -> Iterator[tuple[list[ImageRecord], list[ErrorRecord]]]:
        for path in self.input_paths:
            files = self.loader.scan(path)
            yield from self.loader.iter_batches(path, self.batch_size, on_file=self._file_done, files=files)

    def start(self) -> None:
        self._check_errors_port()
        # Scan everything first so progress has a known total.
        self.files_total = sum(len(self.loader.scan(p)) for p in self.input_paths)
        self._batches = self._batch_generator()
        self._next = next(self._batches, None)

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        images, errors = self._next if self._next is not None else ([], [])
        op_output.emit(images, "images")
        self._emit_errors(op_output, errors)
        self.images_emitted += len(images)
        self.errors_emitted += len(errors)
        self.batches_emitted += 1
        if self.ledger is not None:
            self.ledger.tick()
        # Look one batch ahead so the last real batch is also the last tick. After a stop request,
        # only what was already read goes out (the frames of a file can span two batches).
        unsent = self._units_read > self.images_emitted + self.errors_emitted
        more = self._batches is not None and (not self.stop_request or unsent)
        self._next = next(self._batches, None) if more else None
        if self._next is None:
            if self.ledger is not None:
                self.ledger.finish()
            self.stop_execution()

    def stop(self) -> None:
        if self._batches is not None:
            self._batches.close()  # shuts the decode thread pool down
            self._batches = None
        self.loader.close()


def _with_poll_period(fragment: Any, args: tuple, poll_interval: float) -> tuple:
    """``args`` with a ``PeriodicCondition`` of ``poll_interval`` seconds, unless one is given."""
    if any(isinstance(a, PeriodicCondition) for a in args):
        return args
    period = datetime.timedelta(seconds=float(poll_interval))
    return (PeriodicCondition(fragment, recess_period=period, name="poll_period"), *args)


class _PolledSourceMixin:
    """Tick logic shared by the polling sources: decode newly completed files, emit a batch.

    The host operator sets ``loader``, ``batch_size``, ``max_files``, ``ledger``, ``journal`` and
    ``stop_request`` and calls ``_reset_counters()`` (``files_done``, ``images_emitted``,
    ``errors_emitted``, ``ticks``, the queues) in ``__init__``.
    """

    def _reset_counters(self) -> None:
        self.ticks = 0
        self.files_done = 0
        self.images_emitted = 0
        self.errors_emitted = 0
        self._images: list[ImageRecord] = []
        self._errors: list[ErrorRecord] = []

    def _load_ready(self, ready: Sequence[Any], root: Any,
                    on_file: Callable[[FileResult], None] | None = None) -> None:
        """Decodes ``ready`` files (relative to ``root``) into the queues; marks activity."""
        self._last_activity = time.monotonic()
        for result in self.loader.iter_file_results(ready, root):
            if self.ledger is not None:
                self.ledger.accept(result)
            self.files_done += 1
            self._images.extend(result.images)
            if result.error is not None:
                self._errors.append(result.error)
            if on_file is not None:
                on_file(result)

    def _emit_batch(self, op_output: Any) -> bool:
        """Emits up to ``batch_size`` queued images and all queued errors; True if images remain."""
        images, self._images = self._images[: self.batch_size], self._images[self.batch_size :]
        errors, self._errors = self._errors, []
        op_output.emit(images, "images")
        self._emit_errors(op_output, errors)
        self.images_emitted += len(images)
        self.errors_emitted += len(errors)
        self.ticks += 1
        if self.ledger is not None:
            self.ledger.tick()
        return bool(self._images)

    def _max_files_reached(self) -> bool:
        return self.max_files is not None and self.files_done >= self.max_files

    def _finish(self) -> None:
        if self.ledger is not None:
            self.ledger.finish()
        self.stop_execution()

    def _pending_from_journal(self) -> list[Path]:
        """Files an earlier run recorded but did not finish (still on disk), oldest first."""
        return [] if self.journal is None else [e.path for e in self.journal.recover()]


class DicomWatchSourceOp(_ErrorsPortMixin, _PolledSourceMixin, Operator):
    """Watches a folder and emits images of DICOM files once they are completely written.

    Named inputs:
        none (a source).

    Named outputs:
        images: ``list[ImageRecord]`` — decoded frames of the files completed since the last
            tick (at most ``batch_size`` per tick; the rest follow on the next ticks). May be empty.
        errors: ``list[ErrorRecord]`` — completed files that could not be loaded. May be empty.

    The operator ticks every ``poll_interval`` seconds (a ``PeriodicCondition`` it adds itself)
    and emits on both ports every tick. It runs until the application stops, or stops itself
    after ``stop_after_idle`` seconds without a new file or once ``max_files`` files were read.

    Parameters:
        watch_path: folder to watch (recursive; created if missing).
        batch_size: images per emitted batch (default 8).
        poll_interval: seconds between polls (default 0.5).
        settle_seconds: a file is complete when size and mtime stay unchanged this long (default 1.0).
        stop_after_idle: stop after this many seconds with nothing new (default: never).
        max_files: stop after this many files (default: never).
        journal: an intake :class:`~burnscope.operators.dicom_loader.journal.Journal`: each
            complete file is recorded before it is decoded; files an earlier run left pending are
            processed first, and files it finished are not read again (mark them done through
            the ledger's ``on_file_done``).
        workers, max_pixels, selector, isolate, decode_timeout_s, worker_memory_mb, frame_source,
            ledger, stop: as for :class:`DicomFolderSourceOp`; on a stop request the watcher stops
            polling, emits what it has decoded and ends.
        on_ready: ``() -> None``, called once the source runs (the SCP: once it listens).
    """

    def __init__(
        self,
        fragment: Any,
        *args: Any,
        watch_path: str | os.PathLike,
        batch_size: int = 8,
        poll_interval: float = 0.5,
        settle_seconds: float = 1.0,
        stop_after_idle: float | None = None,
        max_files: int | None = None,
        workers: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        on_progress: ProgressCallback | None = None,
        selector: Any = None,
        frame_source: Any = None,
        errors_port: bool = True,
        isolate: bool | None = None,
        decode_timeout_s: float = DEFAULT_TIMEOUT_S,
        worker_memory_mb: int | None = DEFAULT_MEMORY_MB,
        journal: Any = None,
        ledger: Any = None,
        stop: Any = None,
        on_ready: Callable[[], None] | None = None,
        **kwargs: Any,
    ) -> None:
        self.errors_port = bool(errors_port)
        self.journal, self.ledger, self.stop_request = journal, ledger, stop
        self.on_ready = on_ready
        skip = journal.skip if journal is not None else None
        # absolute, so files recovered from the journal and newly seen ones are named alike
        self.watcher = FolderWatcher(Path(watch_path).absolute(), settle_seconds=settle_seconds,
                                     ignore=DEFAULT_IGNORE + IN_PROGRESS_PATTERNS, skip=skip)
        self.loader = DicomLoader(max_pixels=max_pixels, workers=workers, selector=_as_selector(selector),
                                  isolate=isolate, decode_timeout_s=decode_timeout_s,
                                  worker_memory_mb=worker_memory_mb, frame_source=frame_source)
        self.batch_size = int(batch_size)
        self.stop_after_idle = stop_after_idle
        self.max_files = max_files
        self.on_progress = on_progress
        self._reset_counters()
        self._last_activity = time.monotonic()
        args = _with_poll_period(fragment, args, poll_interval)
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.output("images")
        if self.errors_port:
            spec.output("errors")

    def stop(self) -> None:
        self.loader.close()  # stops the decode workers

    def _report_progress(self, result: FileResult) -> None:
        if self.on_progress is not None:
            self.on_progress(self.files_done, self.files_done + self.watcher.pending, result)

    def start(self) -> None:
        self._check_errors_port()
        self._recovered = self._pending_from_journal()
        self.watcher.mark_reported(self._recovered)
        if self.on_ready is not None:
            self.on_ready()

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        stopping = bool(self.stop_request)
        ready = [] if stopping else self._recovered + self.watcher.poll()
        self._recovered = []
        if self.max_files is not None:
            ready = ready[: max(0, self.max_files - self.files_done)]
        if self.journal is not None:
            for path in ready:
                self.journal.record_file(path)  # a file removed since becomes an error record
        if ready:
            self._load_ready(ready, self.watcher.root, on_file=self._report_progress)
        if self._emit_batch(op_output):
            return  # more decoded images wait for the next tick
        if stopping:
            self._finish()
            return
        done = self._max_files_reached()
        idle = (
            self.stop_after_idle is not None
            and self.watcher.pending == 0
            and time.monotonic() - self._last_activity >= self.stop_after_idle
        )
        if done or idle:
            self._finish()


class DicomStoreSCPSourceOp(_ErrorsPortMixin, _PolledSourceMixin, Operator):
    """Receives images over DICOM C-STORE (a pynetdicom SCP) and emits them decoded.

    Named inputs:
        none (a source).

    Named outputs:
        images: ``list[ImageRecord]`` — decoded frames received since the last tick (at most
            ``batch_size`` per tick). May be empty.
        errors: ``list[ErrorRecord]`` — received instances that could not be decoded. May be empty.

    The SCP starts with the operator and listens until the application stops (or, for batch
    runs and tests, until ``max_files`` instances arrived or ``stop_after_idle`` seconds passed
    without a new one, counted from the start, or a stop is requested: then it stops listening,
    emits what it has received and ends). Received files are spooled to ``spool_dir`` and, with a
    ``journal``, recorded there before C-STORE Success is returned; instances an earlier run
    acknowledged but did not report are processed first.

    Parameters:
        ae_title: AE title of the SCP (default "BURNSCOPE").
        port: TCP port (default 11112; 0 picks a free one, readable as ``op.port``).
        bind_address: listening interface (default "127.0.0.1").
        sop_classes: accepted storage SOP class UIDs (default: VL photographic/microscopic/
            endoscopic and secondary capture), or "all".
        max_pdu: maximum PDU size received (default 16382; 0 = unlimited).
        spool_dir: folder for received files (default: a temporary folder).
        allowed_calling_aets, require_called_aet, allowed_addresses, tls: who may connect
            (see :class:`~burnscope.operators.dicom_loader.scp.StoreSCP`); refusals are
            counted in ``rejected_associations``.
        timeouts: pynetdicom's ``{acse_s, dimse_s, network_s}`` (a silent or stalled association
            is closed after them); max_associations: simultaneous associations (default 10).
        batch_size, poll_interval, stop_after_idle, max_files, workers, max_pixels, selector,
            isolate, decode_timeout_s, worker_memory_mb, frame_source, journal, ledger, stop, on_progress,
            on_ready: as for :class:`DicomWatchSourceOp`.
    """

    def __init__(
        self,
        fragment: Any,
        *args: Any,
        ae_title: str = "BURNSCOPE",
        port: int = 11112,
        bind_address: str = "127.0.0.1",
        sop_classes: Sequence[str] | str | None = None,
        max_pdu: int = 16382,
        spool_dir: str | os.PathLike | None = None,
        allowed_calling_aets: Sequence[str] | None = None,
        require_called_aet: bool = False,
        allowed_addresses: Sequence[str] | None = None,
        tls: Any = None,
        timeouts: dict[str, float] | None = None,
        max_associations: int = 10,
        batch_size: int = 8,
        poll_interval: float = 0.1,
        stop_after_idle: float | None = None,
        max_files: int | None = None,
        workers: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        selector: Any = None,
        frame_source: Any = None,
        errors_port: bool = True,
        isolate: bool | None = None,
        decode_timeout_s: float = DEFAULT_TIMEOUT_S,
        worker_memory_mb: int | None = DEFAULT_MEMORY_MB,
        journal: Any = None,
        ledger: Any = None,
        stop: Any = None,
        on_progress: ProgressCallback | None = None,
        on_ready: Callable[[], None] | None = None,
        **kwargs: Any,
    ) -> None:
        self.errors_port = bool(errors_port)
        from burnscope.operators.dicom_loader.scp import DEFAULT_SOP_CLASSES, StoreSCP

        self.journal, self.ledger, self.stop_request, self.on_progress = journal, ledger, stop, on_progress
        self.on_ready = on_ready
        on_stored = None
        if journal is not None:
            on_stored = lambda path, uid: journal.record(path, sop_instance_uid=uid)  # noqa: E731
        self.scp = StoreSCP(
            ae_title=ae_title, port=port, bind_address=bind_address,
            sop_classes=DEFAULT_SOP_CLASSES if sop_classes is None else sop_classes,
            max_pdu=max_pdu, spool_dir=spool_dir, allowed_calling_aets=allowed_calling_aets,
            require_called_aet=require_called_aet, allowed_addresses=allowed_addresses, tls=tls,
            on_stored=on_stored,
        )
        from burnscope.operators.dicom_loader.service import apply_timeouts

        apply_timeouts(self.scp, timeouts, max_associations)
        self.loader = DicomLoader(max_pixels=max_pixels, workers=workers, selector=_as_selector(selector),
                                  isolate=isolate, decode_timeout_s=decode_timeout_s,
                                  worker_memory_mb=worker_memory_mb, frame_source=frame_source)
        self.batch_size = int(batch_size)
        self.stop_after_idle = stop_after_idle
        self.max_files = max_files
        self._reset_counters()
        self._last_activity: float | None = None
        args = _with_poll_period(fragment, args, poll_interval)
        super().__init__(fragment, *args, **kwargs)

    @property
    def port(self) -> int:
        return self.scp.port

    @property
    def rejected_associations(self) -> int:
        return self.scp.rejected_associations

    def setup(self, spec: OperatorSpec) -> None:
        spec.output("images")
        if self.errors_port:
            spec.output("errors")

    def start(self) -> None:
        self._check_errors_port()
        for path in self._pending_from_journal():  # acknowledged by an earlier run, not reported
            self.scp.received.put(path)
        self.scp.start()
        self._last_activity = time.monotonic()
        if self.on_ready is not None:
            self.on_ready()

    def stop(self) -> None:
        self.scp.stop()
        self.loader.close()

    def _report_progress(self, result: FileResult) -> None:
        if self.on_progress is not None:
            self.on_progress(self.files_done, self.files_done + self.scp.received.qsize(), result)

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        stopping = bool(self.stop_request)
        if stopping:
            self.scp.stop()  # no new associations; what was acknowledged is in the queue or journal
        ready = self.scp.drain()
        if ready:
            self._load_ready(ready, self.scp.spool_dir, on_file=self._report_progress)
        if self._emit_batch(op_output):
            return  # more decoded images wait for the next tick
        if stopping:
            self._finish()
            return
        done = self._max_files_reached()
        idle = (
            self.stop_after_idle is not None
            and self._last_activity is not None
            and time.monotonic() - self._last_activity >= self.stop_after_idle
        )
        if done or idle:
            self._finish()


__all__ = ["DicomFolderSourceOp", "DicomStoreSCPSourceOp", "DicomWatchSourceOp", "ProgressCallback"]
