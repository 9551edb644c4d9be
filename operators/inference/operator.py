"""Holoscan wrapper of the inference core (:mod:`burnscope.operators.inference.core`)."""

from __future__ import annotations

import time
from typing import Any

from burnscope.operators.holoscan_runtime import holoscan  # noqa: F401  (preloads libcudart)
from holoscan.core import Operator, OperatorSpec

from burnscope.operators.inference.core import ImageEncoder
from burnscope.common.messages import ImageBatch


class InferenceOp(Operator):
    """BiomedCLIP image encoder: one embedding per image of a batch.

    Named inputs:
        batch: ``ImageBatch`` — contexts plus an N×3×224×224 tensor (NumPy; CuPy or torch CUDA on
            a GPU, handed to the engine without a host copy where the backend can).

    Named outputs:
        embeddings: ``EmbeddingBatch`` — N×D float32 L2-normalised embeddings, ``model`` = the
            engine's ModelInfo (backend, precision, device, demo flag), thumbnails passed
            through. An empty batch gives an empty EmbeddingBatch.

    Parameters:
        encoder: a ready :class:`ImageEncoder` (or ``engine``: any ``Engine``); when neither is
            given one is built from ``model``, ``config`` (``biomedclip``), ``backend``
            (``onnxruntime`` | ``torch`` | ``tensorrt``), ``precision`` (``fp32`` ...),
            ``device`` (``auto`` | ``cpu`` | ``cuda``) and ``batch_sizes`` ((1, 8)).
        lane: optional ``LaneCredit`` (:mod:`burnscope.operators.batching.core`) given back after
            each batch, so a dynamic batcher in front forms the next batch only when this tower is free.
        metrics: optional recorder with ``observe_stage("inference", seconds_per_image, count)``.
    """

    def __init__(
        self,
        fragment,
        *args,
        encoder: ImageEncoder | None = None,
        engine: Any = None,
        model: str | None = None,
        config: str = "biomedclip",
        backend: str = "onnxruntime",
        precision: str = "fp32",
        device: str = "auto",
        batch_sizes: tuple[int, ...] = (1, 8),
        lane: Any = None,
        metrics: Any = None,
        **kwargs,
    ):
        self.lane = lane
        self.metrics = metrics
        if encoder is None:
            encoder = ImageEncoder(engine) if engine is not None else ImageEncoder.from_options(
                model=model, config=config, backend=backend, precision=precision, device=device, batch_sizes=batch_sizes
            )
        self.encoder = encoder
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("batch")
        spec.output("embeddings")

    def compute(self, op_input, op_output, context) -> None:
        batch = op_input.receive("batch")
        if batch is None:  # nothing arrived: pass an empty batch on, never fail
            batch = ImageBatch(contexts=[], tensor=None)
        started = time.perf_counter()
        try:
            embeddings = self.encoder.run(batch)
        finally:
            if self.lane is not None:
                self.lane.release()
        if self.metrics is not None and batch.contexts:
            self.metrics.observe_stage("inference", (time.perf_counter() - started) / len(batch.contexts),
                                       len(batch.contexts))
        op_output.emit(embeddings, "embeddings")
