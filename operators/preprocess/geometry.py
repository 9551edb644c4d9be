"""Geometry of BiomedCLIP's transform, the way Pillow computes it: output shapes, centre crop,
fixed-point bicubic weights per axis, the order of the two passes, and per-shape plans.

Shared by the NumPy and CuPy backends (``numpy_backend``, ``cupy_backend``); see
:mod:`burnscope.operators.preprocess.core` for why every step follows Pillow exactly.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: BiomedCLIP's normalisation (the OpenAI CLIP constants) and input size.
BIOMEDCLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
BIOMEDCLIP_STD = (0.26862954, 0.26130258, 0.27577711)
BIOMEDCLIP_IMAGE_SIZE = 224
DEFAULT_THUMBNAIL_SIZE = 128

#: Pillow's fixed-point precision for 8-bit resampling: 32 bits - 8 for the value - 2 spare.
PRECISION_BITS = 22
_ROUNDING = 1 << (PRECISION_BITS - 1)
_BICUBIC_A = -0.5
_BICUBIC_SUPPORT = 2.0


def shortest_side_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """(height, width) after torchvision's ``Resize(size)``: shortest side → size, long side truncated."""
    if width <= height:
        return int(size * height / width), size
    return size, int(size * width / height)


def center_crop_offsets(height: int, width: int, size: int) -> tuple[int, int]:
    """(top, left) of torchvision's ``CenterCrop(size)`` on a height×width image (≥ size)."""
    return int(round((height - size) / 2.0)), int(round((width - size) / 2.0))


def thumbnail_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """(height, width) fitting inside size×size with the aspect ratio kept; never enlarges."""
    longest = max(height, width)
    if longest <= size:
        return height, width
    return max(1, round(height * size / longest)), max(1, round(width * size / longest))


# ----------------------------------------------------------------------------- coefficients


def _bicubic(x: np.ndarray) -> np.ndarray:
    # Same expression order as Pillow's bicubic_filter, so the doubles agree bit for bit.
    x = np.abs(x)
    a = _BICUBIC_A
    inner = ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    outer = (((x - 5) * x + 8) * x - 4) * a
    return np.where(x < 1.0, inner, np.where(x < 2.0, outer, 0.0))


@dataclass(frozen=True, eq=False)  # identity hash: instances are cached and used as cache keys
class AxisCoefficients:
    """Fixed-point resampling weights for one axis (read-only arrays).

    ``weights[i, t]`` multiplies source pixel ``start[i] + t`` for ``t < count[i]``; the rest of
    the row is zero. Values are Pillow's 22-bit fixed-point integers.
    """

    in_size: int
    out_size: int
    start: np.ndarray  # int32 (out,)
    count: np.ndarray  # int32 (out,)
    weights: np.ndarray  # int32 (out, ksize)

    @property
    def ksize(self) -> int:
        return int(self.weights.shape[1])

    def window(self, first: int, length: int) -> AxisCoefficients:
        """Rows ``first … first+length-1`` only (the part a crop keeps)."""
        return _window(self.in_size, self.out_size, first, length)


def _readonly(*arrays: np.ndarray) -> None:
    for array in arrays:
        array.setflags(write=False)


