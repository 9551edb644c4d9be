"""The preprocessing in two halves, for a graph whose model runs on another host.

:class:`~burnscope.operators.preprocess.core.Preprocessor` makes the model's float tensor in two
steps: an exact (Pillow-equal) bicubic resize + centre crop to S×S **uint8**, then a 256-entry
lookup table per channel (``float32(v)/255``, ``(x - mean)/std``). The lookup only reads the
uint8 value, so doing the two steps on two hosts gives the very same float tensor, and the link
between them carries 1 byte per pixel instead of 4:

* :func:`crop_batch` (sending side): N×S×S×3 uint8 crops;
* :func:`normalise_crops` (model side): the N×3×S×S tensor, bit-identical to
  ``Preprocessor.process(images).tensor``.

Both accept NumPy (CPU) or CuPy (GPU) and return the same kind as the preprocessor works in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from burnscope.operators.preprocess.core import Preprocessor
from burnscope.operators.preprocess.geometry import _model_plan
from burnscope.operators.preprocess.numpy_backend import _as_host_rgb, _resample_numpy


def crop_batch(preprocessor: Preprocessor, images: Sequence[Any]) -> Any:
    """N×S×S×3 uint8 resized-and-cropped images (NumPy on the CPU, CuPy on the GPU)."""
    size = preprocessor.image_size
    items = list(images)
    if preprocessor.device == "cuda":
        backend = preprocessor._backend
        out = backend.cupy.empty((len(items), size, size, 3), dtype=backend.cupy.uint8)
        if items:
            inputs = backend.to_device(items)
            plans = [_model_plan(int(a.shape[0]), int(a.shape[1]), size, preprocessor.pass_order) for a, _ in inputs]
            plane = size * size * 3
            backend.run(inputs, plans, out.reshape(-1), [i * plane for i in range(len(items))], "uint8")
        return out
    out = np.empty((len(items), size, size, 3), dtype=np.uint8)
    for i, image in enumerate(items):
        rgb = _as_host_rgb(image)
        out[i] = _resample_numpy(rgb, _model_plan(rgb.shape[0], rgb.shape[1], size, preprocessor.pass_order))
    return out


def normalise_crops(preprocessor: Preprocessor, crops: Any) -> Any:
    """The model's N×3×S×S input (``preprocessor.dtype``) from N×S×S×3 uint8 crops."""
    channel = np.arange(3)[None, :, None, None]
    if preprocessor.device == "cuda":
        cupy = preprocessor._backend.cupy
        lut = cupy.asarray(preprocessor._lut)
        return cupy.ascontiguousarray(lut[cupy.asarray(channel), cupy.asarray(crops).transpose(0, 3, 1, 2)])
    crops = np.asarray(crops)
    return np.ascontiguousarray(preprocessor._lut[channel, crops.transpose(0, 3, 1, 2)])


__all__ = ["crop_batch", "normalise_crops"]
