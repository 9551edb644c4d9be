"""The embedding example in the docs runs as shown, and an unconnected ``errors`` port is a clear
error at start instead of a graph that silently never ticks."""

from __future__ import annotations

import runpy
import subprocess
import sys

import pytest

from fixtures import REPO, SAMPLE_DATA

EXAMPLE = REPO / "docs" / "examples" / "embed_loader_and_preprocess.py"


def test_the_documented_example_processes_every_image():
    out = subprocess.run([sys.executable, str(EXAMPLE), str(SAMPLE_DATA)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "10 images preprocessed"


def test_an_unconnected_errors_port_is_named_at_start():
    example = runpy.run_path(str(EXAMPLE))
    from burnscope.operators.dicom_loader.operator import DicomFolderSourceOp

    class Unconnected(example["EmbeddingApp"]):
        def compose(self):
            source = DicomFolderSourceOp(self, name="source", input_path=self.folder, batch_size=4)
            self.sink = example["PrintBatchesOp"](self, name="sink")
            preprocess = example["PreprocessOp"](self, name="preprocess", preprocessor=example["Preprocessor"](device="cpu"))
            self.add_flow(source, preprocess, {("images", "images")})
            self.add_flow(preprocess, self.sink, {("batch", "batch")})

    with pytest.raises(RuntimeError, match="output port 'errors' is not connected"):
        Unconnected(SAMPLE_DATA).run()


def test_the_docs_show_the_example_verbatim():
    page = (REPO / "docs" / "operators" / "README.md").read_text()
    block = page.split("<!-- example: docs/examples/embed_loader_and_preprocess.py -->\n```python\n", 1)[1]
    assert block.split("\n```", 1)[0] + "\n" == EXAMPLE.read_text()
