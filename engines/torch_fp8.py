"""FP8 (E4M3) image tower with torchao on Hopper/Ada GPUs: **experimental**, not an engine choice.

``burnscope.engines.base.SUPPORTED`` offers ``fp8`` for the torch backend only when its image
embeddings agree with fp32 to a cosine ≥ 0.999 on the full-size architecture; until a GPU run of
``python -m burnscope.benchmarks.tower_options`` has shown that (docs/benchmarks/engines-gpu.md),
this module is reachable from that benchmark and the GPU tests only.

The tower's linear layers (attention projections and MLPs: > 95 % of the ViT-B/16 FLOPs) are
quantised with torchao's dynamic float8 scheme (``Float8DynamicActivationFloat8WeightConfig``,
per-row scales, E4M3 weights and activations); the rest runs in bf16. ``torch.compile`` fuses the
quantisation of activations into the matmuls (without it FP8 is slower than bf16), then the
engine captures CUDA graphs as :class:`~burnscope.engines.torch_backend.TorchEngine` does.
"""

from __future__ import annotations

from typing import Any, Sequence

from burnscope.engines.base import EngineError
from burnscope.engines.torch_backend import TorchEngine

#: FP8 tensor cores: Ada (8.9) and Hopper (9.0) and later.
MIN_CAPABILITY = (8, 9)
COSINE_REQUIRED = 0.999


def fp8_unavailable_reason() -> str | None:
    """Why FP8 cannot run here (None when it can): torchao, a CUDA GPU, FP8 tensor cores."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no usable CUDA GPU"
    capability = torch.cuda.get_device_capability(0)
    if tuple(capability) < MIN_CAPABILITY:
        return f"GPU compute capability {capability[0]}.{capability[1]} has no FP8 tensor cores (needs ≥ 8.9)"
    try:
        import torchao  # noqa: F401
    except ImportError:
        return "torchao is not installed (pip install torchao)"
    return None


def _fp8_config() -> Any:
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow

    return Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())


def quantize_fp8(tower: Any) -> Any:
    """Quantise ``tower``'s linear layers (both dimensions multiples of 16, as the FP8 matmul
    needs) to dynamic float8 in place; returns it."""
    import torch
    from torchao.quantization import quantize_

    def linear(module: Any, _name: str) -> bool:
        return isinstance(module, torch.nn.Linear) and module.in_features % 16 == 0 and module.out_features % 16 == 0

    quantize_(tower, _fp8_config(), filter_fn=linear)
    return tower


class TorchFp8Engine(TorchEngine):
    """The torch engine with an FP8 tower (bf16 elsewhere), compiled, CUDA graphs captured."""

    def __init__(self, bundle: Any, device: str = "cuda", batch_sizes: Sequence[int] = (1, 8),
                 cuda_graphs: bool = True, compile: bool = True, **unused: Any) -> None:
        reason = fp8_unavailable_reason()
        if reason is not None:
            raise EngineError(f"torch fp8: {reason}")
        super().__init__(bundle, precision="bf16", device=device, batch_sizes=batch_sizes,
                         cuda_graphs=cuda_graphs, compile=False)
        import torch

        quantize_fp8(self.tower)
        self._forward = torch.compile(self.tower, mode="max-autotune-no-cudagraphs") if compile else self.tower
        self.precision = "fp8"


__all__ = ["COSINE_REQUIRED", "MIN_CAPABILITY", "TorchFp8Engine", "fp8_unavailable_reason", "quantize_fp8"]
