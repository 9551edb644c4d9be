"""FHIR R4 transaction Bundle of one report, validated with fhir.resources' R4B models.

Contents: Patient (conditional create on its identifier), ImagingStudy (conditional create on
the Study Instance UID), Observations for burn depth (class probabilities as components), TBSA
and the Parkland fluid estimate, and a DiagnosticReport (status ``preliminary``) that refers to
them all. Entries refer to each other by ``urn:uuid:`` full URLs, which the server rewrites.

Without a patient identity there is no Patient entry and no ImagingStudy (its subject is
mandatory in FHIR); the DiagnosticReport states the gap instead.

An image handled as STAT (the emergency lane) says so in two standard ways: the DiagnosticReport
is ``basedOn`` a ServiceRequest whose ``priority`` is ``stat`` (request-priority, the element an
EMR reads for urgency; intent ``filler-order``: burnscope's view of the order it fulfilled), and
the DiagnosticReport carries the security-neutral ``meta.tag`` ActPriority ``S`` (stat) — the
only marking left where there is no patient, since a ServiceRequest needs a subject.
DiagnosticReport itself has no priority element in R4, and a home-made extension would mean
nothing to a receiver; both forms validate with fhir.resources' R4B models.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from fhir.resources.R4B.bundle import Bundle

from burnscope.common.messages import DEMO_BANNER, Decision
from burnscope.common.vocabulary import NEEDS_REVIEW
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


#: HL7 v3 ActPriority: the code of "stat" on a resource's meta.tag.
ACT_PRIORITY_STAT = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActPriority", "code": "S", "display": "stat"}


def _is_stat(report: dict[str, Any]) -> bool:
    return (report.get("priority") or {}).get("level") == "stat"


def service_request_resource(report: dict[str, Any], bundle_id: str, patient_ref: dict[str, str]) -> dict[str, Any]:
    """The STAT request a STAT report is based on (priority ``stat``)."""
    return {
        "resourceType": "ServiceRequest",
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid5(uuid.UUID(bundle_id), 'stat-request')}"}],
        "status": "completed",
        "intent": "filler-order",
        "priority": "stat",
        "code": {"coding": [_coding(bc.CONCEPT_REPORT)], "text": "Burn image triage (STAT)"},
        "subject": patient_ref,
        "authoredOn": report["generated_at"],
        "note": [{"text": "Handled as STAT: " + ((report.get("priority") or {}).get("reason") or "emergency lane")}],
    }


def _urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


class _Entries:
    """The Bundle's entries; each new resource gets a ``urn:uuid:`` full URL and a conditional
    create, so a re-sent Bundle (after a crash between send and acknowledgement) creates
    nothing twice."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, resource: dict[str, Any], if_none_exist: str, url: str | None = None) -> dict[str, str]:
        url = url or _urn()
        self.items.append(
            {
                "fullUrl": url,
                "resource": resource,
                "request": {"method": "POST", "url": resource["resourceType"], "ifNoneExist": if_none_exist},
            }
        )
        return {"reference": url}


def patient_resource(patient: Any, identifier_system: str) -> dict[str, Any]:
    """Patient from the image's identity (DICOM PN ``family^given^middle`` → FHIR HumanName)."""
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"system": identifier_system, "value": patient.patient_id}],
        "gender": _gender(patient.sex),
    }
    if patient.name:
        family, _, given = patient.name.partition("^")
        name: dict[str, Any] = {"text": " ".join(x for x in (given.replace("^", " "), family) if x).strip()}
        if family:
            name["family"] = family
        if given:
            name["given"] = [g for g in given.split("^") if g][:2]
        resource["name"] = [name]
    if _fhir_date(patient.birth_date):
        resource["birthDate"] = _fhir_date(patient.birth_date)
    return resource


def imaging_study_resource(
    ctx: Any, study_uid: str, patient_ref: dict[str, str], *, uid_generated: bool = False
) -> dict[str, Any]:
    """ImagingStudy of the source image (its series and instance when the UIDs are real)."""
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
    if ctx.series_instance_uid and ctx.sop_instance_uid and not uid_generated:
        series: dict[str, Any] = {
            "uid": ctx.series_instance_uid,
            "modality": {"system": bc.FHIR_DCM, "code": ctx.modality or "XC"},
        }
        if ctx.sop_class_uid:
            series["instance"] = [
                {
                    "uid": ctx.sop_instance_uid,
                    "sopClass": {"system": "urn:ietf:rfc:3986", "code": f"urn:oid:{ctx.sop_class_uid}"},
                }
            ]
        study["series"] = [series]
    return study


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": round(float(value), 4), "unit": unit, "system": bc.FHIR_UCUM, "code": unit}


def _body_site(body_site: str) -> dict[str, Any] | None:
    site = bc.body_site_concept(body_site)
    if site is not None:
        return {"coding": [_coding(site)], "text": body_site}
    return {"text": body_site} if body_site else None


def depth_observation_fields(decision: Decision, report: dict[str, Any], code_map: dict | None) -> dict[str, Any]:
    """Burn depth: the class (or "needs review"), with each class probability as a component."""
    finding, fnd = decision.finding, report["finding"]
    depth = bc.depth_concept(NEEDS_REVIEW if finding.abstained else finding.label, code_map)
    fields: dict[str, Any] = {"valueCodeableConcept": {"coding": [_coding(depth)], "text": fnd["label_display"]}}
    components = [
        {
            "code": {
                "coding": [_coding(bc.depth_concept(k, code_map))],
                "text": f"Probability: {label_display_safe(k)}",
            },
            "valueQuantity": _quantity(p * 100.0, "%"),
        }
        for k, p in fnd["probabilities"].items()
        if p is not None
    ]
    if components:
        fields["component"] = components
    if finding.abstained:
        fields["interpretation"] = [{"text": "needs clinician review"}]
    return fields


