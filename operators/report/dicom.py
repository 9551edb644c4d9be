"""DICOM outputs: Comprehensive SR (TID 1500, highdicom) and Encapsulated PDF (pydicom).

Both objects join the source image's study (same Study Instance UID, patient and study
attributes copied from the source context), each in a series of its own. They are
preliminary machine output: SR ``CompletionFlag`` PARTIAL, ``VerificationFlag`` UNVERIFIED,
``PreliminaryFlag`` PRELIMINARY. UIDs are UUID-derived (``2.25.…``), so no registered root is
needed. When the source lacks context (no study UID, no patient) the objects are still valid:
a new study UID is generated, the patient attributes are left empty (they are type 2), and the
gaps are stated in the content.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

import highdicom as hd
from highdicom.sr import (
    AlgorithmIdentification,
    CodedConcept,
    ComprehensiveSR,
    ContainerContentItem,
    ContentSequence,
    DeviceObserverIdentifyingAttributes,
    FindingSite,
    Measurement,
    MeasurementReport,
    MeasurementsAndQualitativeEvaluations,
    ObservationContext,
    ObserverContext,
    PersonObserverIdentifyingAttributes,
    QualitativeEvaluation,
    RelationshipTypeValues,
    SourceImageForMeasurementGroup,
    TextContentItem,
    TrackingIdentifier,
)
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian

from burnscope.common.messages import DEMO_BANNER, Decision
from burnscope.common.vocabulary import NEEDS_REVIEW
from burnscope.operators.report import codes as bc

ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"
MANUFACTURER = "burnscope"
#: Series numbers of the generated series (high, so that they sort after acquired series).
SR_SERIES_NUMBER = 901
PDF_SERIES_NUMBER = 902


def _lo(text: str, limit: int = 64) -> str:
    """Fit a value into a LO/SH-sized element (no backslash: it separates values)."""
    text = (text or "").replace("\\", "/")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _person_name(name: str) -> str:
    """PN values are at most 64 characters per component group; longer ones are cut, so that
    pydicom never has to warn (and quote the name) about the length."""
    return "=".join(group[:64] for group in (name or "").split("="))


def _dicom_date(value: str) -> str:
    """A DA value (YYYYMMDD) from common spellings (1980-01-01, 1980/01/01, 1980.01.01);
    anything else becomes empty rather than an invalid DA that validators reject and pydicom
    quotes in its warnings."""
    text = (value or "").strip()
    digits = text.replace("-", "").replace("/", "").replace(".", "")
    if len(digits) == 8 and digits.isdigit():
        try:
            _dt.datetime.strptime(digits, "%Y%m%d")
            return digits
        except ValueError:
            pass
    return ""


def _study_attrs(decision: Decision, outputs: dict[str, Any], when: _dt.datetime) -> dict[str, Any]:
    ctx = decision.finding.context
    patient = ctx.patient
    return {
        "PatientName": _person_name(patient.name),
        "PatientID": patient.patient_id or "",
        "PatientBirthDate": _dicom_date(patient.birth_date),
        "PatientSex": patient.sex if patient.sex in ("M", "F", "O") else "",
        "StudyInstanceUID": outputs["study_instance_uid"],
        # A generated study has no date of its own: use the report date (type 2 allows empty,
        # but a date helps a PACS list it).
        "StudyDate": ctx.study_date
        or ("" if not outputs.get("study_uid_generated") else when.strftime("%Y%m%d")),
        "StudyTime": "" if ctx.study_date else when.strftime("%H%M%S"),
        "AccessionNumber": _lo(ctx.accession_number, 16),
        "StudyID": "",
        "ReferringPhysicianName": "",
    }


def _evidence(decision: Decision, outputs: dict[str, Any], when: _dt.datetime) -> tuple[Dataset, bool]:
    """A dataset standing in for the source image (highdicom copies patient/study from it)."""
    ctx = decision.finding.context
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    for key, value in _study_attrs(decision, outputs, when).items():
        setattr(ds, key, value)
    referenced = bool(
        ctx.sop_instance_uid
        and ctx.sop_class_uid
        and ctx.series_instance_uid
        and not outputs.get("study_uid_generated")
    )
    ds.SOPClassUID = ctx.sop_class_uid or "1.2.840.10008.5.1.4.1.1.77.1.4"
    ds.SOPInstanceUID = ctx.sop_instance_uid or bc.new_uid()
    ds.SeriesInstanceUID = ctx.series_instance_uid or bc.new_uid()
    ds.Modality = ctx.modality or "XC"
    return ds, referenced


def _local_scheme_identification() -> Dataset:
    """SOP Common's description of the private coding scheme the objects use."""
    item = Dataset()
    item.CodingSchemeDesignator = bc.LOCAL_SCHEME
    item.CodingSchemeName = bc.LOCAL_SCHEME_NAME
    item.CodingSchemeResponsibleOrganization = "burnscope project"
    return item


