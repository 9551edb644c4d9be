"""Embedding two burnscope operators in a Holoscan graph of your own.

The folder source reads DICOM images and emits decoded batches; preprocessing turns them into
BiomedCLIP's input tensor; a small sink of yours receives them. The source's ``errors`` port is
optional: ``errors_port=False`` leaves it out (bad files are only logged); declared, it must be
connected (for example to ``ErrorSinkOp``), and the source says so at start if it is not.

    python docs/examples/embed_loader_and_preprocess.py sample_data
"""

import sys

from burnscope.operators.holoscan_runtime import holoscan  # noqa: F401  (import Holoscan through burnscope first)
from holoscan.core import Application, Operator, OperatorSpec

from burnscope.operators.dicom_loader.operator import DicomFolderSourceOp
from burnscope.operators.preprocess.core import Preprocessor
from burnscope.operators.preprocess.operator import PreprocessOp


class PrintBatchesOp(Operator):
    """Named input ``batch``: ``ImageBatch``. Prints what arrives and keeps a count."""

    def __init__(self, fragment, *args, **kwargs):
        self.images = 0
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input("batch")

    def compute(self, op_input, op_output, context):
        batch = op_input.receive("batch")
        self.images += len(batch.contexts)
        print(f"batch of {len(batch.contexts)}: tensor {tuple(batch.tensor.shape)}")


class EmbeddingApp(Application):
    def __init__(self, folder, **kwargs):
        super().__init__(**kwargs)
        self.folder = folder

    def compose(self):
        source = DicomFolderSourceOp(self, name="source", input_path=self.folder, batch_size=4, errors_port=False)
        preprocess = PreprocessOp(self, name="preprocess", preprocessor=Preprocessor(device="cpu"))
        self.sink = PrintBatchesOp(self, name="sink")
        self.add_flow(source, preprocess, {("images", "images")})
        self.add_flow(preprocess, self.sink, {("batch", "batch")})


if __name__ == "__main__":
    app = EmbeddingApp(sys.argv[1] if len(sys.argv) > 1 else "sample_data")
    app.run()
    print(f"{app.sink.images} images preprocessed")
