"""DICOM loading without Holoscan: scan a folder, decode every image (frame) to H×W×3 uint8 RGB.

The core is plain Python so that integrators can embed it::

    from burnscope.operators.dicom_loader.core import DicomLoader

    loader = DicomLoader(workers=4)
    images, errors = loader.load("incoming/")
    for images, errors in loader.iter_batches("incoming/", batch_size=8):
        ...

Every file ends up either as :class:`~burnscope.common.messages.ImageRecord` s (one per frame)
or as one :class:`~burnscope.common.messages.ErrorRecord` whose ``reason`` is one of
:data:`REASONS`. Log lines name files and SOP Instance UIDs only, never patient identifiers.

By default files are decoded in supervised worker processes (``isolation.py``): a codec that
segfaults, aborts, panics or spins costs that one file (``decoder_crashed`` or
``decode_timeout``), never the run. ``isolate=False`` decodes in this process, for trusted input.

This module holds :class:`DicomLoader` (files → results, in parallel, in batches) and re-exports
the pieces it is made of, so ``from burnscope.operators.dicom_loader.core import ...`` keeps
working: ``scanning`` (which files), ``decoding`` (one file → frames), ``colour`` (frame → RGB),
``context`` (study/patient context, sidecar case data), ``records`` (results and reason codes).
"""

from __future__ import annotations

import copy
import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset

from burnscope.common.messages import ErrorRecord, ImageRecord
from burnscope.operators.dicom_loader.colour import grey_to_uint8, to_rgb8
from burnscope.operators.dicom_loader.context import (
    CASE_SIDECAR,
    _age_years,  # noqa: F401  (re-exported for existing imports)
    _Sidecars,
    body_site_of,
    build_context,
)
from burnscope.operators.dicom_loader.decoding import (
    DEFAULT_MAX_PIXELS,
    MEDIA_DIRECTORY_STORAGE,
    _read_dataset,
    decode_dataset,
)
from burnscope.operators.dicom_loader.isolation import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S, DecodePool
from burnscope.operators.dicom_loader.records import REASONS, FileResult, FrameInfo, LoaderError, one_line
from burnscope.operators.dicom_loader.scanning import DEFAULT_IGNORE, _ignored, read_dicomdir, scan  # noqa: F401

log = logging.getLogger("burnscope.dicom_loader")