def fluid_observation_fields(plan: Any) -> dict[str, Any]:
    """The 24-h fluid estimate, with the first-8-h volume as a component."""
    return {
        "valueQuantity": _quantity(plan.total_ml_24h, "mL"),
        "component": [
            {"code": {"coding": [_coding(bc.CONCEPT_FLUID_8H)]}, "valueQuantity": _quantity(plan.first_8h_ml, "mL")}
        ],
    }


def diagnostic_report_resource(decision: Decision, report: dict[str, Any], bundle_id: str,
                               results: list[dict[str, str]]) -> dict[str, Any]:
    """The preliminary DiagnosticReport that refers to every Observation."""
    fnd, when = report["finding"], report["generated_at"]
    gaps = list(report["missing_inputs"]) + [f"{m} (image context)" for m in report["missing_context"]]
    conclusion = f"Burn depth: {fnd['label_display']}" + (" (needs clinician review)" if fnd["abstained"] else "")
    if gaps:
        conclusion += ". Missing: " + ", ".join(gaps)
    if _is_stat(report):
        conclusion = "STAT (emergency lane). " + conclusion
    if decision.finding.model.demo:
        conclusion = DEMO_BANNER + ". " + conclusion
    return {
        "resourceType": "DiagnosticReport",
        **({"meta": {"tag": [dict(ACT_PRIORITY_STAT)]}} if _is_stat(report) else {}),
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


def build_bundle(
    decision: Decision,
    report: dict[str, Any],
    outputs: dict[str, Any],
    *,
    patient_identifier_system: str = DEFAULT_PATIENT_ID_SYSTEM,
    code_map: dict | None = None,
) -> dict[str, Any]:
    """The transaction Bundle as a JSON dict; raises ``pydantic.ValidationError`` if invalid.

    One builder per resource (``patient_resource``, ``imaging_study_resource``, the Observation
    fields, ``diagnostic_report_resource``); this function links them.
    """
    finding = decision.finding
    ctx = finding.context
    when = report["generated_at"]
    bundle_id = outputs["fhir"]["bundle_id"]
    study_uid = outputs["study_instance_uid"]
    entries = _Entries()
    notes = ([DEMO_BANNER] if finding.model.demo else []) + [report["disclaimer"]]

    patient_ref = study_ref = None
    if ctx.patient.patient_id:
        patient_ref = entries.add(
            patient_resource(ctx.patient, patient_identifier_system),
            f"identifier={patient_identifier_system}|{ctx.patient.patient_id}",
        )
        study_ref = entries.add(
            imaging_study_resource(ctx, study_uid, patient_ref, uid_generated=bool(outputs.get("study_uid_generated"))),
            f"identifier={bc.FHIR_DICOM_UID}|urn:oid:{study_uid}",
        )
    body_site = _body_site(ctx.body_site)

    def observation(code: dict[str, Any], fields: dict[str, Any]) -> dict[str, str]:
        url = _urn()  # the entry's own UUID doubles as its business identifier
        resource: dict[str, Any] = {
            "resourceType": "Observation",
            "status": "preliminary",
            "category": [_OBS_CATEGORY],
            "code": code,
            "effectiveDateTime": when,
            "issued": when,
            "note": [{"text": n} for n in notes],
            "identifier": [{"system": "urn:ietf:rfc:3986", "value": url}],
            **({"subject": patient_ref} if patient_ref else {}),
            **({"derivedFrom": [study_ref]} if study_ref else {}),
            **({"bodySite": body_site} if body_site else {}),
            **fields,
        }
        return entries.add(resource, f"identifier=urn:ietf:rfc:3986|{url}", url=url)

    results = [
        observation(
            {"coding": [_coding(bc.CONCEPT_DEPTH)], "text": "Burn depth"},
            depth_observation_fields(decision, report, code_map),
        )
    ]
    if decision.tbsa_percent is not None:
        results.append(
            observation(
                {"coding": [_coding(bc.CONCEPT_TBSA)], "text": "TBSA burned"},
                {"valueQuantity": _quantity(decision.tbsa_percent, "%")},
            )
        )
    if decision.parkland is not None:
        results.append(
            observation(
                {"coding": [_coding(bc.CONCEPT_FLUID_24H)], "text": "Parkland fluid estimate, 24 h"},
                fluid_observation_fields(decision.parkland),
            )
        )
    diagnostic = diagnostic_report_resource(decision, report, bundle_id, results)
    if patient_ref:
        diagnostic["subject"] = patient_ref
    if study_ref:
        diagnostic["imagingStudy"] = [study_ref]
    if patient_ref and _is_stat(report):
        request = service_request_resource(report, bundle_id, patient_ref)
        diagnostic["basedOn"] = [entries.add(
            request, f"identifier=urn:ietf:rfc:3986|{request['identifier'][0]['value']}")]
    entries.add(diagnostic, f"identifier=urn:ietf:rfc:3986|urn:uuid:{bundle_id}")

    bundle = {"resourceType": "Bundle", "id": bundle_id, "type": "transaction", "timestamp": when,
              "entry": entries.items}
    validated = Bundle.model_validate(bundle)  # raises on any schema error
    return json.loads(validated.model_dump_json(exclude_none=True))


def label_display_safe(key: str) -> str:
    from burnscope.operators.report.core import label_display

    return label_display(key)


def render_fhir_json(bundle: dict[str, Any]) -> bytes:
    return (json.dumps(bundle, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
