"""A clinician's review of a preliminary report: accept, reject or correct the AI finding.

Pure core (no web, no Holoscan): the review app and the REST API call it, and so can an
integrator's own worklist. One review gives one :class:`ReportBundle` named
``<report stem>_review`` holding

* ``.sr.dcm`` — a new Comprehensive SR, COMPLETE / VERIFIED / FINAL, with the clinician as
  Verifying Observer and the preliminary SR in its Predecessor Documents Sequence;
* ``.fhir.json`` — a transaction Bundle whose DiagnosticReport has status ``final`` (accepted,
  rejected) or ``amended`` (modified) and updates the preliminary DiagnosticReport in place
  (conditional update on its identifier), with the clinician as results interpreter;
* ``.sc.dcm`` — the burned-in Secondary Capture naming the verifier;
* ``.json`` — the review record (schema ``burnscope.review``): outcome, the AI's finding and the
  clinician's, who and when, the UIDs of every object, the verified report, and the feedback
  record.

The **feedback record** (:func:`feedback_record`; schema ``burnscope.feedback``) is what model
monitoring needs and nothing more: outcome, AI label/confidence/probabilities, clinician label,
model and head, time, UIDs — no patient data. The review app appends it to
``feedback.jsonl``.

IHE AI Results (AIR) asks that the clinician's accept / reject / modify of an AI result be
recorded; these are the three ``outcome`` values.
"""

from __future__ import annotations

import datetime as _dt
import json
import uuid
from dataclasses import dataclass
from typing import Any

from burnscope.common.messages import DEMO_BANNER, Decision, Finding, ImageContext, ModelInfo, PatientIdentity
from burnscope.operators.report.core import (
    ReportBundle,
    build_report,
    content_fingerprint,
    label_display,
    render_json,
    utc_now,
)

REVIEW_SCHEMA = "burnscope.review"
FEEDBACK_SCHEMA = "burnscope.feedback"
OUTCOMES = ("accepted", "rejected", "modified")
#: Class keys a clinician may set as the finding.
CLINICIAN_LABELS = (
    "superficial",
    "superficial_partial_thickness",
    "deep_partial_thickness",
    "full_thickness",
    "not_burn",
)
REVIEW_SUFFIX = "_review"
REVIEWED_DISCLAIMER = (
    "Decision support reviewed by a clinician. The burn depth shown is the clinician's; the AI "
    "result it was based on is recorded alongside. TBSA, fluid volumes and referral are computed "
    "from the clinician-entered case data and remain a starting point for clinical judgement."
)


