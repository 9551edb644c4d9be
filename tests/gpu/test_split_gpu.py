"""The preprocessing split at the uint8 crop on a GPU (distributed burn-triage): crops made on
the device and normalised there give the fused GPU preprocessor's tensor exactly, and device
crops make a device-only tensor map (one port must not mix host and device tensors)."""

from __future__ import annotations

import numpy as np
import pytest

from burnscope.common import link
from burnscope.common.gpu import cupy_usable
from burnscope.operators.preprocess.core import Preprocessor
from burnscope.operators.preprocess.split import crop_batch, normalise_crops
from fixtures.images import mixed_batch, odd_images

pytestmark = pytest.mark.skipif(
    not cupy_usable(), reason="no usable GPU (CuPy cannot allocate): the CuPy path is checked on a GPU machine"
)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_gpu_crop_then_normalise_equals_the_gpu_preprocessor(dtype):
    import cupy

    pre = Preprocessor(device="gpu", dtype=dtype)
    images = mixed_batch() + list(odd_images().values())
    crops = crop_batch(pre, images)
    assert isinstance(crops, cupy.ndarray) and crops.dtype == cupy.uint8 and crops.shape == (len(images), 224, 224, 3)
    tensor = normalise_crops(pre, crops)
    expected = pre.process(images).tensor
    assert cupy.array_equal(tensor, expected)


def test_gpu_crops_close_to_the_cpu_crops():
    images = mixed_batch()
    gpu = crop_batch(Preprocessor(device="gpu"), images).get().astype(np.int16)
    cpu = crop_batch(Preprocessor(device="cpu"), images).astype(np.int16)
    diff = np.abs(gpu - cpu)
    assert diff.mean() <= 0.5 and diff.max() <= 2


def test_device_crops_make_a_device_only_tensor_map():
    import cupy

    pre = Preprocessor(device="gpu")
    msg = link.crops_tensormap(4, crop_batch(pre, mixed_batch()[:2]), 224)
    assert all(isinstance(v, cupy.ndarray) for v in msg.values())
    batch, crops = link.crops_from_tensormap(msg)
    assert batch == 4 and isinstance(crops, cupy.ndarray) and crops.shape[0] == 2
    empty = link.crops_tensormap(5, crop_batch(pre, []), 224)
    assert all(isinstance(v, cupy.ndarray) for v in empty.values()) and link.read_header(empty) == (5, 0)
