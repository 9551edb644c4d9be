"""ONNX Runtime backend: the default on the CPU; CUDA execution provider where installed.

Precisions: ``fp32`` (the exported image tower), ``int8`` (static Q/DQ from a calibration
folder, see :mod:`burnscope.engines.quantize`) and ``int8-dynamic`` (dynamic INT8 weights),
``fp16`` on the CUDA provider only (ONNX Runtime converts nothing itself: pass an fp16 ONNX
file as ``onnx_path``).

CPU: all graph optimisations on, intra-op threads = usable cores. CUDA: a device batch (CuPy
array or torch CUDA tensor) is bound with I/O binding, so it is not copied to the host.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from burnscope.engines.base import Engine, EngineError, cpu_cores, is_device_array

log = logging.getLogger(__name__)


class OnnxRuntimeEngine(Engine):
    backend = "onnxruntime"

    def __init__(
        self,
        bundle,
        precision: str = "fp32",
        device: str = "cpu",
        batch_sizes: Sequence[int] = (1, 8),
        onnx_path: str | Path | None = None,
        intra_op_threads: int | None = None,
        calibration: Any = None,  # static INT8: see burnscope.engines.quantize.Calibration
        recipe: str | None = None,
        **unused: Any,
    ):
        super().__init__(bundle, precision, device, batch_sizes)
        import onnxruntime as ort

        if unused:
            log.debug("onnxruntime backend ignores options %s", sorted(unused))
        if precision in ("bf16", "fp8"):
            raise EngineError(f"onnxruntime backend: precision {precision!r} is not supported (use fp32, int8, int8-dynamic)")
        if precision == "fp16" and (device != "cuda" or onnx_path is None):
            raise EngineError("onnxruntime backend: fp16 needs the CUDA provider and an fp16 ONNX file (onnx_path)")
        self.onnx_path = Path(onnx_path) if onnx_path else self._model_file(calibration, recipe)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = int(intra_op_threads or cpu_cores())
        options.log_severity_level = 3
        if device == "cuda":
            available = ort.get_available_providers()
            if "CUDAExecutionProvider" not in available:
                raise EngineError(f"onnxruntime backend: CUDAExecutionProvider not installed (have {available}); use device='cpu'")
            providers = [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(self.onnx_path), sess_options=options, providers=providers)
        self.intra_op_threads = options.intra_op_num_threads
        self._input = self.session.get_inputs()[0]
        self._output = self.session.get_outputs()[0]
        self._input_dtype = np.float16 if "float16" in self._input.type else np.float32

    def warmup(self, iterations: int = 2, sizes: Sequence[int] | None = None) -> "OnnxRuntimeEngine":
        """On the CPU, ONNX Runtime compiles nothing per batch size: one batch-1 run (allocations)
        is the whole warm-up, and a batch of 8 at start would cost seconds before the first image."""
        if self.device == "cpu":
            return super().warmup(iterations=1, sizes=[1])
        return super().warmup(iterations, sizes)

    def _model_file(self, calibration, recipe) -> Path:
        from burnscope.engines import export

        if self.precision in ("fp32", "fp16"):
            return export.export_image_tower(self.bundle)
        from burnscope.engines import quantize

        if self.precision == "int8-dynamic":
            return quantize.quantize_dynamic_image_tower(self.bundle)
        return quantize.quantize_static_image_tower(self.bundle, calibration, recipe=recipe or quantize.DEFAULT_RECIPE)

    def _infer(self, batch: Any) -> np.ndarray:
        if is_device_array(batch):
            if self.device == "cuda":
                return self._infer_device(batch)
            from burnscope.common.gpu import to_numpy

            batch = to_numpy(batch)  # CPU provider: the host copy is unavoidable
        batch = np.ascontiguousarray(batch, dtype=self._input_dtype)
        return self.session.run([self._output.name], {self._input.name: batch})[0]

    def _infer_device(self, batch: Any) -> np.ndarray:
        """Bind the caller's GPU memory directly (no host round trip for the input)."""
        import cupy

        array = cupy.ascontiguousarray(cupy.from_dlpack(batch), dtype=self._input_dtype)
        binding = self.session.io_binding()
        binding.bind_input(self._input.name, "cuda", 0, self._input_dtype, list(array.shape), array.data.ptr)
        binding.bind_output(self._output.name, "cpu")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def library_versions(self) -> dict[str, str]:
        import onnxruntime

        return {**super().library_versions(), "onnxruntime": onnxruntime.__version__}

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(
            onnx=str(self.onnx_path),
            providers=self.session.get_providers(),
            intra_op_threads=self.intra_op_threads,
        )
        info["input"].update(name=self._input.name, onnx_shape=list(self._input.shape), dtype=self._input.type)
        info["output"].update(name=self._output.name, onnx_shape=list(self._output.shape))
        return info

    def close(self) -> None:
        self.session = None
