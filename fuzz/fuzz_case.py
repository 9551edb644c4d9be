"""Fuzz case data: ``--case`` / ``burnscope decide`` JSON and the sidecar reader.

Input: a case as JSON text, or a case value built from the bytes. Pass:

* ``decide(case)`` returns or raises ``CaseError`` (a ``ValueError`` naming the field);
* the same bytes as a ``case.json`` sidecar: ``_Sidecars.case_for`` never raises (a bad
  sidecar is ignored), and ``DecisionSupport`` turns the resulting case into a decision for a
  finding without raising (bad case data becomes a warning), with or without an image depth.
"""

from __future__ import annotations

import atheris

with atheris.instrument_imports(include=["burnscope"]):
    from burnscope.common.messages import Finding, ImageContext, ModelInfo
    from burnscope.operators.decision_support.core import CaseError, DecisionSupport, decide
    from burnscope.operators.dicom_loader.context import CASE_SIDECAR, _Sidecars

import _harness

KEYS = (
    "age_years", "weight_kg", "hours_since_injury", "mechanism", "inhalation_injury", "method", "burns",
    "region", "depth", "fraction", "palms", "special_areas", "formula", "electrical", "chemical", "comorbidities",
    "lund_browder", "rule_of_nines", "palm", "parkland", "modified_brooke", "galveston", "head", "anterior_trunk",
    "left_hand", "hands", "face", "perineum", "superficial_partial_thickness", "deep_partial_thickness",
    "full_thickness", "superficial", "flame", "scald", "electrical_high_voltage", "fluids_given_ml", "sex",
)
WORK = _harness.workdir("case")
IMAGE = WORK / "study" / "IMG-0001.dcm"
IMAGE.parent.mkdir(parents=True, exist_ok=True)
MODEL = ModelInfo(name="fuzz", weights="none", demo=True)
LABELS = ("full_thickness", "superficial_partial_thickness", "needs_review", "no_burn")


def TestOneInput(data: bytes) -> None:
    try:
        text, case = _harness.json_input(data, KEYS)
    except ValueError:
        text, case = data[1:].decode("utf-8", "replace"), None
    if case is not None:
        try:
            decide(case)
        except CaseError:
            pass
    (IMAGE.parent / CASE_SIDECAR).write_text(text, encoding="utf-8")
    sidecar_case = _Sidecars().case_for(IMAGE, IMAGE.parent)
    label = LABELS[len(data) % len(LABELS)]
    for body_site in ("left hand", ""):
        finding = Finding(
            context=ImageContext(source=str(IMAGE), body_site=body_site, case=sidecar_case),
            label=label, probabilities={label: 1.0}, confidence=1.0, abstained=label == "needs_review", model=MODEL,
        )
        DecisionSupport({"weight_kg": 70})(finding for finding in [finding])


if __name__ == "__main__":
    _harness.quiet()
    _harness.main(TestOneInput)
