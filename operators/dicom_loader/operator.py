"""Holoscan source operator around :class:`~burnscope.operators.dicom_loader.core.DicomLoader`."""

from __future__ import annotations

import datetime
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from burnscope.operators.holoscan_runtime import holoscan  # noqa: F401  (preloads libcudart)
from holoscan.conditions import PeriodicCondition
from holoscan.core import Operator, OperatorSpec

from burnscope.operators.dicom_loader.core import DEFAULT_IGNORE, DEFAULT_MAX_PIXELS, DicomLoader, FileResult
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
            ``too_large``, ``truncated``). May be empty. Optional: ``errors_port=False`` leaves it
            out (errors are then only logged); declared, it must be connected (checked at start).

    Both ports are emitted on every tick. After the last batch the operator stops itself
    (``stop_execution``), so an app with only this source ends when the input is exhausted;
    an empty input emits one tick of two empty lists.

    Parameters:
        input_path: a folder, a file, a DICOMDIR, or a list of them.
        batch_size: images per emitted batch (default 8).
        workers: decoding threads (default: min(8, CPU count)).
        max_pixels: per-file limit on rows × columns × frames (``too_large`` beyond).
        ignore: file-name patterns the folder scan skips (sidecars, docs, hidden files).
        on_progress: optional callback ``(files_done, files_total, FileResult)``; called from
            the operator's thread.
        executor: ``"thread"`` (default) or ``"process"`` (see ``DicomLoader``).
        decoding_plugin: pydicom pixel-data plugin to prefer (e.g. ``"pillow"``); default: pydicom's choice.
        selector: series-selection rules (dict, JSON text or path, or a ``SeriesSelector``);
            files of other series are skipped (counted in ``files_skipped``).
        gpu_jpeg: decode colour JPEG and JPEG 2000 photographs on the GPU (nvImageCodec, a batch
            at a time) when possible; their ``pixels`` are then CuPy arrays that stay on the
            device for preprocessing.
        frame_source: decodes the frames it can (e.g. ``scaled.ScaledJpegFrames``: large JPEG
            photographs at the size the model needs); see ``DicomLoader``.

    Counters readable while or after the app runs: ``files_total``, ``files_done``,
    ``files_skipped``, ``images_emitted``, ``errors_emitted``, ``batches_emitted``.
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
        **kwargs: Any,
    ) -> None:
        self.errors_port = bool(errors_port)
        self.input_paths = [input_path] if isinstance(input_path, (str, os.PathLike)) else list(input_path)
        self.batch_size = int(batch_size)
        self.loader = DicomLoader(
            max_pixels=max_pixels, workers=workers, ignore=ignore, executor=executor,
            decoding_plugin=decoding_plugin, selector=_as_selector(selector), gpu_jpeg=gpu_jpeg,
            frame_source=frame_source,
        )
        self.on_progress = on_progress
        self.files_total = 0
        self.files_done = 0
        self.files_skipped = 0
        self.images_emitted = 0
        self.errors_emitted = 0
        self.batches_emitted = 0
        self._lock = threading.Lock()
        self._batches: Iterator[tuple[list[ImageRecord], list[ErrorRecord]]] | None = None
        self._next: tuple[list[ImageRecord], list[ErrorRecord]] | None = None
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.output("images")
        if self.errors_port:
            spec.output("errors")

    def _file_done(self, result: FileResult) -> None:
        with self._lock:
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
        # Look one batch ahead so the last real batch is also the last tick.
        self._next = next(self._batches, None) if self._batches is not None else None
        if self._next is None:
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

    The host operator sets ``loader``, ``batch_size`` and ``max_files`` and calls
    ``_reset_counters()`` (``files_done``, ``images_emitted``, ``errors_emitted``, the queues) in
    ``__init__``.
    """

    def _reset_counters(self) -> None:
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
        return bool(self._images)

    def _max_files_reached(self) -> bool:
        return self.max_files is not None and self.files_done >= self.max_files


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
        workers, max_pixels, selector, frame_source: as for :class:`DicomFolderSourceOp`.
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
        **kwargs: Any,
    ) -> None:
        self.errors_port = bool(errors_port)
        self.watcher = FolderWatcher(watch_path, settle_seconds=settle_seconds,
                                     ignore=DEFAULT_IGNORE + IN_PROGRESS_PATTERNS)
        self.loader = DicomLoader(max_pixels=max_pixels, workers=workers, selector=_as_selector(selector),
                                  frame_source=frame_source)
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

    def start(self) -> None:
        self._check_errors_port()

    def _report_progress(self, result: FileResult) -> None:
        if self.on_progress is not None:
            self.on_progress(self.files_done, self.files_done + self.watcher.pending, result)

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        ready = self.watcher.poll()
        if self.max_files is not None:
            ready = ready[: max(0, self.max_files - self.files_done)]
        if ready:
            self._load_ready(ready, self.watcher.root, on_file=self._report_progress)
        if self._emit_batch(op_output):
            return  # more decoded images wait for the next tick
        done = self._max_files_reached()
        idle = (
            self.stop_after_idle is not None
            and self.watcher.pending == 0
            and time.monotonic() - self._last_activity >= self.stop_after_idle
        )
        if done or idle:
            self.stop_execution()


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
    without a new one, counted from the start). Received files are spooled to ``spool_dir``.

    Parameters:
        ae_title: AE title of the SCP (default "BURNSCOPE").
        port: TCP port (default 11112; 0 picks a free one, readable as ``op.port``).
        bind_address: listening interface (default "127.0.0.1").
        sop_classes: accepted storage SOP class UIDs (default: VL photographic/microscopic/
            endoscopic and secondary capture), or "all".
        max_pdu: maximum PDU size received (default 16382; 0 = unlimited).
        spool_dir: folder for received files (default: a temporary folder).
        batch_size, poll_interval, stop_after_idle, max_files, workers, max_pixels, selector,
            frame_source: as for :class:`DicomWatchSourceOp`.
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
        batch_size: int = 8,
        poll_interval: float = 0.1,
        stop_after_idle: float | None = None,
        max_files: int | None = None,
        workers: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        selector: Any = None,
        frame_source: Any = None,
        errors_port: bool = True,
        **kwargs: Any,
    ) -> None:
        self.errors_port = bool(errors_port)
        from burnscope.operators.dicom_loader.scp import DEFAULT_SOP_CLASSES, StoreSCP

        self.scp = StoreSCP(
            ae_title=ae_title, port=port, bind_address=bind_address,
            sop_classes=DEFAULT_SOP_CLASSES if sop_classes is None else sop_classes,
            max_pdu=max_pdu, spool_dir=spool_dir,
        )
        self.loader = DicomLoader(max_pixels=max_pixels, workers=workers, selector=_as_selector(selector),
                                  frame_source=frame_source)
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

    def setup(self, spec: OperatorSpec) -> None:
        spec.output("images")
        if self.errors_port:
            spec.output("errors")

    def start(self) -> None:
        self._check_errors_port()
        self.scp.start()
        self._last_activity = time.monotonic()

    def stop(self) -> None:
        self.scp.stop()

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        ready = self.scp.drain()
        if ready:
            self._load_ready(ready, self.scp.spool_dir)
        if self._emit_batch(op_output):
            return  # more decoded images wait for the next tick
        done = self._max_files_reached()
        idle = (
            self.stop_after_idle is not None
            and self._last_activity is not None
            and time.monotonic() - self._last_activity >= self.stop_after_idle
        )
        if done or idle:
            self.stop_execution()


__all__ = ["DicomFolderSourceOp", "DicomStoreSCPSourceOp", "DicomWatchSourceOp", "ProgressCallback"]
