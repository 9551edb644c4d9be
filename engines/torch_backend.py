"""PyTorch backend: the fp32 CPU reference, and FP16/BF16 on CUDA with CUDA graphs.

On CUDA each configured batch size gets one captured CUDA graph (static input and output
buffers); a smaller batch is padded up to the nearest captured size and the padding rows are
dropped from the result, a larger one runs in chunks of the largest size. Capturing removes
the per-kernel launch cost that dominates a ViT at small batch. ``compile=True`` additionally
runs the tower through ``torch.compile`` before capture (slower start, sometimes faster).
"""

from __future__ import annotations

import copy
import logging
from typing import Any, Sequence

import numpy as np

from burnscope.engines.base import Engine, EngineError, is_device_array, pad_to

log = logging.getLogger(__name__)

_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


class TorchEngine(Engine):
    backend = "torch"

    def __init__(
        self,
        bundle,
        precision: str = "fp32",
        device: str = "cpu",
        batch_sizes: Sequence[int] = (1, 8),
        cuda_graphs: bool = True,
        compile: bool = False,
        threads: int | None = None,
        high_priority: bool = False,
        **unused: Any,
    ):
        super().__init__(bundle, precision, device, batch_sizes)
        import torch

        if unused:
            log.debug("torch backend ignores options %s", sorted(unused))
        if precision not in _DTYPES:
            raise EngineError(f"torch backend: precision {precision!r} not supported (fp32, fp16, bf16)")
        if device == "cpu" and precision == "fp16":
            raise EngineError("torch backend: fp16 needs CUDA; on the CPU use fp32 (or bf16)")
        if device == "cuda" and not torch.cuda.is_available():
            raise EngineError("torch backend: CUDA requested but torch sees no GPU")
        if threads:
            torch.set_num_threads(int(threads))
        self.torch_dtype = getattr(torch, _DTYPES[precision])
        self.torch_device = torch.device(device)
        # A private copy of the vision tower: casting to fp16 must not touch the shared bundle model.
        tower = bundle.model.visual if device == "cpu" and precision == "fp32" else copy.deepcopy(bundle.model.visual)
        self.tower = tower.to(self.torch_device, self.torch_dtype).eval()
        self._forward = torch.compile(self.tower, mode="max-autotune-no-cudagraphs") if compile else self.tower
        self.use_cuda_graphs = bool(cuda_graphs and device == "cuda")
        self._graphs: dict[int, tuple[Any, Any, Any]] = {}
        # Every batch runs on this engine's own stream; high_priority (the emergency lane) makes it a
        # high-priority stream, whose kernels the GPU schedules before those of default-priority
        # streams (torch's range: -1 high … 0 default).
        self.high_priority = bool(high_priority)
        self.stream = torch.cuda.Stream(priority=-1 if self.high_priority else 0) if device == "cuda" else None

    # -- execution -------------------------------------------------------------------------
    def _run_eager(self, images):
        import torch

        with torch.inference_mode():
            features = self._forward(images)
            return torch.nn.functional.normalize(features.float(), dim=-1)

    def _capture(self, size: int):
        """Capture one CUDA graph for batch ``size`` (after side-stream warm-up, as torch requires)."""
        import torch

        static_in = torch.zeros((size, 3, self.image_size, self.image_size), device=self.torch_device, dtype=self.torch_dtype)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                self._run_eager(static_in)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph):
            static_out = torch.nn.functional.normalize(self._forward(static_in).float(), dim=-1)
        self._graphs[size] = (graph, static_in, static_out)
        return self._graphs[size]

    def _run_graph(self, images):
        """Run ``images`` (already on the device, right dtype) through captured graphs."""
        import torch

        n = images.shape[0]
        largest = max(self.batch_sizes)
        if n > largest:  # chunk by the largest captured size
            return torch.cat([self._run_graph(images[i : i + largest]) for i in range(0, n, largest)])
        size = pad_to(n, self.batch_sizes)
        graph, static_in, static_out = self._graphs.get(size) or self._capture(size)
        static_in[:n].copy_(images)
        if n < size:
            static_in[n:].zero_()  # padding rows: computed, then dropped
        graph.replay()
        return static_out[:n].clone()

    def to_device_tensor(self, batch: Any):
        """The batch as a torch tensor on this engine's device/dtype; GPU arrays via DLPack (no copy)."""
        import torch

        if is_device_array(batch):
            tensor = batch if isinstance(batch, torch.Tensor) else torch.from_dlpack(batch)
        else:
            tensor = torch.from_numpy(np.ascontiguousarray(batch))
        return tensor.to(self.torch_device, self.torch_dtype, non_blocking=True)

    def infer_tensor(self, batch: Any):
        """Like :meth:`infer` but returns a torch tensor on the engine's device (no host copy)."""
        images = self.to_device_tensor(batch)
        if self.use_cuda_graphs:
            return self._run_graph(images)
        return self._run_eager(images)

    def _infer(self, batch: Any) -> np.ndarray:
        if self.stream is None:
            return self.infer_tensor(batch).float().cpu().numpy()
        import torch

        self.stream.wait_stream(torch.cuda.current_stream())  # inputs made on the caller's stream
        with torch.cuda.stream(self.stream):
            out = self.infer_tensor(batch).float().cpu().numpy()  # .cpu() waits for this stream
        return out

    def warmup(self, iterations: int = 2, sizes: Sequence[int] | None = None) -> "TorchEngine":
        if self.use_cuda_graphs:  # every compiled size is captured: a batch padded to it must find its graph
            for size in self.batch_sizes:
                if size not in self._graphs:
                    self._capture(size)
        return super().warmup(iterations, sizes)

    def library_versions(self) -> dict[str, str]:
        import open_clip
        import timm
        import torch

        versions = {**super().library_versions(), "torch": torch.__version__, "open_clip": open_clip.__version__, "timm": timm.__version__}
        if self.device == "cuda":
            versions.update(cuda=str(torch.version.cuda), gpu=torch.cuda.get_device_name(0))
        return versions

    def describe(self) -> dict[str, Any]:
        import torch

        info = super().describe()
        info.update(cuda_graphs=self.use_cuda_graphs, captured_batch_sizes=sorted(self._graphs), threads=torch.get_num_threads(),
                    high_priority_stream=self.high_priority)
        return info

    def close(self) -> None:
        self._graphs.clear()
