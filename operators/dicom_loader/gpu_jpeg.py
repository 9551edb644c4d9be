"""Optional GPU decoding of JPEG photographs with nvImageCodec (no Holoscan).

Used by :class:`~burnscope.operators.dicom_loader.core.DicomLoader` when ``gpu_jpeg=True``:
8-bit colour JPEG (baseline or extended) frames with photometric interpretation YBR_FULL_422
or YBR_FULL are decoded on the GPU to H×W×3 uint8 RGB **CuPy** arrays, which stay on the device
for preprocessing. Everything else, and every machine without a usable GPU or without
``nvidia-nvimgcodec-cu13`` (+ ``nvidia-nvjpeg``), takes the CPU path. GPU and CPU JPEG decoders
use different IDCTs: pixels differ by a few grey levels.
"""

from __future__ import annotations

import logging
import threading
from functools import lru_cache
from typing import Any

from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames

log = logging.getLogger("burnscope.dicom_loader")

_JPEG_8BIT = ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51")
_local = threading.local()


@lru_cache(maxsize=1)
def available() -> bool:
    """nvImageCodec imports and a GPU takes a CuPy allocation (decided once)."""
    try:
        from nvidia import nvimgcodec  # noqa: F401

        from burnscope.common.gpu import cupy_usable

        usable = cupy_usable()
    except Exception:  # ImportError, or a library that fails to load
        usable = False
    log.info("GPU JPEG decoding (nvImageCodec): %s", "available" if usable else "not available")
    return usable


def eligible(ds: Dataset, transfer_syntax: str) -> bool:
    """True for frames this path decodes exactly as DICOM means them (JFIF-style YCbCr)."""
    return (
        transfer_syntax in _JPEG_8BIT
        and int(ds.get("SamplesPerPixel", 1) or 1) == 3
        and int(ds.get("BitsAllocated", 8) or 8) == 8
        and str(ds.get("PhotometricInterpretation", "")).strip() in ("YBR_FULL_422", "YBR_FULL")
    )


def _decoder() -> Any:
    # One decoder per thread: the loader's worker threads decode concurrently.
    decoder = getattr(_local, "decoder", None)
    if decoder is None:
        from nvidia import nvimgcodec

        decoder = _local.decoder = nvimgcodec.Decoder()
    return decoder


def decode_frames(ds: Dataset, frames: int) -> list[Any]:
    """All frames of ``ds`` as H×W×3 uint8 RGB CuPy arrays (raises on any failure)."""
    import cupy as cp

    streams = list(generate_frames(ds.PixelData, number_of_frames=frames))
    images = _decoder().decode(streams)
    out = []
    for image in images:
        if image is None:
            raise RuntimeError("nvImageCodec could not decode a frame")
        array = cp.asarray(image)  # zero-copy view that keeps the decoded image alive
        if array.shape != (int(ds.Rows), int(ds.Columns), 3) or array.dtype != cp.uint8:
            raise RuntimeError(f"unexpected GPU decode result {array.shape} {array.dtype}")
        out.append(array)
    return out


__all__ = ["available", "decode_frames", "eligible"]