def _gaps_text(report: dict[str, Any]) -> list[str]:
    gaps = [f"missing input: {m}" for m in report.get("missing_inputs", [])]
    gaps += [f"missing image context: {m}" for m in report.get("missing_context", [])]
    return gaps


@dataclass
class Verification:
    """A clinician's sign-off, which makes :func:`build_sr` write a verified, final document.

    ``observer_name`` is a DICOM person name (``Family^Given``); ``previous_versions`` are the
    documents it supersedes (the preliminary SR), listed in the Predecessor Documents Sequence.
    """

    observer_name: str
    organization: str
    login_name: str = ""
    previous_versions: list[Dataset] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def build_sr(
    decision: Decision,
    report: dict[str, Any],
    outputs: dict[str, Any],
    *,
    when: _dt.datetime,
    code_map: dict[str, CodedConcept] | None = None,
    verification: Verification | None = None,
) -> Dataset:
    """Comprehensive SR (TID 1500 Measurement Report) of one decision.

    Machine output is PARTIAL / UNVERIFIED / PRELIMINARY; with ``verification`` the document is
    COMPLETE / VERIFIED / FINAL, names the verifying observer (header and observation context)
    and references the documents it supersedes."""
    finding = decision.finding
    ctx = finding.context
    model = finding.model
    sr_ids = outputs["sr"]
    evidence, referenced = _evidence(decision, outputs, when)

    observer = ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=bc.IMPLEMENTATION_CLASS_UID,
            name="burnscope",
            manufacturer_name=MANUFACTURER,
            model_name=_lo(model.name),
        ),
    )
    algorithm = AlgorithmIdentification(
        name=_lo(model.name + (" (DEMO, random weights)" if model.demo else "")),
        version=_lo(report["generator"]["version"]),
        parameters=[
            _lo(p)
            for p in (
                f"weights={model.weights}",
                f"backend={model.backend or 'unknown'}",
                f"precision={model.precision}",
                f"device={model.device}",
                f"head={finding.head}",
            )
        ],
    )
    measurements: list[Measurement] = []
    for key, p in report["finding"]["probabilities"].items():
        if p is None:
            continue
        depth = bc.depth_concept(key, code_map)
        measurements.append(
            Measurement(
                name=CodedConcept(
                    f"p_{depth.value}"[:16], bc.LOCAL_SCHEME, _lo(f"Probability of {depth.meaning}")
                ),
                value=round(float(p) * 100.0, 4),
                unit=bc.UNIT_PERCENT,
            )
        )
    if report["finding"]["confidence"] is not None:
        measurements.append(
            Measurement(
                name=bc.CONCEPT_CONFIDENCE,
                value=round(report["finding"]["confidence"] * 100.0, 4),
                unit=bc.UNIT_PERCENT,
            )
        )
    ds_block = report["decision_support"]
    if ds_block["tbsa_percent"] is not None:
        measurements.append(
            Measurement(name=bc.CONCEPT_TBSA, value=float(ds_block["tbsa_percent"]), unit=bc.UNIT_PERCENT)
        )
    plan = decision.parkland
    if plan is not None:
        for concept, value in ((bc.CONCEPT_FLUID_24H, plan.total_ml_24h), (bc.CONCEPT_FLUID_8H, plan.first_8h_ml)):
            measurements.append(Measurement(name=concept, value=float(value), unit=bc.UNIT_ML))

    depth_value = bc.depth_concept(NEEDS_REVIEW if finding.abstained else finding.label, code_map)
    evaluations = [
        QualitativeEvaluation(name=bc.CONCEPT_DEPTH, value=depth_value),
        QualitativeEvaluation(
            name=bc.CONCEPT_REVIEW, value=bc.YES if finding.abstained and verification is None else bc.NO
        ),
    ]
    if decision.referral is not None:
        refer = decision.referral.recommended
        evaluations.append(QualitativeEvaluation(name=bc.CONCEPT_REFERRAL, value=bc.YES if refer else bc.NO))

    site = bc.body_site_concept(ctx.body_site)
    group = MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(
            uid=bc.new_uid(), identifier=_lo(f"burn finding {report['source']['frame']}")
        ),
        finding_type=bc.SCT_BURN,
        algorithm_id=algorithm,
        finding_sites=[FindingSite(anatomic_location=site)] if site is not None else None,
        measurements=measurements,
        qualitative_evaluations=evaluations,
        source_images=(
            [
                SourceImageForMeasurementGroup(
                    referenced_sop_class_uid=ctx.sop_class_uid,
                    referenced_sop_instance_uid=ctx.sop_instance_uid,
                    referenced_frame_numbers=(
                        [int(ctx.frame_number)] if ctx.frame_number and ctx.frame_number > 1 else None
                    ),
                )
            ]
            if referenced
            else None
        ),
    )
    content = MeasurementReport(
        observation_context=ObservationContext(
            observer_person_context=(
                ObserverContext(
                    observer_type=codes.DCM.Person,
                    observer_identifying_attributes=PersonObserverIdentifyingAttributes(
                        name=_person_name(verification.observer_name),
                        login_name=_lo(verification.login_name) or None,
                        organization_name=_lo(verification.organization) or None,
                    ),
                )
                if verification is not None
                else None
            ),
            observer_device_context=observer,
        ),
        procedure_reported=codes.SCT.PhotographyOfPatient,
        imaging_measurements=[group],
        title=codes.DCM.ImagingMeasurementReport,
    )
    notes = ([DEMO_BANNER] if model.demo else []) + (verification.notes if verification else [])
    notes += _gaps_text(report) + list(ds_block["warnings"])
    notes.append(report["disclaimer"])
    notes = list(dict.fromkeys(notes))  # decision support repeats the demo banner among its warnings
    # TID 1500 row "Qualitative Evaluations": free-text notes a reader must see (demo model,
    # missing inputs or context, warnings, disclaimer).
    notes_container = ContainerContentItem(
        name=CodedConcept("C0034375", "UMLS", "Qualitative Evaluations"),  # TID 1500 row 12
        relationship_type=RelationshipTypeValues.CONTAINS,
    )
    notes_container.ContentSequence = ContentSequence(
        [
            TextContentItem(
                name=codes.DCM.Comment, value=note[:1024], relationship_type=RelationshipTypeValues.CONTAINS
            )
            for note in notes
        ]
    )
    content[0].ContentSequence.append(notes_container)
    description = (
        DEMO_BANNER
        if model.demo
        else "burnscope burn triage (" + ("verified" if verification else "preliminary") + ")"
    )
    signed = verification is not None
    sr = ComprehensiveSR(
        evidence=[evidence],
        content=content[0],
        series_instance_uid=sr_ids["series_instance_uid"],
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=sr_ids["sop_instance_uid"],
        instance_number=sr_ids["instance_number"],
        manufacturer=MANUFACTURER,
        is_complete=signed,
        is_final=signed,
        is_verified=signed,
        verifying_observer_name=_person_name(verification.observer_name) if signed else None,
        verifying_organization=_lo(verification.organization) if signed else None,
        previous_versions=(verification.previous_versions or None) if signed else None,
        record_evidence=referenced,
        series_description=_lo(description),
        content_date=when.strftime("%Y%m%d"),
        content_time=when.strftime("%H%M%S"),
    )
    sr.SoftwareVersions = _lo(report["generator"]["version"])
    if not referenced:
        # The stand-in evidence names no real instance: do not list it as evidence.
        for keyword in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
            if keyword in sr:
                delattr(sr, keyword)
    sr.CodingSchemeIdentificationSequence = [_local_scheme_identification()]
    return sr


