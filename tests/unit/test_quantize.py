"""INT8 quantization of the tiny image tower: a valid Q/DQ model that runs and stays faithful."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime.quantization")

from burnscope.engines import export, quantize
from burnscope.operators.preprocess import calibration  # noqa: E402
from burnscope.engines.base import create_engine  # noqa: E402
from burnscope.engines.model import load_biomedclip  # noqa: E402

#: Stated bounds on the tiny model (real photographs, default recipe, vs the fp32 export).
STATIC_MIN_COSINE = quantize.TEST_MIN_COSINE
DYNAMIC_MIN_COSINE = 0.99


@pytest.fixture(scope="module")
def bundle():
    torch.set_num_threads(1)
    return load_biomedclip(config="biomedclip-tiny")


@pytest.fixture(scope="module")
def photos(bundle):
    skimage_data = pytest.importorskip("skimage.data")  # the test extra's photographs
    names, images = calibration.load_batch([Path(skimage_data.__file__).parent], bundle.config, limit=12)
    if len(images) < 4:
        pytest.skip("scikit-image sample photographs not installed")
    return images


def test_static_qdq_model_is_valid_and_faithful(bundle, photos):
    calib = photos[:6]
    path = quantize.quantize_static_image_tower(bundle, calib)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    counts = quantize.qdq_counts(path)
    assert counts["QuantizeLinear"] > 0 and counts["DequantizeLinear"] > 0
    # Recipe: softmax/LayerNorm/attention matmuls stay float — no Q/DQ feeds them.
    producers = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.op_type in ("Softmax", "LayerNormalization"):
            assert all(getattr(producers.get(i), "op_type", "") != "DequantizeLinear" for i in node.input), node.name
    # Weights are INT8 per channel, activations INT8 symmetric (zero point 0): TensorRT's form.
    inits = {t.name: t for t in model.graph.initializer}
    zero_points = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in inits]
    assert zero_points and all(z.data_type == onnx.TensorProto.INT8 for z in zero_points)
    assert all(not np.any(onnx.numpy_helper.to_array(z)) for z in zero_points)
    # Runs in ONNX Runtime; held-out photos (not calibration ones) stay close to fp32.
    held_out = photos[6:]
    reference = quantize.run_onnx(export.export_image_tower(bundle), held_out, threads=1)
    result = quantize.fidelity(reference, quantize.run_onnx(path, held_out, threads=1))
    assert result["cosine_mean"] >= STATIC_MIN_COSINE, result
    # cached: the same calibration set gives the same file without re-quantizing
    mtime = path.stat().st_mtime_ns
    assert quantize.quantize_static_image_tower(bundle, calib) == path and path.stat().st_mtime_ns == mtime


def test_default_recipe_keeps_sensitive_nodes_in_float(bundle, photos):
    model = onnx.load(str(export.export_image_tower(bundle)))
    _, default_nodes, excluded = quantize.select_nodes(model, quantize.RECIPES[quantize.DEFAULT_RECIPE])
    assert any("attn/MatMul" in n for n in excluded)  # q·kᵀ and attn·v are activation matmuls
    assert any("patch_embed" in n for n in excluded) and any("head" in n for n in excluded)
    assert all(("qkv" in n or "proj" in n or "fc1" in n or "fc2" in n) for n in default_nodes)


def test_dynamic_int8_engine(bundle, photos):
    engine = create_engine(bundle, "onnxruntime", precision="int8-dynamic", device="cpu", intra_op_threads=1)
    assert engine.describe()["precision"] == "int8-dynamic" and engine.model_info.precision == "int8-dynamic"
    reference = create_engine(bundle, "onnxruntime", device="cpu", intra_op_threads=1).infer(photos)
    cos = np.sum(engine.infer(photos) * reference, axis=1)
    assert cos.mean() >= DYNAMIC_MIN_COSINE


def test_calibration_reader_and_errors(bundle, tmp_path):
    reader = quantize.ImageCalibrationReader(np.zeros((5, 3, 224, 224), np.float32), batch=2)
    shapes = []
    while (item := reader.get_next()) is not None:
        shapes.append(item["images"].shape[0])
    assert shapes == [2, 2, 1] and len(reader) == 3
    reader.rewind()
    assert reader.get_next()["images"].shape[0] == 2
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(quantize.QuantizationError, match="no decodable calibration images"):
        quantize.calibration_images(calibration.calibration_for(bundle.config, tmp_path))
    with pytest.raises(quantize.QuantizationError, match="needs calibration images"):
        quantize.calibration_images(None)
