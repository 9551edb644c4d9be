"""InferenceOp: the core on ImageBatch messages, and the operator in a tiny Holoscan graph."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from burnscope.operators.holoscan_runtime import holoscan  # noqa: F401,E402  (preloads libcudart)
from holoscan.conditions import CountCondition  # noqa: E402
from holoscan.core import Application, Operator, OperatorSpec  # noqa: E402

from burnscope.engines.base import create_engine  # noqa: E402
from burnscope.engines.export import sample_images  # noqa: E402
from burnscope.engines.model import load_biomedclip  # noqa: E402
from burnscope.operators.inference.core import ImageEncoder  # noqa: E402
from burnscope.operators.inference.operator import InferenceOp  # noqa: E402
from burnscope.common.messages import EmbeddingBatch, ImageBatch, ImageContext  # noqa: E402


@pytest.fixture(scope="module")
def engine():
    torch.set_num_threads(1)
    return create_engine(load_biomedclip(config="biomedclip-tiny"), "onnxruntime", device="cpu", intra_op_threads=1)


def image_batch(n, seed=0):
    contexts = [ImageContext(source=f"/data/img{i}.png") for i in range(n)]
    thumbs = [np.full((8, 8, 3), i, np.uint8) for i in range(n)]
    tensor = sample_images(n, seed=seed) if n else np.zeros((0, 3, 224, 224), np.float32)
    return ImageBatch(contexts=contexts, tensor=tensor, thumbnails=thumbs)


def test_core_runs_batches(engine):
    encoder = ImageEncoder(engine)
    batch = image_batch(3)
    out = encoder.run(batch)
    assert isinstance(out, EmbeddingBatch) and out.embeddings.shape == (3, engine.embed_dim)
    assert out.contexts == batch.contexts and out.thumbnails is batch.thumbnails
    assert out.model.backend == "onnxruntime" and out.model.demo
    np.testing.assert_allclose(out.embeddings, engine.infer(batch.tensor), atol=1e-6)
    empty = encoder.run(image_batch(0))
    assert empty.embeddings.shape == (0, engine.embed_dim) and empty.contexts == []
    assert encoder.run(ImageBatch(contexts=[], tensor=None)).embeddings.shape[0] == 0
    with pytest.raises(ValueError, match="contexts"):
        encoder.run(ImageBatch(contexts=batch.contexts[:2], tensor=batch.tensor))


class Source(Operator):
    def __init__(self, fragment, batches, **kwargs):
        self.batches = list(batches)
        super().__init__(fragment, CountCondition(fragment, len(self.batches)), **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.output("batch")

    def compute(self, op_input, op_output, context):
        op_output.emit(self.batches.pop(0), "batch")


class Sink(Operator):
    def __init__(self, fragment, received, **kwargs):
        self.received = received
        super().__init__(fragment, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input("embeddings")

    def compute(self, op_input, op_output, context):
        self.received.append(op_input.receive("embeddings"))


def test_operator_in_graph(engine):
    batches = [image_batch(2), image_batch(0), image_batch(1, seed=5)]
    received: list = []

    class App(Application):
        def compose(self):
            source = Source(self, batches, name="source")
            infer = InferenceOp(self, engine=engine, name="infer")
            sink = Sink(self, received, name="sink")
            self.add_flow(source, infer, {("batch", "batch")})
            self.add_flow(infer, sink, {("embeddings", "embeddings")})

    App().run()
    assert [r.embeddings.shape for r in received] == [(2, engine.embed_dim), (0, engine.embed_dim), (1, engine.embed_dim)]
    assert all(r.model == engine.model_info for r in received)
    assert received[0].contexts[1].source == "/data/img1.png" and len(received[0].thumbnails) == 2
