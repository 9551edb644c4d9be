"""Burned-in Secondary Capture report format (``sc``): registered, DICOM-valid, states its verification."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pydicom
import pytest

from burnscope.common.messages import DEMO_BANNER, PatientIdentity
from burnscope.operators.report.core import ALL_FORMATS, ReportEmitter
from fixtures.examples import example_decision
from burnscope.operators.report.secondary_capture import (
    NOT_VERIFIED_TEXT,
    SECONDARY_CAPTURE_IMAGE_STORAGE,
    annotation_lines,
)


def _photo() -> np.ndarray:
    yy, xx = np.mgrid[0:96, 0:128]
    return np.stack([xx * 2, yy * 2, (xx + yy)], axis=-1).astype(np.uint8)


@pytest.fixture(scope="module")
def bundles():
    emitter = ReportEmitter(("json", "sr", "sc"))
    return [
        emitter.emit_one(example_decision(thumbnail=_photo())),
        emitter.emit_one(example_decision(thumbnail=None, abstained=True, sop_uid="1.2.826.0.1.3680043.8.498.99")),
        ReportEmitter(("json", "sc")).emit_one(example_decision(patient=PatientIdentity(), study_uid="", demo=False)),
    ]


def test_sc_is_a_registered_format_with_a_dicom_delivery(bundles):
    assert "sc" in ALL_FORMATS
    bundle = bundles[0]
    assert list(bundle.artefacts) == [".json", ".sr.dcm", ".sc.dcm"]
    ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(bundle.artefacts[".sc.dcm"]))
    assert ds.SOPClassUID == SECONDARY_CAPTURE_IMAGE_STORAGE
    assert ds.BurnedInAnnotation == "YES"
    outputs = bundle.report["outputs"]
    # same study as the SR, its own series; the JSON names the object and it is delivered by UID
    assert ds.StudyInstanceUID == outputs["study_instance_uid"]
    assert ds.SeriesInstanceUID != outputs["sr"]["series_instance_uid"]
    assert ds.SOPInstanceUID == outputs["sc"]["sop_instance_uid"]
    assert {"suffix": ".sc.dcm", "kind": "dicom", "key": ds.SOPInstanceUID} in bundle.deliveries
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == "1.2.826.0.1.3680043.8.498.13"
    assert ds.SeriesDescription == DEMO_BANNER
    assert ds.pixel_array.shape[1] == 768 and ds.pixel_array.shape[2] == 3


def test_same_report_gives_the_same_bytes():
    a = ReportEmitter(("json", "sc"), clock=lambda: example_clock()).emit_one(example_decision(thumbnail=_photo()))
    b = ReportEmitter(("json", "sc"), clock=lambda: example_clock()).emit_one(example_decision(thumbnail=_photo()))
    assert a.artefacts[".sc.dcm"] == b.artefacts[".sc.dcm"]


def example_clock():
    import datetime as dt

    return dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


def test_burned_in_text_says_unverified_or_names_the_verifier(bundles):
    report = bundles[0].report
    lines = [text for text, _, _ in annotation_lines(report)]
    assert NOT_VERIFIED_TEXT in lines
    assert any("Deep partial-thickness" in t for t in lines) and any("61.0%" in t for t in lines)
    reviewed = dict(report, review={
        "outcome": "modified", "verifier_display": "Anna Smith", "reviewed_at": "2026-01-02T03:04:05Z",
        "clinician_label_display": "Full-thickness", "ai_label_display": "Deep partial-thickness", "ai_confidence": 0.61,
    })
    lines = [text for text, _, _ in annotation_lines(reviewed)]
    assert NOT_VERIFIED_TEXT not in lines
    assert "Burn depth: Full-thickness" in lines
    assert any(t.startswith("Verified by Anna Smith on 2026-01-02 03:04:05 UTC") for t in lines)
    abstained = [text for text, _, _ in annotation_lines(bundles[1].report)]
    assert any("UNDETERMINED" in t for t in abstained)


def test_the_pixels_carry_the_banner_band_and_the_image(bundles):
    ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(bundles[0].artefacts[".sc.dcm"]))
    px = ds.pixel_array
    assert tuple(px[5, 5]) == (192, 57, 43)  # the red demo band on top
    non_demo = pydicom.dcmread(pydicom.filebase.DicomBytesIO(bundles[2].artefacts[".sc.dcm"])).pixel_array
    assert tuple(non_demo[5, 5]) == (0, 0, 0)  # no band without demo weights


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools (dciodvfy) not installed")
@pytest.mark.parametrize("index", [0, 1, 2])
def test_dciodvfy_reports_no_errors(bundles, tmp_path, index):
    path = tmp_path / "x.sc.dcm"
    path.write_bytes(bundles[index].artefacts[".sc.dcm"])
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    text = out.stdout + out.stderr
    assert not [line for line in text.splitlines() if line.startswith("Error")], text
    assert "SCImage" in text
