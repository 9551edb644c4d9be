"""TensorRT backend: serialized engines built from the image-tower ONNX, run on a CUDA stream.

**Status: written against the TensorRT 10/11 Python API but untested on this project's
machines** — TensorRT cannot be installed there (see docs/engines.md). Only the pure parts
(cache key, optimisation profiles, staleness decision, precision flags, profile choice) and the
fallback error are tested; the tests of the rest run only where ``import tensorrt`` works and a
GPU is usable.

* Build: ``OnnxParser`` → one optimisation profile per configured batch size (profile *i* covers
  batches ``sizes[i-1]+1 … sizes[i]``, tuned for ``sizes[i]``), FP16; INT8/FP8 from a Q/DQ ONNX
  (explicit quantization: the scales come from the Q/DQ nodes, no TensorRT calibrator), a
  timing cache file shared by builds on the same GPU.
* Cache: ``<bundle.cache_dir>/tensorrt/<key>.engine`` plus a JSON sidecar; the key hashes GPU
  name, compute capability, TensorRT version, the ONNX file's hash and the precision (and the
  batch sizes). An engine whose sidecar does not match what would be built now is rebuilt,
  never loaded.
* Run: ``set_input_shape`` + ``set_tensor_address`` + ``execute_async_v3`` on a torch CUDA
  stream; ``high_priority=True`` puts the work on a high-priority stream (emergency cases
  overtake routine batches on a shared GPU).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from burnscope.engines.base import Engine, EngineError, is_device_array

log = logging.getLogger(__name__)

INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"
#: Precision → builder flags. INT8/FP8 engines come from Q/DQ ONNX; FP16 stays on for the
#: layers the Q/DQ nodes leave in float (softmax, LayerNorm, head).
PRECISION_FLAGS = {"fp32": (), "fp16": ("FP16",), "bf16": ("BF16",), "int8": ("INT8", "FP16"), "fp8": ("FP8", "FP16")}


def require_tensorrt():
    """The ``tensorrt`` module, or an EngineError saying how to fall back."""
    try:
        import tensorrt
    except Exception as exc:  # ImportError, or OSError when libnvinfer is missing
        raise EngineError(
            f"TensorRT is not installed (import tensorrt failed: {exc}); use --backend onnxruntime or torch"
        ) from exc
    return tensorrt


# ---------------------------------------------------------------------------------------------
# Pure parts (tested without TensorRT)
# ---------------------------------------------------------------------------------------------
def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of an ONNX file and its external-data side file (weights count, not just the graph)."""
    digest = hashlib.sha256()
    path = Path(path)
    for part in (path, path.with_name(path.name + ".data")):
        if part.exists():
            with part.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def cache_fields(gpu_name: str, compute_capability: tuple[int, int] | str, trt_version: str, onnx_hash: str,
                 precision: str, batch_sizes: Sequence[int]) -> dict[str, Any]:
    """Everything an engine depends on: a change in any of them means a different engine."""
    if isinstance(compute_capability, (tuple, list)):
        compute_capability = f"{compute_capability[0]}.{compute_capability[1]}"
    return {
        "gpu": str(gpu_name),
        "compute_capability": str(compute_capability),
        "tensorrt": str(trt_version),
        "onnx_sha256": str(onnx_hash),
        "precision": str(precision),
        "batch_sizes": sorted(int(b) for b in batch_sizes),
    }


def cache_key(fields: dict[str, Any]) -> str:
    """Short file-name-safe key of :func:`cache_fields`."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]


def engine_paths(cache_dir: str | os.PathLike, fields: dict[str, Any]) -> tuple[Path, Path]:
    """(engine file, JSON sidecar) for these fields under ``cache_dir``."""
    key = cache_key(fields)
    directory = Path(cache_dir)
    return directory / f"image-{fields['precision']}-{key}.engine", directory / f"image-{fields['precision']}-{key}.json"


def is_stale(engine_path: str | os.PathLike, meta_path: str | os.PathLike, fields: dict[str, Any]) -> bool:
    """True unless the engine exists and its sidecar records exactly ``fields`` and the file's size/hash."""
    engine_path, meta_path = Path(engine_path), Path(meta_path)
    if not (engine_path.is_file() and meta_path.is_file()):
        return True
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError:
        return True
    if meta.get("fields") != fields:
        return True
    if meta.get("engine_bytes") != engine_path.stat().st_size:
        return True
    return meta.get("engine_sha256") != file_digest(engine_path)


