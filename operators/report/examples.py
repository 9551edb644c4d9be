"""A complete example :class:`Decision` for documentation, tests and integrators' dry runs.

The patient is fictitious.
"""

from __future__ import annotations

from typing import Any

from burnscope.operators.messages import Decision, Finding, ImageContext, ModelInfo, PatientIdentity

EXAMPLE_PROBABILITIES = {
    "superficial": 0.05,
    "superficial_partial_thickness": 0.12,
    "deep_partial_thickness": 0.61,
    "full_thickness": 0.17,
    "not_burn": 0.05,
}


def example_decision(
    *,
    source: str = "/data/in/burn_0001.dcm",
    frame: int = 1,
    demo: bool = True,
    abstained: bool = False,
    study_uid: str = "1.2.826.0.1.3680043.8.498.11",
    series_uid: str = "1.2.826.0.1.3680043.8.498.12",
    sop_uid: str = "1.2.826.0.1.3680043.8.498.13",
    patient: PatientIdentity | None = None,
    thumbnail: Any = None,
    **decision_fields: Any,
) -> Decision:
    """A deep partial-thickness finding with TBSA, Parkland and referral filled in."""
    context = ImageContext(
        source=source,
        sop_instance_uid=sop_uid,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.77.1.4",  # VL Photographic Image Storage
        study_instance_uid=study_uid,
        series_instance_uid=series_uid,
        frame_number=frame,
        modality="XC",
        study_date="20260101",
        study_description="Burn photography",
        series_description="Left forearm",
        accession_number="ACC0001",
        body_site="Forearm",
        patient=(
            PatientIdentity(name="Doe^Jane", patient_id="PID-0001", birth_date="19800101", sex="F")
            if patient is None
            else patient
        ),
        case={"age_years": 45, "weight_kg": 70.0, "hours_since_injury": 2.0},
    )
    probabilities = dict(EXAMPLE_PROBABILITIES)
    finding = Finding(
        context=context,
        label="needs_review" if abstained else "deep_partial_thickness",
        probabilities=probabilities,
        confidence=0.35 if abstained else 0.61,
        abstained=abstained,
        model=ModelInfo(
            name="BiomedCLIP ViT-B/16",
            weights="demo (seeded random)" if demo else "/models/biomedclip",
            demo=demo,
            backend="onnxruntime",
            precision="fp32",
            device="cpu",
        ),
        head="zero-shot",
        thumbnail=thumbnail,
    )
    fields: dict[str, Any] = {
        "tbsa_percent": 12.0,
        "parkland": {
            "ml_per_kg_per_percent": 4.0,
            "total_ml_24h": 3360.0,
            "first_8h_ml": 1680.0,
            "next_16h_ml": 1680.0,
            "remaining_first_window_ml": 1680.0,
            "rate_now_ml_per_h": 280.0,
            "first_8h_rate_ml_per_h": 210.0,
            "next_16h_rate_ml_per_h": 105.0,
        },
        "referral": {
            "recommended": True,
            "level": "refer",
            "criteria": ["Partial-thickness burns ≥ 10% TBSA (12.0%)"],
            "criteria_ids": ["partial_thickness_10pct"],
        },
        "warnings": [],
        "missing": [],
    }
    fields.update(decision_fields)
    return Decision(finding=finding, **fields)
