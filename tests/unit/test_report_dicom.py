"""DICOM Comprehensive SR (TID 1500) and Encapsulated PDF, checked by pydicom, highdicom and,
when installed, by dicom3tools' dciodvfy and dcmtk's dsrdump."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from io import BytesIO

import numpy as np
import pydicom
import pytest

from burnscope.common.messages import DEMO_BANNER, PatientIdentity
from burnscope.operators.report import codes as bc
from burnscope.operators.report.core import ALL_FORMATS, ReportEmitter
from fixtures.examples import example_decision

FIXED = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def bundles():
    thumb = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
    emitter = ReportEmitter(ALL_FORMATS, clock=lambda: FIXED)
    full = example_decision(thumbnail=thumb)
    second = example_decision(
        source="/data/in/burn_0002.dcm", sop_uid="1.2.826.0.1.3680043.8.498.14", demo=False
    )
    bare = example_decision(
        source="/data/in/nouid.dcm",
        study_uid="",
        series_uid="",
        sop_uid="",
        patient=PatientIdentity(),
        abstained=True,
        missing=["weight_kg"],
    )
    return emitter.emit([full, second, bare])


def _read(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(BytesIO(data))


def test_all_suffixes_and_deliveries(bundles):
    for b in bundles:
        assert list(b.artefacts) == [".json", ".txt", ".pdf", ".sr.dcm", ".pdf.dcm", ".fhir.json", ".sc.dcm"]
        assert [d["suffix"] for d in b.deliveries] == [".sr.dcm", ".pdf.dcm", ".fhir.json", ".sc.dcm"]
        assert b.artefacts[".pdf"].startswith(b"%PDF")


def test_sr_header_joins_source_study_and_is_honest(bundles):
    b = bundles[0]
    sr = _read(b.artefacts[".sr.dcm"])
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    assert sr.StudyInstanceUID == "1.2.826.0.1.3680043.8.498.11"
    assert sr.SeriesInstanceUID != "1.2.826.0.1.3680043.8.498.12"  # a series of its own
    assert sr.CompletionFlag == "PARTIAL" and sr.VerificationFlag == "UNVERIFIED"
    assert sr.PreliminaryFlag == "PRELIMINARY"
    assert str(sr.PatientName) == "Doe^Jane" and sr.PatientID == "PID-0001"
    assert sr.SOPInstanceUID.startswith("2.25.") and sr.SeriesInstanceUID.startswith("2.25.")
    assert sr.file_meta.ImplementationClassUID == bc.IMPLEMENTATION_CLASS_UID
    assert sr.file_meta.ImplementationClassUID.startswith("2.25.")
    assert sr.SeriesDescription == DEMO_BANNER
    assert sr.SOPInstanceUID == b.deliveries[0]["key"] == b.report["outputs"]["sr"]["sop_instance_uid"]
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == "1.2.826.0.1.3680043.8.498.13"


def test_sr_content_parsed_back_by_highdicom(bundles):
    import highdicom as hd

    sr = hd.sr.srread(BytesIO(bundles[0].artefacts[".sr.dcm"]))
    [group] = sr.content.get_image_measurement_groups()
    measurements = {m.name.meaning: m.value for m in group.get_measurements()}
    assert measurements["Probability of Deep partial thickness burn"] == 61.0
    dump = str(sr)
    assert "262588000" in dump  # deep partial-thickness burn (SNOMED CT)
    assert "14975008" in dump  # forearm
    assert "Total body surface area burned" in dump


def test_series_shared_per_study_and_instance_numbers_increase(bundles):
    a, b = (_read(x.artefacts[".sr.dcm"]) for x in bundles[:2])
    assert a.SeriesInstanceUID == b.SeriesInstanceUID and (a.InstanceNumber, b.InstanceNumber) == (1, 2)
    pa, pb = (_read(x.artefacts[".pdf.dcm"]) for x in bundles[:2])
    assert pa.SeriesInstanceUID == pb.SeriesInstanceUID != a.SeriesInstanceUID
    assert b.SeriesDescription != DEMO_BANNER  # real weights: no banner


def test_encapsulated_pdf_wraps_the_pdf_in_the_same_study(bundles):
    b = bundles[0]
    ds = _read(b.artefacts[".pdf.dcm"])
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.104.1" and ds.Modality == "DOC"
    assert ds.StudyInstanceUID == "1.2.826.0.1.3680043.8.498.11"
    assert ds.MIMETypeOfEncapsulatedDocument == "application/pdf"
    pdf = bytes(ds.EncapsulatedDocument)[: ds.EncapsulatedDocumentLength]
    assert pdf == b.artefacts[".pdf"]
    assert ds.SourceInstanceSequence[0].ReferencedSOPInstanceUID == "1.2.826.0.1.3680043.8.498.13"


def test_missing_context_gives_new_study_and_stated_gaps(bundles):
    b = bundles[2]
    sr = _read(b.artefacts[".sr.dcm"])
    assert sr.StudyInstanceUID.startswith("2.25.") and b.report["outputs"]["study_uid_generated"] is True
    assert sr.PatientID == "" and str(sr.PatientName) == ""
    assert "CurrentRequestedProcedureEvidenceSequence" not in sr  # nothing real to reference
    texts = []

    def walk(items):
        for item in items:
            if item.ValueType == "TEXT":
                texts.append(item.TextValue)
            walk(item.get("ContentSequence", []))

    walk(sr.ContentSequence)
    assert "missing input: weight_kg" in texts
    assert "missing image context: study_instance_uid" in texts
    assert DEMO_BANNER in texts
    pdf_ds = _read(b.artefacts[".pdf.dcm"])
    assert pdf_ds.StudyInstanceUID == sr.StudyInstanceUID  # SR and PDF share the generated study


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools (dciodvfy) not installed")
@pytest.mark.parametrize("index", [0, 1, 2])
@pytest.mark.parametrize("suffix", [".sr.dcm", ".pdf.dcm"])
def test_dciodvfy_reports_no_errors(bundles, tmp_path, index, suffix):
    path = tmp_path / f"x{suffix}"
    path.write_bytes(bundles[index].artefacts[suffix])
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    text = out.stdout + out.stderr
    errors = [line for line in text.splitlines() if line.startswith("Error")]
    assert not errors, text
    assert ("ComprehensiveSR" if suffix == ".sr.dcm" else "EncapsulatedPDF") in text


@pytest.mark.skipif(shutil.which("dsrdump") is None, reason="dcmtk (dsrdump) not installed")
def test_dsrdump_reads_the_sr(bundles, tmp_path):
    path = tmp_path / "x.sr.dcm"
    path.write_bytes(bundles[0].artefacts[".sr.dcm"])
    out = subprocess.run(["dsrdump", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Comprehensive SR Document" in out.stdout
    assert "Completion Flag     : PARTIAL" in out.stdout and "UNVERIFIED" in out.stdout
    assert '(262588000,SCT,"Deep partial thickness burn")' in out.stdout
    assert '"Total body surface area burned")="12.0" (%,UCUM,"percent")' in out.stdout


def test_pdf_shows_banner_finding_and_thumbnail(bundles):
    pdf = bundles[0].artefacts[".pdf"]
    assert b"/Subtype /Image" in pdf  # the thumbnail
    assert len(bundles[1].artefacts[".pdf"]) < len(pdf)  # no thumbnail there
    text = _pdf_text(pdf)
    assert "DEMO MODEL (random weights)" in text and "Deep partial-thickness" in text
    assert "TBSA" in text and "onnxruntime" in text and "Disclaimer" in text


def _pdf_text(pdf: bytes) -> str:
    """Text drawn on the pages: reportlab's content streams, inflated (no PDF library needed)."""
    import re
    import zlib

    chunks = []
    for m in re.finditer(rb"stream\r?\n(.*?)\r?\n?endstream", pdf, re.S):
        try:
            data = zlib.decompress(m.group(1))
        except zlib.error:
            try:
                import base64

                raw = m.group(1).strip()
                raw = raw[:-2] if raw.endswith(b"~>") else raw
                data = zlib.decompress(base64.a85decode(raw))
            except Exception:
                continue
        chunks += re.findall(rb"\((.*?)\) Tj", data)
    return " ".join(c.replace(b"\\(", b"(").replace(b"\\)", b")").decode("latin-1") for c in chunks)


