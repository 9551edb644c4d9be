"""Standards-based renderers (DICOM SR, PDF, Encapsulated PDF, FHIR) for :class:`ReportEmitter`.

Importing this module registers the formats ``sr`` (``.sr.dcm``), ``pdf`` (``.pdf``),
``pdf_dcm`` (``.pdf.dcm``) and ``fhir`` (``.fhir.json``).
"""

from __future__ import annotations

import datetime as _dt
import uuid
from typing import Any

from burnscope.operators.messages import Decision
from burnscope.operators.report import codes as bc
from burnscope.operators.report.core import RENDERERS, ReportBundle

STANDARD_FORMATS = ("sr", "pdf", "pdf_dcm", "fhir")
ALL_FORMATS = ("json", "txt", "sr", "pdf", "pdf_dcm", "fhir", "sc")


def plan_outputs(
    formats: tuple[str, ...], decision: Decision, report: dict[str, Any], state: dict[str, Any]
) -> dict[str, Any]:
    """UIDs and ids of the objects this decision's report will contain.

    Planned before anything is rendered so the JSON report, the SR, the PDF and the FHIR
    Bundle name the same objects. Identifiers are derived from the report's content
    fingerprint (UUIDv5 → ``2.25.…``): running the same images again yields the same SOP
    Instance UIDs and Bundle id, so sinks and the outbox recognise them and nothing is stored
    twice. One SR series and one PDF series per study; a source without a Study Instance UID
    gets a study UID derived from its series (or file), shared by its SR and PDF.
    """
    ctx = decision.finding.context
    out: dict[str, Any] = {}
    if not any(f in STANDARD_FORMATS for f in formats):
        return out
    fingerprint = report["content_sha256"]
    study = ctx.study_instance_uid
    if not study:
        study = bc.uid_from(f"study|{ctx.series_instance_uid or ctx.source}")
        out["study_uid_generated"] = True
    out["study_instance_uid"] = study
    numbers = state.setdefault("instance_numbers", {})
    for kind in ("sr", "pdf_dcm"):
        if kind not in formats:
            continue
        series_uid = bc.uid_from(f"series|{study}|{kind}")
        numbers[series_uid] = numbers.get(series_uid, 0) + 1
        out[kind] = {
            "series_instance_uid": series_uid,
            "sop_instance_uid": bc.uid_from(f"{kind}|{fingerprint}"),
            "instance_number": numbers[series_uid],
        }
    if "fhir" in formats:
        out["fhir"] = {"bundle_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"burnscope:fhir:{fingerprint}"))}
    return out


def _when(report: dict[str, Any]) -> _dt.datetime:
    return _dt.datetime.fromisoformat(report["generated_at"].replace("Z", "+00:00"))


def _render_sr(
    decision: Decision, report: dict[str, Any], bundle: ReportBundle, state: dict[str, Any]
) -> None:
    from burnscope.operators.report.dicom import build_sr, dataset_to_bytes

    outputs = report["outputs"]
    ds = build_sr(decision, report, outputs, when=_when(report), code_map=state.get("code_map"))
    bundle.artefacts[".sr.dcm"] = dataset_to_bytes(ds)
    bundle.deliveries.append({"suffix": ".sr.dcm", "kind": "dicom", "key": outputs["sr"]["sop_instance_uid"]})


def _pdf_bytes(decision: Decision, report: dict[str, Any], bundle: ReportBundle) -> bytes:
    from burnscope.operators.report.pdf import render_pdf

    if ".pdf" not in bundle.artefacts:
        bundle.artefacts.setdefault(".pdf", render_pdf(report, decision.finding.thumbnail))
    return bundle.artefacts[".pdf"]


def _render_pdf(
    decision: Decision, report: dict[str, Any], bundle: ReportBundle, state: dict[str, Any]
) -> None:
    _pdf_bytes(decision, report, bundle)


def _render_pdf_dcm(
    decision: Decision, report: dict[str, Any], bundle: ReportBundle, state: dict[str, Any]
) -> None:
    from burnscope.operators.report.dicom import dataset_to_bytes, render_pdf_dataset

    had_pdf = ".pdf" in bundle.artefacts
    pdf = _pdf_bytes(decision, report, bundle)
    if not had_pdf and "pdf" not in state.get("formats", ()):
        del bundle.artefacts[".pdf"]  # asked for the DICOM wrapper only
    outputs = report["outputs"]
    ds = render_pdf_dataset(decision, report, outputs, pdf, when=_when(report))
    bundle.artefacts[".pdf.dcm"] = dataset_to_bytes(ds)
    bundle.deliveries.append(
        {"suffix": ".pdf.dcm", "kind": "dicom", "key": outputs["pdf_dcm"]["sop_instance_uid"]}
    )


def _render_fhir(
    decision: Decision, report: dict[str, Any], bundle: ReportBundle, state: dict[str, Any]
) -> None:
    from burnscope.operators.report.fhir import DEFAULT_PATIENT_ID_SYSTEM, build_bundle, render_fhir_json

    outputs = report["outputs"]
    fhir_bundle = build_bundle(
        decision,
        report,
        outputs,
        patient_identifier_system=state.get("patient_identifier_system") or DEFAULT_PATIENT_ID_SYSTEM,
        code_map=state.get("code_map"),
    )
    bundle.artefacts[".fhir.json"] = render_fhir_json(fhir_bundle)
    bundle.deliveries.append({"suffix": ".fhir.json", "kind": "fhir", "key": outputs["fhir"]["bundle_id"]})


def _render_sc(
    decision: Decision, report: dict[str, Any], bundle: ReportBundle, state: dict[str, Any]
) -> None:
    from burnscope.operators.report.secondary_capture import render_sc

    render_sc(decision, report, bundle, state)


RENDERERS.update(
    {"sr": _render_sr, "pdf": _render_pdf, "pdf_dcm": _render_pdf_dcm, "fhir": _render_fhir, "sc": _render_sc}
)
