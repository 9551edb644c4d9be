"""Decode JPEG photographs at the size the model needs (DCT-domain scaling), on the CPU.

Clinical photographs are phone-camera size (about 4032×3024); BiomedCLIP sees 224×224. A JPEG
decoder can produce the image at 1/2, 1/4 or 1/8 of its size directly from the DCT
coefficients (libjpeg's scaled IDCT, Pillow's ``Image.draft``), skipping most of the inverse
transform, upsampling and colour conversion work. :class:`ScaledJpegFrames` does that for JPEG
baseline/extended colour frames, at the largest reduction that still leaves the short side
≥ ``min_side`` (224: the shortest side BiomedCLIP resizes to); the exact BiomedCLIP transform
(:mod:`burnscope.operators.preprocess.core`) then runs on the smaller image. Frames too small
to reduce, and everything else, are left to the normal decoders (pydicom), so images of
sample size decode exactly as without it.

Used as a :class:`~burnscope.operators.dicom_loader.core.DicomLoader` ``frame_source``
(``source.scaled_decode: auto`` in burn-triage's settings). The pixels differ from a full
decode followed by the same resize (another low-pass filter, and libjpeg-turbo's rounding
instead of pylibjpeg's): docs/benchmarks/scaled-decode.md measures by how much.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames

log = logging.getLogger("burnscope.dicom_loader")

#: JPEG Baseline (Process 1) and Extended (Process 2 & 4): the transfer syntaxes with DCT scaling.
JPEG_DCT = ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51")
#: Reductions libjpeg offers by DCT scaling, largest first.
SCALES = (8, 4, 2)
#: BiomedCLIP resizes the shortest side to 224.
DEFAULT_MIN_SIDE = 224


def reduction(rows: int, cols: int, min_side: int = DEFAULT_MIN_SIDE) -> int:
    """The largest of 8, 4, 2 whose scaled short side (rounded up, as libjpeg does) is ≥
    ``min_side``; 1 when none is."""
    short = min(int(rows), int(cols))
    for scale in SCALES:
        if -(-short // scale) >= min_side:
            return scale
    return 1


def scalable(ds: Dataset, transfer_syntax: str) -> bool:
    """8-bit colour JPEG (baseline/extended) frames stored as YCbCr, as photographs are."""
    return (
        transfer_syntax in JPEG_DCT
        and int(ds.get("SamplesPerPixel", 1) or 1) == 3
        and int(ds.get("BitsAllocated", 8) or 8) == 8
        and str(ds.get("PhotometricInterpretation", "")).strip() in ("YBR_FULL_422", "YBR_FULL")
    )


def decode_scaled(stream: bytes, rows: int, cols: int, scale: int) -> np.ndarray | None:
    """One JPEG codestream decoded at 1/``scale`` as H×W×3 uint8 RGB; None when the stream is
    not what the header says (the normal decoders then decide)."""
    from PIL import Image

    with Image.open(io.BytesIO(stream)) as image:
        if image.format != "JPEG" or image.size != (cols, rows) or image.mode != "RGB":
            return None
        # Pillow picks the largest reduction r with size // requested ≥ r; the result is size / r
        # rounded up, as libjpeg computes it.
        image.draft("RGB", (cols // scale, rows // scale))
        if image.size != (-(-cols // scale), -(-rows // scale)) or image.mode != "RGB":
            return None
        return np.asarray(image)


class ScaledJpegFrames:
    """A ``frame_source``: JPEG colour frames decoded at the largest DCT reduction that keeps the
    short side ≥ ``min_side``; ``None`` (the normal decoders) for everything else.

    Picklable (it holds only ``min_side``), so it works in decode worker processes too.
    """

    def __init__(self, min_side: int = DEFAULT_MIN_SIDE) -> None:
        if int(min_side) < 1:
            raise ValueError("min_side must be positive")
        self.min_side = int(min_side)

    def __call__(self, ds: Dataset, transfer_syntax: str, frames: int, path: Path) -> list[Any] | None:
        if not scalable(ds, transfer_syntax):
            return None
        rows, cols = int(ds.Rows), int(ds.Columns)
        scale = reduction(rows, cols, self.min_side)
        if scale == 1:
            return None
        try:
            streams = list(generate_frames(ds.PixelData, number_of_frames=frames))[:frames]
            if len(streams) != frames:
                return None
            out = [decode_scaled(s, rows, cols, scale) for s in streams]
        except Exception as exc:  # a damaged stream: the normal decoders report it with their reason
            log.debug("%s: scaled JPEG decode failed (%s); decoding in full", path.name, type(exc).__name__)
            return None
        return None if any(frame is None for frame in out) else out

    def __repr__(self) -> str:
        return f"ScaledJpegFrames(min_side={self.min_side})"


__all__ = ["DEFAULT_MIN_SIDE", "JPEG_DCT", "SCALES", "ScaledJpegFrames", "decode_scaled", "reduction", "scalable"]