def render_pdf_dataset(
    decision: Decision,
    report: dict[str, Any],
    outputs: dict[str, Any],
    pdf_bytes: bytes,
    *,
    when: _dt.datetime,
) -> Dataset:
    """Encapsulated PDF Storage instance wrapping ``pdf_bytes`` (same study, own series)."""
    ctx = decision.finding.context
    ids = outputs["pdf_dcm"]
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = ENCAPSULATED_PDF_STORAGE
    ds.SOPInstanceUID = ids["sop_instance_uid"]
    ds.InstanceCreationDate = when.strftime("%Y%m%d")
    ds.InstanceCreationTime = when.strftime("%H%M%S")
    for key, value in _study_attrs(decision, outputs, when).items():
        setattr(ds, key, value)
    # Encapsulated Document Series
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = ids["series_instance_uid"]
    ds.SeriesNumber = PDF_SERIES_NUMBER
    ds.SeriesDescription = _lo(
        DEMO_BANNER if decision.finding.model.demo else "burnscope burn triage report (PDF)"
    )
    # General Equipment + SC Equipment
    ds.Manufacturer = MANUFACTURER
    ds.SoftwareVersions = _lo(report["generator"]["version"])
    ds.ConversionType = "WSD"  # workstation: the document was produced by software
    # Encapsulated Document
    ds.InstanceNumber = ids["instance_number"]
    ds.ContentDate = when.strftime("%Y%m%d")
    ds.ContentTime = when.strftime("%H%M%S")
    ds.AcquisitionDateTime = when.strftime("%Y%m%d%H%M%S")
    ds.BurnedInAnnotation = "YES"  # the PDF shows patient identity
    ds.RecognizableVisualFeatures = "YES" if decision.finding.thumbnail is not None else "NO"
    ds.DocumentTitle = _lo("Burn image triage report (preliminary)")
    concept = Dataset()
    concept.CodeValue = bc.CONCEPT_REPORT.value
    concept.CodingSchemeDesignator = bc.CONCEPT_REPORT.scheme_designator
    concept.CodeMeaning = bc.CONCEPT_REPORT.meaning
    ds.ConceptNameCodeSequence = [concept]
    if ctx.sop_instance_uid and ctx.sop_class_uid and not outputs.get("study_uid_generated"):
        source = Dataset()
        source.ReferencedSOPClassUID = ctx.sop_class_uid
        source.ReferencedSOPInstanceUID = ctx.sop_instance_uid
        ds.SourceInstanceSequence = [source]
    ds.CodingSchemeIdentificationSequence = [_local_scheme_identification()]
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = len(pdf_bytes)
    # OB values have even length; the declared length above keeps the exact size.
    ds.EncapsulatedDocument = pdf_bytes + (b"\x00" if len(pdf_bytes) % 2 else b"")
    return ds


def dataset_to_bytes(ds: Dataset) -> bytes:
    """Part 10 file bytes (explicit VR little endian) with burnscope's implementation UID."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = bc.IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = bc.IMPLEMENTATION_VERSION_NAME
    ds.file_meta = meta
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True, little_endian=True, implicit_vr=False)
    return buffer.getvalue()


__all__ = ["Verification", "build_sr", "render_pdf_dataset", "dataset_to_bytes", "ENCAPSULATED_PDF_STORAGE", "hd"]