def test_pdf_is_reproducible_for_the_same_report():
    from burnscope.operators.report.core import build_report
    from burnscope.operators.report.pdf import render_pdf

    report = build_report(example_decision(), generated_at=FIXED)
    assert render_pdf(report) == render_pdf(report)


def test_folder_sink_writes_all_six_artefacts_sorted_with_the_source(bundles, tmp_path):
    from burnscope.operators.sinks.folder import FolderSink

    sink = FolderSink(tmp_path)
    sink.write_all(bundles[:1])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "burn_0001.fhir.json",
        "burn_0001.json",
        "burn_0001.pdf",
        "burn_0001.pdf.dcm",
        "burn_0001.sc.dcm",
        "burn_0001.sr.dcm",
        "burn_0001.txt",
    ]
    assert sink.write(bundles[0]).status == "unchanged"
    assert pydicom.dcmread(tmp_path / "burn_0001.sr.dcm").SOPInstanceUID == bundles[0].deliveries[0]["key"]


def test_rerun_gives_same_identifiers_and_sinks_skip_it(tmp_path):
    from burnscope.operators.sinks.folder import FolderSink

    later = dt.datetime(2026, 2, 3, 4, 5, 6, tzinfo=dt.timezone.utc)
    run1 = ReportEmitter(ALL_FORMATS, clock=lambda: FIXED).emit([example_decision()])[0]
    run2 = ReportEmitter(ALL_FORMATS, clock=lambda: later).emit([example_decision()])[0]
    assert run1.deliveries == run2.deliveries  # same SR/PDF SOP Instance UIDs, same Bundle id
    assert run1.artefacts[".json"] != run2.artefacts[".json"]  # generated at another time
    sink = FolderSink(tmp_path)
    assert sink.write(run1).status == "written" and sink.write(run2).status == "unchanged"
    changed = ReportEmitter(ALL_FORMATS, clock=lambda: later).emit([example_decision(tbsa_percent=20.0)])[0]
    assert {d["key"] for d in changed.deliveries}.isdisjoint({d["key"] for d in run1.deliveries})
    result = sink.write(changed)
    assert result.status == "written" and result.stem == "burn_0001_r2"


