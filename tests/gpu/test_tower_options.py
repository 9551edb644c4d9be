"""torch.compile + CUDA graphs and the FP8 (torchao) tower on a GPU, against fp32."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from burnscope.common.gpu import torch_cuda_usable  # noqa: E402
from burnscope.engines import export  # noqa: E402
from burnscope.engines.base import SUPPORTED, create_engine  # noqa: E402
from burnscope.engines.model import load_biomedclip  # noqa: E402
from burnscope.engines.torch_fp8 import TorchFp8Engine, fp8_unavailable_reason  # noqa: E402

needs_cuda = pytest.mark.skipif(not torch_cuda_usable(), reason="no usable CUDA GPU (torch.cuda.is_available() is False)")


@pytest.fixture(scope="module")
def bundle():
    return load_biomedclip(config="biomedclip-tiny")


@pytest.fixture(scope="module")
def images():
    return export.sample_images(8, seed=4)


@needs_cuda
def test_compiled_tower_with_cuda_graphs_matches_fp32(bundle, images):
    reference = create_engine(bundle, "torch", device="cpu").infer(images)
    engine = create_engine(bundle, "torch", "fp16", "cuda", batch_sizes=(1, 8), compile=True).warmup(1)
    assert engine.use_cuda_graphs
    assert np.min(np.sum(engine.infer(images) * reference, axis=1)) > 0.99


@pytest.mark.skipif(fp8_unavailable_reason() is not None, reason=f"FP8 tower: {fp8_unavailable_reason()}")
def test_fp8_tower_runs_and_stays_close_to_fp32(bundle, images):
    reference = create_engine(bundle, "torch", device="cpu").infer(images)
    engine = TorchFp8Engine(bundle, batch_sizes=(1, 8)).warmup(1)
    assert engine.model_info.precision == "fp8"
    assert np.min(np.sum(engine.infer(images) * reference, axis=1)) > 0.98  # tiny model; full size: the benchmark


def test_fp8_is_not_an_engine_choice_until_measured():
    # benchmarks/tower_options.py decides on a GPU; docs/benchmarks/engines-gpu.md records it
    assert "fp8" not in SUPPORTED["torch"]["cuda"]
