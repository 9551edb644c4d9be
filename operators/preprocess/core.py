"""BiomedCLIP image preprocessing, batched, on the CPU (NumPy) or the GPU (CuPy).

BiomedCLIP's own transform (open_clip ``image_transform(224, is_train=False,
resize_mode="shortest", interpolation="bicubic")`` applied to a PIL image) is:

1. resize with PIL bicubic so that the *shortest* side becomes 224; the long side becomes
   ``int(224 * long / short)`` (torchvision's rule). PIL antialiases when it shrinks: the
   filter's support grows with the downscale factor;
2. centre crop 224×224 (offsets ``int(round((resized - 224) / 2))``);
3. ``float32(v) / 255``, then ``(x - mean) / std`` per channel, in float32.

This module reproduces step 1 the way Pillow computes it (``libImaging/Resample.c``), so the
results are bit-identical rather than close:

* per axis, output pixel ``i`` has centre ``(i + 0.5) * scale`` (``scale = in / out``), the
  bicubic kernel (``a = -0.5``, support 2) is stretched by ``max(scale, 1)``, taps run from
  ``int(centre - support + 0.5)`` to ``int(centre + support + 0.5)`` clipped to the image, and
  the weights are normalised to sum to 1;
* the weights become 22-bit fixed-point integers (rounded half away from zero); each output
  value is ``(2**21 + Σ pixel·weight) >> 22`` clipped to 0…255;
* the first pass is rounded to uint8 before the second reads it. Pillow ≤ 12 always resamples
  horizontally first; Pillow 13 goes vertically first when the height shrinks by more than twice
  as many pixels as the width. The order shows in the rounding, so it follows the installed
  Pillow by default (``pass_order``).

Only the output pixels inside the centre crop are computed (each output pixel depends on its
own weight row only, so cropping first changes nothing). Step 3 is a 256-entry lookup table per
channel, computed with the same float32 operations as torchvision, so it is exact too.

Backends: NumPy (sparse fixed-point matrix products with SciPy, exact integer arithmetic) and
CuPy (two raw CUDA kernels for the whole batch: a first pass into a uint8 intermediate, and a
second pass that also normalises and writes N×3×224×224). Both give the same numbers; the GPU result stays on the GPU.

Integrators who already hold images on the GPU pass CuPy arrays (or anything exposing
``__cuda_array_interface__`` or DLPack, e.g. a torch CUDA tensor) instead of NumPy arrays: they
are read in place, strided, without a host round trip. See ``docs/operators/preprocess.md``.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from burnscope.operators.gpu import cupy_usable

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

__all__ = [
    "BIOMEDCLIP_MEAN",
    "BIOMEDCLIP_STD",
    "BIOMEDCLIP_IMAGE_SIZE",
    "AxisCoefficients",
    "PreprocessResult",
    "Preprocessor",
    "resample_coefficients",
    "shortest_side_shape",
    "thumbnail_shape",
    "center_crop_offsets",
    "resize_uint8",
    "PASS_ORDERS",
    "vertical_pass_first",
    "normalization_lut",
]


# ----------------------------------------------------------------------------- geometry


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


# ----------------------------------------------------------------------------- NumPy backend


def _clip8(acc: np.ndarray) -> np.ndarray:
    # Arithmetic shift = floor division, as in Pillow's clip8 lookup.
    return np.clip(acc >> PRECISION_BITS, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=1024)
def _sparse(coefficients: AxisCoefficients, offset: int, in_size: int):
    """The window's weights as a CSR matrix (out × in_size), columns shifted by -offset."""
    import scipy.sparse

    out, ksize = coefficients.weights.shape
    taps = np.arange(ksize)
    used = (taps[None, :] < coefficients.count[:, None]).ravel()
    rows = np.repeat(np.arange(out), ksize)[used]
    cols = (coefficients.start[:, None] - offset + taps[None, :]).ravel()[used]
    data = coefficients.weights.ravel()[used]
    return scipy.sparse.csr_matrix((data, (rows, cols)), shape=(out, in_size), dtype=np.int32)