@functools.lru_cache(maxsize=512)
def resample_coefficients(in_size: int, out_size: int) -> AxisCoefficients:
    """Pillow's bicubic weights for resampling ``in_size`` pixels to ``out_size`` (cached)."""
    if in_size < 1 or out_size < 1:
        raise ValueError(f"sizes must be positive, got {in_size} -> {out_size}")
    # Pillow passes the box as C floats and divides in double.
    scale = float(np.float32(in_size) - np.float32(0.0)) / out_size
    filterscale = max(scale, 1.0)
    support = _BICUBIC_SUPPORT * filterscale
    ksize = int(math.ceil(support)) * 2 + 1

    centre = (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    # C's (int) cast truncates toward zero.
    first = np.maximum(np.trunc(centre - support + 0.5).astype(np.int64), 0)
    stop = np.minimum(np.trunc(centre + support + 0.5).astype(np.int64), in_size)
    count = stop - first

    taps = np.arange(ksize)
    source = (taps[None, :] + first[:, None]).astype(np.float64)
    weights = _bicubic((source - centre[:, None] + 0.5) * (1.0 / filterscale))
    weights = np.where(taps[None, :] < count[:, None], weights, 0.0)
    # Sum tap by tap, left to right, as the C loop does (np.sum would sum pairwise).
    total = np.zeros(out_size, dtype=np.float64)
    for t in range(ksize):
        total = total + weights[:, t]
    safe_total = np.where(total != 0.0, total, 1.0)
    weights = weights / safe_total[:, None]

    scaled = weights * (1 << PRECISION_BITS)
    fixed = np.where(weights < 0, np.trunc(-0.5 + scaled), np.trunc(0.5 + scaled)).astype(np.int32)
    start = first.astype(np.int32)
    count = count.astype(np.int32)
    _readonly(start, count, fixed)
    return AxisCoefficients(in_size, out_size, start, count, fixed)


@functools.lru_cache(maxsize=1024)
def _window(in_size: int, out_size: int, first: int, length: int) -> AxisCoefficients:
    full = resample_coefficients(in_size, out_size)
    if first < 0 or first + length > out_size:
        raise ValueError(f"window {first}+{length} outside {out_size}")
    sl = slice(first, first + length)
    start, count, weights = full.start[sl].copy(), full.count[sl].copy(), full.weights[sl].copy()
    _readonly(start, count, weights)
    return AxisCoefficients(in_size, out_size, start, count, weights)


def normalization_lut(mean: Sequence[float], std: Sequence[float], dtype: Any = np.float32) -> np.ndarray:
    """3×256 table: value of channel c for uint8 level v, as ``ToTensor`` + ``Normalize`` compute it."""
    levels = np.arange(256, dtype=np.float32) / np.float32(255)
    mean32 = np.asarray(mean, dtype=np.float32)[:, None]
    std32 = np.asarray(std, dtype=np.float32)[:, None]
    lut = (levels[None, :] - mean32) / std32
    return np.ascontiguousarray(lut.astype(dtype))


# ----------------------------------------------------------------------------- pass order

#: Pass-order rules. Pillow up to 12 always resamples horizontally first; Pillow 13 resamples
#: vertically first when the height shrinks by more than twice as many pixels as the width
#: (``(H - h) > 0 and (H - h) > 2 * (W - w)``). The uint8 rounding between the passes makes the
#: order visible (a few levels on some pixels), so "auto" follows the installed Pillow.
PASS_ORDERS = ("auto", "pillow13", "horizontal-first")


@functools.lru_cache(maxsize=1)
def _installed_pillow_order() -> str:
    try:
        import PIL
    except ImportError:  # no Pillow: use the current rule
        return "pillow13"
    major = int(str(PIL.__version__).split(".")[0])
    return "pillow13" if major >= 13 else "horizontal-first"


def resolve_pass_order(pass_order: str) -> str:
    """"pillow13" or "horizontal-first" for a :data:`PASS_ORDERS` value."""
    if pass_order not in PASS_ORDERS:
        raise ValueError(f"pass_order must be one of {PASS_ORDERS}, got {pass_order!r}")
    return _installed_pillow_order() if pass_order == "auto" else pass_order


def vertical_pass_first(height: int, width: int, out_height: int, out_width: int, pass_order: str) -> bool:
    """Whether Pillow (by ``pass_order``) resamples rows before columns for this resize."""
    if resolve_pass_order(pass_order) == "horizontal-first":
        return False
    shrink_h = height - out_height
    return shrink_h > 0 and shrink_h > (width - out_width) * 2


# ----------------------------------------------------------------------------- per-shape plans


@dataclass(frozen=True, eq=False)
class _Plan:
    """Everything needed to resample one source shape to one output window.

    The first pass reads ``span`` source lines starting at ``span_first`` along the axis the
    second pass resamples (source rows when horizontal goes first, source columns otherwise)
    and writes a uint8 intermediate; the second pass produces the out_h×out_w window.
    """

    height: int
    width: int
    out_h: int
    out_w: int
    horizontal: AxisCoefficients  # out_w rows over source columns
    vertical: AxisCoefficients  # out_h rows over source rows
    vertical_first: bool
    span_first: int
    span: int

    @property
    def temp_shape(self) -> tuple[int, int]:
        """(rows, columns) of the intermediate image."""
        return (self.out_h, self.span) if self.vertical_first else (self.span, self.out_w)


def _make_plan(
    height: int,
    width: int,
    resized: tuple[int, int],
    offsets: tuple[int, int],
    out: tuple[int, int],
    order: str,
) -> _Plan:
    (rh, rw), (top, left), (oh, ow) = resized, offsets, out
    horizontal = _window(width, rw, left, ow)
    vertical = _window(height, rh, top, oh)
    vertical_first = vertical_pass_first(height, width, rh, rw, order)
    second = horizontal if vertical_first else vertical
    first = int(second.start.min())
    stop = int((second.start + second.count).max())
    return _Plan(height, width, oh, ow, horizontal, vertical, vertical_first, first, stop - first)


@functools.lru_cache(maxsize=512)
def _model_plan(height: int, width: int, size: int, order: str) -> _Plan:
    resized = shortest_side_shape(height, width, size)
    return _make_plan(height, width, resized, center_crop_offsets(*resized, size), (size, size), order)


@functools.lru_cache(maxsize=512)
def _thumbnail_plan(height: int, width: int, size: int, order: str) -> _Plan:
    shape = thumbnail_shape(height, width, size)
    return _make_plan(height, width, shape, (0, 0), shape, order)