def optimization_profiles(batch_sizes: Sequence[int], image_size: int = 224) -> list[tuple[tuple, tuple, tuple]]:
    """(min, opt, max) input shapes, one profile per batch size; ranges do not overlap."""
    sizes = sorted({int(b) for b in batch_sizes if int(b) > 0})
    if not sizes:
        raise ValueError("at least one positive batch size is needed")
    profiles, low = [], 1
    for size in sizes:
        shape = lambda n: (n, 3, image_size, image_size)  # noqa: E731
        profiles.append((shape(low), shape(size), shape(size)))
        low = size + 1
    return profiles


def select_profile(batch: int, batch_sizes: Sequence[int]) -> int:
    """Index of the profile that runs a batch of ``batch`` images (the batch must be ≤ the largest size)."""
    sizes = sorted({int(b) for b in batch_sizes})
    for index, size in enumerate(sizes):
        if batch <= size:
            return index
    raise ValueError(f"batch {batch} is larger than the largest profile ({sizes[-1]}); split it")


def builder_flags(precision: str) -> tuple[str, ...]:
    if precision not in PRECISION_FLAGS:
        raise EngineError(f"tensorrt backend: precision {precision!r} not supported ({', '.join(PRECISION_FLAGS)})")
    return PRECISION_FLAGS[precision]


def onnx_for_precision(bundle, precision: str, onnx_path: str | os.PathLike | None = None, calibration=None) -> Path:
    """The ONNX file an engine of ``precision`` is built from (Q/DQ for INT8; FP8 must be given)."""
    from burnscope.engines import export

    if onnx_path:
        return Path(onnx_path)
    if precision in ("fp32", "fp16", "bf16"):
        return export.export_image_tower(bundle)
    if precision == "int8":
        from burnscope.engines import quantize

        return quantize.quantize_static_image_tower(bundle, calibration)
    raise EngineError("tensorrt backend: fp8 needs an FP8 Q/DQ ONNX file (onnx_path=...), e.g. from NVIDIA ModelOpt")


# ---------------------------------------------------------------------------------------------
# Build and run (needs TensorRT and a GPU)
# ---------------------------------------------------------------------------------------------
def build_serialized_engine(
    onnx_path: str | os.PathLike,
    precision: str,
    batch_sizes: Sequence[int],
    image_size: int = 224,
    timing_cache: str | os.PathLike | None = None,
    workspace_gb: float = 4.0,
) -> bytes:
    """Parse the ONNX file and build a serialized engine (see module docstring)."""
    trt = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10+: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # reads external data beside the file
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    for flag in builder_flags(precision):
        config.set_flag(getattr(trt.BuilderFlag, flag))
    for low, opt, high in optimization_profiles(batch_sizes, image_size):
        profile = builder.create_optimization_profile()
        profile.set_shape(INPUT_NAME, low, opt, high)
        config.add_optimization_profile(profile)
    cache_bytes = Path(timing_cache).read_bytes() if timing_cache and Path(timing_cache).is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"TensorRT failed to build a {precision} engine from {onnx_path}")
    if timing_cache:
        Path(timing_cache).parent.mkdir(parents=True, exist_ok=True)
        Path(timing_cache).write_bytes(memoryview(config.get_timing_cache().serialize()))
    return bytes(memoryview(serialized))


def current_fields(onnx_path: Path, precision: str, batch_sizes: Sequence[int]) -> dict[str, Any]:
    import torch

    trt = require_tensorrt()
    return cache_fields(torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0), trt.__version__,
                        file_digest(onnx_path), precision, batch_sizes)


