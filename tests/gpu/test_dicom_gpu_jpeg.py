"""GPU JPEG decoding (nvImageCodec): opt-in, falls back to the CPU, close to the CPU's pixels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from burnscope.operators.dicom_loader import gpu_jpeg
from burnscope.operators.dicom_loader.core import DicomLoader
from fixtures import SAMPLE_DATA

SAMPLE = SAMPLE_DATA


def test_without_a_usable_gpu_the_cpu_decodes_the_same_pixels():
    if gpu_jpeg.available():
        pytest.skip("a GPU and nvImageCodec are usable here: the fallback is not exercised")
    cpu, cpu_errors = DicomLoader(workers=1).load(SAMPLE)
    gpu, gpu_errors = DicomLoader(workers=2, gpu_jpeg=True).load(SAMPLE)
    assert [e.reason for e in gpu_errors] == [e.reason for e in cpu_errors]
    for a, b in zip(cpu, gpu):
        assert isinstance(b.pixels, np.ndarray)
        np.testing.assert_array_equal(a.pixels, b.pixels)


def test_gpu_jpeg_refuses_the_process_pool():
    with pytest.raises(ValueError, match="thread"):
        DicomLoader(gpu_jpeg=True, executor="process")


@pytest.mark.skipif(not gpu_jpeg.available(), reason="needs a usable GPU and nvidia-nvimgcodec")
def test_gpu_decode_matches_cpu_within_idct_differences():
    import cupy as cp

    cpu, _ = DicomLoader(workers=1).load(SAMPLE)
    gpu, errors = DicomLoader(workers=2, gpu_jpeg=True).load(SAMPLE)
    assert len(gpu) == len(cpu) == 10 and len(errors) == 2
    on_device = 0
    for a, b in zip(cpu, gpu):
        assert a.context.label == b.context.label
        if isinstance(b.pixels, cp.ndarray):
            on_device += 1
            assert b.pixels.shape == a.pixels.shape and b.pixels.dtype == cp.uint8
            diff = np.abs(cp.asnumpy(b.pixels).astype(int) - a.pixels.astype(int))
            assert diff.max() <= 8 and diff.mean() < 1.0
        else:
            np.testing.assert_array_equal(a.pixels, b.pixels)
    manifest = json.loads((SAMPLE / "manifest.json").read_text())
    jpeg_images = sum(
        f["frames"] for f in manifest["files"]
        if f["expected"] == "accepted" and f["transfer_syntax_uid"] == "1.2.840.10008.1.2.4.50"
    )
    assert on_device == jpeg_images == 4  # the JPEG baseline photographs
