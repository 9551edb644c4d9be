"""Fuzz photo wrapping (``operators/dicom_loader/photo.py``): JPEG/PNG bytes → VL Photographic DICOM.

Input: the photograph's bytes; the first byte picks one of a few metadata sets (plain, every
key, and ill-typed values). Pass: ``wrap_photo`` either writes a DICOM file or raises
``ValueError`` / ``OSError`` (Pillow's "cannot identify image file" is an ``OSError``) with a
message; a file it wrote loads with the DICOM loader to images or a structured error record.
``strip_jpeg_app_segments`` on the same bytes returns or raises ``ValueError``.
"""

from __future__ import annotations

import atheris

with atheris.instrument_imports(include=["burnscope", "PIL"]):
    from burnscope.operators.dicom_loader.core import REASONS, DicomLoader
    from burnscope.operators.dicom_loader.photo import strip_jpeg_app_segments, wrap_photo

import _harness
from PIL import Image

Image.MAX_IMAGE_PIXELS = 4 * 1024 * 1024  # keep each input's memory small (Pillow raises beyond 2×)
WORK = _harness.workdir("photo")
PHOTO = WORK / "photo.bin"
OUT = WORK / "photo.dcm"
LOADER = DicomLoader(workers=1, isolate=False, read_sidecars=False, max_pixels=8 * 1024 * 1024)
METADATA = (
    {},
    {"patient_name": "DOE^JANE", "patient_id": "P1", "birth_date": "1970-01-02", "sex": "f", "body_site": "left hand",
     "laterality": "l", "study_date": "2024-05-06", "study_time": "101010", "instance_number": 3,
     "accession_number": "A1", "study_description": "d", "series_description": "s", "institution_name": "I",
     "referring_physician": "R", "study_id": "9", "study_instance_uid": "1.2.3", "series_instance_uid": "1.2.3.4"},
    {"patient_name": 5, "birth_date": 19700102, "sex": "", "body_site": "Forearm", "laterality": "B",
     "instance_number": "7", "study_time": ""},
    {"body_site": "wing"},
    {"instance_number": "x"},
    {"colour": "red"},
)


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    meta, photo = METADATA[data[0] % len(METADATA)], data[1:]
    try:
        strip_jpeg_app_segments(photo)
    except ValueError:
        pass
    PHOTO.write_bytes(photo)
    OUT.unlink(missing_ok=True)
    try:
        wrap_photo(PHOTO, OUT, meta)
    except (ValueError, OSError):
        return
    result = LOADER.load_file_result(OUT)
    assert result.error is None or result.error.reason in REASONS, result.error


if __name__ == "__main__":
    _harness.quiet()
    _harness.main(TestOneInput)
