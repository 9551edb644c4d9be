"""Image files of any kind burnscope reads outside a DICOM stream: photographs and DICOM files.

Used wherever a folder of mixed images is read for something other than the graph's source
(calibration of INT8 engines, training and evaluating a burn head): one rule for what counts
as an image, and one way to turn a file into H×W×3 uint8 RGB frames.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})


def is_dicom_file(path: Path) -> bool:
    """A ``.dcm``/``.dicom`` file, or any other non-photo file with the DICOM preamble."""
    suffix = path.suffix.lower()
    if suffix in DICOM_SUFFIXES:
        return True
    if suffix in PHOTO_SUFFIXES:
        return False
    try:
        with path.open("rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def is_image_file(path: Path) -> bool:
    """A photograph (by suffix) or a DICOM file; hidden files are not images."""
    return not path.name.startswith(".") and (path.suffix.lower() in PHOTO_SUFFIXES or is_dicom_file(path))


def read_rgb_frames(path: Path) -> list[tuple[str, np.ndarray]]:
    """``(source label, H×W×3 uint8 RGB)`` per image of one file (DICOM: one per frame, labelled
    ``name#frame``); raises ValueError with the reason when the file gives no usable image."""
    if is_dicom_file(path):
        from burnscope.operators.dicom_loader.core import load

        records, errors = load(path, workers=1, read_sidecars=False)
        if not records:
            raise ValueError(f"DICOM not usable ({errors[0].reason if errors else 'no image'})")
        return [(f"{path.name}#{r.context.frame_number}", np.asarray(r.pixels)) for r in records]
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return [(path.name, np.asarray(image.convert("RGB")))]
    except (OSError, UnidentifiedImageError) as exc:
        raise ValueError(f"not a readable image ({type(exc).__name__})") from None
