"""Holoscan wrappers of the dynamic batcher (:mod:`burnscope.operators.batching.core`) and of the
join of the two inference lanes."""

from __future__ import annotations

import datetime
from typing import Any

import numpy as np

from burnscope.operators.holoscan_runtime import holoscan  # noqa: F401  (preloads libcudart)
from holoscan.conditions import PeriodicCondition
from holoscan.core import ConditionType, Operator, OperatorSpec

from burnscope.common.messages import ROUTINE, STAT, EmbeddingBatch, ImageBatch
from burnscope.operators.batching.core import DynamicBatcher, LaneCredit


class DynamicBatcherOp(Operator):
    """Forms the image tower's batches: full, or after ``max_delay_ms``, or at once for STAT.

    Named inputs:
        batch: ``ImageBatch`` of any size (from the preprocessing; may be empty). Never blocks
            the stages before it: images wait here, STAT first.

    Named outputs:
        batch: ``ImageBatch`` of 1…``max_batch`` images for the routine lane's tower (STAT images
            first when the emergency lane is busy); emitted only when ``routine_lane`` has a credit.
        stat: ``ImageBatch`` of STAT images only for the emergency lane's tower; emitted only when
            ``stat_lane`` has a credit. Not declared when ``stat_lane`` is None.

    The operator ticks every ``tick_ms`` (a ``PeriodicCondition`` it adds itself) and on each tick
    takes what arrived, then sends what is due.

    Parameters:
        batcher: a ready :class:`DynamicBatcher` (else one from ``max_batch``, ``max_delay_ms``).
        routine_lane, stat_lane: :class:`LaneCredit` s the towers give back when a batch is done.
        tick_ms: how often the operator looks (default: a quarter of ``max_delay_ms``, 2–5 ms).
        metrics: optional recorder with ``observe_batch(size, lane, reason)``,
            ``observe_stage(stage, seconds)`` and ``set_queue(name, depth)``.
    """

    def __init__(self, fragment: Any, *args: Any, batcher: DynamicBatcher | None = None, max_batch: int = 8,
                 max_delay_ms: float = 5.0, routine_lane: LaneCredit | None = None,
                 stat_lane: LaneCredit | None = None, tick_ms: float | None = None, metrics: Any = None,
                 **kwargs: Any) -> None:
        self.batcher = batcher or DynamicBatcher(max_batch, max_delay_ms)
        self.routine_lane = routine_lane or LaneCredit()
        self.stat_lane = stat_lane
        self.metrics = metrics
        self.batches_emitted = {ROUTINE: 0, STAT: 0}
        tick = tick_ms if tick_ms is not None else min(5.0, max(2.0, self.batcher.max_delay_s * 1000 / 4))
        period = PeriodicCondition(fragment, recess_period=datetime.timedelta(milliseconds=tick), name="batch_tick")
        super().__init__(fragment, period, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("batch").condition(ConditionType.NONE)
        spec.output("batch")
        if self.stat_lane is not None:
            spec.output("stat")

    def _send(self, op_output: Any, lane: str, credit: LaneCredit, port: str) -> None:
        while credit.acquire():
            formed = self.batcher.take(lane)
            if formed is None:
                credit.release()
                return
            op_output.emit(formed.batch, port)
            self.batches_emitted[lane] += 1
            if self.metrics is not None:
                self.metrics.observe_batch(formed.size, lane, formed.reason)
                for waited in formed.waited_s:
                    self.metrics.observe_stage("batch_wait", waited)

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        while True:  # everything that arrived since the last tick (the receiver may hold several)
            batch = op_input.receive("batch")
            if batch is None:
                break
            self.batcher.add(batch)
        if self.stat_lane is not None:
            self._send(op_output, STAT, self.stat_lane, "stat")
        self._send(op_output, ROUTINE, self.routine_lane, "batch")
        if self.metrics is not None:
            self.metrics.set_queue("batcher", self.batcher.depth())

    @property
    def depth(self) -> int:
        return self.batcher.depth()


def join_embeddings(first: EmbeddingBatch | None, second: EmbeddingBatch | None) -> EmbeddingBatch | None:
    """One EmbeddingBatch of two (``first``'s images first); None when both are None."""
    parts = [b for b in (first, second) if b is not None]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    a, b = parts
    if not b.contexts:
        return a
    if not a.contexts:
        return b
    thumbs = None
    if a.thumbnails is not None or b.thumbnails is not None:
        thumbs = list(a.thumbnails or [None] * len(a.contexts)) + list(b.thumbnails or [None] * len(b.contexts))
    return EmbeddingBatch(contexts=list(a.contexts) + list(b.contexts),
                          embeddings=np.concatenate([a.embeddings, b.embeddings], axis=0),
                          model=a.model, thumbnails=thumbs)


class LaneJoinOp(Operator):
    """Joins the emergency lane and the routine lane after their towers.

    Named inputs:
        stat: ``EmbeddingBatch`` from the emergency lane's tower.
        routine: ``EmbeddingBatch`` from the routine lane's tower.
        The operator runs when either has a message (``MultiMessageAvailableCondition``, sum of all).

    Named outputs:
        embeddings: ``EmbeddingBatch`` — what arrived, the emergency lane's images first.
    """

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("stat").condition(ConditionType.NONE)
        spec.input("routine").condition(ConditionType.NONE)
        spec.multi_port_condition(kind=ConditionType.MULTI_MESSAGE_AVAILABLE, port_names=["stat", "routine"],
                                  sampling_mode="SumOfAll", min_sum=1)
        spec.output("embeddings")

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        joined = join_embeddings(op_input.receive("stat"), op_input.receive("routine"))
        if joined is not None:
            op_output.emit(joined, "embeddings")


__all__ = ["DynamicBatcherOp", "LaneJoinOp", "join_embeddings"]