def test_malformed_patient_values_never_reach_logs_and_the_sr_is_still_written(caplog):
    """A source with a birth date like 1980-01-01 (not a DICOM DA) and an over-long name: the SR
    and Encapsulated PDF are written with valid values, and no log line quotes either."""
    caplog.set_level("DEBUG")
    patient = PatientIdentity(name="Doe^Jane" + "x" * 70, patient_id="PID-0001", birth_date="1980-01-01", sex="F")
    bundle = ReportEmitter(["sr", "pdf_dcm"]).emit([example_decision(patient=patient)])[0]
    assert bundle.errors == []
    sr = _read(bundle.artefacts[".sr.dcm"])
    assert sr.PatientBirthDate == "19800101"
    assert len(str(sr.PatientName)) <= 64
    assert _read(bundle.artefacts[".pdf.dcm"]).PatientBirthDate == "19800101"
    for value in ("1980", "Doe", "PID-0001"):
        assert value not in caplog.text
    unparseable = PatientIdentity(name="Doe^Jane", patient_id="PID-0001", birth_date="first of May", sex="F")
    bundle = ReportEmitter(["sr"]).emit([example_decision(patient=unparseable)])[0]
    assert bundle.errors == [] and _read(bundle.artefacts[".sr.dcm"]).PatientBirthDate == ""
    assert "first of May" not in caplog.text