class _PluginFailureFilter(logging.Filter):
    """pydicom logs a full traceback for every pixel-data plugin that fails on a file, before it
    tries the next one; the loader reports the failure itself (one line, with a reason code).
    Those records pass only when the ``pydicom`` logger is set to DEBUG, and then without the
    traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info is None and record.exc_text is None:
            return True
        record.exc_info, record.exc_text = None, None
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


#: pydicom's loggers that log exceptions with their tracebacks (a filter on a logger sees only
#: the records logged to that logger itself, not its children's).
_PYDICOM_LOGGERS = ("pydicom", "pydicom.pixels.decoders.base", "pydicom.dataset", "pydicom.filebase")


def _quiet_plugin_failures() -> None:
    for name in _PYDICOM_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _PluginFailureFilter) for f in logger.filters):
            logger.addFilter(_PluginFailureFilter())


def _crash_message(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"the decoder crashed ({type(exc).__name__}{': ' + text[0][:200] if text else ''})"


class DicomLoader:
    """Scans folders and decodes DICOM files to RGB :class:`ImageRecord` s in parallel.

    Parameters:
        max_pixels: reject files whose rows × columns × frames exceed this (reason ``too_large``).
        workers: decoding threads (pydicom's decoders release the GIL); 1 decodes serially.
        ignore: file-name patterns the folder scan skips.
        read_sidecars: attach ``case.json`` / ``<stem>.json`` case data to each image.
        isolate: decode in ``workers`` supervised worker processes (default, except with
            ``gpu_jpeg``, which decodes in this process): a decoder that
            crashes (segfault, abort, Rust panic) or exceeds ``decode_timeout_s`` costs one file
            (``decoder_crashed`` / ``decode_timeout``) and its worker is replaced. False decodes
            in this process (trusted input only; a native crash then ends the process). Call
            :meth:`close` (or use ``with``) when done, to stop the workers.
        decode_timeout_s: seconds one file may take in a worker (isolated mode).
        worker_memory_mb: address-space limit of each worker (isolated mode; 0: none).
        worker_init: picklable function each worker calls once at start (isolated mode), e.g.
            to register extra pydicom pixel-data plugins.
        executor: without isolation: ``"thread"`` (default; helps where the C decoders release
            the GIL, i.e. large images) or ``"process"`` (a persistent process pool that also
            spreads the GIL-bound header parsing of small images; pixels are copied back; call
            :meth:`close` when done). See docs/benchmarks/decode-cpu.md.
        gpu_jpeg: decode 8-bit colour JPEG frames on the GPU with nvImageCodec when it and a
            GPU are usable; those images' pixels are then CuPy arrays (see ``gpu_jpeg.py``).
        quiet_validation: switch pydicom's read-time value validation off (process-wide),
            because its warnings quote element values such as patient names and birth dates.
        selector: e.g. a :class:`~burnscope.operators.dicom_loader.selector.SeriesSelector`;
            files whose header it rejects are skipped before decoding (no image, no error).
        decoding_plugin: force one pydicom pixel-data plugin (e.g. ``"pillow"``, which decodes
            JPEG baseline photographs faster than ``"pylibjpeg"``); empty lets pydicom choose,
            falling back to the others when the named plugin cannot decode a file.
        priority_rules: e.g. a :class:`~burnscope.operators.priority.core.PriorityRules`; marks
            images STAT from their dataset's attributes and case sidecar (``apply(context, ds)``).
    """

    def __init__(
        self,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        workers: int | None = None,
        ignore: Iterable[str] = DEFAULT_IGNORE,
        read_sidecars: bool = True,
        decoding_plugin: str = "",
        executor: str = "thread",
        selector: Callable[[Dataset], bool] | None = None,
        quiet_validation: bool = True,
        gpu_jpeg: bool = False,
        isolate: bool | None = None,
        decode_timeout_s: float = DEFAULT_TIMEOUT_S,
        worker_memory_mb: int | None = DEFAULT_MEMORY_MB,
        worker_init: Callable[[], None] | None = None,
        priority_rules: Any = None,
    ) -> None:
        self.priority_rules = priority_rules
        if gpu_jpeg and executor == "process":
            raise ValueError("gpu_jpeg needs executor='thread' (GPU arrays do not cross processes)")
        if gpu_jpeg and isolate:
            raise ValueError("gpu_jpeg needs isolate=False (GPU arrays do not cross processes)")
        self.gpu_jpeg = gpu_jpeg
        self.isolate = not gpu_jpeg if isolate is None else bool(isolate)
        self.decode_timeout_s = float(decode_timeout_s) if decode_timeout_s else 0.0
        self.worker_memory_mb = worker_memory_mb
        self.worker_init = worker_init
        self._decode_pool: DecodePool | None = None
        _quiet_plugin_failures()
        if quiet_validation:
            # pydicom's read-time validation warns *with the offending value* (a malformed
            # birth date or an over-long patient name ends up in the log); the loader does not
            # validate values, so silence it — process-wide, as pydicom's setting is global.
            pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
        self.selector = selector
        if executor not in ("thread", "process"):
            raise ValueError(f"executor must be 'thread' or 'process', not {executor!r}")
        self.executor = executor
        self._process_pool: ProcessPoolExecutor | None = None
        self.decoding_plugin = decoding_plugin
        self.max_pixels = int(max_pixels)
        self.workers = max(1, int(workers if workers is not None else min(8, os.cpu_count() or 1)))
        self.ignore = tuple(ignore)
        self.read_sidecars = read_sidecars
        self._sidecars = _Sidecars()

    # -- scanning ------------------------------------------------------------------------
    def scan(self, root: str | os.PathLike) -> list[Path]:
        """Files under ``root`` that :meth:`load` would read, in order (for progress totals)."""
        return scan(root, self.ignore)

    # -- one file ------------------------------------------------------------------------
    def load_file_result(self, path: str | os.PathLike, root: str | os.PathLike | None = None) -> FileResult:
        """Load one file; never raises for bad input (the error is in the result)."""
        if self.isolate:
            (result,) = self._pool().map([(Path(path), Path(root) if root else None)])  # runs map to its end
        else:
            result = self._load_one(Path(path), Path(root) if root else None)
        self._log_result(result)
        return result

    @staticmethod
    def _log_result(result: FileResult) -> None:
        if result.error is not None:  # INFO: the app's error sink reports it (one line per file)
            log.info("%s: %s (%s)", result.path.name, result.error.reason, result.error.message)
        elif result.skipped:
            log.debug("%s: not selected", result.path.name)
        else:
            log.debug("%s: %d image(s)", result.path.name, len(result.images))

    def _load_one(self, path: Path, root: Path | None) -> FileResult:
        """Load one file in this process, without logging; never raises for bad input."""
        result = FileResult(path=path)
        uid = ""
        try:
            ds = _read_dataset(path)
            uid = str(ds.get("SOPInstanceUID", "") or "")
            if self.selector is not None and "PixelData" in ds and not self.selector(ds):
                result.skipped = True
                return result
            result.images, result.infos = self._decode(ds, path, root, result)
            if self.priority_rules is not None:  # picklable: applied inside an isolated worker too
                for image in result.images:
                    self.priority_rules.apply(image.context, ds)
        except LoaderError as exc:
            result.error = ErrorRecord(str(path), exc.reason, exc.message, exc.sop_instance_uid or uid)
        except MemoryError:
            result.error = ErrorRecord(str(path), "decoder_crashed", "the decoder ran out of memory", uid)
        except Exception as exc:  # a decoder bug must not stop a folder run
            result.error = ErrorRecord(str(path), "decode_failed", f"{type(exc).__name__}: {exc}", uid)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: B036 — a Rust panic (pyo3 PanicException) is a BaseException
            result.error = ErrorRecord(str(path), "decoder_crashed", _crash_message(exc), uid)
        if result.error is not None:
            result.images, result.infos = [], []
            result.error.message = one_line(result.error.message)  # one line, no traceback, always
        return result

    def load_file(
        self, path: str | os.PathLike, root: str | os.PathLike | None = None
    ) -> tuple[list[ImageRecord], list[ErrorRecord]]:
        """Images (one per frame) of one file, or one error record."""
        result = self.load_file_result(path, root)
        return result.images, [result.error] if result.error else []

    def _decode(
        self, ds: Dataset, path: Path, root: Path | None, result: FileResult
    ) -> tuple[list[ImageRecord], list[FrameInfo]]:
        return decode_dataset(
            ds, path, result, max_pixels=self.max_pixels,
            case=self._sidecars.case_for(path, root) if self.read_sidecars else {},
            decoding_plugin=self.decoding_plugin, gpu_jpeg=self.gpu_jpeg,
        )

    # -- many files ----------------------------------------------------------------------
    def iter_file_results(
        self, paths: Iterable[str | os.PathLike], root: str | os.PathLike | None = None
    ) -> Iterator[FileResult]:
        """Load files in parallel (``workers`` threads), yielding results in input order."""
        yield from self._ordered_results([(Path(p), Path(root) if root else None) for p in paths])

    def _inputs(self, path: str | os.PathLike | Iterable[str | os.PathLike]) -> list[tuple[Path, Path]]:
        roots = [path] if isinstance(path, (str, os.PathLike)) else list(path)
        pairs: list[tuple[Path, Path]] = []
        for r in roots:
            r = Path(r)
            base = r if r.is_dir() else r.parent
            pairs.extend((f, base) for f in self.scan(r))
        return pairs

    def load(
        self, path: str | os.PathLike | Iterable[str | os.PathLike]
    ) -> tuple[list[ImageRecord], list[ErrorRecord]]:
        """All images and errors of a file, a folder (recursive) or several of them."""
        images: list[ImageRecord] = []
        errors: list[ErrorRecord] = []
        for batch_images, batch_errors in self.iter_batches(path, batch_size=1 << 30):
            images.extend(batch_images)
            errors.extend(batch_errors)
        return images, errors

    def iter_batches(
        self,
        path: str | os.PathLike | Iterable[str | os.PathLike],
        batch_size: int = 8,
        on_file: Callable[[FileResult], None] | None = None,
        files: list[Path] | None = None,
    ) -> Iterator[tuple[list[ImageRecord], list[ErrorRecord]]]:
        """Yield ``(images, errors)`` with at most ``batch_size`` images each, in file order.

        A batch is yielded once it holds ``batch_size`` images or ``batch_size`` errors; the
        last one may be smaller. ``on_file`` is called after each file (progress bars).
        ``files`` (from :meth:`scan`) avoids scanning twice.
        """
        batch_size = max(1, int(batch_size))
        if files is not None:
            base = Path(path) if isinstance(path, (str, os.PathLike)) else None
            base = base if base is None or base.is_dir() else base.parent
            pairs = [(Path(f), base) for f in files]
        else:
            pairs = self._inputs(path)
        images: list[ImageRecord] = []
        errors: list[ErrorRecord] = []
        for result in self._ordered_results(pairs):
            if on_file is not None:
                on_file(result)
            images.extend(result.images)
            if result.error is not None:
                errors.append(result.error)
            while len(images) >= batch_size:
                yield images[:batch_size], errors
                images, errors = images[batch_size:], []
            if len(errors) >= batch_size:
                yield [], errors
                errors = []
        if images or errors:
            yield images, errors

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_process_pool"] = None  # a pool does not travel to its own workers
        state["_decode_pool"] = None
        return state

    def close(self) -> None:
        """Stop the decode workers or the process pool (no-op for threads)."""
        if self._process_pool is not None:
            self._process_pool.shutdown(cancel_futures=True)
            self._process_pool = None
        if self._decode_pool is not None:
            self._decode_pool.close()
            self._decode_pool = None

    def _pool(self) -> DecodePool:
        if self._decode_pool is None:
            inner = copy.copy(self)
            inner.__dict__.update(self.__getstate__())
            inner.isolate, inner.workers = False, 1  # what runs inside one worker
            self._decode_pool = DecodePool(
                inner, workers=self.workers, timeout_s=self.decode_timeout_s,
                memory_mb=self.worker_memory_mb, worker_init=self.worker_init,
            )
        return self._decode_pool

    @property
    def decode_pool(self) -> DecodePool | None:
        """The supervised worker pool once it started (its ``crashed``/``timed_out`` counters)."""
        return self._decode_pool

    def __enter__(self) -> DicomLoader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _executor(self) -> Any:
        if self.executor == "process":
            if self._process_pool is None:
                # forkserver: forking a process that runs Holoscan/pydicom threads is unsafe
                context = multiprocessing.get_context("forkserver")
                self._process_pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
            return nullcontext(self._process_pool)
        return ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="dicom-decode")

    def _load_chunk(self, pairs: list[tuple[Path, Path | None]]) -> list[FileResult]:
        return [self.load_file_result(p, r) for p, r in pairs]

    def _ordered_results(self, pairs: list[tuple[Path, Path | None]]) -> Iterator[FileResult]:
        if not pairs:
            return
        if self.isolate:
            for result in self._pool().map(pairs):
                self._log_result(result)
                yield result
            return
        if self.workers == 1:
            for p, r in pairs:
                yield self.load_file_result(p, r)
            return
        # Processes get several files per task: one round trip per small file would cost
        # more than decoding it. Threads take one file at a time (no round trip to amortize).
        chunk = 1 if self.executor == "thread" else max(1, min(8, len(pairs) // (self.workers * 4)))
        chunks = [pairs[i : i + chunk] for i in range(0, len(pairs), chunk)]
        window = self.workers * 2
        with self._executor() as pool:
            pending: deque[Future[list[FileResult]]] = deque()
            for part in chunks:
                pending.append(pool.submit(self._load_chunk, part))
                if len(pending) >= window:
                    yield from pending.popleft().result()
            while pending:
                yield from pending.popleft().result()


def load(path: str | os.PathLike, **options: Any) -> tuple[list[ImageRecord], list[ErrorRecord]]:
    """Shortcut for ``DicomLoader(**options).load(path)``."""
    return DicomLoader(**options).load(path)


__all__ = [
    "CASE_SIDECAR", "DEFAULT_IGNORE", "DEFAULT_MAX_PIXELS", "MEDIA_DIRECTORY_STORAGE", "REASONS", "DicomLoader",
    "FileResult", "FrameInfo", "LoaderError", "body_site_of", "build_context", "decode_dataset", "grey_to_uint8",
    "load", "read_dicomdir", "scan", "to_rgb8",
]