def _swap_axes(image: np.ndarray) -> np.ndarray:
    """(n, m, 3) uint8 → contiguous (m, n, 3); moves whole 3-byte pixels (faster than bytes)."""
    try:
        pixels = image.view("V3")[..., 0]
    except ValueError:  # channel axis not contiguous
        return np.ascontiguousarray(image.transpose(1, 0, 2))
    return np.ascontiguousarray(pixels.T).view(np.uint8).reshape(image.shape[1], image.shape[0], 3)


def _rows_pass(matrix, lines: np.ndarray) -> np.ndarray:
    """Resample axis 0 of a (n, m, 3) uint8 array with a fixed-point CSR matrix (k × n)."""
    n, m, _ = lines.shape
    # Integer products, exact: |Σ| < 2**31 as in Pillow's int accumulator.
    acc = matrix @ np.ascontiguousarray(lines).reshape(n, m * 3).astype(np.int32)
    return _clip8(acc + _ROUNDING).reshape(matrix.shape[0], m, 3)


def _resample_numpy(image: np.ndarray, plan: _Plan) -> np.ndarray:
    """uint8 (out_h, out_w, 3) of one H×W×3 uint8 image, bit-identical to Pillow."""
    span = slice(plan.span_first, plan.span_first + plan.span)
    if plan.vertical_first:
        temp = _rows_pass(_sparse(plan.vertical, 0, plan.height), image[:, span])
        out = _rows_pass(_sparse(plan.horizontal, plan.span_first, plan.span), _swap_axes(temp))
        return out.transpose(1, 0, 2)
    temp = _rows_pass(_sparse(plan.horizontal, 0, plan.width), _swap_axes(image[span]))
    return _rows_pass(_sparse(plan.vertical, plan.span_first, plan.span), _swap_axes(temp))


def _as_host_rgb(image: Any) -> np.ndarray:
    """H×W×3 uint8 NumPy view/copy of a gray, RGB or RGBA uint8 image from any array library."""
    if not isinstance(image, np.ndarray):
        if hasattr(image, "__cuda_array_interface__") or hasattr(image, "device") and hasattr(image, "get"):
            import cupy

            image = cupy.asnumpy(cupy.asarray(image))
        elif hasattr(image, "detach"):  # torch
            image = image.detach().cpu().numpy()
        else:
            image = np.asarray(image)
    _check_image(image.shape, image.dtype)
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return image[:, :, :3]  # RGBA: drop alpha, as PIL's convert("RGB") does


def _check_image(shape: tuple[int, ...], dtype: Any) -> None:
    if np.dtype(dtype) != np.uint8:
        raise TypeError(f"images must be uint8, got {np.dtype(dtype)}")
    if len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 3, 4)):
        if shape[0] >= 1 and shape[1] >= 1:
            return
    raise ValueError(
        f"images must be H×W, H×W×3 (RGB) or H×W×4 (RGBA) with H, W ≥ 1; got shape {tuple(shape)}"
    )


def resize_uint8(image: np.ndarray, shape: tuple[int, int], pass_order: str = "auto") -> np.ndarray:
    """Pillow-exact bicubic resize of an H×W×3 uint8 image to ``shape`` = (height, width)."""
    rgb = _as_host_rgb(image)
    order = resolve_pass_order(pass_order)
    plan = _make_plan(rgb.shape[0], rgb.shape[1], tuple(shape), (0, 0), tuple(shape), order)
    return _resample_numpy(rgb, plan)


# ----------------------------------------------------------------------------- CuPy backend

