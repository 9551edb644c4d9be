"""Crash-isolated decoding: untrusted files are decoded in supervised worker processes.

A damaged file can take a codec down in ways no ``except`` clause sees: a C decoder (openjpeg,
libjpeg, CharLS) can segfault or abort, a Rust decoder (pylibjpeg-rle) can panic (pyo3's
``PanicException`` derives from ``BaseException``), and a decoder can spin forever. The
:class:`DecodePool` decodes each file in one of ``workers`` processes (started by the
``forkserver``, so that no thread state of the parent is copied) and watches them:

* a worker that dies while decoding a file (a signal, an abort, ``os._exit``) turns that file
  into an error record with reason ``decoder_crashed`` and is replaced by a fresh worker;
* a worker that is still busy with one file after ``timeout_s`` seconds is killed, the file
  becomes ``decode_timeout``, and a fresh worker takes its place;
* every worker runs under an address-space limit (``memory_mb``, ``RLIMIT_AS``): an allocation
  past it fails inside the worker (``MemoryError`` → ``decoder_crashed``) instead of swapping
  the host;
* a worker whose resident memory has grown past ``recycle_rss_mb`` is replaced after the file
  it finished (codecs leak on damaged input: pylibjpeg-libjpeg keeps about 200 KB per JPEG frame
  it fails to decode), so a long-running service stays flat.

Results come back in input order. Decoded pixels of one image above ``SHM_MIN_BYTES`` travel
through a POSIX shared-memory file that the parent maps (no pickling, no copy on the receiving
side); smaller ones are pickled with the rest of the result. Workers write nothing to the
terminal (their standard error goes to ``/dev/null``; a Rust panic message included): what they
have to say comes back as the result, and the parent logs one line per failed file.

Named inputs / outputs: none (plain Python, used by
:class:`~burnscope.operators.dicom_loader.core.DicomLoader`).
"""

from __future__ import annotations

import itertools
import logging
import mmap
import multiprocessing
import os
import signal
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import numpy as np

from burnscope.common.messages import ErrorRecord
from burnscope.operators.dicom_loader.records import FileResult

log = logging.getLogger("burnscope.dicom_loader")

#: Default seconds one file may take in a worker before the worker is killed.
DEFAULT_TIMEOUT_S = 30.0
#: Default address-space limit of one worker (MiB): room for the largest image ``max_pixels``
#: allows (128 Mpx RGB is 384 MiB) and the decoders' intermediate copies.
DEFAULT_MEMORY_MB = 4096
#: Default resident size (MiB) past which a worker is replaced after its current file.
DEFAULT_RECYCLE_RSS_MB = 1024
#: Pixel arrays at least this large come back through shared memory instead of the pipe.
SHM_MIN_BYTES = 256 * 1024
_START_TIMEOUT_S = 120.0
_DEPTH = 2  # files queued per worker
_SHM_DIR = Path("/dev/shm")
_SHM_PREFIX = "burnscope-decode"
#: Modules the fork server imports once, so that each new worker starts warm.
_PRELOAD = ["burnscope.operators.dicom_loader.core"]


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


@dataclass
class _Shared:
    """Where a worker left one pixel array: a file in /dev/shm (the parent maps and unlinks it)."""

    name: str
    shape: tuple[int, ...]
    dtype: str


def _shm_available() -> bool:
    return _SHM_DIR.is_dir() and os.access(_SHM_DIR, os.W_OK)


def _to_shared(array: np.ndarray, name: str) -> _Shared:
    path = _SHM_DIR / name
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, array.nbytes)
        with mmap.mmap(fd, array.nbytes) as mem:
            np.frombuffer(mem, dtype=array.dtype, count=array.size).reshape(array.shape)[...] = array
    except BaseException:
        os.unlink(path)
        raise
    finally:
        os.close(fd)
    return _Shared(name, tuple(array.shape), array.dtype.str)


