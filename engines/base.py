"""One interface for every BiomedCLIP image-encoder backend, and the factory that builds them.

Life cycle: ``create_engine(bundle, ...)`` builds or loads → ``warmup()`` → ``infer(batch)`` →
``describe()``. ``infer`` takes an N×3×224×224 float32/float16 batch (NumPy on the host; a CuPy
array or a torch CUDA tensor on a GPU, handed over through DLPack without a host copy where the
backend can) and returns N×D float32 L2-normalised embeddings in host memory.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import os
import platform
from typing import Any, Sequence

import numpy as np

from burnscope.common.messages import ModelInfo

log = logging.getLogger(__name__)

#: Backends ``create_engine`` knows, in order of preference on a GPU.
BACKENDS = ("onnxruntime", "torch", "tensorrt")
#: Precision names used by the engines, the CLI and the benchmark rows.
PRECISIONS = ("fp32", "fp16", "bf16", "int8", "int8-dynamic", "fp8")
DEVICES = ("auto", "cpu", "cuda", "gpu")  # "gpu" is an alias of "cuda"


class EngineError(RuntimeError):
    """An engine cannot be built or run as asked (missing library, unsupported precision, ...)."""


#: backend → device → the precisions it runs there (checked before any model is loaded).
SUPPORTED = {
    "onnxruntime": {"cpu": ("fp32", "int8", "int8-dynamic"), "cuda": ("fp32", "fp16", "int8")},
    "torch": {"cpu": ("fp32", "bf16"), "cuda": ("fp32", "fp16", "bf16")},
    "tensorrt": {"cuda": ("fp32", "fp16", "bf16", "int8", "fp8")},
}


def check_engine_choice(backend: str, precision: str, device: str = "auto") -> str:
    """The device ``backend`` would run ``precision`` on here (``cpu``/``cuda``); an EngineError with
    one line saying what would work when the combination cannot run on this machine."""
    if backend not in BACKENDS:
        raise EngineError(f"unknown backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise EngineError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    try:
        resolved = resolve_device(backend, device)
    except ValueError as exc:
        raise EngineError(str(exc)) from None
    runs = SUPPORTED[backend].get(resolved)
    if runs is None:
        raise EngineError(f"{backend} needs a CUDA GPU; this machine has none usable (choose onnxruntime or torch)")
    if precision not in runs:
        where = "on the CPU" if resolved == "cpu" else "on a GPU"
        needs = f" ({precision} needs CUDA)" if resolved == "cpu" and precision in SUPPORTED[backend].get("cuda", ()) else ""
        raise EngineError(f"{backend} does not run {precision} {where}{needs}; it runs {', '.join(runs)} there")
    if resolved == "cuda" and device in ("cuda", "gpu") and backend == "torch":
        from burnscope.common.gpu import torch_cuda_usable

        if not torch_cuda_usable():
            raise EngineError("--device gpu: torch sees no usable CUDA GPU on this machine")
    return resolved


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32); a zero row stays zero instead of becoming NaN."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def is_device_array(batch: Any) -> bool:
    """True for a CuPy array or a torch CUDA tensor (data already on the GPU)."""
    if hasattr(batch, "__cuda_array_interface__"):
        return True
    device = getattr(batch, "device", None)
    return getattr(device, "type", None) == "cuda"


def batch_size_of(batch: Any) -> int:
    return int(batch.shape[0])


def cpu_cores() -> int:
    """Cores this process may use (affinity-aware, so containers limited by cpusets count right)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def pad_to(batch_size: int, sizes: Sequence[int]) -> int | None:
    """The smallest configured size that holds ``batch_size`` (None when it is larger than all)."""
    fitting = [s for s in sorted(sizes) if s >= batch_size]
    return fitting[0] if fitting else None