_CUDA_SOURCE = r"""
// Two separable passes for a whole batch. One block row (blockIdx.y) per image; threads stride
// over that image's pixels. meta[i * META + field] (int64) describes image i; `tables` holds
// every int32 weight table (start, count, weights) the batch needs.
#define META 24
#define M_SRC 0          // source pointer (uint8)
#define M_RS 1           // source strides in elements: row, column, channel (0 for gray)
#define M_CS 2
#define M_CHS 3
#define M_TEMP 4         // offset of this image's intermediate in `temp`
#define M_T_ROWS 5       // intermediate rows and columns (H x W x 3 uint8, contiguous)
#define M_T_COLS 6
#define M_P1_VERT 7      // 1 when the first pass resamples rows (vertical first)
#define M_P1_FIXED0 8    // first source line on the axis the first pass does not resample
#define M_P1_START 9
#define M_P1_COUNT 10
#define M_P1_W 11
#define M_P1_K 12
#define M_OUT_H 13
#define M_OUT_W 14
#define M_P2_TAP0 15     // the intermediate starts at this source line of the second axis
#define M_P2_START 16
#define M_P2_COUNT 17
#define M_P2_W 18
#define M_P2_K 19
#define M_OUT 20         // offset of this image's output (elements)
#define PRECISION_BITS 22

__device__ __forceinline__ unsigned char clip8(int acc) {
    int v = acc >> PRECISION_BITS;  // arithmetic shift: floor, like Pillow's lookup table
    return (unsigned char)(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// Fixed-point dot product of `count` taps along one axis, three channels, Pillow's rounding.
__device__ __forceinline__ void taps3(const unsigned char* base, long long tap_stride, long long chs,
                                      const int* w, int count, unsigned char* v) {
    int a0 = 1 << (PRECISION_BITS - 1), a1 = a0, a2 = a0;
    for (int t = 0; t < count; ++t) {
        const unsigned char* px = base + t * tap_stride;
        const int k = w[t];
        a0 += (int)px[0] * k;
        a1 += (int)px[chs] * k;
        a2 += (int)px[2 * chs] * k;
    }
    v[0] = clip8(a0);
    v[1] = clip8(a1);
    v[2] = clip8(a2);
}

extern "C" __global__ void resample_first_pass(const long long* meta, const int* tables,
                                               unsigned char* temp) {
    const long long* m = meta + (long long)blockIdx.y * META;
    const unsigned char* src = (const unsigned char*)m[M_SRC];
    const long long rs = m[M_RS], cs = m[M_CS], chs = m[M_CHS];
    const long long rows = m[M_T_ROWS], cols = m[M_T_COLS], fixed0 = m[M_P1_FIXED0], ksize = m[M_P1_K];
    const bool vertical = m[M_P1_VERT] != 0;
    const int* start = tables + m[M_P1_START];
    const int* count = tables + m[M_P1_COUNT];
    const int* weights = tables + m[M_P1_W];
    unsigned char* dst = temp + m[M_TEMP];
    const long long total = rows * cols;
    for (long long p = blockIdx.x * (long long)blockDim.x + threadIdx.x; p < total;
         p += (long long)gridDim.x * blockDim.x) {
        const long long i = p / cols, j = p - i * cols;
        const long long a = vertical ? i : j;               // index along the resampled axis
        const long long fixed = (vertical ? j : i) + fixed0;  // source line on the other axis
        const long long tap_stride = vertical ? rs : cs;
        const unsigned char* base = src + fixed * (vertical ? cs : rs) + (long long)start[a] * tap_stride;
        taps3(base, tap_stride, chs, weights + a * ksize, count[a], dst + p * 3);
    }
}

template <typename T>
__device__ __forceinline__ void second_pass(const long long* meta, const int* tables,
                                            const unsigned char* temp, T* out, const T* lut,
                                            bool planar) {
    const long long* m = meta + (long long)blockIdx.y * META;
    const long long t_cols = m[M_T_COLS], out_h = m[M_OUT_H], out_w = m[M_OUT_W];
    const long long tap0 = m[M_P2_TAP0], ksize = m[M_P2_K];
    const bool vertical = m[M_P1_VERT] == 0;  // the second pass is the other axis
    const int* start = tables + m[M_P2_START];
    const int* count = tables + m[M_P2_COUNT];
    const int* weights = tables + m[M_P2_W];
    const unsigned char* src = temp + m[M_TEMP];
    const long long rs = t_cols * 3;
    T* dst = out + m[M_OUT];
    const long long plane = out_h * out_w;
    for (long long p = blockIdx.x * (long long)blockDim.x + threadIdx.x; p < plane;
         p += (long long)gridDim.x * blockDim.x) {
        const long long y = p / out_w, x = p - y * out_w;
        const long long a = vertical ? y : x;
        const long long tap_stride = vertical ? rs : 3;
        const unsigned char* base =
            src + (vertical ? x * 3 : y * rs) + ((long long)start[a] - tap0) * tap_stride;
        unsigned char v[3];
        taps3(base, tap_stride, 1, weights + a * ksize, count[a], v);
        if (planar) {  // N x 3 x H x W through the per-channel normalisation table
            dst[p] = lut[v[0]];
            dst[plane + p] = lut[256 + v[1]];
            dst[2 * plane + p] = lut[512 + v[2]];
        } else {  // H x W x 3 uint8 (thumbnails)
            dst[p * 3] = (T)v[0];
            dst[p * 3 + 1] = (T)v[1];
            dst[p * 3 + 2] = (T)v[2];
        }
    }
}

extern "C" __global__ void resample_second_pass_f32(const long long* meta, const int* tables,
                                                    const unsigned char* temp, float* out, const float* lut) {
    second_pass<float>(meta, tables, temp, out, lut, true);
}

// float16 output: the table already holds float16 bit patterns, so copying them is exact.
extern "C" __global__ void resample_second_pass_f16(const long long* meta, const int* tables,
                                                    const unsigned char* temp, unsigned short* out,
                                                    const unsigned short* lut) {
    second_pass<unsigned short>(meta, tables, temp, out, lut, true);
}

extern "C" __global__ void resample_second_pass_u8(const long long* meta, const int* tables,
                                                   const unsigned char* temp, unsigned char* out) {
    second_pass<unsigned char>(meta, tables, temp, out, (const unsigned char*)0, false);
}
"""

