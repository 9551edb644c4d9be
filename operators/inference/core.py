"""Inference core: BiomedCLIP image embeddings of an :class:`ImageBatch` (no Holoscan import).

Integrators embed it directly::

    from burnscope.engines.model import load_biomedclip
    from burnscope.engines.base import create_engine
    from burnscope.operators.inference.core import ImageEncoder

    encoder = ImageEncoder(create_engine(load_biomedclip(), backend="onnxruntime").warmup())
    embeddings = encoder.run(image_batch)          # EmbeddingBatch

On a GPU the batch tensor may be a CuPy array or a torch CUDA tensor; backends that run on the
GPU take it through DLPack without a host copy.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from burnscope.common.messages import EmbeddingBatch, ImageBatch

log = logging.getLogger(__name__)


class ImageEncoder:
    """Holds one engine (see :func:`burnscope.engines.base.create_engine`) and embeds batches."""

    def __init__(self, engine: Any):
        self.engine = engine

    @classmethod
    def from_options(
        cls,
        model: str | None = None,
        config: str = "biomedclip",
        backend: str = "onnxruntime",
        precision: str = "fp32",
        device: str = "auto",
        batch_sizes: tuple[int, ...] = (1, 8),
        warmup: bool = True,
        **opts: Any,
    ) -> "ImageEncoder":
        """Load the model and build the engine in one step (what the operator and the CLI use)."""
        from burnscope.engines.base import create_engine
        from burnscope.engines.model import load_biomedclip

        engine = create_engine(load_biomedclip(model, config=config), backend, precision, device, batch_sizes, **opts)
        return cls(engine.warmup() if warmup else engine)

    @property
    def model_info(self):
        return self.engine.model_info

    def run(self, batch: ImageBatch) -> EmbeddingBatch:
        """Embeddings of every image of ``batch`` (an empty batch gives an empty EmbeddingBatch)."""
        contexts = list(batch.contexts or [])
        tensor = batch.tensor
        if not contexts or tensor is None or int(tensor.shape[0]) == 0:
            empty = np.zeros((0, self.engine.embed_dim), np.float32)
            return EmbeddingBatch(contexts=[], embeddings=empty, model=self.model_info, thumbnails=batch.thumbnails)
        if int(tensor.shape[0]) != len(contexts):
            raise ValueError(f"ImageBatch has {len(contexts)} contexts but a tensor of {tensor.shape[0]} images")
        embeddings = self.engine.infer(tensor)
        return EmbeddingBatch(contexts=contexts, embeddings=embeddings, model=self.model_info, thumbnails=batch.thumbnails)
