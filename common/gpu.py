"""Decide once whether a GPU is usable, and hand out the matching array module.

CuPy imports on machines without a GPU and only fails at the first allocation
(``cudaErrorInsufficientDriver``); some versions' ``cupy.is_available()`` raises instead of
returning False. So "usable" means: a tiny allocation and a kernel launch succeeded.
Set ``BURNSCOPE_DEVICE=cpu`` to force the NumPy path on a GPU machine.
"""

from __future__ import annotations

import functools
import os
from types import ModuleType

import numpy as np


@functools.lru_cache(maxsize=1)
def cuda_driver_present() -> bool:
    """True when the NVIDIA driver library loads. Without it neither CuPy nor torch can use a GPU,
    and saying so takes milliseconds instead of the seconds that importing torch or CuPy take."""
    import ctypes

    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def cupy_usable() -> bool:
    """True when CuPy imports and can allocate and compute on a GPU."""
    if os.environ.get("BURNSCOPE_DEVICE", "").lower() == "cpu" or not cuda_driver_present():
        return False
    try:
        import cupy

        probe = cupy.arange(4, dtype=cupy.float32) * 2
        return float(probe.sum().get()) == 12.0
    except Exception:  # any failure (no driver, no device, broken install) means "no GPU"
        return False


@functools.lru_cache(maxsize=1)
def torch_cuda_usable() -> bool:
    """True when torch sees a CUDA device (and the user did not force the CPU)."""
    if os.environ.get("BURNSCOPE_DEVICE", "").lower() == "cpu" or not cuda_driver_present():
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def array_module(prefer_gpu: bool = True) -> ModuleType:
    """``cupy`` when asked for and usable, else ``numpy``."""
    if prefer_gpu and cupy_usable():
        import cupy

        return cupy
    return np


def to_numpy(array) -> np.ndarray:
    """Host copy of a NumPy, CuPy or torch array (no copy for NumPy)."""
    if isinstance(array, np.ndarray):
        return array
    if hasattr(array, "get"):  # cupy
        return array.get()
    if hasattr(array, "detach"):  # torch
        return array.detach().cpu().numpy()
    return np.asarray(array)
