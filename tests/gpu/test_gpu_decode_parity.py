"""nvImageCodec against pydicom on the sample and clinical-size sets, batched decoding through the
loader, and the burn-triage findings with GPU decoding equal to the CPU pipeline's."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest

from burnscope.operators.dicom_loader import gpu_jpeg
from burnscope.operators.dicom_loader.core import DicomLoader
from fixtures import SAMPLE_DATA

pytestmark = pytest.mark.skipif(not gpu_jpeg.available(), reason="needs a usable GPU and nvidia-nvimgcodec-cu13")


@pytest.fixture(scope="module")
def clinical(tmp_path_factory):
    from burnscope.benchmarks.clinical_photos import write_set

    folder = tmp_path_factory.mktemp("clinical")
    write_set(folder, count=3, size=(4032, 3024), j2k=1)
    return folder


def _parity(files):
    """(file, transfer syntax, mean |Δ|, max |Δ|) of every eligible frame: GPU vs the CPU loader."""
    import cupy as cp

    rows = []
    decoder = gpu_jpeg.NvImageCodecBatch()
    cpu = DicomLoader(workers=1, max_pixels=1 << 31)
    for path in files:
        ds = pydicom.dcmread(path)
        ts = str(ds.file_meta.TransferSyntaxUID)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        pending = gpu_jpeg.encoded_frames(ds, ts, frames, path)
        if pending is None:
            continue
        decoded = decoder.decode(pending)
        reference = cpu.load_file_result(path)
        assert reference.error is None
        for array, record in zip(decoded, reference.images):
            assert array is not None, f"{path.name}: nvImageCodec could not decode it"
            diff = np.abs(cp.asnumpy(array).astype(int) - record.pixels.astype(int))
            rows.append((path.name, ts, float(diff.mean()), int(diff.max())))
    return rows


def _check(rows):
    assert rows
    for name, ts, mean, _max in rows:
        limit = 1.0 if ts in gpu_jpeg.LOSSLESS else 2.0
        assert mean <= limit, f"{name} ({ts}): mean |Δ| {mean:.3f} > {limit}"


def test_sample_set_matches_pydicom():
    rows = _parity(sorted(SAMPLE_DATA.rglob("*.dcm")))
    assert len(rows) == 4  # the JPEG baseline photographs
    _check(rows)


def test_clinical_size_set_matches_pydicom(clinical):
    rows = _parity(sorted(clinical.glob("*.dcm")))
    assert {ts for _, ts, _, _ in rows} >= {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.90"}
    _check(rows)


def test_loader_batches_stay_on_the_device_and_errors_match():
    import cupy as cp

    cpu, cpu_errors = DicomLoader(workers=1).load(SAMPLE_DATA)
    loader = DicomLoader(workers=4, gpu_jpeg=True)
    batches = list(loader.iter_batches(SAMPLE_DATA, batch_size=32))
    images = [r for b, _ in batches for r in b]
    errors = [e for _, b in batches for e in b]
    assert [e.reason for e in errors] == [e.reason for e in cpu_errors]
    on_device = [r for r in images if isinstance(r.pixels, cp.ndarray)]
    manifest = json.loads((SAMPLE_DATA / "manifest.json").read_text())
    jpeg = sum(f["frames"] for f in manifest["files"]
               if f["expected"] == "accepted" and f["transfer_syntax_uid"] == "1.2.840.10008.1.2.4.50")
    assert len(on_device) == jpeg and loader.frame_source.decoded_on_gpu == jpeg
    assert [r.context.label for r in images] == [r.context.label for r in cpu]


def _findings(settings, components, out):
    from burnscope.applications.burn_triage.runner import run_triage

    run_triage(settings, SAMPLE_DATA, out, components)
    reports = {}
    for path in sorted(out.rglob("*.json")):
        report = json.loads(path.read_text())
        if report.get("schema") == "burnscope.report":
            reports[str(path.relative_to(out))] = report["finding"]
    return reports


def test_findings_with_gpu_decoding_equal_the_cpu_pipelines(tmp_path):
    from burnscope.applications.burn_triage.app import build_components
    from burnscope.applications.burn_triage.settings import load_settings

    overrides = {"inference": {"model_config": "biomedclip-tiny", "backend": "torch", "precision": "fp32"},
                 "report": {"formats": ["json"]}}
    cpu_settings = load_settings(overrides={**overrides, "source": {"gpu_decode": "off"}, "preprocess": {"device": "cpu"}})
    gpu_settings = load_settings(overrides={**overrides, "source": {"gpu_decode": "on"}, "preprocess": {"device": "gpu"}})
    cpu = _findings(cpu_settings, build_components(cpu_settings), tmp_path / "cpu")
    gpu = _findings(gpu_settings, build_components(gpu_settings), tmp_path / "gpu")
    assert cpu.keys() == gpu.keys() and len(cpu) == 10
    for name in cpu:
        assert gpu[name]["label"] == cpu[name]["label"], name
        for key, p in cpu[name]["probabilities"].items():
            assert abs(gpu[name]["probabilities"][key] - p) < 0.02, (name, key)