def _from_shared(ref: _Shared) -> np.ndarray:
    path = _SHM_DIR / ref.name
    fd = os.open(path, os.O_RDWR)
    try:
        size = int(np.prod(ref.shape)) * np.dtype(ref.dtype).itemsize
        mem = mmap.mmap(fd, size)
    finally:
        os.close(fd)
        os.unlink(path)  # the mapping stays valid; the memory goes with the last reference
    return np.frombuffer(mem, dtype=np.dtype(ref.dtype)).reshape(ref.shape)


def _remove_shared(prefix: str) -> None:
    for path in _SHM_DIR.glob(prefix + "*"):
        try:
            path.unlink()
        except OSError:
            pass


# ------------------------------------------------------------------------------ worker side


def _quiet_worker() -> None:
    """A worker prints nothing: no log records, no warnings, no native messages on stderr."""
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    except OSError:
        pass


def _limit_memory(memory_mb: int | None) -> None:
    if not memory_mb:
        return
    try:
        import resource

        limit = int(memory_mb) * 1024 * 1024
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, ValueError, OSError):
        pass  # not on this platform: the time limit still holds


def _worker_main(conn: Connection, loader: Any, memory_mb: int | None, worker_init: Callable[[], None] | None,
                 use_shm: bool, quiet: bool) -> None:
    if quiet:
        _quiet_worker()
    if worker_init is not None:
        worker_init()
    _limit_memory(memory_mb)
    conn.send("ready")
    prefix = f"{_SHM_PREFIX}-{os.getppid()}-{os.getpid()}-"
    counter = itertools.count()
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return  # the parent closed the pipe (or died): nothing left to do
        if task is None:
            return
        task_id, path, root = task
        result = loader._load_one(Path(path), Path(root) if root is not None else None)
        try:
            if use_shm:
                for record in result.images:
                    pixels = record.pixels
                    if isinstance(pixels, np.ndarray) and pixels.nbytes >= SHM_MIN_BYTES:
                        record.pixels = _to_shared(np.ascontiguousarray(pixels), f"{prefix}{next(counter)}")
            conn.send((task_id, result, _rss_mb()))
        except MemoryError:
            _remove_shared(prefix)
            conn.send((task_id, _error(result.path, "decoder_crashed", "the decoder ran out of memory"), _rss_mb()))
        except (EOFError, OSError, BrokenPipeError):
            return


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def _error(path: Path, reason: str, message: str, uid: str = "") -> FileResult:
    return FileResult(path=path, error=ErrorRecord(str(path), reason, message, uid))


# ------------------------------------------------------------------------------ parent side


@dataclass
class _Worker:
    process: Any
    conn: Connection
    #: Files sent to this worker and not answered yet, in the order it works on them.
    tasks: deque[tuple[int, Path, Path | None]] = field(default_factory=deque)
    #: When the worker began the first of ``tasks`` (it starts the next as it answers one).
    started: float = 0.0
    rss_mb: float = 0.0
    retiring: bool = False


