"""What this machine offers burnscope: library versions, GPU, TensorRT, model weights.

Pure data collection (no printing) so that ``burnscope info`` and the benchmarks record the
same facts.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
from typing import Any

#: distribution name → import name, in the order ``burnscope info`` prints them.
LIBRARIES = {
    "holoscan-cu13": "holoscan",
    "torch": "torch",
    "open_clip_torch": "open_clip",
    "onnxruntime": "onnxruntime",
    "cupy-cuda13x": "cupy",
    "pydicom": "pydicom",
    "numpy": "numpy",
    "monai": "monai",
}


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def tensorrt_status() -> dict[str, Any]:
    """Whether ``import tensorrt`` works, and why not."""
    try:
        trt = importlib.import_module("tensorrt")
        return {"importable": True, "version": getattr(trt, "__version__", "?")}
    except Exception as exc:  # ImportError, or OSError from a missing libnvinfer
        return {"importable": False, "error": f"{type(exc).__name__}: {exc}"}


def gpu_status() -> dict[str, Any]:
    from burnscope.common.gpu import cupy_usable, torch_cuda_usable

    status: dict[str, Any] = {"cupy_usable": cupy_usable(), "torch_cuda_usable": torch_cuda_usable()}
    if status["torch_cuda_usable"]:
        import torch

        props = torch.cuda.get_device_properties(0)
        status.update(name=props.name, compute_capability=f"{props.major}.{props.minor}",
                      memory_gib=round(props.total_memory / 2**30, 1))
    status["usable"] = status["cupy_usable"] or status["torch_cuda_usable"]
    return status


def model_status(model: str | None = None) -> dict[str, Any]:
    """Which BiomedCLIP weights a run would use (without loading them)."""
    from burnscope.engines.model import find_weights
    from burnscope.common.messages import DEMO_BANNER

    try:
        weights = find_weights(model)
    except FileNotFoundError as exc:
        return {"weights": None, "demo": None, "error": str(exc)}
    if weights is None:
        return {"weights": None, "demo": True, "note": DEMO_BANNER}
    from burnscope.engines.model_folder import find_model_folder, read_manifest

    folder = find_model_folder(model or os.environ.get("HOLOSCAN_MODEL_PATH"))
    if folder is not None:  # a fine-tuned model folder or bundle: demo when its base was the demo model
        demo = bool((read_manifest(folder, verify=False).get("base") or {}).get("demo"))
        return {"weights": str(weights), "demo": demo, **({"note": DEMO_BANNER} if demo else {})}
    return {"weights": str(weights), "demo": False}


def collect(model: str | None = None) -> dict[str, Any]:
    """Everything ``burnscope info`` reports."""
    holoscan_import = {"importable": True}
    try:
        from burnscope.operators.holoscan_runtime import CUDART_PATH

        holoscan_import["cudart_preloaded_from"] = CUDART_PATH or "system"
    except Exception as exc:
        holoscan_import = {"importable": False, "error": f"{type(exc).__name__}: {exc}"}
    return {
        "burnscope": _version("burnscope"),
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "cpu_count": os.cpu_count(),
        "libraries": {name: _version(name) for name in LIBRARIES},
        "holoscan": holoscan_import,
        "gpu": gpu_status(),
        "tensorrt": tensorrt_status(),
        "model": model_status(model),
    }
