"""Scaled JPEG decoding: the largest DCT reduction that keeps the short side ≥ 224, close to full
decoding after the BiomedCLIP transform, and nothing else changes."""

from __future__ import annotations

import pickle

import numpy as np
import pydicom
import pytest

from burnscope.applications.burn_triage.decode_paths import frame_source_for
from burnscope.benchmarks.clinical_photos import write_set
from burnscope.operators.dicom_loader.core import DicomLoader
from burnscope.operators.dicom_loader.scaled import ScaledJpegFrames, reduction
from burnscope.operators.preprocess.core import Preprocessor
from fixtures import SAMPLE_DATA


@pytest.mark.parametrize("rows, cols, scale", [
    (3024, 4032, 8), (4032, 3024, 8), (1440, 1920, 4), (1000, 1500, 4), (500, 600, 2),
    (447, 1000, 2),  # ceil(447 / 2) = 224: libjpeg rounds up
    (446, 1000, 1), (480, 360, 1), (224, 224, 1),
])
def test_reduction(rows, cols, scale):
    assert reduction(rows, cols) == scale
    if scale > 1:
        assert -(-min(rows, cols) // scale) >= 224


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    write_set(folder, count=2, size=(1920, 1440), j2k=1)
    return folder


def test_large_jpeg_decodes_scaled_and_close_to_full(photos):
    jpeg = sorted(photos.glob("*-jpeg.dcm"))
    full, _ = DicomLoader(workers=1).load(jpeg)
    scaled, errors = DicomLoader(workers=1, frame_source=ScaledJpegFrames()).load(jpeg)
    assert not errors and len(scaled) == len(full) == 2
    for a, b in zip(full, scaled):
        assert a.pixels.shape == (1440, 1920, 3) and b.pixels.shape == (360, 480, 3) and b.pixels.dtype == np.uint8
        assert a.context == b.context
    pre = Preprocessor(device="cpu")
    levels = np.abs(pre([r.pixels for r in full]) - pre([r.pixels for r in scaled])) * 255 * np.float32(0.27)
    assert levels.mean() < 2.0  # the 224×224 model input barely moves


def test_everything_else_decodes_as_before(photos):
    source = ScaledJpegFrames()
    plain, plain_errors = DicomLoader(workers=1).load(SAMPLE_DATA)
    with_source, errors = DicomLoader(workers=1, frame_source=source).load(SAMPLE_DATA)
    assert [e.reason for e in errors] == [e.reason for e in plain_errors]
    for a, b in zip(plain, with_source):  # sample-size images: nothing to reduce
        np.testing.assert_array_equal(a.pixels, b.pixels)
    (j2k,) = photos.glob("*-j2k.dcm")
    ds = pydicom.dcmread(j2k)
    assert source(ds, str(ds.file_meta.TransferSyntaxUID), 1, j2k) is None  # not JPEG: pydicom decodes it


def test_damaged_stream_gets_the_normal_error(photos, tmp_path):
    (first, *_) = sorted(photos.glob("*-jpeg.dcm"))
    ds = pydicom.dcmread(first)
    from pydicom.encaps import encapsulate, generate_frames

    stream = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([stream[: len(stream) // 3] + b"\x00" * 16])
    damaged = tmp_path / "damaged.dcm"
    ds.save_as(damaged)
    plain = DicomLoader(workers=1).load_file_result(damaged)
    scaled = DicomLoader(workers=1, frame_source=ScaledJpegFrames()).load_file_result(damaged)
    assert (scaled.error is None) == (plain.error is None)
    if plain.error is not None:
        assert scaled.error.reason == plain.error.reason


def test_settings_choose_the_source_and_it_pickles():
    assert isinstance(frame_source_for({"scaled_decode": "auto"}, 224), ScaledJpegFrames)
    assert frame_source_for({"scaled_decode": "off"}) is None
    copy = pickle.loads(pickle.dumps(ScaledJpegFrames(300)))  # travels to decode worker processes
    assert copy.min_side == 300
