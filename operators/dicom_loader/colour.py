"""Colour handling: one decoded frame → H×W×3 uint8 RGB (palette, VOI/modality LUTs, MONOCHROME1)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi


def _first(value: Any) -> float:
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return float(value[0])
    return float(value)


def _window(arr: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """VOI window to [0, 1] following PS3.3 C.11.2.1.2 (LINEAR, LINEAR_EXACT, SIGMOID)."""
    function = (function or "LINEAR").upper()
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (arr - center) / width))
    if function == "LINEAR_EXACT":
        out = (arr - center) / width + 0.5
    else:
        if width < 1:
            width = 1.0
        out = (arr - (center - 0.5)) / (width - 1) + 0.5
    return np.clip(out, 0.0, 1.0)


def _scale_to_uint8(arr: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:
        return np.zeros(arr.shape, np.uint8)
    out = (arr.astype(np.float64) - low) * (255.0 / (high - low))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def grey_to_uint8(arr: np.ndarray, ds: Dataset, frame_index: int = 0) -> np.ndarray:
    """One greyscale frame (stored values) → H×W uint8 for display, MONOCHROME1 inverted.

    Modality LUT/rescale first, then the VOI LUT or the first window of the dataset; with
    neither, 8-bit images keep their values and deeper ones are stretched min→max.
    """
    has_rescale = "RescaleSlope" in ds or "ModalityLUTSequence" in ds
    has_window = "WindowCenter" in ds and "WindowWidth" in ds
    has_voi_lut = "VOILUTSequence" in ds
    bits_stored = int(ds.get("BitsStored", 8) or 8)
    values = apply_modality_lut(arr, ds) if has_rescale else arr
    if has_voi_lut and not has_window:
        values = apply_voi(values, ds, index=0)
        lut_bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        out = _scale_to_uint8(values, 0, 2**lut_bits - 1)
    elif has_window:
        center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
        function = str(ds.get("VOILUTFunction", "LINEAR"))
        out = np.rint(_window(values.astype(np.float64), center, width, function) * 255).astype(np.uint8)
    elif values.dtype == np.uint8 or (bits_stored <= 8 and not has_rescale and arr.dtype.kind == "u"):
        out = values.astype(np.uint8)
    else:
        finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        out = _scale_to_uint8(values, low, high)
    if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        out = 255 - out
    return out


def to_rgb8(arr: np.ndarray, ds: Dataset, frame_index: int = 0) -> np.ndarray:
    """One frame as pydicom's ``pixel_array`` gives it (YBR already converted) → H×W×3 uint8 RGB.

    Handles PALETTE COLOR, MONOCHROME1/2 (modality + VOI, MONOCHROME1 inverted), 16-bit colour
    and greyscale → 3 identical channels.
    """
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        if rgb.dtype != np.uint8:
            # Palette entries are 8 or 16 bits (LUT Descriptor); scale 16-bit entries down.
            bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
            rgb = (rgb >> (bits - 8)).astype(np.uint8) if bits > 8 else rgb.astype(np.uint8)
        return np.ascontiguousarray(rgb)
    if arr.ndim == 3 and arr.shape[-1] == 3:
        if arr.dtype != np.uint8:
            bits = int(ds.get("BitsStored", 8) or 8)
            arr = (arr >> max(bits - 8, 0)).astype(np.uint8) if arr.dtype.kind in "ui" else arr.astype(np.uint8)
        return np.ascontiguousarray(arr)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    grey = grey_to_uint8(arr, ds, frame_index)
    return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))
