"""TensorRT backend: the parts that run without TensorRT (cache keys, profiles, staleness, the
fallback error), and a real build where TensorRT and a GPU exist."""

from __future__ import annotations

import json

import pytest

from burnscope.engines import tensorrt_backend as trtb
from burnscope.engines.base import EngineError


def fields(**changes):
    base = dict(gpu_name="NVIDIA H100 80GB HBM3", compute_capability=(9, 0), trt_version="10.13.0",
                onnx_hash="ab" * 32, precision="fp16", batch_sizes=(8, 1))
    base.update(changes)
    return trtb.cache_fields(**base)


def test_cache_key_depends_on_every_field():
    key = trtb.cache_key(fields())
    assert key == trtb.cache_key(fields(batch_sizes=(1, 8)))  # order of batch sizes is irrelevant
    assert fields()["compute_capability"] == "9.0"
    for change in ({"gpu_name": "NVIDIA L4"}, {"compute_capability": (8, 9)}, {"trt_version": "10.14.1"},
                   {"onnx_hash": "cd" * 32}, {"precision": "int8"}, {"batch_sizes": (1, 8, 32)}):
        assert trtb.cache_key(fields(**change)) != key, change


def test_profiles_cover_batches_without_overlap():
    profiles = trtb.optimization_profiles((32, 1, 8))
    assert profiles == [
        ((1, 3, 224, 224), (1, 3, 224, 224), (1, 3, 224, 224)),
        ((2, 3, 224, 224), (8, 3, 224, 224), (8, 3, 224, 224)),
        ((9, 3, 224, 224), (32, 3, 224, 224), (32, 3, 224, 224)),
    ]
    assert [trtb.select_profile(n, (1, 8, 32)) for n in (1, 2, 8, 9, 32)] == [0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="split"):
        trtb.select_profile(33, (1, 8, 32))
    with pytest.raises(ValueError):
        trtb.optimization_profiles(())


def test_stale_engine_is_rebuilt_not_loaded(tmp_path):
    current = fields()
    engine, meta = trtb.engine_paths(tmp_path, current)
    assert trtb.is_stale(engine, meta, current)  # nothing cached yet
    engine.write_bytes(b"serialized-engine")
    meta.write_text(json.dumps({"fields": current, "engine_bytes": engine.stat().st_size,
                                "engine_sha256": trtb.file_digest(engine)}))
    assert not trtb.is_stale(engine, meta, current)
    # Another TensorRT version, GPU or ONNX → stale even if someone copied the file under this name.
    assert trtb.is_stale(engine, meta, fields(trt_version="11.0.0"))
    assert trtb.is_stale(engine, meta, fields(gpu_name="NVIDIA A100-SXM4-80GB", compute_capability=(8, 0)))
    engine.write_bytes(b"serialized-engine, truncated or replaced")
    assert trtb.is_stale(engine, meta, current)
    meta.write_text("{not json")
    assert trtb.is_stale(engine, meta, current)


def test_onnx_digest_includes_external_data(tmp_path):
    graph = tmp_path / "m.onnx"
    graph.write_bytes(b"graph")
    before = trtb.file_digest(graph)
    (tmp_path / "m.onnx.data").write_bytes(b"weights")
    assert trtb.file_digest(graph) != before


def test_precision_flags():
    assert trtb.builder_flags("fp16") == ("FP16",)
    assert "INT8" in trtb.builder_flags("int8") and "FP8" in trtb.builder_flags("fp8")
    with pytest.raises(EngineError, match="not supported"):
        trtb.builder_flags("int8-dynamic")


def test_require_tensorrt_fallback_message():
    try:
        import tensorrt  # noqa: F401
    except Exception:
        with pytest.raises(EngineError, match=r"^TensorRT is not installed \(import tensorrt failed: .+\); use --backend onnxruntime or torch$"):
            trtb.require_tensorrt()
    else:
        assert trtb.require_tensorrt() is tensorrt


def test_tensorrt_fp16_engine_matches_torch(tmp_path):
    pytest.importorskip("tensorrt")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no usable CUDA GPU")
    import numpy as np

    from burnscope.engines.base import create_engine
    from burnscope.engines.export import sample_images
    from burnscope.engines.model import load_biomedclip

    bundle = load_biomedclip(config="biomedclip-tiny")
    engine = create_engine(bundle, "tensorrt", precision="fp16", batch_sizes=(1, 8)).warmup(1)
    images = sample_images(5)
    reference = create_engine(bundle, "torch", device="cpu").infer(images)
    assert np.min(np.sum(engine.infer(images) * reference, axis=1)) > 0.99
    again = create_engine(bundle, "tensorrt", precision="fp16", batch_sizes=(1, 8))
    assert not again.built and again.engine_path == engine.engine_path  # served from the cache
