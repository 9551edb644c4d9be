"""The bundled synthetic sample data: deterministic, small, and loading as documented."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from burnscope.operators.dicom_loader.core import DicomLoader
from fixtures import SAMPLE_DATA

SAMPLE = SAMPLE_DATA
MANIFEST = json.loads((SAMPLE / "manifest.json").read_text())


def _generator():
    spec = importlib.util.spec_from_file_location("sample_generate", SAMPLE / "generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["sample_generate"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix in (".dcm", ".json", ".txt")
    }


def test_generator_is_deterministic_and_matches_committed_files(tmp_path):
    _generator().generate(tmp_path)
    assert _digests(tmp_path) == _digests(SAMPLE)


def test_sample_data_is_small():
    total = sum(p.stat().st_size for p in SAMPLE.rglob("*") if p.is_file())
    assert total < 2 * 1024 * 1024


def test_manifest_lists_fake_patients_and_every_file():
    assert MANIFEST["synthetic"] is True
    assert len(MANIFEST["patients"]) == 3
    for entry in MANIFEST["files"]:
        assert (SAMPLE / entry["path"]).is_file()
    assert MANIFEST["expected_errors"] == {
        "study-002/IMG-0003-truncated.dcm": "truncated",
        "notes.txt": "not_dicom",
    }


def test_images_carry_documented_metadata():
    vl = [f for f in MANIFEST["files"] if f.get("sop_class_uid") == "1.2.840.10008.5.1.4.1.1.77.1.4"]
    assert len(vl) >= 6
    for entry in vl:
        if entry["expected"] != "accepted":
            continue
        ds = pydicom.dcmread(SAMPLE / entry["path"])
        assert ds.Modality == "XC"
        assert ds.SamplesPerPixel == 3 and ds.BitsAllocated == 8
        assert ds.AnatomicRegionSequence[0].CodingSchemeDesignator == "SCT"
        assert ds.BodyPartExamined
        assert str(ds.PatientName) in {p["name"] for p in MANIFEST["patients"]}


def test_loader_reads_sample_data_as_documented():
    images, errors = DicomLoader(workers=2).load(SAMPLE)
    assert len(images) == MANIFEST["expected_images"] == 10
    assert {Path(e.source).relative_to(SAMPLE).as_posix(): e.reason for e in errors} == MANIFEST["expected_errors"]
    for record in images:
        assert record.pixels.dtype.name == "uint8" and record.pixels.ndim == 3 and record.pixels.shape[2] == 3
        assert record.context.case["method"] in {"rule_of_nines", "lund_browder", "palm"}
        assert record.context.body_site
    frames = [r.context.frame_number for r in images if "multiframe" in r.context.source]
    assert frames == [1, 2]


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools (dciodvfy) not installed")
def test_sample_files_pass_dciodvfy():
    for entry in MANIFEST["files"]:
        if entry["expected"] != "accepted":
            continue
        out = subprocess.run(["dciodvfy", "-new", str(SAMPLE / entry["path"])], capture_output=True, text=True)
        errors = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]
        assert not errors, (entry["path"], errors)
