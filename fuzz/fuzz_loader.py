"""Fuzz the DICOM loader core: file bytes → images or one structured error record.

Input: a file's bytes (seeds: small DICOM files of every transfer syntax made from
``sample_data`` by ``fuzz/seeds.py``). Pass: ``DicomLoader.load_file_result`` returns, never
raises; the result holds H×W×3 uint8 images with their header facts, or one error whose
reason is in ``REASONS``. Decoding runs in this process (no worker pool: a native crash in a
codec is then a crash the fuzzer reports, and the codecs' Python wrappers get coverage).
"""

from __future__ import annotations

import atheris

with atheris.instrument_imports(include=["burnscope", "pydicom"]):
    import pydicom.encaps
    import pydicom.pixels.decoders.base
    import pydicom.pixels.decoders.pylibjpeg
    import pydicom.pixels.decoders.rle
    import pydicom.pixels.processing
    import pydicom.pixels.utils  # noqa: F401  (instrumented now; pydicom imports them lazily)
    from burnscope.operators.dicom_loader.core import REASONS, DicomLoader

import _harness
import numpy as np

WORK = _harness.workdir("loader")
FILE = WORK / "input.dcm"
#: A fuzz-sized pixel limit: bounds each input's memory (the product's limit works the same way).
LOADER = DicomLoader(workers=1, isolate=False, read_sidecars=False, max_pixels=4 * 1024 * 1024)


def TestOneInput(data: bytes) -> None:
    FILE.write_bytes(data)
    result = LOADER.load_file_result(FILE)
    if result.error is not None:
        assert result.error.reason in REASONS, result.error
        assert not result.images
        return
    assert len(result.images) == len(result.infos)
    for record in result.images:
        pixels = record.pixels
        assert isinstance(pixels, np.ndarray) and pixels.dtype == np.uint8, type(pixels)
        assert pixels.ndim == 3 and pixels.shape[2] == 3, pixels.shape


if __name__ == "__main__":
    _harness.quiet()
    _harness.main(TestOneInput)
