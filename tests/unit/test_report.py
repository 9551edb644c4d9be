"""JSON and plain-text reports built from Decision messages."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from burnscope.common.messages import DEMO_BANNER, PatientIdentity
from burnscope.operators.report.core import (
    DISCLAIMER,
    REPORT_SCHEMA_VERSION,
    ReportEmitter,
    build_report,
    render_text,
    report_stem,
)
from fixtures.examples import example_decision

FIXED = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


def test_json_report_has_versioned_schema_and_all_blocks():
    report = build_report(example_decision(), generated_at=FIXED)
    json.dumps(report, allow_nan=False)  # serialisable, strictly
    assert report["schema_version"] == REPORT_SCHEMA_VERSION
    assert report["generated_at"] == "2026-01-02T03:04:05Z"
    src = report["source"]
    assert src["file"] == "/data/in/burn_0001.dcm"
    assert src["sop_instance_uid"] == "1.2.826.0.1.3680043.8.498.13"
    assert src["study_instance_uid"] == "1.2.826.0.1.3680043.8.498.11"
    assert src["series_instance_uid"] == "1.2.826.0.1.3680043.8.498.12" and src["frame"] == 1
    f = report["finding"]
    assert f["label"] == "deep_partial_thickness" and f["ranked"][0] == "deep_partial_thickness"
    assert f["probabilities"]["deep_partial_thickness"] == pytest.approx(0.61)
    assert f["confidence"] == pytest.approx(0.61) and f["abstained"] is False
    ds = report["decision_support"]
    assert ds["tbsa_percent"] == 12.0 and ds["parkland"]["total_ml_24h"] == 3360.0
    assert ds["referral"]["recommended"] is True
    assert set(report["model"]) == {"name", "weights", "backend", "precision", "device", "demo"}
    assert report["model"]["backend"] == "onnxruntime"
    assert report["disclaimer"] == DISCLAIMER
    # The report is a clinical document: the patient is in it.
    assert report["patient"]["name"] == "Doe^Jane" and report["patient"]["patient_id"] == "PID-0001"


def test_demo_banner_first_line_of_text_and_flag_in_json():
    report = build_report(example_decision(demo=True))
    assert report["demo_model"] is True and report["banner"] == DEMO_BANNER
    text = render_text(report)
    first_lines = [line for line in text.splitlines() if line.strip("= ")]
    assert first_lines[0] == DEMO_BANNER
    assert DEMO_BANNER == "DEMO MODEL (random weights) — not for clinical use"


def test_real_weights_have_no_banner():
    report = build_report(example_decision(demo=False))
    assert report["demo_model"] is False and report["banner"] == ""
    assert DEMO_BANNER not in render_text(report)


def test_abstained_finding_says_needs_clinician_review():
    report = build_report(example_decision(abstained=True))
    assert report["finding"]["abstained"] is True
    assert report["finding"]["needs_clinician_review"] is True
    assert "NEEDS CLINICIAN REVIEW" in render_text(report)


def test_missing_inputs_and_context_are_stated():
    decision = example_decision(
        study_uid="",
        sop_uid="",
        patient=PatientIdentity(),
        tbsa_percent=None,
        parkland=None,
        referral=None,
        missing=["weight_kg", "hours_since_injury"],
    )
    report = build_report(decision)
    assert report["missing_inputs"] == ["weight_kg", "hours_since_injury"]
    assert {"study_instance_uid", "sop_instance_uid", "patient_identity"} <= set(report["missing_context"])
    text = render_text(report)
    assert "Not given:" in text and "weight kg, hours since injury" in text
    assert re.search(r"Burned area \(TBSA\): +not available", text)


def test_non_finite_numbers_become_null():
    decision = example_decision(tbsa_percent=float("nan"))
    decision.finding.probabilities["deep_partial_thickness"] = float("inf")
    report = build_report(decision)
    assert report["decision_support"]["tbsa_percent"] is None
    assert report["finding"]["probabilities"]["deep_partial_thickness"] is None
    json.dumps(report, allow_nan=False)


@pytest.mark.parametrize(
    "source,frame,stem",
    [
        ("/in/a/burn_0001.dcm", 1, "burn_0001"),
        ("/in/a/burn_0001.dcm", 3, "burn_0001_f3"),
        ("/in/a/IM0001", 1, "IM0001"),
        ("/in/a/we ird#name.DCM", 2, "we_ird_name_f2"),
    ],
)
def test_report_stem_sorts_with_source(source, frame, stem):
    assert report_stem(example_decision(source=source, frame=frame).finding.context) == stem


def test_emitter_batch_json_and_text_and_empty_batch():
    emitter = ReportEmitter(clock=lambda: FIXED)
    assert emitter.emit([]) == []
    bundles = emitter.emit(
        [example_decision(), example_decision(frame=2), example_decision(source="/other/burn_0001.dcm")]
    )
    assert [b.stem for b in bundles] == ["burn_0001", "burn_0001_f2", "burn_0001_2"]
    for b in bundles:
        assert set(b.artefacts) == {".json", ".txt"}
        parsed = json.loads(b.artefacts[".json"])
        assert parsed["demo_model"] is True
        assert b.artefacts[".txt"].decode().lstrip("=\n").startswith(DEMO_BANNER)
        # What logs may print names the image, never the patient.
        assert "Doe" not in repr(b) and "PID-0001" not in repr(b) and "Doe" not in b.label
    # Same input and clock: byte-identical output (the folder sink relies on it to skip).
    again = ReportEmitter(clock=lambda: FIXED).emit([example_decision()])
    assert again[0].artefacts == bundles[0].artefacts


def test_unknown_format_is_rejected():
    with pytest.raises(ValueError, match="unknown report format"):
        ReportEmitter(["json", "docx"])


def test_text_lists_probabilities_model_and_disclaimer():
    text = render_text(build_report(example_decision(demo=False)))
    assert "Deep partial-thickness" in text and "61.0%" in text
    assert "onnxruntime (fp32, cpu)" in text
    assert "Disclaimer:" in text


def test_a_failing_output_costs_only_itself_and_becomes_an_error_record():
    from burnscope.operators.report import formats

    def broken(decision, report, bundle, state):
        bundle.artefacts[".half"] = b"partial"
        raise RuntimeError("renderer exploded")

    formats.register(formats.ReportFormat("broken_for_test", ".half", broken))
    try:
        bundle = ReportEmitter(["json", "txt", "broken_for_test"], clock=lambda: FIXED).emit(
            [example_decision()]
        )[0]
    finally:
        formats.unregister("broken_for_test")
    assert set(bundle.artefacts) == {".json", ".txt"}  # the partial artefact is gone
    [record] = bundle.errors
    assert record.reason == "report_broken_for_test_failed" and record.stage == "report"
    assert record.sop_instance_uid == "1.2.826.0.1.3680043.8.498.13" and "exploded" in record.message
    assert json.loads(bundle.artefacts[".json"])["render_errors"][0]["format"] == "broken_for_test"


def test_source_root_mirrors_input_tree_and_names_stay_unique_across_batches():
    emitter = ReportEmitter(clock=lambda: FIXED, source_root="/data/in")
    first = emitter.emit([example_decision(source="/data/in/study-001/IMG-0001.dcm")])
    second = emitter.emit(
        [
            example_decision(source="/data/in/study-002/IMG-0001.dcm"),
            example_decision(source="/data/in/study-001/IMG-0001.dcm", frame=2),
        ]
    )
    assert [b.stem for b in first + second] == [
        "study-001/IMG-0001",
        "study-002/IMG-0001",
        "study-001/IMG-0001_f2",
    ]
    flat = ReportEmitter(clock=lambda: FIXED)
    names = [
        flat.emit([example_decision(source=f"/data/in/study-00{i}/IMG-0001.dcm")])[0].stem for i in (1, 2, 1)
    ]
    assert names == ["IMG-0001", "IMG-0001_2", "IMG-0001"]  # same source again: same name
    assert report_stem(example_decision(source="/elsewhere/x.dcm").finding.context, "/data/in") == "x"


def test_study_rollup_summarises_images_of_one_study():
    from burnscope.operators.report.core import build_study_rollup  # noqa: F401  (public)

    emitter = ReportEmitter(clock=lambda: FIXED, source_root="/data/in")
    emitter.emit([example_decision(source="/data/in/s1/IMG-1.dcm", sop_uid="1.2.3.1")])
    assert emitter.study_rollups() == []  # one image: no roll-up yet
    full = example_decision(source="/data/in/s1/IMG-2.dcm", sop_uid="1.2.3.2")
    full.finding.label = "full_thickness"
    emitter.emit([full, example_decision(source="/data/in/s1/IMG-3.dcm", sop_uid="1.2.3.3", abstained=True)])
    [rollup] = emitter.study_rollups()
    assert rollup.kind == "study" and rollup.stem == "s1/study"
    data = json.loads(rollup.artefacts[".json"])
    assert data["image_count"] == 3 and data["deepest_depth"] == "full_thickness"
    assert data["needs_clinician_review"] == 1 and data["referral_recommended"] is True
    assert [i["report"] for i in data["images"]] == ["s1/IMG-1", "s1/IMG-2", "s1/IMG-3"]
    text = rollup.artefacts[".txt"].decode()
    assert text.lstrip("=\n").startswith(DEMO_BANNER) and "Deepest graded burn depth: Full-thickness" in text
