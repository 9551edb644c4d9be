"""The emergency lane on a GPU: the STAT tower's torch engine runs on a high-priority CUDA stream
(priority -1), with its own CUDA graphs, and gives the routine engine's embeddings; the batcher's
engine sizes are captured and a padded batch is exact."""

from __future__ import annotations

import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from burnscope.common.gpu import torch_cuda_usable  # noqa: E402
from burnscope.engines import export  # noqa: E402
from burnscope.engines.base import create_engine  # noqa: E402
from burnscope.engines.model import load_biomedclip  # noqa: E402
from burnscope.operators.batching.core import engine_batch_sizes  # noqa: E402

pytestmark = pytest.mark.skipif(not torch_cuda_usable(), reason="no usable CUDA GPU (torch.cuda.is_available() is False)")


def test_stat_engine_runs_on_a_high_priority_stream_and_matches_routine():
    bundle = load_biomedclip(config="biomedclip-tiny")
    images = export.sample_images(6, seed=5)
    sizes = engine_batch_sizes(8)
    routine = create_engine(bundle, "torch", precision="fp16", device="cuda", batch_sizes=sizes).warmup(1)
    stat = create_engine(bundle, "torch", precision="fp16", device="cuda", batch_sizes=sizes, high_priority=True).warmup(1)
    low, high = torch.cuda.Stream.priority_range() if hasattr(torch.cuda.Stream, "priority_range") else (0, -1)
    assert stat.stream.priority == min(high, low) < routine.stream.priority == 0
    assert stat.describe()["high_priority_stream"] is True
    # both lanes at once, from two threads, as the service runs them
    results = {}
    threads = [threading.Thread(target=lambda name=n, e=e: results.__setitem__(name, e.infer(images[:3])))
               for n, e in (("routine", routine), ("stat", stat))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert np.min(np.sum(results["routine"] * results["stat"], axis=1)) > 0.999
    # 3 rows padded to the captured size 4: same as one at a time
    one_by_one = np.concatenate([stat.infer(images[i : i + 1]) for i in range(3)])
    assert np.min(np.sum(results["stat"] * one_by_one, axis=1)) > 0.999