class Engine(abc.ABC):
    """A BiomedCLIP image encoder behind one interface (see the module docstring)."""

    backend: str = ""

    def __init__(self, bundle, precision: str = "fp32", device: str = "cpu", batch_sizes: Sequence[int] = (1, 8)):
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
        self.bundle = bundle
        self.precision = precision
        self.device = device
        self.batch_sizes = tuple(sorted({int(b) for b in batch_sizes})) or (1,)
        self.image_size = int(bundle.config.get("preprocess_cfg", {}).get("image_size", 224))
        self.embed_dim = int(bundle.embed_dim)
        self._warm = False

    # -- interface -------------------------------------------------------------------------
    @abc.abstractmethod
    def _infer(self, batch: Any) -> np.ndarray:
        """Backend work for a non-empty batch; returns N×D float32 (host)."""

    def infer(self, batch: Any) -> np.ndarray:
        """N×D float32 L2-normalised embeddings of an N×3×H×W batch (see module docstring)."""
        shape = tuple(batch.shape)
        if len(shape) != 4 or shape[1] != 3:
            raise ValueError(f"expected an N×3×{self.image_size}×{self.image_size} batch, got shape {shape}")
        if shape[0] == 0:
            return np.zeros((0, self.embed_dim), np.float32)
        out = self._infer(batch)
        # Every backend normalises in-graph; normalising again is cheap and guards low precisions.
        return l2_normalize(out)

    def warmup(self, iterations: int = 2, sizes: Sequence[int] | None = None) -> "Engine":
        """Run each configured batch size (or just ``sizes``) a few times: allocations,
        autotuning, graph capture."""
        for size in sizes or self.batch_sizes:
            dummy = np.zeros((size, 3, self.image_size, self.image_size), np.float32)
            for _ in range(iterations):
                self.infer(dummy)
        self._warm = True
        return self

    def library_versions(self) -> dict[str, str]:
        import numpy

        return {"python": platform.python_version(), "numpy": numpy.__version__}

    def describe(self) -> dict[str, Any]:
        """What runs: backend, precision, device, library versions, input/output shapes."""
        return {
            "backend": self.backend,
            "precision": self.precision,
            "device": self.device,
            "model": self.bundle.info.name,
            "weights": self.bundle.info.weights,
            "demo": self.bundle.info.demo,
            "fingerprint": self.bundle.fingerprint,
            "batch_sizes": list(self.batch_sizes),
            "input": {"name": "images", "shape": ["N", 3, self.image_size, self.image_size], "dtype": "float32|float16"},
            "output": {"name": "embeddings", "shape": ["N", self.embed_dim], "dtype": "float32", "normalized": True},
            "versions": self.library_versions(),
        }

    @property
    def model_info(self) -> ModelInfo:
        """The bundle's ModelInfo with this engine's backend, precision and device (demo kept)."""
        return dataclasses.replace(self.bundle.info, backend=self.backend, precision=self.precision, device=self.device)

    def close(self) -> None:
        """Release backend resources (sessions, CUDA graphs, engines)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(precision={self.precision!r}, device={self.device!r}, batch_sizes={self.batch_sizes})"


def resolve_device(backend: str, device: str = "auto") -> str:
    """``cpu`` or ``cuda`` for a backend; ``auto`` picks CUDA when the backend can use it here."""
    device = (device or "auto").lower()
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; valid: {', '.join(DEVICES)}")
    if device == "gpu":
        return "cuda"
    if device != "auto":
        return device
    from burnscope.common.gpu import torch_cuda_usable

    if backend == "tensorrt":
        return "cuda"
    if backend == "onnxruntime":
        import onnxruntime

        cuda_ep = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
        return "cuda" if cuda_ep and os.environ.get("BURNSCOPE_DEVICE", "").lower() != "cpu" else "cpu"
    return "cuda" if torch_cuda_usable() else "cpu"


def create_engine(
    bundle,
    backend: str = "onnxruntime",
    precision: str = "fp32",
    device: str = "auto",
    batch_sizes: Sequence[int] = (1, 8),
    **opts: Any,
) -> Engine:
    """Build (or load from cache) an engine for ``bundle`` (a :class:`~burnscope.engines.model.ModelBundle`).

    ``opts`` go to the backend: onnxruntime ``onnx_path``, ``intra_op_threads``, ``calibration``
    (static INT8: preprocessed images or a callable giving them, see ``quantize.Calibration``);
    torch ``cuda_graphs``, ``compile``, ``high_priority``; tensorrt ``onnx_path``, ``high_priority``, ``workspace_gb``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if backend == "tensorrt":
        from burnscope.engines.tensorrt_backend import require_tensorrt

        require_tensorrt()  # clear message before any work when TensorRT is absent
    check_engine_choice(backend, precision, device)
    resolved = resolve_device(backend, device)
    if backend == "onnxruntime":
        from burnscope.engines.onnxruntime_backend import OnnxRuntimeEngine

        return OnnxRuntimeEngine(bundle, precision=precision, device=resolved, batch_sizes=batch_sizes, **opts)
    if backend == "torch":
        from burnscope.engines.torch_backend import TorchEngine

        return TorchEngine(bundle, precision=precision, device=resolved, batch_sizes=batch_sizes, **opts)
    from burnscope.engines.tensorrt_backend import TensorRTEngine

    return TensorRTEngine(bundle, precision=precision, device=resolved, batch_sizes=batch_sizes, **opts)
