"""Dynamic batching in front of the image tower, in the manner of Triton's (no Holoscan import).

Preprocessed images arrive in batches of any size; :class:`DynamicBatcher` splits them into
rows, queues the rows (STAT first, then in arrival order) and forms the batches the tower runs:

* a batch leaves when it holds ``max_batch`` images, or when its oldest image has waited
  ``max_delay_ms`` (0: at once), or at once when it holds a STAT image (a STAT image flushes the
  batch it joins);
* a batch is formed only when its lane can take it (:class:`LaneCredit`): while the tower is
  busy, images wait here — in priority order — instead of in a first-in-first-out connector, so
  the next batch is the best one when the tower frees up (Triton forms batches when a model
  instance is free, likewise);
* the **emergency lane** (``take("stat")``) gets batches of STAT images only, without waiting,
  run by a tower of its own (on a GPU, on a high-priority CUDA stream), so a STAT image never
  waits for a routine batch to finish. When that lane is busy, STAT images go first into the
  routine lane's next batch.

Batch sizes: a batch has 1…``max_batch`` rows. Engines with compiled or graph-captured sizes
(torch CUDA graphs, TensorRT profiles) pad a batch up to their nearest configured size and drop
the padding rows (``burnscope.engines.base.pad_to``); ONNX Runtime on the CPU runs the exact size.
:func:`engine_batch_sizes` gives the sizes worth compiling for a ``max_batch``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from burnscope.common.messages import ROUTINE, STAT, ImageBatch, ImageContext
from burnscope.operators.priority.core import PriorityQueue

LANES = (STAT, ROUTINE)


def engine_batch_sizes(max_batch: int) -> list[int]:
    """Powers of two up to ``max_batch``, and ``max_batch`` itself: the sizes an engine with fixed
    sizes is built for, so that padding wastes at most half a batch."""
    sizes, size = {int(max_batch)}, 1
    while size < max_batch:
        sizes.add(size)
        size *= 2
    return sorted(sizes)


def stack_rows(rows: Sequence[Any]) -> Any:
    """One N×… array of single-row arrays (NumPy, CuPy or torch; the first row's kind)."""
    first = rows[0]
    if isinstance(first, np.ndarray):
        return np.concatenate(rows, axis=0)
    module = type(first).__module__.split(".", 1)[0]
    if module == "torch":
        import torch

        return torch.cat(list(rows), dim=0)
    if module == "cupy":
        import cupy

        return cupy.concatenate(rows, axis=0)
    return np.concatenate([np.asarray(r) for r in rows], axis=0)


class LaneCredit:
    """How many batches a lane may have in flight (default 1): the batcher takes a credit when
    it sends a batch, the tower gives it back when the batch is done. Thread-safe."""

    def __init__(self, capacity: int = 1) -> None:
        self.capacity = int(capacity)
        self._in_flight = 0
        self._lock = threading.Lock()

    def acquire(self) -> bool:
        with self._lock:
            if self._in_flight >= self.capacity:
                return False
            self._in_flight += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def free(self) -> bool:
        return self._in_flight < self.capacity


@dataclass
class _Row:
    context: ImageContext
    row: Any
    thumbnail: Any
    queued_at: float


@dataclass
class FormedBatch:
    """A batch the batcher let go: the tower's input, why it left and how long its images waited."""

    batch: ImageBatch
    lane: str
    reason: str  # "full" | "delay" | "stat"
    waited_s: list[float]

    @property
    def size(self) -> int:
        return len(self.batch.contexts)


class DynamicBatcher:
    """See the module docstring. ``clock`` (monotonic seconds) is injectable for tests.

    Parameters:
        max_batch: most images per batch (≥ 1).
        max_delay_ms: longest wait of a batch's oldest image before a partial batch leaves.
    """

    def __init__(self, max_batch: int = 8, max_delay_ms: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if int(max_batch) < 1:
            raise ValueError("max_batch must be at least 1")
        if float(max_delay_ms) < 0:
            raise ValueError("max_delay_ms must not be negative")
        self.max_batch = int(max_batch)
        self.max_delay_s = float(max_delay_ms) / 1000.0
        self.clock = clock
        self._queue: PriorityQueue[_Row] = PriorityQueue()
        self._stat: PriorityQueue[_Row] = PriorityQueue()  # the STAT rows again, for the emergency lane
        self._taken: set[int] = set()
        self._oldest: dict[int, float] = {}
        self._lock = threading.Lock()

    # -- in ------------------------------------------------------------------------------
    def add(self, batch: ImageBatch | None) -> int:
        """Queues the rows of ``batch`` (an empty or None batch adds nothing); returns how many."""
        if batch is None or not batch.contexts or batch.tensor is None:
            return 0
        now = self.clock()
        thumbs = batch.thumbnails or [None] * len(batch.contexts)
        with self._lock:
            for i, (ctx, thumb) in enumerate(zip(batch.contexts, thumbs)):
                row = _Row(ctx, batch.tensor[i : i + 1], thumb, now)
                self._queue.push(row, ctx.priority)
                self._oldest[id(row)] = now
                if ctx.is_stat:
                    self._stat.push(row, STAT)
        return len(batch.contexts)

    # -- state ---------------------------------------------------------------------------
    def depth(self, priority: str | None = None) -> int:
        """Images waiting (of one priority, or all)."""
        with self._lock:
            return self._live(self._stat) if priority == STAT else (
                self._live(self._queue) - (self._live(self._stat) if priority == ROUTINE else 0))

    def _live(self, queue: PriorityQueue[_Row]) -> int:
        return sum(1 for r in queue.items() if id(r) not in self._taken)

    def oldest_wait_s(self) -> float:
        with self._lock:
            waits = [self.clock() - t for t in self._oldest.values()]
        return max(waits, default=0.0)

    # -- out -----------------------------------------------------------------------------
    def _pop_live(self, queue: PriorityQueue[_Row], n: int) -> list[_Row]:
        rows: list[_Row] = []
        while len(rows) < n and queue:
            row = queue.pop()
            if id(row) in self._taken:  # already left through the other queue
                self._taken.discard(id(row))
                continue
            rows.append(row)
        return rows

    def take(self, lane: str = ROUTINE, now: float | None = None) -> FormedBatch | None:
        """The next batch for ``lane`` if one should leave now, else None (see the module docstring)."""
        now = self.clock() if now is None else now
        with self._lock:
            if lane == STAT:
                rows = self._pop_live(self._stat, self.max_batch)
                reason = "stat"
            else:
                live = [r for r in self._queue.items() if id(r) not in self._taken][: self.max_batch]
                if not live:
                    return None
                if any(r.context.is_stat for r in live):
                    reason = "stat"
                elif len(live) >= self.max_batch:
                    reason = "full"
                elif now - min(self._oldest[id(r)] for r in live) >= self.max_delay_s:
                    reason = "delay"
                else:
                    return None
                rows = self._pop_live(self._queue, len(live))
            if not rows:
                return None
            for r in rows:
                self._oldest.pop(id(r), None)
                if r.context.is_stat and lane != STAT:
                    self._taken.add(id(r))  # still in the STAT queue: skip it there
                elif lane == STAT:
                    self._taken.add(id(r))  # still in the main queue: skip it there
        thumbs = [r.thumbnail for r in rows]
        batch = ImageBatch(
            contexts=[r.context for r in rows],
            tensor=stack_rows([r.row for r in rows]),
            thumbnails=None if all(t is None for t in thumbs) else thumbs,
        )
        return FormedBatch(batch, lane, reason, [now - r.queued_at for r in rows])

    def seconds_until_due(self, now: float | None = None) -> float | None:
        """How long until the routine lane's partial batch is due (0: now; None: nothing queued)."""
        now = self.clock() if now is None else now
        with self._lock:
            if not self._oldest:
                return None
            return max(0.0, min(self._oldest.values()) + self.max_delay_s - now)


__all__ = ["DynamicBatcher", "FormedBatch", "LANES", "LaneCredit", "engine_batch_sizes", "stack_rows"]
