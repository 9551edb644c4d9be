"""What a clinician reads: report values as words and quantities with units.

One place turns the report dict (:func:`~burnscope.operators.report.core.build_report`) into
display text, so the text report, the PDF and any viewer say the same thing: names as
``FAMILY, Given Middle``, dates as ISO 8601 (or a site's ``strftime`` pattern), referral levels
and criteria as sentences, every quantity with its unit (mL, mL/h, %TBSA), the fluid plan
explained row by row, and the urine-output target.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from burnscope.common.clinical import LEVEL_CONSULT, LEVEL_NONE, LEVEL_TRANSFER

NOT_AVAILABLE = "not available"
DEFAULT_DATE_FORMAT = "%Y-%m-%d"

REFERRAL_LEVEL_TEXT = {
    LEVEL_TRANSFER: "Immediate burn-centre consultation; consider transfer",
    LEVEL_CONSULT: "Burn-centre consultation recommended",
    LEVEL_NONE: "No burn-centre referral criterion met",
}
FORMULA_TEXT = {"parkland": "Parkland", "modified_brooke": "Modified Brooke"}
SEX_TEXT = {"F": "female", "M": "male", "O": "other"}
CHART_TEXT = {
    "rule_of_nines_adult": "Rule of Nines (adult)",
    "rule_of_nines_child": "Rule of Nines (child)",
    "palm": "palm method (1% per palm)",
}


#: Why an image was STAT, as a clinician reads it (keys: ``ImageContext.priority_reason``).
PRIORITY_REASON_TEXT = {
    "dimse_priority_high": "sent with DICOM priority HIGH",
    "calling_aet": "sent by an emergency source",
    "sidecar": "marked STAT in its case data",
}


def priority_text(report: dict[str, Any]) -> str | None:
    """``"STAT - handled in the emergency lane (sent with DICOM priority HIGH)"``, or None for a
    routine report."""
    priority = report.get("priority") or {}
    if priority.get("level") != "stat":
        return None
    reason = priority.get("reason", "")
    why = PRIORITY_REASON_TEXT.get(reason) or (
        f"its {reason.split(':', 1)[1]} says so" if reason.startswith("attribute:") else "")
    return "STAT - handled in the emergency lane" + (f" ({why})" if why else "")


def person_name(value: str) -> str:
    """DICOM PN ``Family^Given^Middle^Prefix^Suffix`` → ``Family, Prefix Given Middle Suffix``."""
    if not value:
        return NOT_AVAILABLE
    alphabetic = value.split("=", 1)[0]  # the alphabetic representation, not ideographic/phonetic
    family, given, middle, prefix, suffix = (alphabetic.split("^") + [""] * 5)[:5]
    rest = " ".join(p.strip() for p in (prefix, given, middle, suffix) if p.strip())
    family = family.strip()
    return f"{family}, {rest}" if family and rest else (family or rest or NOT_AVAILABLE)


def display_date(value: str, date_format: str = DEFAULT_DATE_FORMAT) -> str:
    """DICOM DA ``YYYYMMDD`` → ``date_format`` (ISO by default); anything else is shown as given."""
    text = (value or "").strip()
    if not text:
        return NOT_AVAILABLE
    try:
        return _dt.datetime.strptime(text, "%Y%m%d").strftime(date_format)
    except ValueError:
        return text


def display_timestamp(value: str) -> str:
    """An ISO 8601 UTC timestamp (``2026-01-01T09:30:00Z``) → ``2026-01-01 09:30 UTC``."""
    try:
        when = _dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(_dt.timezone.utc)
    except (AttributeError, ValueError):
        return value or NOT_AVAILABLE
    return when.strftime("%Y-%m-%d %H:%M UTC")


def millilitres(value: float | None) -> str:
    return NOT_AVAILABLE if value is None else f"{value:,.0f} mL"


def rate(value: float | None) -> str:
    return NOT_AVAILABLE if value is None else f"{value:,.0f} mL/h"


def percent_tbsa(value: float | None) -> str:
    return NOT_AVAILABLE if value is None else f"{value:.1f} %TBSA"


def patient_rows(report: dict[str, Any], date_format: str = DEFAULT_DATE_FORMAT) -> list[tuple[str, str]]:
    patient = report["patient"]
    return [
        ("Name", person_name(patient.get("name", ""))),
        ("Patient ID", patient.get("patient_id") or NOT_AVAILABLE),
        ("Birth date", display_date(patient.get("birth_date", ""), date_format)),
        ("Sex", SEX_TEXT.get((patient.get("sex") or "").upper(), patient.get("sex") or NOT_AVAILABLE)),
    ]


def fluid_rows(decision_support: dict[str, Any]) -> list[tuple[str, str]]:
    """The fluid plan, one quantity per row, counted from the time of injury; [] without a plan."""
    plan = decision_support.get("parkland")
    details = decision_support.get("details") or {}
    if not plan:
        return []
    formula = FORMULA_TEXT.get(details.get("fluid_formula", "parkland"), details.get("fluid_formula", ""))
    rows = [
        ("Formula", f"{formula}: {plan['ml_per_kg_per_percent']:g} mL × kg × %TBSA over the first 24 h from injury"),
        ("Total, first 24 h", millilitres(plan["total_ml_24h"])),
        ("First 8 h from injury", f"{millilitres(plan['first_8h_ml'])} (average {rate(plan['first_8h_rate_ml_per_h'])})"),
        ("Hours 8 to 24", f"{millilitres(plan['next_16h_ml'])} (average {rate(plan['next_16h_rate_ml_per_h'])})"),
    ]
    if plan.get("rate_now_ml_per_h") is not None:
        rows += [
            ("Still due in the first 8 h", millilitres(plan["remaining_first_window_ml"])),
            ("Starting rate now", f"{rate(plan['rate_now_ml_per_h'])} (delivers what is still due on time; "
                                  "titrate to urine output)"),
        ]
    elif plan.get("remaining_first_window_ml") is None:
        rows.append(("Starting rate now", "not available (time of injury not given)"))
    else:
        rows.append(("Starting rate now", "none: the formula's 24 h from injury have passed"))
    return rows


def urine_output_text(decision_support: dict[str, Any]) -> str | None:
    target = (decision_support.get("details") or {}).get("urine_output_target")
    if not target:
        return None
    return f"{target['ml_per_h']:,.0f} mL/h ({target['ml_per_kg_per_h']:g} mL/kg/h)"


def referral_rows(decision_support: dict[str, Any]) -> list[tuple[str, str]]:
    referral = decision_support.get("referral")
    if not referral:
        return [("Burn-centre referral", NOT_AVAILABLE)]
    rows = [("Burn-centre referral", REFERRAL_LEVEL_TEXT.get(referral["level"], referral["level"]))]
    rows += [("Criterion met", text) for text in referral.get("criteria") or []]
    return rows


def decision_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """Decision support as label/value rows: extent, fluids, urine output, referral, warnings."""
    ds = report["decision_support"]
    details = ds.get("details") or {}
    chart = details.get("chart")
    extent = percent_tbsa(ds.get("tbsa_percent"))
    if ds.get("tbsa_percent") is not None and chart:
        extent += f" ({_chart_text(chart)}; partial- and full-thickness only)"
    rows = [("Burned area (TBSA)", extent)]
    fluids = fluid_rows(ds)
    rows += fluids or [("Fluids", "no formula plan (see warnings)" if ds.get("tbsa_percent") is not None
                        else NOT_AVAILABLE)]
    urine = urine_output_text(ds)
    if urine:
        rows.append(("Urine-output target", urine))
    rows += referral_rows(ds)
    banner = report.get("banner")
    rows += [("Warning", w) for w in ds.get("warnings") or [] if w != banner]  # the banner is shown apart
    missing = list(report.get("missing_inputs") or []) + [f"{m} (image context)" for m in report.get("missing_context") or []]
    rows.append(("Not given", ", ".join(m.replace("_", " ") for m in missing) if missing else "nothing"))
    return rows


def _chart_text(chart: str) -> str:
    if chart.startswith("lund_browder_"):
        return f"Lund–Browder, age band {chart.removeprefix('lund_browder_').replace('_', ' ')}"
    return CHART_TEXT.get(chart, chart.replace("_", " "))


__all__ = [
    "DEFAULT_DATE_FORMAT", "NOT_AVAILABLE", "REFERRAL_LEVEL_TEXT", "decision_rows", "display_date",
    "display_timestamp", "fluid_rows", "millilitres", "patient_rows", "percent_tbsa", "person_name", "rate",
    "referral_rows", "urine_output_text",
]
