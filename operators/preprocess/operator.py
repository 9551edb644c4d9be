"""Holoscan wrapper of the BiomedCLIP preprocessing (:mod:`burnscope.operators.preprocess.core`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from burnscope.operators.holoscan_runtime import holoscan  # noqa: F401  (preloads libcudart)
from holoscan.core import Operator, OperatorSpec

from burnscope.common.messages import ImageBatch, ImageRecord
from burnscope.operators.preprocess.core import Preprocessor


class PreprocessOp(Operator):
    """Turns a batch of decoded images into BiomedCLIP's N×3×224×224 input tensor.

    Named inputs:
        images: ``list[ImageRecord]`` (a batch; may be empty). Pixels are H×W×3 uint8 RGB
            (NumPy, or CuPy when the loader decoded on the GPU).

    Named outputs:
        batch: ``ImageBatch`` with the records' contexts in input order, ``tensor`` N×3×S×S
            (float32 or float16; a CuPy array on the GPU, NumPy on the CPU; 0×3×S×S for an
            empty batch) and, when ``keep_thumbnails``, one RGB uint8 NumPy thumbnail per image.

    Parameters:
        preprocessor: a ready :class:`Preprocessor`; or
        config: a model config (with ``preprocess_cfg``) or a ``preprocess_cfg`` dict, used when
            no preprocessor is given (default: BiomedCLIP's constants, ``device="auto"``);
        keep_thumbnails: attach thumbnails (longest side ``thumbnail_size``, 128 px by default)
            for reports.
        metrics: optional recorder with ``observe_stage("preprocess", seconds_per_image, count)``.
    """

    def __init__(
        self,
        fragment,
        *args,
        preprocessor: Preprocessor | None = None,
        config: Mapping[str, Any] | None = None,
        keep_thumbnails: bool = True,
        metrics=None,
        **kwargs,
    ):
        self.metrics = metrics
        if preprocessor is None:
            preprocessor = Preprocessor.from_config(config) if config else Preprocessor()
        self.preprocessor = preprocessor
        self.keep_thumbnails = keep_thumbnails
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("images")
        spec.output("batch")

    def compute(self, op_input, op_output, context) -> None:
        import time

        records: list[ImageRecord] = list(op_input.receive("images") or [])
        started = time.perf_counter()
        result = self.preprocessor.process([r.pixels for r in records], thumbnails=self.keep_thumbnails)
        if self.metrics is not None and records:
            self.metrics.observe_stage("preprocess", (time.perf_counter() - started) / len(records), len(records))
        op_output.emit(ImageBatch([r.context for r in records], result.tensor, result.thumbnails), "batch")
