"""The CuPy backend: two raw CUDA kernels (``resample.cu``) resample and normalise a whole batch.

The first pass writes a uint8 intermediate; the second also normalises through the lookup
table and writes N×3×S×S. Images already on the device are read in place, strided.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from burnscope.operators.preprocess.geometry import _Plan, _readonly, normalization_lut
from burnscope.operators.preprocess.numpy_backend import _check_image

#: The kernels' CUDA C++ source, shipped beside this module.
CUDA_SOURCE_PATH = Path(__file__).with_name("resample.cu")


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

    return cupy.RawModule(code=CUDA_SOURCE_PATH.read_text(), options=("--std=c++14",))


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

