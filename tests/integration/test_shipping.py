"""Shipping a model: MONAI Bundle (checked with MONAI's own bundle tools) and a Triton model repository
(config parsed with Triton's model-config protobuf, ONNX run with ONNX Runtime against torch)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from fixtures.burn_images import write_dataset
from fixtures import REPO

SCHEMA = REPO / "tests" / "fixtures" / "monai" / "meta_schema_20240725.json"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("shipping")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BURNSCOPE_CACHE", str(root / "cache"))
        yield root


@pytest.fixture(scope="module")
def bundle_dir(cache):
    from burnscope.applications.cli import main

    out = cache / "bundle"
    assert main(["export-bundle", "--model-config", "biomedclip-tiny", "-o", str(out)]) == 0
    return out


def test_bundle_metadata_passes_monais_verify_metadata(bundle_dir, tmp_path):
    from monai.bundle import verify_metadata

    meta = json.loads((bundle_dir / "configs" / "metadata.json").read_text())
    assert meta["schema"].endswith("meta_schema_20240725.json")
    schema = tmp_path / "schema.json"
    shutil.copy(SCHEMA, schema)  # MONAI downloads the schema unless it is already there
    verify_metadata(meta_file=str(bundle_dir / "configs" / "metadata.json"), filepath=str(schema))
    broken = dict(meta)
    del broken["task"]
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    with pytest.raises(ValueError, match="task"):
        verify_metadata(meta_file=str(tmp_path / "broken.json"), filepath=str(schema))
    assert "DEMO MODEL" in meta["description"] and "not a medical device" in meta["intended_use"]
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == 5


def test_bundle_network_passes_monais_verify_net_in_out(bundle_dir):
    from monai.bundle import verify_net_in_out

    verify_net_in_out(net_id="network_def", meta_file=str(bundle_dir / "configs" / "metadata.json"),
                      config_file=str(bundle_dir / "configs" / "inference.json"), device="cpu",
                      bundle_root=str(bundle_dir))


def test_monai_bundle_run_writes_findings_that_match_the_pipeline(bundle_dir, cache):
    from burnscope.engines.model import load_biomedclip
    from burnscope.operators.burn_severity.core import load_head
    from burnscope.operators.dicom_loader.files import read_rgb_frames
    from burnscope.operators.preprocess.core import Preprocessor

    images = write_dataset(cache / "images", patients_per_class=1, images_per_patient=1)
    shutil.copy(REPO / "sample_data" / "study-001" / "IMG-0001.dcm", images / "photo.dcm")
    (images / "broken.png").write_text("not an image")
    out = cache / "findings"
    env = dict(os.environ)
    result = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json",
         "--input_dir", str(images), "--output_dir", str(out)],
        cwd=bundle_dir, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in (out / "findings.jsonl").read_text().splitlines()]
    findings = [r for r in lines if "label" in r]
    assert len(findings) == 6 and [r["file"] for r in lines if "error" in r] == ["broken.png"]
    assert (out / "superficial" / "p000_0.png.finding.json").is_file()
    assert all(r["demo"] and "DEMO MODEL" in r["warning"] for r in findings)

    # -m BUNDLE_DIR in burnscope: the same model and head give the same probabilities.
    model = load_biomedclip(str(bundle_dir))
    head = load_head(model)
    for record in findings:
        frames = read_rgb_frames(images / record["file"])
        expected = head.predict_proba(model.encode_images(Preprocessor(device="cpu")([frames[0][1]])))[0]
        got = np.array([record["probabilities"][c] for c in head.classes])
        np.testing.assert_allclose(got, expected, atol=2e-5)


def test_bundle_from_a_model_folder_copies_it_hash_checked(bundle_dir, cache):
    from burnscope.applications.cli import main
    from burnscope.engines.model_folder import read_manifest

    out = cache / "bundle2"
    assert main(["export-bundle", "-m", str(bundle_dir / "models"), "-o", str(out)]) == 0
    assert read_manifest(out / "models")["files"] == read_manifest(bundle_dir / "models")["files"]


# --------------------------------------------------------------------------------------- Triton


def test_triton_repository_config_and_onnx(cache):
    import onnxruntime as ort
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from burnscope.applications.cli import main
    from burnscope.engines.export import sample_images
    from burnscope.engines.model import load_biomedclip

    repo = cache / "triton"
    assert main(["export-triton", "--model-config", "biomedclip-tiny", "-o", str(repo), "--kind", "cpu",
                 "--max-batch-size", "16", "--preferred-batch-sizes", "4,8", "--max-queue-delay-us", "500",
                 "--instances", "2"]) == 0
    folder = repo / "burnscope_image_tower"
    config = text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert config.name == "burnscope_image_tower" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 16
    (inp,), (out,) = config.input, config.output
    assert (inp.name, list(inp.dims), inp.data_type) == ("images", [3, 224, 224], model_config_pb2.TYPE_FP32)
    assert (out.name, list(out.dims)) == ("embeddings", [64])
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert config.instance_group[0].count == 2 and config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU

    session = ort.InferenceSession(str(folder / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    x = sample_images(5, 224, seed=3)  # a batch size other than the traced one
    onnx_out = session.run(None, {"images": x})[0]
    torch_out = load_biomedclip(config="biomedclip-tiny").encode_images(x)
    assert np.max(np.abs(onnx_out - torch_out)) < 1e-4
    assert json.loads((folder / "burn_head.json").read_text())["format"] == "burnscope-burn-head/1"


def test_triton_options_are_checked(cache, capsys):
    from burnscope.applications.cli import main

    assert main(["export-triton", "--model-config", "biomedclip-tiny", "-o", str(cache / "t2"),
                 "--max-batch-size", "8", "--preferred-batch-sizes", "4,32"]) != 0
    assert "must lie in 1…8" in capsys.readouterr().err
    assert not (cache / "t2").exists()
