"""Engines on a GPU (tiny BiomedCLIP): torch FP16/BF16 with CUDA graphs against the fp32 reference."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from burnscope.common.gpu import torch_cuda_usable  # noqa: E402
from burnscope.engines import export  # noqa: E402
from burnscope.engines.base import create_engine  # noqa: E402
from burnscope.engines.model import load_biomedclip  # noqa: E402


@pytest.fixture(scope="module")
def bundle():
    return load_biomedclip(config="biomedclip-tiny")


@pytest.fixture(scope="module")
def images():
    return export.sample_images(5, seed=3)


@pytest.mark.skipif(not torch_cuda_usable(), reason="no usable CUDA GPU (torch.cuda.is_available() is False)")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_torch_cuda_graphs_match_fp32(bundle, images, precision):
    reference = create_engine(bundle, "torch", device="cpu").infer(images)
    engine = create_engine(bundle, "torch", precision=precision, device="cuda", batch_sizes=(1, 8)).warmup(1)
    assert engine.use_cuda_graphs
    for batch in (images[:1], images[:3], np.concatenate([images] * 2)):  # exact, padded, chunked
        out = engine.infer(batch)
        ref = reference[: len(batch)] if len(batch) <= 5 else np.concatenate([reference] * 2)
        assert np.min(np.sum(out * ref, axis=1)) > 0.99
    tensor = torch.from_numpy(images).cuda()  # a device tensor goes in through DLPack
    assert np.min(np.sum(engine.infer(tensor) * reference, axis=1)) > 0.99
