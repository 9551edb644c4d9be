"""FHIR R4 transaction Bundle of a report, validated with fhir.resources (R4B models)."""

from __future__ import annotations

import datetime as dt
import json

from fhir.resources.R4B.bundle import Bundle

from burnscope.common.messages import DEMO_BANNER, PatientIdentity
from burnscope.operators.report.core import ReportEmitter
from fixtures.examples import example_decision

FIXED = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


def _bundle(decision, **kw):
    b = ReportEmitter(["json", "fhir"], clock=lambda: FIXED, **kw).emit([decision])[0]
    return b, json.loads(b.artefacts[".fhir.json"])


def _by_type(bundle):
    out = {}
    for e in bundle["entry"]:
        out.setdefault(e["resource"]["resourceType"], []).append(e)
    return out


def test_transaction_bundle_validates_and_links_everything():
    b, fb = _bundle(example_decision())
    Bundle.model_validate(fb)  # schema-valid R4(B)
    assert (
        fb["type"] == "transaction"
        and fb["id"] == b.deliveries[0]["key"] == b.report["outputs"]["fhir"]["bundle_id"]
    )
    types = _by_type(fb)
    assert set(types) == {"Patient", "ImagingStudy", "Observation", "DiagnosticReport"}
    patient = types["Patient"][0]
    assert patient["request"]["ifNoneExist"] == "identifier=urn:burnscope:dicom-patient-id|PID-0001"
    assert (
        patient["resource"]["name"][0]["family"] == "Doe" and patient["resource"]["birthDate"] == "1980-01-01"
    )
    study = types["ImagingStudy"][0]["resource"]
    assert study["identifier"][0]["value"] == "urn:oid:1.2.826.0.1.3680043.8.498.11"
    assert study["series"][0]["instance"][0]["uid"] == "1.2.826.0.1.3680043.8.498.13"
    report = types["DiagnosticReport"][0]["resource"]
    assert report["status"] == "preliminary"
    assert report["subject"]["reference"] == types["Patient"][0]["fullUrl"]
    assert report["imagingStudy"][0]["reference"] == types["ImagingStudy"][0]["fullUrl"]
    obs_urls = {e["fullUrl"] for e in types["Observation"]}
    assert {r["reference"] for r in report["result"]} == obs_urls and len(
        obs_urls
    ) == 3  # depth, TBSA, fluids
    assert DEMO_BANNER in report["conclusion"]
    for e in types["Observation"]:
        assert e["resource"]["status"] == "preliminary"
        assert e["resource"]["subject"]["reference"] == types["Patient"][0]["fullUrl"]


def test_observation_values():
    _, fb = _bundle(example_decision(demo=False))
    obs = [e["resource"] for e in _by_type(fb)["Observation"]]
    depth = next(o for o in obs if "valueCodeableConcept" in o)
    assert depth["valueCodeableConcept"]["coding"][0] == {
        "system": "http://snomed.info/sct",
        "code": "262588000",
        "display": "Deep partial thickness burn",
    }
    assert len(depth["component"]) == 5
    assert depth["bodySite"]["coding"][0]["code"] == "14975008"
    quantities = {o["code"]["text"]: o["valueQuantity"] for o in obs if "valueQuantity" in o}
    assert quantities["TBSA burned"] == {
        "value": 12.0,
        "unit": "%",
        "system": "http://unitsofmeasure.org",
        "code": "%",
    }
    assert quantities["Parkland fluid estimate, 24 h"]["value"] == 3360.0
    assert all(DEMO_BANNER not in n["text"] for o in obs for n in o.get("note", []))


def test_patient_identifier_system_is_configurable():
    _, fb = _bundle(example_decision(), patient_identifier_system="urn:oid:1.2.3.4.5")
    patient = _by_type(fb)["Patient"][0]
    assert patient["resource"]["identifier"][0]["system"] == "urn:oid:1.2.3.4.5"


def test_no_patient_still_valid_with_gaps_stated():
    _, fb = _bundle(
        example_decision(
            patient=PatientIdentity(),
            study_uid="",
            tbsa_percent=None,
            parkland=None,
            missing=["tbsa", "weight_kg"],
        )
    )
    Bundle.model_validate(fb)
    types = _by_type(fb)
    assert "Patient" not in types and "ImagingStudy" not in types
    report = types["DiagnosticReport"][0]["resource"]
    assert "subject" not in report
    assert "weight_kg" in report["conclusion"] and "patient_identity" in report["conclusion"]
    assert len(types["Observation"]) == 1  # depth only: no TBSA, no fluids