def load_or_build(bundle, onnx_path: Path, precision: str, batch_sizes: Sequence[int], image_size: int = 224,
                  workspace_gb: float = 4.0) -> tuple[bytes, Path, bool]:
    """(serialized engine, engine path, built now?) — reuses the cache only when it is not stale."""
    cache_dir = Path(bundle.cache_dir) / "tensorrt"
    cache_dir.mkdir(parents=True, exist_ok=True)
    fields = current_fields(onnx_path, precision, batch_sizes)
    engine_path, meta_path = engine_paths(cache_dir, fields)
    if not is_stale(engine_path, meta_path, fields):
        return engine_path.read_bytes(), engine_path, False
    timing = cache_dir / f"timing-{cache_key({k: fields[k] for k in ('gpu', 'compute_capability', 'tensorrt')})}.cache"
    log.info("building TensorRT %s engine (batch sizes %s); this takes minutes", precision, list(batch_sizes))
    data = build_serialized_engine(onnx_path, precision, batch_sizes, image_size, timing, workspace_gb)
    tmp = engine_path.with_suffix(".engine.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, engine_path)
    meta = {"fields": fields, "onnx": str(onnx_path), "engine_bytes": len(data),
            "engine_sha256": hashlib.sha256(data).hexdigest()}
    meta_path.write_text(json.dumps(meta, indent=2))
    return data, engine_path, True


class TensorRTEngine(Engine):
    backend = "tensorrt"

    def __init__(
        self,
        bundle,
        precision: str = "fp16",
        device: str = "cuda",
        batch_sizes: Sequence[int] = (1, 8),
        onnx_path: str | os.PathLike | None = None,
        calibration: Any = None,
        high_priority: bool = False,
        workspace_gb: float = 4.0,
        **unused: Any,
    ):
        super().__init__(bundle, precision, device, batch_sizes)
        trt = require_tensorrt()
        import torch

        builder_flags(precision)
        if device != "cuda" or not torch.cuda.is_available():
            raise EngineError("tensorrt backend needs a CUDA GPU")
        self.onnx_path = onnx_for_precision(bundle, precision, onnx_path, calibration)
        data, self.engine_path, self.built = load_or_build(bundle, self.onnx_path, precision, self.batch_sizes,
                                                           self.image_size, workspace_gb)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self._logger)
        self.engine = self.runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise EngineError(f"TensorRT could not deserialize {self.engine_path}")
        # Lower number = higher priority; torch exposes the CUDA range as -1 (high) … 0 (default).
        self.stream = torch.cuda.Stream(priority=-1 if high_priority else 0)
        self.high_priority = high_priority
        self.contexts = []
        for index in range(len(self.batch_sizes)):
            context = self.engine.create_execution_context()
            context.set_optimization_profile_async(index, self.stream.cuda_stream)
            self.contexts.append(context)
        self.stream.synchronize()
        self._input_dtype = torch.float16 if self.engine.get_tensor_dtype(INPUT_NAME) == trt.DataType.HALF else torch.float32

    def infer_tensor(self, batch: Any):
        """Embeddings as a torch CUDA tensor (no host copy); GPU input through DLPack."""
        import torch

        if is_device_array(batch):
            images = batch if isinstance(batch, torch.Tensor) else torch.from_dlpack(batch)
        else:
            images = torch.from_numpy(np.ascontiguousarray(batch))
        n, largest = int(images.shape[0]), max(self.batch_sizes)
        if n > largest:
            return torch.cat([self.infer_tensor(images[i : i + largest]) for i in range(0, n, largest)])
        with torch.cuda.stream(self.stream):
            images = images.to("cuda", self._input_dtype, non_blocking=True).contiguous()
            out = torch.empty((n, self.embed_dim), device="cuda", dtype=torch.float32)
            context = self.contexts[select_profile(n, self.batch_sizes)]
            context.set_input_shape(INPUT_NAME, tuple(images.shape))
            context.set_tensor_address(INPUT_NAME, images.data_ptr())
            context.set_tensor_address(OUTPUT_NAME, out.data_ptr())
            if not context.execute_async_v3(self.stream.cuda_stream):
                raise EngineError("TensorRT execute_async_v3 failed")
        self.stream.synchronize()
        return out

    def _infer(self, batch: Any) -> np.ndarray:
        return self.infer_tensor(batch).cpu().numpy()

    def library_versions(self) -> dict[str, str]:
        import tensorrt
        import torch

        return {**super().library_versions(), "tensorrt": tensorrt.__version__, "torch": torch.__version__,
                "gpu": torch.cuda.get_device_name(0)}

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(onnx=str(self.onnx_path), engine=str(self.engine_path), built_now=self.built,
                    high_priority_stream=self.high_priority,
                    profiles=[list(map(list, p)) for p in optimization_profiles(self.batch_sizes, self.image_size)])
        return info