class DecodePool:
    """``workers`` supervised decode processes; :meth:`map` loads files there, in input order.

    Parameters:
        loader: the in-process loader each worker runs (a ``DicomLoader`` with ``isolate=False``;
            it is pickled to the workers once, when they start).
        workers: number of worker processes.
        timeout_s: seconds one file may take before its worker is killed (``decode_timeout``).
        memory_mb: address-space limit per worker (None or 0: no limit).
        worker_init: a picklable function each worker calls once before its first file (e.g. to
            register extra pydicom pixel-data plugins).
        context: multiprocessing start method, ``"forkserver"`` (default) or ``"spawn"``.
        quiet: workers print nothing (default); False leaves their stderr on the terminal.
        recycle_rss_mb: replace a worker once its resident memory exceeds this (MiB; 0: never).

    Workers start on first use and are reused until :meth:`close`.
    """

    def __init__(
        self,
        loader: Any,
        workers: int = 1,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        memory_mb: int | None = DEFAULT_MEMORY_MB,
        worker_init: Callable[[], None] | None = None,
        context: str = "forkserver",
        quiet: bool = True,
        recycle_rss_mb: float = DEFAULT_RECYCLE_RSS_MB,
    ) -> None:
        if context not in ("forkserver", "spawn"):
            raise ValueError(f"context must be 'forkserver' or 'spawn', not {context!r}")
        self.loader = loader
        self.workers = max(1, int(workers))
        self.timeout_s = float(timeout_s) if timeout_s else None
        self.memory_mb = memory_mb
        self.worker_init = worker_init
        self.quiet = quiet
        self.recycle_rss_mb = float(recycle_rss_mb or 0)
        self._ctx = multiprocessing.get_context(context)
        if context == "forkserver":
            self._ctx.set_forkserver_preload(_PRELOAD)
        self._use_shm = _shm_available()
        self._pool: list[_Worker] = []
        #: Counters: ``crashed`` (workers lost to a crash), ``timed_out`` (killed), ``recycled``
        #: (replaced for their memory), ``started``.
        self.recycled = 0
        self.crashed = 0
        self.timed_out = 0
        self.started = 0

    # -- workers -------------------------------------------------------------------------
    def _start_worker(self) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=_worker_main, name="dicom-decode-worker", daemon=True,
            args=(child, self.loader, self.memory_mb, self.worker_init, self._use_shm, self.quiet),
        )
        process.start()
        child.close()
        self.started += 1
        return _Worker(process, parent)

    def _await_ready(self, worker: _Worker) -> None:
        """Block until a new worker has started (imports done, ``worker_init`` run)."""
        try:
            if worker.conn.poll(_START_TIMEOUT_S) and worker.conn.recv() == "ready":
                return
        except (EOFError, OSError):
            pass
        worker.process.join(timeout=1)
        code = worker.process.exitcode
        self._retire(worker, kill=True)
        raise RuntimeError(
            f"the DICOM decode worker processes cannot start (exit code {code}). A script that loads DICOM "
            "with isolation must start from `if __name__ == '__main__':` (worker processes import the main "
            "module), and a worker_init function must be importable; isolate=False decodes in-process instead"
        )

    def _retire(self, worker: _Worker, kill: bool) -> None:
        if kill and worker.process.is_alive():
            worker.process.kill()
        worker.process.join(timeout=5)
        if worker.process.is_alive():  # did not exit when asked
            worker.process.kill()
            worker.process.join(timeout=5)
        worker.conn.close()
        if self._use_shm and worker.process.pid is not None:
            _remove_shared(f"{_SHM_PREFIX}-{os.getpid()}-{worker.process.pid}-")

    def _replace(self, worker: _Worker, kill: bool) -> None:
        self._retire(worker, kill)
        fresh = self._start_worker()
        self._pool[self._pool.index(worker)] = fresh
        self._await_ready(fresh)

    def close(self) -> None:
        """Stop every worker (idle ones exit at once; busy ones are killed)."""
        pool, self._pool = self._pool, []
        for worker in pool:
            try:
                if not worker.tasks:
                    worker.conn.send(None)
            except (OSError, ValueError):
                pass
        for worker in pool:
            if not worker.tasks:
                worker.process.join(timeout=2)
            self._retire(worker, kill=True)

    def __enter__(self) -> DecodePool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # a forgotten pool must not leave processes behind
        try:
            self.close()
        except Exception:
            pass

    # -- results -------------------------------------------------------------------------
    def _receive(self, worker: _Worker) -> FileResult | None:
        """The worker's result, or None when it died before sending one."""
        try:
            task_id, result, worker.rss_mb = worker.conn.recv()
        except (EOFError, OSError):
            return None
        except Exception as exc:  # an unpicklable result: report it, keep the worker
            return _error(worker.tasks[0][1], "decoder_crashed", f"result could not be read back: {type(exc).__name__}")
        if self._use_shm:
            for record in result.images:
                if isinstance(record.pixels, _Shared):
                    record.pixels = _from_shared(record.pixels)
        return result

    def _crash_record(self, worker: _Worker) -> FileResult:
        worker.process.join(timeout=5)
        code = worker.process.exitcode
        if code is not None and code < 0:
            how = f"killed by {_signal_name(-code)}"
        elif code is not None:
            how = f"exit code {code}"
        else:
            how = "it stopped answering"
        self.crashed += 1
        return _error(worker.tasks[0][1], "decoder_crashed", f"the decoder crashed ({how}); the file was skipped")

    def map(self, pairs: Iterable[tuple[Path, Path | None]]) -> Iterator[FileResult]:
        """Load ``(path, root)`` pairs in the workers; yield one result per pair, in input order."""
        items = list(pairs)
        if not items:
            return
        fresh = [self._start_worker() for _ in range(min(self.workers, len(items)) - len(self._pool))]
        self._pool.extend(fresh)
        for worker in fresh:
            try:
                self._await_ready(worker)
            except RuntimeError:
                self.close()
                raise
        window = len(self._pool) * 4  # results buffered out of order at most
        results: dict[int, FileResult] = {}
        retry: deque[int] = deque()  # files sent to a worker that died before starting them
        next_in, next_out = 0, 0

        def requeue(worker: _Worker) -> None:
            """The worker's files after the one it was on go back to the queue, in order."""
            retry.extendleft(index for index, _, _ in reversed(list(worker.tasks)[1:]))

        try:
            while next_out < len(items):
                for worker in self._pool:
                    # two files per worker: it starts the next one while the parent reads a result
                    while len(worker.tasks) < _DEPTH and not worker.retiring and (
                        retry or (next_in < len(items) and next_in < next_out + window)
                    ):
                        from_retry = bool(retry)
                        index = retry.popleft() if from_retry else next_in
                        path, root = items[index]
                        try:
                            worker.conn.send((index, str(path), None if root is None else str(root)))
                        except (OSError, ValueError):  # the worker died: the file waits for another
                            if from_retry:
                                retry.appendleft(index)
                            if not worker.tasks:  # died idle (a busy one is handled below)
                                self._replace(worker, kill=True)
                            break
                        if not from_retry:
                            next_in += 1
                        if not worker.tasks:
                            worker.started = time.monotonic()
                        worker.tasks.append((index, Path(path), Path(root) if root is not None else None))
                busy = [w for w in self._pool if w.tasks]
                timeout = None
                if self.timeout_s is not None and busy:
                    oldest = min(w.started for w in busy)
                    timeout = max(0.0, oldest + self.timeout_s - time.monotonic())
                ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=timeout))
                now = time.monotonic()
                for worker in busy:
                    index = worker.tasks[0][0]
                    if worker.conn in ready or worker.process.sentinel in ready:
                        result = self._receive(worker) if worker.conn.poll() else None
                        if result is None:
                            results[index] = self._crash_record(worker)
                            requeue(worker)
                            self._replace(worker, kill=True)
                            continue
                        results[index] = result
                        worker.tasks.popleft()
                        worker.started = now
                        if self.recycle_rss_mb and worker.rss_mb > self.recycle_rss_mb:
                            worker.retiring = True  # no new files; replaced once its queue is empty
                        if worker.retiring and not worker.tasks:
                            self.recycled += 1
                            worker.conn.send(None)  # idle: it exits on its own
                            self._replace(worker, kill=False)
                    elif self.timeout_s is not None and now - worker.started >= self.timeout_s:
                        self.timed_out += 1
                        results[index] = _error(
                            worker.tasks[0][1], "decode_timeout",
                            f"decoding took longer than {self.timeout_s:g} s; the decoder was stopped",
                        )
                        requeue(worker)
                        self._replace(worker, kill=True)
                while next_out in results:
                    yield results.pop(next_out)
                    next_out += 1
        except BaseException:
            self.close()  # an abandoned map (or Ctrl-C) leaves no worker half-way through a file
            raise


__all__ = ["DEFAULT_MEMORY_MB", "DEFAULT_RECYCLE_RSS_MB", "DEFAULT_TIMEOUT_S", "SHM_MIN_BYTES", "DecodePool"]
