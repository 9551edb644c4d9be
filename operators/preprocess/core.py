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

Modules: ``geometry`` (shapes, Pillow's fixed-point weights, pass order, per-shape plans),
``numpy_backend`` (sparse fixed-point matrix products with SciPy, exact integer arithmetic),
``cupy_backend`` (two raw CUDA kernels in ``resample.cu`` for the whole batch: a first pass into
a uint8 intermediate, and a second pass that also normalises and writes N×3×224×224), and this
module (:class:`Preprocessor`, the public API; it re-exports the names above). Both backends
give the same numbers; the GPU result stays on the GPU.

Integrators who already hold images on the GPU pass CuPy arrays (or anything exposing
``__cuda_array_interface__`` or DLPack, e.g. a torch CUDA tensor) instead of NumPy arrays: they
are read in place, strided, without a host round trip. See ``docs/operators/preprocess.md``.
"""


from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from burnscope.common.gpu import cupy_usable
from burnscope.operators.preprocess.cupy_backend import _CupyBackend
from burnscope.operators.preprocess.geometry import (  # noqa: F401  (public names re-exported)
    BIOMEDCLIP_IMAGE_SIZE,
    BIOMEDCLIP_MEAN,
    BIOMEDCLIP_STD,
    DEFAULT_THUMBNAIL_SIZE,
    PASS_ORDERS,
    AxisCoefficients,
    _model_plan,
    _Plan,
    _thumbnail_plan,
    center_crop_offsets,
    normalization_lut,
    resample_coefficients,
    resolve_pass_order,
    shortest_side_shape,
    thumbnail_shape,
    vertical_pass_first,
)
from burnscope.operators.preprocess.numpy_backend import _as_host_rgb, _resample_numpy, resize_uint8

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
                "device='gpu' was asked for but CuPy cannot use a GPU here (see burnscope.common.gpu)"
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
