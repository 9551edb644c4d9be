"""FHIR R4 transaction Bundle of one report, validated with fhir.resources' R4B models.

Contents: Patient (conditional create on its identifier), ImagingStudy (conditional create on
the Study Instance UID), Observations for burn depth (class probabilities as components), TBSA
and the Parkland fluid estimate, and a DiagnosticReport (status ``preliminary``) that refers to
them all. Entries refer to each other by ``urn:uuid:`` full URLs, which the server rewrites.

Without a patient identity there is no Patient entry and no ImagingStudy (its subject is
mandatory in FHIR); the DiagnosticReport states the gap instead.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from fhir.resources.R4B.bundle import Bundle

from burnscope.operators.messages import DEMO_BANNER, Decision
from burnscope.operators.report import codes as bc

#: Default identifier system of the DICOM Patient ID; set the hospital's MRN system instead.
DEFAULT_PATIENT_ID_SYSTEM = "urn:burnscope:dicom-patient-id"
_OBS_CATEGORY = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "imaging",
            "display": "Imaging",
        }
    ]
}


def _coding(concept) -> dict[str, str]:
    system = {"SCT": bc.FHIR_SNOMED, "UCUM": bc.FHIR_UCUM, "DCM": bc.FHIR_DCM}.get(
        concept.scheme_designator, bc.FHIR_LOCAL_SYSTEM
    )
    return {"system": system, "code": str(concept.value), "display": str(concept.meaning)}


def _fhir_date(dicom_date: str) -> str | None:
    d = (dicom_date or "").strip()
    if len(d) == 8 and d.isdigit():
        return f"{d[:4]}-{d[4:6]}-{d[6:]}"
    return None


def _gender(sex: str) -> str:
    return {"M": "male", "F": "female", "O": "other"}.get((sex or "").upper(), "unknown")


def _urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def build_bundle(
    decision: Decision,
    report: dict[str, Any],
    outputs: dict[str, Any],
    *,
    patient_identifier_system: str = DEFAULT_PATIENT_ID_SYSTEM,
    code_map: dict | None = None,
) -> dict[str, Any]:
    """The transaction Bundle as a JSON dict; raises ``pydantic.ValidationError`` if invalid."""
    finding = decision.finding
    ctx = finding.context
    fnd, ds = report["finding"], report["decision_support"]
    when = report["generated_at"]
    bundle_id = outputs["fhir"]["bundle_id"]
    entries: list[dict[str, Any]] = []
    notes = ([DEMO_BANNER] if finding.model.demo else []) + [report["disclaimer"]]

    patient_ref = None
    patient = ctx.patient
    if patient.patient_id:
        patient_url = _urn()
        resource: dict[str, Any] = {
            "resourceType": "Patient",
            "identifier": [{"system": patient_identifier_system, "value": patient.patient_id}],
            "gender": _gender(patient.sex),
        }
        if patient.name:
            family, _, given = patient.name.partition("^")
            name: dict[str, Any] = {
                "text": " ".join(x for x in (given.replace("^", " "), family) if x).strip()
            }
            if family:
                name["family"] = family
            if given:
                name["given"] = [g for g in given.split("^") if g][:2]
            resource["name"] = [name]
        if _fhir_date(patient.birth_date):
            resource["birthDate"] = _fhir_date(patient.birth_date)
        entries.append(
            {
                "fullUrl": patient_url,
                "resource": resource,
                "request": {
                    "method": "POST",
                    "url": "Patient",
                    "ifNoneExist": f"identifier={patient_identifier_system}|{patient.patient_id}",
                },
            }
        )
        patient_ref = {"reference": patient_url}

    study_uid = outputs["study_instance_uid"]
    study_ref = None
    if patient_ref is not None:
        study_url = _urn()
        study: dict[str, Any] = {
            "resourceType": "ImagingStudy",
            "identifier": [{"system": bc.FHIR_DICOM_UID, "value": f"urn:oid:{study_uid}"}],
            "status": "available",
            "subject": patient_ref,
        }
        if _fhir_date(ctx.study_date):
            study["started"] = _fhir_date(ctx.study_date)
        if ctx.study_description:
            study["description"] = ctx.study_description
        if ctx.series_instance_uid and ctx.sop_instance_uid and not outputs.get("study_uid_generated"):
            study["series"] = [
                {
                    "uid": ctx.series_instance_uid,
                    "modality": {"system": bc.FHIR_DCM, "code": ctx.modality or "XC"},
                    "instance": (
                        [
                            {
                                "uid": ctx.sop_instance_uid,
                                "sopClass": {
                                    "system": "urn:ietf:rfc:3986",
                                    "code": f"urn:oid:{ctx.sop_class_uid}",
                                },
                            }
                        ]
                        if ctx.sop_class_uid
                        else []
                    ),
                }
            ]
            if not study["series"][0]["instance"]:
                del study["series"][0]["instance"]
        entries.append(
            {
                "fullUrl": study_url,
                "resource": study,
                "request": {
                    "method": "POST",
                    "url": "ImagingStudy",
                    "ifNoneExist": f"identifier={bc.FHIR_DICOM_UID}|urn:oid:{study_uid}",
                },
            }
        )
        study_ref = {"reference": study_url}

    site = bc.body_site_concept(ctx.body_site)
    body_site = (
        {"coding": [_coding(site)], "text": ctx.body_site}
        if site is not None
        else ({"text": ctx.body_site} if ctx.body_site else None)
    )

    def observation(code: dict[str, Any], **fields: Any) -> dict[str, Any]:
        res: dict[str, Any] = {
            "resourceType": "Observation",
            "status": "preliminary",
            "category": [_OBS_CATEGORY],
            "code": code,
            "effectiveDateTime": when,
            "issued": when,
            "note": [{"text": n} for n in notes],
        }
        if patient_ref:
            res["subject"] = patient_ref
        if study_ref:
            res["derivedFrom"] = [study_ref]
        if body_site:
            res["bodySite"] = body_site
        res.update(fields)
        url = _urn()
        # The entry's own UUID doubles as a business identifier: a re-sent Bundle (after a crash
        # between send and acknowledgement) creates nothing twice.
        res["identifier"] = [{"system": "urn:ietf:rfc:3986", "value": url}]
        entries.append(
            {
                "fullUrl": url,
                "resource": res,
                "request": {
                    "method": "POST",
                    "url": "Observation",
                    "ifNoneExist": f"identifier=urn:ietf:rfc:3986|{url}",
                },
            }
        )
        return {"reference": url}

    def quantity(value: float, unit: str) -> dict[str, Any]:
        return {"value": round(float(value), 4), "unit": unit, "system": bc.FHIR_UCUM, "code": unit}

    depth = bc.depth_concept("needs_review" if finding.abstained else finding.label, code_map)
    components = [
        {
            "code": {
                "coding": [_coding(bc.depth_concept(k, code_map))],
                "text": f"Probability: {label_display_safe(k)}",
            },
            "valueQuantity": quantity(p * 100.0, "%"),
        }
        for k, p in fnd["probabilities"].items()
        if p is not None
    ]
    depth_fields: dict[str, Any] = {
        "valueCodeableConcept": {"coding": [_coding(depth)], "text": fnd["label_display"]}
    }
    if components:
        depth_fields["component"] = components
    if finding.abstained:
        depth_fields["interpretation"] = [{"text": "needs clinician review"}]
    results = [observation({"coding": [_coding(bc.CONCEPT_DEPTH)], "text": "Burn depth"}, **depth_fields)]
    if ds["tbsa_percent"] is not None:
        results.append(
            observation(
                {"coding": [_coding(bc.CONCEPT_TBSA)], "text": "TBSA burned"},
                valueQuantity=quantity(ds["tbsa_percent"], "%"),
            )
        )
    parkland = ds["parkland"] or {}
    total = next(
        (
            parkland[k]
            for k in ("total_ml_24h", "total_24h_ml", "total_ml")
            if isinstance(parkland.get(k), (int, float))
        ),
        None,
    )
    if total is not None:
        fluid: dict[str, Any] = {"valueQuantity": quantity(total, "mL")}
        if isinstance(parkland.get("first_8h_ml"), (int, float)):
            fluid["component"] = [
                {
                    "code": {"coding": [_coding(bc.CONCEPT_FLUID_8H)]},
                    "valueQuantity": quantity(parkland["first_8h_ml"], "mL"),
                }
            ]
        results.append(
            observation(
                {"coding": [_coding(bc.CONCEPT_FLUID_24H)], "text": "Parkland fluid estimate, 24 h"}, **fluid
            )
        )

    gaps = list(report["missing_inputs"]) + [f"{m} (image context)" for m in report["missing_context"]]
    conclusion = f"Burn depth: {fnd['label_display']}" + (
        " (needs clinician review)" if fnd["abstained"] else ""
    )
    if gaps:
        conclusion += ". Missing: " + ", ".join(gaps)
    if finding.model.demo:
        conclusion = DEMO_BANNER + ". " + conclusion
    diagnostic: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{bundle_id}"}],
        "status": "preliminary",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v2-0074",
                        "code": "IMG",
                        "display": "Diagnostic Imaging",
                    }
                ]
            }
        ],
        "code": {"coding": [_coding(bc.CONCEPT_REPORT)], "text": "Burn image triage report"},
        "effectiveDateTime": when,
        "issued": when,
        "result": results,
        "conclusion": conclusion + ". " + report["disclaimer"],
    }
    if patient_ref:
        diagnostic["subject"] = patient_ref
    if study_ref:
        diagnostic["imagingStudy"] = [study_ref]
    entries.append(
        {
            "fullUrl": _urn(),
            "resource": diagnostic,
            "request": {
                "method": "POST",
                "url": "DiagnosticReport",
                "ifNoneExist": f"identifier=urn:ietf:rfc:3986|urn:uuid:{bundle_id}",
            },
        }
    )

    bundle = {
        "resourceType": "Bundle",
        "id": bundle_id,
        "type": "transaction",
        "timestamp": when,
        "entry": entries,
    }
    validated = Bundle.model_validate(bundle)  # raises on any schema error
    return json.loads(validated.model_dump_json(exclude_none=True))


def label_display_safe(key: str) -> str:
    from burnscope.operators.report.core import label_display

    return label_display(key)


def render_fhir_json(bundle: dict[str, Any]) -> bytes:
    return (json.dumps(bundle, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
