"""CuPy preprocessing on a GPU: bit-identical to the NumPy path, device input read in place."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from burnscope.common.gpu import cupy_usable
from burnscope.operators.preprocess.core import BIOMEDCLIP_MEAN, BIOMEDCLIP_STD, Preprocessor
from fixtures.images import mixed_batch

pytestmark = pytest.mark.skipif(
    not cupy_usable(), reason="no usable GPU (CuPy cannot allocate): the CuPy path is checked on a GPU machine"
)
MEAN_LEVELS_MAX = 0.5  # mean |Δ| on the 0–255 scale
MAX_LEVELS_MAX = 2.0  # max |Δ| on the 0–255 scale
_MEAN = np.asarray(BIOMEDCLIP_MEAN, dtype=np.float64)[:, None, None]
_STD = np.asarray(BIOMEDCLIP_STD, dtype=np.float64)[:, None, None]


def _assert_within_tolerance(ours: np.ndarray, reference: np.ndarray) -> None:
    levels = lambda t: (np.asarray(t, dtype=np.float64) * _STD + _MEAN) * 255.0  # noqa: E731
    diff = np.abs(levels(ours) - levels(reference))
    assert diff.mean() <= MEAN_LEVELS_MAX and diff.max() <= MAX_LEVELS_MAX


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_cupy_matches_numpy_on_mixed_batch(dtype):
    import cupy

    images = mixed_batch()
    cpu = Preprocessor(device="cpu", dtype=dtype)(images)
    gpu_pre = Preprocessor(device="gpu", dtype=dtype)
    assert gpu_pre.device == "cuda"
    gpu = gpu_pre(images)
    assert isinstance(gpu, cupy.ndarray) and gpu.dtype == np.dtype(dtype) and gpu.shape == cpu.shape
    host = cupy.asnumpy(gpu)
    for i in range(len(images)):
        _assert_within_tolerance(host[i].astype(np.float32), cpu[i].astype(np.float32))
    np.testing.assert_array_equal(host, cpu)


def test_cupy_reads_device_arrays_in_place_and_strided():
    import cupy

    images = mixed_batch()
    expected = Preprocessor(device="cpu")(images)
    pre = Preprocessor(device="gpu")
    on_device = [cupy.asarray(im) for im in images]
    np.testing.assert_array_equal(cupy.asnumpy(pre(on_device)), expected)
    # A strided view (every other column, channels reversed twice = a non-contiguous RGB view).
    big = cupy.asarray(data.astronaut())
    view = big[:, ::2][:, :, ::-1][:, :, ::-1]
    expected_view = Preprocessor(device="cpu")([data.astronaut()[:, ::2]])[0]
    np.testing.assert_array_equal(cupy.asnumpy(pre([view]))[0], expected_view)
    # DLPack producers (e.g. a torch CUDA tensor) are accepted through cupy.from_dlpack.
    mixed = [on_device[0], images[1]]
    np.testing.assert_array_equal(cupy.asnumpy(pre(mixed)), expected[:2])


def test_cupy_thumbnails_and_empty_batch():
    import cupy

    images = mixed_batch()
    cpu = Preprocessor(device="cpu").process(images, thumbnails=True)
    gpu = Preprocessor(device="gpu").process(images, thumbnails=True)
    for a, b in zip(gpu.thumbnails, cpu.thumbnails):
        np.testing.assert_array_equal(a, b)
    empty = Preprocessor(device="gpu")([])
    assert isinstance(empty, cupy.ndarray) and empty.shape == (0, 3, 224, 224)
