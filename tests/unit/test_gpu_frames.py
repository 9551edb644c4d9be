"""Batched deferred decoding (GpuFrames) without a GPU: the loader's batching, the per-frame CPU
fallback and the error records, driven by a real CPU codec (Pillow) in the decoder's place.

The GPU codec itself (nvImageCodec) is tested against pydicom in tests/gpu/."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import encapsulate, generate_frames

from burnscope.operators.dicom_loader import gpu_jpeg
from burnscope.operators.dicom_loader.core import DicomLoader
from burnscope.operators.dicom_loader.gpu_jpeg import EncodedFrame, GpuFrames
from fixtures import SAMPLE_DATA

JPEG_IMAGES = 4  # the JPEG baseline photographs of sample_data


class PillowBatch:
    """Decodes a batch of codestreams with Pillow; returns None for the sources in ``refuse``."""

    def __init__(self, refuse: tuple[str, ...] = ()) -> None:
        self.calls: list[int] = []
        self.refuse = refuse

    def decode(self, frames):
        self.calls.append(len(frames))
        out = []
        for frame in frames:
            assert isinstance(frame, EncodedFrame) and frame.shape[2] == 3
            if any(name in str(frame.source) for name in self.refuse):
                out.append(None)
                continue
            with Image.open(io.BytesIO(frame.data)) as image:
                out.append(np.asarray(image.convert("RGB")))
        return out


@pytest.fixture(scope="module")
def plain():
    return DicomLoader(workers=1).load(SAMPLE_DATA)


def _no_pending(images):
    assert not any(isinstance(r.pixels, EncodedFrame) for r in images)


def test_one_decoder_call_per_batch_with_every_deferred_frame(plain):
    decoder = PillowBatch()
    loader = DicomLoader(workers=2, frame_source=GpuFrames(decoder=decoder))
    batches = list(loader.iter_batches(SAMPLE_DATA, batch_size=4))
    images = [r for b, _ in batches for r in b]
    _no_pending(images)
    assert sum(decoder.calls) == JPEG_IMAGES and len(decoder.calls) <= len(batches)
    assert max(decoder.calls) > 1  # frames of several files in one call
    reference, errors = plain
    assert [e.reason for _, b in batches for e in b] == [e.reason for e in errors]
    for a, b in zip(reference, images):
        assert a.context.label == b.context.label and a.pixels.shape == b.pixels.shape
        assert np.abs(a.pixels.astype(int) - b.pixels.astype(int)).mean() < 1.0  # Pillow vs pylibjpeg IDCT


def test_frames_the_decoder_refuses_fall_back_to_the_cpu_exactly(plain):
    source = GpuFrames(decoder=PillowBatch(refuse=("study-001", "study-002", "study-003")))
    images, errors = DicomLoader(workers=1, frame_source=source).load(SAMPLE_DATA)
    _no_pending(images)
    assert source.fell_back == JPEG_IMAGES and source.decoded_on_gpu == 0
    reference, reference_errors = plain
    assert len(errors) == len(reference_errors)
    for a, b in zip(reference, images):
        np.testing.assert_array_equal(a.pixels, b.pixels)


def test_a_frame_neither_can_decode_is_an_error_record(tmp_path):
    good = SAMPLE_DATA / "study-001" / "IMG-0002.dcm"
    ds = pydicom.dcmread(good)
    stream = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([stream[:200] + b"\xff\xd9"])  # a header, then nothing
    ds.save_as(tmp_path / "broken.dcm")
    (tmp_path / "good.dcm").write_bytes(good.read_bytes())
    source = GpuFrames(decoder=PillowBatch(refuse=("broken",)))
    loader = DicomLoader(workers=1, frame_source=source)
    ((images, errors),) = list(loader.iter_batches(tmp_path, batch_size=8))
    _no_pending(images)
    assert [r.context.source.rsplit("/", 1)[-1] for r in images] == ["good.dcm"]
    assert [(e.source.rsplit("/", 1)[-1], e.reason) for e in errors] == [("broken.dcm", "decode_failed")]
    result = loader.load_file_result(tmp_path / "broken.dcm")  # a file at a time: the file's error
    assert result.images == [] and result.infos == [] and result.error.reason == "decode_failed"
    (one,) = list(loader.iter_file_results([tmp_path / "good.dcm"]))
    _no_pending(one.images)
    assert one.error is None and len(one.images) == len(one.infos) == 1


def test_without_a_decoder_nothing_is_deferred(plain):
    if gpu_jpeg.available():
        pytest.skip("nvImageCodec and a GPU are usable here")
    source = GpuFrames()
    assert source.decoder is None
    images, _ = DicomLoader(workers=1, frame_source=source).load(SAMPLE_DATA)
    for a, b in zip(plain[0], images):
        np.testing.assert_array_equal(a.pixels, b.pixels)


def test_j2k_and_jpeg_frames_are_eligible_others_not(tmp_path):
    from burnscope.benchmarks.clinical_photos import write_set

    write_set(tmp_path, count=1, size=(320, 240), j2k=1)
    for path in sorted(tmp_path.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        ts = str(ds.file_meta.TransferSyntaxUID)
        assert gpu_jpeg.eligible(ds, ts), path.name
        (frame,) = gpu_jpeg.encoded_frames(ds, ts, 1, path)
        assert frame.shape == (240, 320, 3)
    native = pydicom.dcmread(SAMPLE_DATA / "study-001" / "IMG-0001.dcm")
    assert not gpu_jpeg.eligible(native, str(native.file_meta.TransferSyntaxUID))
