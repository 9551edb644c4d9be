"""The dynamic batcher: full batches, the delay, STAT flushes and its own lane, lane credits,
engine sizes; and the batcher operator in a real Holoscan graph."""

from __future__ import annotations

import numpy as np
import pytest

from burnscope.common.messages import ROUTINE, STAT, EmbeddingBatch, ImageBatch, ImageContext, ModelInfo
from burnscope.operators.batching.core import DynamicBatcher, LaneCredit, engine_batch_sizes, stack_rows
from burnscope.operators.batching.operator import join_embeddings


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _batch(names: list[str], stat: set[str] = frozenset()) -> ImageBatch:
    contexts = [ImageContext(source=n, priority=STAT if n in stat else ROUTINE) for n in names]
    tensor = np.stack([np.full((3, 4, 4), i, np.float32) for i, _ in enumerate(names)])
    return ImageBatch(contexts, tensor, [np.full((2, 2, 3), i, np.uint8) for i, _ in enumerate(names)])


def _names(formed) -> list[str]:
    return [c.source for c in formed.batch.contexts]


def test_a_full_batch_leaves_at_once_and_keeps_rows_with_their_context():
    b = DynamicBatcher(max_batch=3, max_delay_ms=50, clock=Clock())
    b.add(_batch(["a", "b", "c", "d"]))
    formed = b.take(ROUTINE)
    assert formed.reason == "full" and _names(formed) == ["a", "b", "c"]
    assert formed.batch.tensor.shape == (3, 3, 4, 4)
    assert [float(formed.batch.tensor[i, 0, 0, 0]) for i in range(3)] == [0.0, 1.0, 2.0]
    assert [int(t[0, 0, 0]) for t in formed.batch.thumbnails] == [0, 1, 2]
    assert b.take(ROUTINE) is None and b.depth() == 1  # "d" waits for the delay


def test_a_partial_batch_leaves_when_its_oldest_image_has_waited_max_delay():
    clock = Clock()
    b = DynamicBatcher(max_batch=8, max_delay_ms=10, clock=clock)
    b.add(_batch(["a"]))
    clock.t += 0.006
    b.add(_batch(["b"]))
    assert b.take(ROUTINE) is None
    assert b.seconds_until_due() == pytest.approx(0.004)
    clock.t += 0.004
    formed = b.take(ROUTINE)
    assert formed.reason == "delay" and _names(formed) == ["a", "b"]
    assert formed.waited_s == pytest.approx([0.010, 0.004])
    assert b.seconds_until_due() is None


def test_zero_delay_sends_whatever_is_there():
    b = DynamicBatcher(max_batch=8, max_delay_ms=0, clock=Clock())
    b.add(_batch(["a", "b"]))
    assert _names(b.take(ROUTINE)) == ["a", "b"]


def test_a_stat_image_flushes_the_batch_it_joins_and_goes_first():
    b = DynamicBatcher(max_batch=4, max_delay_ms=1000, clock=Clock())
    b.add(_batch(["r1", "r2"]))
    assert b.take(ROUTINE) is None
    b.add(_batch(["s1"], stat={"s1"}))
    formed = b.take(ROUTINE)
    assert formed.reason == "stat" and _names(formed) == ["s1", "r1", "r2"]


def test_stat_overtakes_a_queue_longer_than_one_batch():
    b = DynamicBatcher(max_batch=2, max_delay_ms=0, clock=Clock())
    b.add(_batch([f"r{i}" for i in range(6)]))
    b.add(_batch(["s1", "s2"], stat={"s1", "s2"}))
    assert (b.depth(STAT), b.depth(ROUTINE)) == (2, 6)
    assert _names(b.take(ROUTINE)) == ["s1", "s2"]
    assert _names(b.take(ROUTINE)) == ["r0", "r1"]


def test_the_emergency_lane_takes_stat_images_only_and_never_twice():
    b = DynamicBatcher(max_batch=4, max_delay_ms=1000, clock=Clock())
    b.add(_batch(["r1", "s1", "r2", "s2"], stat={"s1", "s2"}))
    stat = b.take(STAT)
    assert stat.lane == STAT and _names(stat) == ["s1", "s2"]
    assert b.take(STAT) is None and b.depth(STAT) == 0 and b.depth() == 2
    assert b.take(ROUTINE) is None  # the routine images still wait for their delay
    # a STAT image the routine lane took is not sent again by the emergency lane
    b.add(_batch(["s3"], stat={"s3"}))
    assert _names(b.take(ROUTINE)) == ["s3", "r1", "r2"]
    assert b.take(STAT) is None and b.depth() == 0


def test_lane_credits():
    credit = LaneCredit()
    assert credit.acquire() and not credit.acquire() and not credit.free
    credit.release()
    assert credit.free and credit.in_flight == 0
    credit.release()  # never below zero
    assert credit.in_flight == 0


@pytest.mark.parametrize("max_batch, sizes", [(1, [1]), (8, [1, 2, 4, 8]), (12, [1, 2, 4, 8, 12]), (32, [1, 2, 4, 8, 16, 32])])
def test_engine_sizes_pad_by_at_most_half(max_batch, sizes):
    from burnscope.engines.base import pad_to

    assert engine_batch_sizes(max_batch) == sizes
    for n in range(1, max_batch + 1):
        assert n <= pad_to(n, sizes) < 2 * n


def test_bad_settings():
    with pytest.raises(ValueError, match="max_batch"):
        DynamicBatcher(max_batch=0)
    with pytest.raises(ValueError, match="max_delay_ms"):
        DynamicBatcher(max_delay_ms=-1)


def test_stack_rows_keeps_torch_tensors_torch():
    import torch

    rows = [torch.zeros((1, 3, 2, 2)), torch.ones((1, 3, 2, 2))]
    out = stack_rows(rows)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3, 2, 2) and float(out[1].sum()) == 12.0


def test_join_embeddings_puts_the_first_lane_first():
    model = ModelInfo("m", "w", True)
    a = EmbeddingBatch([ImageContext("s")], np.ones((1, 4), np.float32), model, thumbnails=None)
    b = EmbeddingBatch([ImageContext("r1"), ImageContext("r2")], np.zeros((2, 4), np.float32), model,
                       thumbnails=[np.zeros((1, 1, 3), np.uint8)] * 2)
    joined = join_embeddings(a, b)
    assert [c.source for c in joined.contexts] == ["s", "r1", "r2"]
    assert joined.embeddings[:, 0].tolist() == [1.0, 0.0, 0.0]
    assert joined.thumbnails[0] is None and len(joined.thumbnails) == 3
    assert join_embeddings(None, b) is b and join_embeddings(None, None) is None
