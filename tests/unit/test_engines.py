"""Engines on the tiny BiomedCLIP (ViT-Ti + 2-layer BERT): export, ONNX Runtime vs torch, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from burnscope.common.messages import DEMO_BANNER

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from burnscope.engines import export  # noqa: E402
from burnscope.engines.base import BACKENDS, EngineError, create_engine, l2_normalize, pad_to  # noqa: E402
from burnscope.engines.model import load_biomedclip  # noqa: E402

#: Stated fidelity bound: ONNX Runtime fp32 against the torch fp32 reference.
ORT_VS_TORCH_MIN_COSINE = 0.9999


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    torch.set_num_threads(1)
    return load_biomedclip(config="biomedclip-tiny")


@pytest.fixture(scope="module")
def images():
    return export.sample_images(5, seed=3)


def test_onnxruntime_matches_torch(bundle, images):
    ort_engine = create_engine(bundle, "onnxruntime", device="cpu").warmup(1)
    torch_engine = create_engine(bundle, "torch", device="cpu").warmup(1)
    a, b = ort_engine.infer(images), torch_engine.infer(images)
    assert a.shape == b.shape == (5, bundle.embed_dim) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert np.min(np.sum(a * b, axis=1)) >= ORT_VS_TORCH_MIN_COSINE
    # float16 input is accepted and gives (almost) the same embeddings
    half = ort_engine.infer(images.astype(np.float16))
    assert np.min(np.sum(half * a, axis=1)) > 0.999
    # empty batch → empty result, right width
    assert ort_engine.infer(np.zeros((0, 3, 224, 224), np.float32)).shape == (0, bundle.embed_dim)
    with pytest.raises(ValueError, match="batch"):
        ort_engine.infer(np.zeros((2, 224, 224), np.float32))


def test_describe_and_model_info(bundle):
    engine = create_engine(bundle, "onnxruntime", device="cpu", batch_sizes=(8, 1))
    info = engine.describe()
    assert info["backend"] == "onnxruntime" and info["precision"] == "fp32" and info["device"] == "cpu"
    assert info["versions"]["onnxruntime"] and info["output"]["shape"] == ["N", bundle.embed_dim]
    assert info["input"]["onnx_shape"][0] == "batch" and info["batch_sizes"] == [1, 8]
    assert info["demo"] is True
    model_info = engine.model_info
    assert (model_info.backend, model_info.precision, model_info.device, model_info.demo) == ("onnxruntime", "fp32", "cpu", True)
    assert model_info.banner == DEMO_BANNER


def test_export_is_cached_and_checked(bundle):
    path = export.export_image_tower(bundle)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["fingerprint"] == bundle.fingerprint and meta["check"]["ok"]
    assert meta["check"]["max_abs_diff"] <= export.EXPORT_ATOL
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert min(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")) >= 17
    mtime = path.stat().st_mtime_ns
    assert export.export_image_tower(bundle) == path and path.stat().st_mtime_ns == mtime  # cache hit


def test_export_self_check_raises_on_tampered_model(bundle, tmp_path, images):
    from onnx import numpy_helper

    path = export.export_image_tower(bundle)
    model = onnx.load(str(path))
    # Tamper with the largest weight (as a corrupted or mismatched file would be).
    init = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    weights = numpy_helper.to_array(init).copy()
    weights += np.random.default_rng(0).normal(0, weights.std() * 2 + 1e-3, weights.shape).astype(weights.dtype)
    init.CopyFrom(numpy_helper.from_array(weights, init.name))
    tampered = tmp_path / "tampered.onnx"
    onnx.save_model(model, str(tampered))
    with pytest.raises(export.ExportCheckError, match="not faithful"):
        export.verify_onnx(tampered, bundle.encode_images, images)
    # the untouched export passes the same check
    assert export.verify_onnx(path, bundle.encode_images, images).ok


def test_external_data_and_text_tower(bundle, tmp_path):
    # A 0.1 MB threshold forces the side file even for the tiny model.
    path = export.export_text_tower(bundle, path=tmp_path / "text.onnx", external_data_mb=0.1)
    side = tmp_path / "text.onnx.data"
    assert side.exists() and side.stat().st_size > path.stat().st_size
    onnx.checker.check_model(str(path))
    tokens = export.sample_tokens(bundle, 4)
    session = export.ort_session(path, threads=1)
    out = session.run(None, {"input_ids": tokens})[0]
    ref = bundle.encode_text(["a photo of a burn wound", "a clinical photograph of skin",
                              "an image that is not a burn", "a photo of a burn wound"])
    assert np.min(np.sum(out * ref, axis=1)) >= ORT_VS_TORCH_MIN_COSINE


def test_unknown_backend_and_precision(bundle):
    with pytest.raises(ValueError, match="valid backends: onnxruntime, torch, tensorrt"):
        create_engine(bundle, backend="openvino")
    with pytest.raises(ValueError, match="unknown precision"):
        create_engine(bundle, backend="torch", precision="int4")
    with pytest.raises(EngineError, match="fp16 needs CUDA"):
        create_engine(bundle, backend="torch", precision="fp16", device="cpu")
    assert BACKENDS == ("onnxruntime", "torch", "tensorrt")


def test_tensorrt_absent_gives_clear_error(bundle):
    try:
        import tensorrt  # noqa: F401
    except Exception:
        with pytest.raises(EngineError, match=r"TensorRT is not installed \(import tensorrt failed: .*\); use --backend onnxruntime or torch"):
            create_engine(bundle, backend="tensorrt")
    else:
        pytest.skip("TensorRT is installed here")


def test_helpers():
    assert pad_to(3, (1, 8, 32)) == 8 and pad_to(1, (1, 8)) == 1 and pad_to(64, (1, 8)) is None
    x = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(x, [[0.6, 0.8], [0.0, 0.0]])


def test_cli_commands(bundle, tmp_path):
    from typer.testing import CliRunner

    from burnscope.applications.cli import app

    runner = CliRunner()
    done = runner.invoke(app, ["export-onnx", "--model-config", "biomedclip-tiny"])
    assert done.exit_code == 0, done.output
    assert "max abs diff vs torch" in done.output
    done = runner.invoke(app, ["build-engine", "--model-config", "biomedclip-tiny", "--backend", "onnxruntime", "--device", "cpu", "--batch", "1,2"])
    assert done.exit_code == 0, done.output
    assert '"backend": "onnxruntime"' in done.output and '"batch_sizes": [' in done.output
    done = runner.invoke(app, ["build-engine", "--model-config", "biomedclip-tiny", "--backend", "openvino"])
    assert done.exit_code == 2 and "valid backends: onnxruntime, torch, tensorrt" in done.output
    # the spelling of the last release still works for one more, and says what replaces it
    done = runner.invoke(app, ["build-engine", "--config", "biomedclip-tiny", "--backend", "openvino"])
    assert done.exit_code == 2 and "valid backends" in done.output
    assert "--config NAME is deprecated" in done.output and "--model-config" in done.output
    done = runner.invoke(app, ["quantize", "--model-config", "biomedclip-tiny", "--recipe", "everything"])
    assert done.exit_code == 2 and "unknown recipe" in done.output
    done = runner.invoke(app, ["bench", "engines", "--backends", "torch,openvino"])
    assert done.exit_code == 2 and "unknown backend 'openvino'" in done.output