class ReviewError(ValueError):
    """An impossible review (unknown outcome or label, accepting an abstention); ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class Reviewer:
    """Who signs: ``person_name`` in DICOM form (``Family^Given``), shown as ``display``."""

    username: str
    person_name: str
    organization: str = ""

    @property
    def display(self) -> str:
        family, _, given = self.person_name.partition("^")
        return " ".join(x for x in (given.replace("^", " ").strip(), family.strip()) if x) or self.username


def decision_from_report(report: dict[str, Any], *, thumbnail: Any = None) -> Decision:
    """The :class:`Decision` a stored JSON report (schema ``burnscope.report``) was made from."""
    src, fnd, mdl, ds = report["source"], report["finding"], report["model"], report["decision_support"]
    patient = report.get("patient") or {}
    context = ImageContext(
        source=src.get("file") or "",
        sop_instance_uid=src.get("sop_instance_uid") or "",
        sop_class_uid=src.get("sop_class_uid") or "",
        study_instance_uid=src.get("study_instance_uid") or "",
        series_instance_uid=src.get("series_instance_uid") or "",
        frame_number=int(src.get("frame") or 1),
        modality=src.get("modality") or "",
        study_date=src.get("study_date") or "",
        study_description=src.get("study_description") or "",
        series_description=src.get("series_description") or "",
        accession_number=src.get("accession_number") or "",
        body_site=src.get("body_site") or "",
        patient=PatientIdentity(**{k: str(patient.get(k) or "") for k in ("name", "patient_id", "birth_date", "sex")}),
        case=dict(report.get("case") or {}),
    )
    finding = Finding(
        context=context,
        label=fnd["label"],
        probabilities={k: float(v) for k, v in (fnd.get("probabilities") or {}).items() if v is not None},
        confidence=float(fnd.get("confidence") or 0.0),
        abstained=bool(fnd.get("abstained")),
        model=ModelInfo(
            name=mdl.get("name") or "",
            weights=mdl.get("weights") or "",
            demo=bool(mdl.get("demo")),
            backend=mdl.get("backend") or "",
            precision=mdl.get("precision") or "",
            device=mdl.get("device") or "",
        ),
        head=fnd.get("head") or "",
        thumbnail=thumbnail,
    )
    return Decision(
        finding=finding,
        tbsa_percent=ds.get("tbsa_percent"),
        parkland=ds.get("parkland"),
        referral=ds.get("referral"),
        warnings=list(ds.get("warnings") or []),
        missing=list(report.get("missing_inputs") or []),
        details=dict(ds.get("details") or {}),
    )


def clinician_label_for(report: dict[str, Any], outcome: str, label: str | None) -> tuple[str, str | None]:
    """``(outcome, clinician label)`` after the rules: accepting needs a proposed class, modifying
    needs a different known class (the same class is an acceptance), rejecting asserts none."""
    if outcome not in OUTCOMES:
        raise ReviewError("outcome", f"unknown outcome {outcome!r}; expected one of {', '.join(OUTCOMES)}")
    ai = report["finding"]
    if outcome == "rejected":
        return outcome, None
    if outcome == "accepted":
        if ai.get("abstained") or ai["label"] not in CLINICIAN_LABELS:
            raise ReviewError("outcome", "the model proposed no burn depth: correct it (modified) or reject it")
        return outcome, ai["label"]
    if label not in CLINICIAN_LABELS:
        raise ReviewError("finding", f"unknown burn depth {label!r}; expected one of {', '.join(CLINICIAN_LABELS)}")
    if label == ai["label"] and not ai.get("abstained"):
        return "accepted", label
    return outcome, label


def feedback_record(review: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """What model monitoring keeps of a review: no patient data, only UIDs, labels and times."""
    ai = report["finding"]
    return {
        "schema": FEEDBACK_SCHEMA,
        "schema_version": 1,
        "time": review["reviewed_at"],
        "outcome": review["outcome"],
        "ai_label": ai["label"],
        "ai_confidence": ai.get("confidence"),
        "ai_abstained": bool(ai.get("abstained")),
        "ai_probabilities": ai.get("probabilities") or {},
        "clinician_label": review["clinician_label"],
        "reviewer": review["reviewer"],
        "sop_instance_uid": report["source"].get("sop_instance_uid") or "",
        "study_instance_uid": report["source"].get("study_instance_uid") or "",
        "frame": report["source"].get("frame") or 1,
        "preliminary_sr_uid": review.get("preliminary_sr_uid") or "",
        "verified_sr_uid": review.get("verified_sr_uid") or "",
        "report_generated_at": report.get("generated_at"),
        "model": dict(report.get("model") or {}),
        "head": ai.get("head"),
        "demo_model": bool(report.get("demo_model")),
    }


def _fhir_review(
    fhir: dict[str, Any], review: dict[str, Any], preliminary: dict[str, Any], status: str, reviewer: Reviewer
) -> dict[str, Any]:
    """The freshly built Bundle turned into the review's: statuses, interpreter, and an update of
    the preliminary DiagnosticReport (same business identifier) instead of a second report."""
    from fhir.resources.R4B.bundle import Bundle

    prelim_id = ((preliminary.get("outputs") or {}).get("fhir") or {}).get("bundle_id")
    interpreter = {"display": reviewer.display, "identifier": {"system": "urn:burnscope:web-user", "value": reviewer.username}}
    note = f"{review['outcome'].capitalize()} by {reviewer.display} on {review['reviewed_at']}."
    for entry in fhir["entry"]:
        res = entry["resource"]
        if res["resourceType"] == "Observation":
            res["status"] = status
            res.pop("interpretation", None)
            res["performer"] = [interpreter]
            res.setdefault("note", []).insert(0, {"text": note})
        elif res["resourceType"] == "DiagnosticReport":
            res["status"] = status
            res["resultsInterpreter"] = [interpreter]
            original = res.get("conclusion", "")
            banner = DEMO_BANNER + ". " if original.startswith(DEMO_BANNER) else ""
            res["conclusion"] = banner + note + " " + review["conclusion"] + " " + original[len(banner):]
            if prelim_id:
                identifier = f"urn:uuid:{prelim_id}"
                res["identifier"] = [{"system": "urn:ietf:rfc:3986", "value": identifier}]
                entry["request"] = {
                    "method": "PUT",
                    "url": f"DiagnosticReport?identifier=urn:ietf:rfc:3986|{identifier}",
                }
    validated = Bundle.model_validate(fhir)
    return json.loads(validated.model_dump_json(exclude_none=True))


def build_review(
    report: dict[str, Any],
    *,
    stem: str,
    outcome: str,
    reviewer: Reviewer,
    finding: str | None = None,
    case: dict[str, Any] | None = None,
    comment: str = "",
    preliminary_sr: Any = None,
    thumbnail: Any = None,
    default_case: dict[str, Any] | None = None,
    when: _dt.datetime | None = None,
    code_map: dict | None = None,
) -> ReportBundle:
    """The review bundle of ``report`` (a stored ``burnscope.report`` dict); see the module docstring.

    ``case`` (keys of ``burnscope decide``, e.g. the burns marked on the body chart) replaces the
    report's case key by key; TBSA, fluids and referral are recomputed from it with the clinician's
    depth. ``preliminary_sr`` is the pydicom dataset of the preliminary SR, when there is one.
    Raises :class:`ReviewError` or :class:`~burnscope.operators.decision_support.core.CaseError`.
    """
    from burnscope.operators.decision_support.core import DecisionSupport, decide
    from burnscope.operators.report.dicom import Verification, build_sr, dataset_to_bytes
    from burnscope.operators.report.fhir import build_bundle
    from burnscope.operators.report.secondary_capture import render_sc
    from burnscope.operators.report.standards import plan_outputs

    outcome, clinician_label = clinician_label_for(report, outcome, finding)
    merged_case = {**(report.get("case") or {}), **(case or {})}
    decide(merged_case)  # raises CaseError naming the field before anything is built
    when = (when or utc_now()).astimezone(_dt.timezone.utc).replace(microsecond=0)
    reviewed_at = when.isoformat().replace("+00:00", "Z")

    ai = decision_from_report(report, thumbnail=thumbnail)
    ai.finding.context.case = merged_case
    ai.finding.label = clinician_label or "needs_review"
    ai.finding.abstained = clinician_label is None
    decision = DecisionSupport(default_case).decide_one(ai.finding)

    prelim_outputs = report.get("outputs") or {}
    prelim_sr_uid = (prelim_outputs.get("sr") or {}).get("sop_instance_uid") or ""
    ai_display = label_display(report["finding"]["label"])
    clinician_display = label_display(clinician_label) if clinician_label else "AI result rejected (no depth asserted)"
    conclusion = {
        "accepted": f"AI finding accepted: {ai_display}.",
        "modified": f"AI finding corrected from {ai_display} to {clinician_display}.",
        "rejected": f"AI finding ({ai_display}) rejected.",
    }[outcome]
    review: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "outcome": outcome,
        "status": "rejected" if outcome == "rejected" else "verified",
        "reviewed_at": reviewed_at,
        "reviewer": reviewer.username,
        "verifier_display": reviewer.display,
        "verifier_person_name": reviewer.person_name,
        "organization": reviewer.organization,
        "ai_label": report["finding"]["label"],
        "ai_label_display": ai_display,
        "ai_confidence": report["finding"].get("confidence"),
        "clinician_label": clinician_label,
        "clinician_label_display": clinician_display,
        "comment": comment[:1000],
        "conclusion": conclusion + (f" Comment: {comment[:1000]}" if comment else ""),
        "preliminary_report_generated_at": report.get("generated_at"),
        "preliminary_sr_uid": prelim_sr_uid,
        "preliminary_fhir_bundle_id": (prelim_outputs.get("fhir") or {}).get("bundle_id"),
    }

    reviewed = build_report(decision, generated_at=when, generator_version=report["generator"]["version"])
    reviewed["disclaimer"] = REVIEWED_DISCLAIMER
    reviewed["review"] = review
    reviewed["content_sha256"] = content_fingerprint(reviewed)
    state: dict[str, Any] = {"instance_numbers": {}}
    outputs = plan_outputs(("sr", "fhir"), decision, reviewed, state)
    outputs["sr"]["instance_number"] = int((prelim_outputs.get("sr") or {}).get("instance_number") or 0) + 1
    reviewed["outputs"] = outputs
    review["verified_sr_uid"] = outputs["sr"]["sop_instance_uid"]

    bundle = ReportBundle(
        stem=f"{stem}{REVIEW_SUFFIX}",
        artefacts={},
        label=ai.finding.context.label,
        demo=bool(report.get("demo_model")),
        report=reviewed,
        study_instance_uid=outputs["study_instance_uid"],
    )
    verification = Verification(
        observer_name=reviewer.person_name or reviewer.username,
        organization=reviewer.organization or "burnscope review",
        login_name=reviewer.username,
        previous_versions=[preliminary_sr] if preliminary_sr is not None else [],
        notes=[review["conclusion"], f"Verified by {reviewer.display} on {reviewed_at}."],
    )
    sr = build_sr(decision, reviewed, outputs, when=when, code_map=code_map, verification=verification)
    bundle.artefacts[".sr.dcm"] = dataset_to_bytes(sr)
    bundle.deliveries.append({"suffix": ".sr.dcm", "kind": "dicom", "key": outputs["sr"]["sop_instance_uid"]})

    fhir = build_bundle(decision, reviewed, outputs, code_map=code_map)
    status = "amended" if outcome == "modified" else "final"
    fhir = _fhir_review(fhir, review, report, status, reviewer)
    review["fhir_status"] = status
    bundle.artefacts[".fhir.json"] = (json.dumps(fhir, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    bundle.deliveries.append({"suffix": ".fhir.json", "kind": "fhir", "key": outputs["fhir"]["bundle_id"]})

    render_sc(decision, reviewed, bundle, state)
    review["verified_sc_uid"] = reviewed["outputs"]["sc"]["sop_instance_uid"]

    feedback = feedback_record(review, report)
    record = {
        "schema": REVIEW_SCHEMA,
        "schema_version": 1,
        "demo_model": bool(report.get("demo_model")),
        "banner": report.get("banner", ""),
        "review": review,
        "source": report["source"],
        "report": reviewed,
        "feedback": feedback,
    }
    bundle.artefacts = {".json": render_json(record), **bundle.artefacts}
    bundle.report = record
    return bundle


__all__ = [
    "CLINICIAN_LABELS",
    "FEEDBACK_SCHEMA",
    "OUTCOMES",
    "REVIEW_SCHEMA",
    "ReviewError",
    "Reviewer",
    "build_review",
    "clinician_label_for",
    "decision_from_report",
    "feedback_record",
]