_META_FIELDS = 24
#: Host images are uploaded in groups of about this many bytes, copied by this many threads.
_UPLOAD_CHUNK_BYTES = 16 << 20
_UPLOAD_THREADS = max(1, min(8, (os.cpu_count() or 2) // 2))


class _Done:
    """A finished result with the ``Future.result()`` interface."""

    def __init__(self, value: Any) -> None:
        self._value = value

    def result(self) -> Any:
        return self._value


def _byte_groups(sizes: Sequence[int], chunk: int) -> list[tuple[int, int]]:
    """Consecutive index ranges whose byte totals are about ``chunk`` (at least one image each)."""
    groups: list[tuple[int, int]] = []
    first, acc = 0, 0
    for k, size in enumerate(sizes):
        acc += size
        if acc >= chunk:
            groups.append((first, k + 1))
            first, acc = k + 1, 0
    if first < len(sizes):
        groups.append((first, len(sizes)))
    return groups


_THREADS = 256
_MAX_BLOCKS_X = 2048


@functools.lru_cache(maxsize=1)
def _cuda_module():
    import cupy

    return cupy.RawModule(code=_CUDA_SOURCE, options=("--std=c++14",))


def _device_view(image: Any):
    """A CuPy array for device-resident input (CuPy, __cuda_array_interface__, DLPack), else None."""
    import cupy

    if isinstance(image, cupy.ndarray):
        return image
    if hasattr(image, "__cuda_array_interface__"):
        return cupy.asarray(image)
    if hasattr(image, "__dlpack_device__"):
        device_type, _ = image.__dlpack_device__()
        if int(device_type) in (2, 13):  # kDLCUDA, kDLCUDAManaged
            return cupy.from_dlpack(image)
    return None


class _CupyBackend:
    """Holds the compiled kernels, the per-(shape) packed tables and a pinned staging buffer."""

    def __init__(self) -> None:
        import cupy

        self.cupy = cupy
        module = _cuda_module()
        self.k_first = module.get_function("resample_first_pass")
        self.k_second = {
            "float32": module.get_function("resample_second_pass_f32"),
            "float16": module.get_function("resample_second_pass_f16"),
            "uint8": module.get_function("resample_second_pass_u8"),
        }
        self._pinned = None
        self._pinned_ready = None  # event: the last upload from the pinned buffer has finished
        self._pool = None
        self._lock = threading.Lock()
        self._luts: dict[tuple, Any] = {}

    # -- inputs ---------------------------------------------------------------------------
    def to_device(self, images: Sequence[Any]) -> list[tuple[Any, tuple[int, int, int]]]:
        """Device arrays plus (row, col, channel) element strides for every image.

        Device-resident inputs are used in place; host images are staged through one pinned
        buffer and uploaded asynchronously into one device buffer.
        """
        cupy = self.cupy
        views: list[Any] = [None] * len(images)
        host: list[tuple[int, np.ndarray]] = []
        for i, image in enumerate(images):
            device = _device_view(image)
            if device is not None:
                _check_image(device.shape, device.dtype)
                views[i] = device
            else:
                array = image if isinstance(image, np.ndarray) else np.asarray(image)
                _check_image(array.shape, array.dtype)
                host.append((i, np.ascontiguousarray(array)))
        if host:
            sizes = [a.nbytes for _, a in host]
            total = int(sum(sizes))
            buffer = cupy.empty(total, dtype=cupy.uint8)
            with self._lock:
                self._upload(buffer, [a for _, a in host], sizes)
            offset = 0
            for (i, array), size in zip(host, sizes):
                views[i] = buffer[offset : offset + size].reshape(array.shape)
                offset += size
        return [(v, _element_strides(v)) for v in views]

    def _upload(self, buffer, arrays: list[np.ndarray], sizes: list[int]) -> None:
        """Copy host images into ``buffer`` through pinned memory, in a pipeline.

        The images are split into groups of about equal bytes; worker threads copy the groups
        into the pinned buffer (NumPy releases the GIL) and each group's asynchronous upload
        starts as soon as its copy is done, so host copies and PCIe transfers overlap.
        """
        cupy = self.cupy
        total = int(sum(sizes))
        staging = self._staging(total)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        groups = _byte_groups(sizes, _UPLOAD_CHUNK_BYTES)

        def copy_group(first: int, stop: int) -> tuple[int, int]:
            for k in range(first, stop):
                staging[offsets[k] : offsets[k + 1]] = arrays[k].reshape(-1)
            return int(offsets[first]), int(offsets[stop])

        if len(groups) == 1:
            pending = [_Done(copy_group(*groups[0]))]
        else:
            pending = [self._executor().submit(copy_group, *g) for g in groups]
        for future in pending:
            lo, hi = future.result()
            buffer[lo:hi].set(staging[lo:hi])  # async from pinned memory, on the current stream
        self._pinned_ready = cupy.cuda.Event()
        self._pinned_ready.record()

    def _executor(self):
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(_UPLOAD_THREADS, thread_name_prefix="burnscope-upload")
        return self._pool

    def _staging(self, nbytes: int) -> np.ndarray:
        import cupyx

        if self._pinned_ready is not None:
            self._pinned_ready.synchronize()  # never overwrite bytes still being copied
        if self._pinned is None or self._pinned.nbytes < nbytes:
            self._pinned = cupyx.empty_pinned(max(nbytes, 1 << 20), dtype=np.uint8)
        return self._pinned

    def lut(self, mean: tuple, std: tuple, dtype: str):
        key = (mean, std, dtype)
        if key not in self._luts:
            host = normalization_lut(mean, std, np.dtype(dtype))
            self._luts[key] = self.cupy.asarray(host.view(np.uint16) if dtype == "float16" else host)
        return self._luts[key]

    # -- kernels --------------------------------------------------------------------------
    def run(self, inputs, plans: list[_Plan], out, out_offsets: list[int], mode: str, lut=None) -> None:
        """Resample every image by its plan into ``out`` (planar normalised, or H×W×3 uint8)."""
        cupy = self.cupy
        n = len(plans)
        if n == 0:
            return
        meta = np.zeros((n, _META_FIELDS), dtype=np.int64)
        blocks: list[np.ndarray] = []
        table_offset = 0
        temp_offset = 0
        for i, ((array, strides), plan) in enumerate(zip(inputs, plans)):
            block, rel = _packed_tables(plan)
            blocks.append(block)
            h_start, h_count, h_w, v_start, v_count, v_w = (table_offset + r for r in rel)
            t_rows, t_cols = plan.temp_shape
            if plan.vertical_first:
                first = (1, plan.span_first, v_start, v_count, v_w, plan.vertical.ksize)
                second = (plan.span_first, h_start, h_count, h_w, plan.horizontal.ksize)
            else:
                first = (0, plan.span_first, h_start, h_count, h_w, plan.horizontal.ksize)
                second = (plan.span_first, v_start, v_count, v_w, plan.vertical.ksize)
            meta[i, :21] = (
                array.data.ptr, *strides, temp_offset, t_rows, t_cols, *first,
                plan.out_h, plan.out_w, *second, out_offsets[i],
            )
            table_offset += block.size
            temp_offset += t_rows * t_cols * 3
        tables = cupy.asarray(np.concatenate(blocks))
        meta_d = cupy.asarray(meta)
        temp = cupy.empty(max(temp_offset, 1), dtype=cupy.uint8)
        most_first = max(p.temp_shape[0] * p.temp_shape[1] for p in plans)
        most_second = max(p.out_h * p.out_w for p in plans)
        grid_first = (min(_MAX_BLOCKS_X, -(-most_first // _THREADS)), n)
        grid_second = (min(_MAX_BLOCKS_X, -(-most_second // _THREADS)), n)
        self.k_first(grid_first, (_THREADS,), (meta_d, tables, temp))
        if mode == "uint8":
            self.k_second["uint8"](grid_second, (_THREADS,), (meta_d, tables, temp, out))
        else:
            self.k_second[mode](grid_second, (_THREADS,), (meta_d, tables, temp, out, lut))


def _element_strides(array) -> tuple[int, int, int]:
    """(row, column, channel) strides in elements (= bytes for uint8); channel 0 for gray."""
    strides = array.strides
    if array.ndim == 2:
        return strides[0], strides[1], 0
    if array.shape[2] == 1:
        return strides[0], strides[1], 0
    return strides[0], strides[1], strides[2]


@functools.lru_cache(maxsize=1024)
def _packed_tables(plan: _Plan) -> tuple[np.ndarray, tuple[int, ...]]:
    """One int32 block [h.start, h.count, h.weights, v.start, v.count, v.weights] and the offsets."""
    parts = [
        plan.horizontal.start,
        plan.horizontal.count,
        plan.horizontal.weights.ravel(),
        plan.vertical.start,
        plan.vertical.count,
        plan.vertical.weights.ravel(),
    ]
    offsets = np.cumsum([0] + [p.size for p in parts[:-1]]).tolist()
    block = np.concatenate(parts).astype(np.int32)
    _readonly(block)
    return block, tuple(int(o) for o in offsets)


# ----------------------------------------------------------------------------- public API


@dataclass
class PreprocessResult:
    """A preprocessed batch: the N×3×S×S tensor and, when asked for, RGB uint8 thumbnails."""

    tensor: Any
    thumbnails: list[np.ndarray] | None = None


class Preprocessor:
    """BiomedCLIP's image transform for a batch of images of any sizes, on the CPU or the GPU.

    ``Preprocessor()(images)`` takes a sequence of H×W×3 uint8 RGB images (H×W gray and H×W×4
    RGBA are accepted too; alpha is dropped like PIL's ``convert("RGB")``), or one N×H×W×3 array,
    and returns an N×3×S×S array (S = ``image_size``) of ``dtype``: NumPy on the CPU, CuPy on the
    GPU (the batch stays on the device). Images may be NumPy arrays, CuPy arrays, or any object
    exposing ``__cuda_array_interface__`` or DLPack on a CUDA device; device images are read in
    place, strided.

    Args:
        image_size: crop size S (and the shortest side after resizing).
        mean, std: per-channel normalisation.
        dtype: ``"float32"`` or ``"float16"`` (float16 is the float32 result rounded once).
        device: ``"auto"`` (GPU when CuPy is usable, else CPU), ``"cpu"`` or ``"gpu"``.
        thumbnail_size: longest side of the thumbnails :meth:`process` can return.
        pass_order: which Pillow's pass order to reproduce (see :data:`PASS_ORDERS`); "auto"
            follows the installed Pillow, so results equal open_clip's on this machine.
        cpu_threads: worker threads over the images of a batch on the CPU path (1: none).
    """

    def __init__(
        self,
        image_size: int = BIOMEDCLIP_IMAGE_SIZE,
        mean: Sequence[float] = BIOMEDCLIP_MEAN,
        std: Sequence[float] = BIOMEDCLIP_STD,
        dtype: str = "float32",
        device: str = "auto",
        thumbnail_size: int = DEFAULT_THUMBNAIL_SIZE,
        interpolation: str = "bicubic",
        resize_mode: str = "shortest",
        pass_order: str = "auto",
        cpu_threads: int = 1,
    ) -> None:
        if interpolation != "bicubic" or resize_mode != "shortest":
            raise ValueError(
                "only interpolation='bicubic' with resize_mode='shortest' (BiomedCLIP's transform) "
                "is implemented, "
                f"got {interpolation!r}/{resize_mode!r}"
            )
        if len(mean) != 3 or len(std) != 3:
            raise ValueError("mean and std need three values (R, G, B)")
        if any(float(s) == 0.0 for s in std):
            raise ValueError("std values must be non-zero")
        self.dtype = np.dtype(dtype).name
        if self.dtype not in ("float32", "float16"):
            raise ValueError(f"dtype must be float32 or float16, got {dtype!r}")
        if int(image_size) < 1 or int(thumbnail_size) < 1:
            raise ValueError("image_size and thumbnail_size must be positive")
        self.image_size = int(image_size)
        self.thumbnail_size = int(thumbnail_size)
        self.pass_order = resolve_pass_order(pass_order)
        self.cpu_threads = max(1, int(cpu_threads))
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        device = device.lower()
        if device not in ("auto", "cpu", "gpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'gpu', got {device!r}")
        if device in ("gpu", "cuda") and not cupy_usable():
            raise RuntimeError(
                "device='gpu' was asked for but CuPy cannot use a GPU here (see burnscope.operators.gpu)"
            )
        self._gpu = device in ("gpu", "cuda") or (device == "auto" and cupy_usable())
        self._lut = normalization_lut(self.mean, self.std, np.dtype(self.dtype))
        self._backend = _CupyBackend() if self._gpu else None

    @classmethod
    def from_config(cls, config: Mapping[str, Any], **overrides: Any) -> Preprocessor:
        """Build from a model config (its ``preprocess_cfg``) or a ``preprocess_cfg`` dict itself."""
        cfg = dict(config.get("preprocess_cfg", config))
        kwargs: dict[str, Any] = {}
        known = ("image_size", "mean", "std", "interpolation", "resize_mode", "dtype", "device")
        for key in (*known, "thumbnail_size", "pass_order", "cpu_threads"):
            if key in cfg:
                kwargs[key] = cfg[key]
        size = kwargs.get("image_size")
        if isinstance(size, (list, tuple)):
            if len(set(size)) != 1:
                raise ValueError(f"only square image_size is supported, got {size}")
            kwargs["image_size"] = size[0]
        kwargs.update(overrides)
        return cls(**kwargs)

    @property
    def device(self) -> str:
        """``"cuda"`` when batches are built on the GPU (CuPy), else ``"cpu"``."""
        return "cuda" if self._gpu else "cpu"

    @property
    def output_shape(self) -> tuple[int, int, int]:
        return (3, self.image_size, self.image_size)

    def describe(self) -> dict[str, Any]:
        return {
            "transform": "pil-bicubic-shortest-side+center-crop+normalize",
            "image_size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "dtype": self.dtype,
            "device": self.device,
            "backend": "cupy" if self._gpu else "numpy",
            "pass_order": self.pass_order,
        }

    def __repr__(self) -> str:
        return f"Preprocessor(image_size={self.image_size}, dtype={self.dtype!r}, device={self.device!r})"

    def __call__(self, images: Sequence[Any] | Any) -> Any:
        """The N×3×S×S batch (NumPy on the CPU, CuPy on the GPU)."""
        return self.process(images, thumbnails=False).tensor

    def process(self, images: Sequence[Any] | Any, thumbnails: bool = False) -> PreprocessResult:
        """The batch tensor and, with ``thumbnails=True``, one RGB uint8 NumPy thumbnail per image."""
        items = _as_list(images)
        if self._gpu:
            return self._process_gpu(items, thumbnails)
        return self._process_cpu(items, thumbnails)

    def thumbnails(self, images: Sequence[Any] | Any) -> list[np.ndarray]:
        """RGB uint8 thumbnails (longest side ``thumbnail_size``, same resampling), on the host."""
        items = _as_list(images)
        if self._gpu:
            return self._thumbnails_gpu(self._backend.to_device(items))
        return [_resample_numpy(rgb, self._thumb_plan(rgb.shape)) for rgb in map(_as_host_rgb, items)]

    # -- CPU ------------------------------------------------------------------------------
    def _thumb_plan(self, shape) -> _Plan:
        return _thumbnail_plan(int(shape[0]), int(shape[1]), self.thumbnail_size, self.pass_order)

    def _process_cpu(self, items: list[Any], thumbnails: bool) -> PreprocessResult:
        size = self.image_size
        out = np.empty((len(items), 3, size, size), dtype=self.dtype)
        thumbs: list[Any] | None = [None] * len(items) if thumbnails else None
        channel = np.arange(3)[:, None, None]

        def one(i: int) -> None:
            rgb = _as_host_rgb(items[i])
            crop = _resample_numpy(rgb, _model_plan(rgb.shape[0], rgb.shape[1], size, self.pass_order))
            out[i] = self._lut[channel, crop.transpose(2, 0, 1)]
            if thumbs is not None:
                thumbs[i] = _resample_numpy(rgb, self._thumb_plan(rgb.shape))

        if self.cpu_threads > 1 and len(items) > 1:
            # SciPy's sparse products and NumPy's copies release the GIL.
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(self.cpu_threads, len(items))) as pool:
                list(pool.map(one, range(len(items))))
        else:
            for i in range(len(items)):
                one(i)
        return PreprocessResult(out, thumbs)

    # -- GPU ------------------------------------------------------------------------------
    def _process_gpu(self, items: list[Any], thumbnails: bool) -> PreprocessResult:
        backend = self._backend
        cupy = backend.cupy
        size = self.image_size
        n = len(items)
        out = cupy.empty((n, 3, size, size), dtype=self.dtype)
        if n == 0:
            return PreprocessResult(out, [] if thumbnails else None)
        inputs = backend.to_device(items)
        plans = [_model_plan(int(a.shape[0]), int(a.shape[1]), size, self.pass_order) for a, _ in inputs]
        plane = 3 * size * size
        target = out.view(cupy.uint16) if self.dtype == "float16" else out
        lut = backend.lut(self.mean, self.std, self.dtype)
        backend.run(inputs, plans, target, [i * plane for i in range(n)], self.dtype, lut)
        thumbs = self._thumbnails_gpu(inputs) if thumbnails else None
        return PreprocessResult(out, thumbs)

    def _thumbnails_gpu(self, inputs) -> list[np.ndarray]:
        backend = self._backend
        if not inputs:
            return []
        plans = [self._thumb_plan(a.shape) for a, _ in inputs]
        sizes = [p.out_h * p.out_w * 3 for p in plans]
        offsets = np.cumsum([0] + sizes[:-1]).tolist()
        flat = backend.cupy.empty(int(sum(sizes)), dtype=backend.cupy.uint8)
        backend.run(inputs, plans, flat, offsets, "uint8")
        host = flat.get()
        return [host[o : o + s].reshape(p.out_h, p.out_w, 3) for o, s, p in zip(offsets, sizes, plans)]


def _as_list(images: Sequence[Any] | Any) -> list[Any]:
    """A list of single images from a sequence, or from one N×H×W×C array."""
    if isinstance(images, (list, tuple)):
        return list(images)
    shape = getattr(images, "shape", None)
    if shape is not None and len(shape) == 4:
        return [images[i] for i in range(shape[0])]
    if shape is not None:
        raise ValueError(f"expected a sequence of images or an N×H×W×C array, got shape {tuple(shape)}")
    return list(images)
