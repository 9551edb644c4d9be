"""Coded concepts used by the DICOM SR and FHIR reports (see docs/integration.md).

Burn-depth codes come from :mod:`burnscope.common.vocabulary`. Only codes checked against a
published source are given in SNOMED CT (``SCT``); the DICOM
dictionary (``DCM``), UCUM and the SNOMED concepts that the DICOM standard's context groups
list come from pydicom's copy of the standard. Burn-depth classes without a checked SNOMED CT
concept use the local scheme :data:`LOCAL_SCHEME` (code = class key); an integrator whose
terminology server holds the mapping passes ``code_map`` to the renderers.
"""

from __future__ import annotations

import re
import uuid

from highdicom.sr import CodedConcept
from pydicom.sr.codedict import codes

from burnscope.common import vocabulary
from burnscope.common.vocabulary import LOCAL_SCHEME

LOCAL_SCHEME_NAME = "burnscope local codes"
#: The same local codes in FHIR.
FHIR_LOCAL_SYSTEM = "urn:burnscope:codes"
FHIR_SNOMED = "http://snomed.info/sct"
FHIR_UCUM = "http://unitsofmeasure.org"
FHIR_DICOM_UID = "urn:dicom:uid"
FHIR_DCM = "http://dicom.nema.org/resources/ontology/DCM"

#: SNOMED CT concepts checked against a published source.
SCT_BURN = CodedConcept("125666000", "SCT", "Burn")  # Burn (disorder)

#: Burn-depth class key → coded concept (the vocabulary's codes, as highdicom concepts).
DEPTH_CODES: dict[str, CodedConcept] = {
    key: CodedConcept(code.value, code.scheme, code.meaning) for key, code in vocabulary.CODES.items()
}

#: Body sites (SNOMED CT, as listed in DICOM CID 4 "Anatomic Region").
BODY_SITE_CODES: dict[str, CodedConcept] = {
    key: CodedConcept(c.value, c.scheme_designator, c.meaning)
    for key, c in {
        "skin": codes.SCT.Skin,
        "face": codes.SCT.Face,
        "head": codes.SCT.Head,
        "neck": codes.SCT.Neck,
        "chest": codes.SCT.Chest,
        "abdomen": codes.SCT.Abdomen,
        "back": codes.SCT.Back,
        "upper_arm": codes.SCT.UpperArm,
        "arm": codes.SCT.UpperLimb,
        "upper_limb": codes.SCT.UpperLimb,
        "elbow": codes.SCT.ElbowJoint,
        "shoulder": codes.SCT.Shoulder,
        "trunk": codes.SCT.Trunk,
        "buttock": codes.SCT.Buttock,
        "finger": codes.SCT.Finger,
        "forearm": codes.SCT.Forearm,
        "hand": codes.SCT.Hand,
        "thigh": codes.SCT.Thigh,
        "knee": codes.SCT.Knee,
        "upper_leg": codes.SCT.Thigh,
        "leg": codes.SCT.LowerLimb,
        "lower_limb": codes.SCT.LowerLimb,
        "lower_leg": codes.SCT.LowerLeg,
        "ankle": codes.SCT.AnkleJoint,
        "foot": codes.SCT.Foot,
        "perineum": codes.SCT.Perineum,
    }.items()
}

# Measurements and evaluations without a standard concept of their own.
PROBABILITY = "probability"
CONCEPT_DEPTH = CodedConcept("burn_depth", LOCAL_SCHEME, "Burn depth")
CONCEPT_CONFIDENCE = CodedConcept("confidence", LOCAL_SCHEME, "Model confidence of burn depth")
CONCEPT_TBSA = CodedConcept("tbsa", LOCAL_SCHEME, "Total body surface area burned")
CONCEPT_FLUID_24H = CodedConcept("parkland_24h", LOCAL_SCHEME, "Parkland fluid estimate, first 24 h")
CONCEPT_FLUID_8H = CodedConcept("parkland_8h", LOCAL_SCHEME, "Parkland fluid estimate, first 8 h")
CONCEPT_REFERRAL = CodedConcept("referral", LOCAL_SCHEME, "Burn centre referral criteria met")
CONCEPT_REVIEW = CodedConcept("review_flag", LOCAL_SCHEME, "Needs clinician review")
CONCEPT_REPORT = CodedConcept("triage_report", LOCAL_SCHEME, "Burn image triage report")
FINDING = CodedConcept(codes.DCM.Finding.value, "DCM", codes.DCM.Finding.meaning)
YES = CodedConcept(codes.SCT.Yes.value, "SCT", codes.SCT.Yes.meaning)
NO = CodedConcept(codes.SCT.No.value, "SCT", codes.SCT.No.meaning)
UNIT_PERCENT = CodedConcept("%", "UCUM", "percent")
UNIT_ML = CodedConcept("mL", "UCUM", "milliliter")


def _normalise(key: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", key.lower()).strip("_")


def depth_concept(label: str, code_map: dict[str, CodedConcept] | None = None) -> CodedConcept:
    """Coded concept of a burn-depth class key (unknown keys get a local code of their own)."""
    table = {**DEPTH_CODES, **(code_map or {})}
    key = _normalise(label)
    if key in table:
        return table[key]
    return CodedConcept(key[:14] or "unknown", LOCAL_SCHEME, label.replace("_", " ")[:64] or "unknown")


def body_site_concept(text: str) -> CodedConcept | None:
    """Coded body site from free text ("Left forearm", "FOREARM", "upper arm"), or None."""
    key = _normalise(text)
    if not key:
        return None
    if key in BODY_SITE_CODES:
        return BODY_SITE_CODES[key]
    for name in sorted(BODY_SITE_CODES, key=len, reverse=True):  # "left_forearm" → forearm
        if name in key.split("_") or key.endswith(name):
            return BODY_SITE_CODES[name]
    return None


#: UID of this implementation (File Meta Information), derived from a fixed UUID: 2.25.<int>.
IMPLEMENTATION_CLASS_UID = (
    f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, 'https://github.com/burnscope/burnscope').int}"
)
IMPLEMENTATION_VERSION_NAME = "BURNSCOPE_01"


def uid_from(name: str) -> str:
    """A UUID-derived UID that is the same for the same ``name`` (UUIDv5 in a burnscope namespace)."""
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, name).int}"


_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/burnscope/burnscope/uids")


def new_uid() -> str:
    """A fresh UUID-derived UID (2.25.<128-bit integer>), needing no registered root."""
    return f"2.25.{uuid.uuid4().int}"
