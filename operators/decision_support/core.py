"""Clinical decision support for burns: TBSA, fluid resuscitation, burn-centre referral.

Pure, deterministic functions (no Holoscan, no torch), each rule citing its source in
``docs/clinical.md``. They support trained clinicians; they do not diagnose.

Entry points:

* :func:`decide` — one case dictionary (keys as ``burnscope decide`` reads them) → results.
* :func:`decide_for_finding` — an image finding (depth label, body site) combined with whatever
  case data came with the image; lists what is missing instead of guessing.

Bad input raises :class:`CaseError` (a ``ValueError``) whose ``field`` names the offending key.
"""

from __future__ import annotations

import math
import re
from typing import Any, Iterable, Mapping

from burnscope.common.clinical import LEVEL_CONSULT, LEVEL_NONE, LEVEL_TRANSFER, FluidPlan, Referral
from burnscope.common.messages import Decision, Finding
from burnscope.common.vocabulary import COUNTED_DEPTHS, DEEP_DEPTHS, DEPTHS, NEEDS_REVIEW, PARTIAL_DEPTHS

# --------------------------------------------------------------------------------------------
# Vocabulary (burn depths: burnscope.common.vocabulary; referral levels: burnscope.common.clinical)
# --------------------------------------------------------------------------------------------

MECHANISMS = ("thermal", "electrical", "chemical", "radiation")
METHODS = ("rule_of_nines", "lund_browder", "palm")
FORMULAS = {"parkland": 4.0, "modified_brooke": 2.0}  # mL per kg per %TBSA over 24 h

# --------------------------------------------------------------------------------------------
# Charts (percent of total body surface area of each whole region)
# --------------------------------------------------------------------------------------------

#: Wallace's Rule of Nines, adult chart.
RULE_OF_NINES_ADULT: dict[str, float] = {
    "head_neck": 9.0,
    "anterior_trunk": 18.0,
    "posterior_trunk": 18.0,
    "left_arm": 9.0,
    "right_arm": 9.0,
    "left_leg": 18.0,
    "right_leg": 18.0,
    "perineum": 1.0,
}
#: Paediatric Rule of Nines: head 18%, each leg 14% as usually quoted; here 13.5% so that the
#: chart sums to 100% with the perineum's 1% (see docs/clinical.md).
RULE_OF_NINES_CHILD: dict[str, float] = {
    **RULE_OF_NINES_ADULT,
    "head_neck": 18.0,
    "left_leg": 13.5,
    "right_leg": 13.5,
}
#: Below this age the child Rule-of-Nines chart is used (head ≥ 13% in Lund–Browder up to age 9).
RULE_OF_NINES_CHILD_BELOW_AGE = 10.0

#: Lund & Browder (1944): regions whose share does not change with age.
_LB_FIXED: dict[str, float] = {
    "neck": 2.0,
    "anterior_trunk": 13.0,
    "posterior_trunk": 13.0,
    "left_buttock": 2.5,
    "right_buttock": 2.5,
    "genitalia": 1.0,
    "left_upper_arm": 4.0,
    "right_upper_arm": 4.0,
    "left_lower_arm": 3.0,
    "right_lower_arm": 3.0,
    "left_hand": 2.5,
    "right_hand": 2.5,
    "left_foot": 3.5,
    "right_foot": 3.5,
}
#: Lund & Browder age-dependent halves: A = ½ head, B = ½ one thigh, C = ½ one lower leg.
#: Columns: (band key, lower age bound in years, A, B, C).
_LB_AGE_BANDS: tuple[tuple[str, float, float, float, float], ...] = (
    ("under_1", 0.0, 9.5, 2.75, 2.5),
    ("1_to_4", 1.0, 8.5, 3.25, 2.5),
    ("5_to_9", 5.0, 6.5, 4.0, 2.75),
    ("10_to_14", 10.0, 5.5, 4.25, 3.0),
    ("15", 15.0, 4.5, 4.5, 3.25),
    ("adult", 16.0, 3.5, 4.75, 3.5),
)

#: Each of the patient's palms (with fingers) ≈ 1% TBSA.
PALM_PERCENT = 1.0

# --------------------------------------------------------------------------------------------
# Thresholds (docs/clinical.md, "Fluids")
# --------------------------------------------------------------------------------------------

#: Formal IV resuscitation from these burn sizes (%TBSA, partial + full thickness).
RESUSCITATION_THRESHOLD_ADULT = 20.0
RESUSCITATION_THRESHOLD_CHILD = 10.0
#: Paediatric (ABA referral guideline: ≤ 14 years or < 30 kg): younger than 15 years, or lighter than 30 kg.
PAEDIATRIC_AGE_BELOW = 15.0
PAEDIATRIC_WEIGHT_BELOW_KG = 30.0
URINE_TARGET_ADULT_ML_PER_KG_H = 0.5
URINE_TARGET_CHILD_ML_PER_KG_H = 1.0
#: ABA referral: partial-thickness burns of at least this %TBSA.
REFERRAL_PARTIAL_TBSA = 10.0
HIGH_VOLTAGE_V = 1000.0

#: Special areas of the ABA referral criteria.
SPECIAL_AREAS = ("face", "hands", "feet", "genitalia", "perineum", "major_joints")
_SPECIAL_AREA_OF_REGION = {
    "head_neck": "face",
    "head": "face",
    "perineum": "perineum",
    "genitalia": "genitalia",
    "left_hand": "hands",
    "right_hand": "hands",
    "left_foot": "feet",
    "right_foot": "feet",
}
#: Free-text body sites (DICOM Anatomic Region code meanings, sidecar text) → special area.
#: Whole-word matches ("forearm" must not match "ear"); the head counts as face (over-referral
#: is the safer error).
_SPECIAL_AREA_PATTERNS = tuple(
    (area, re.compile(pattern, re.IGNORECASE))
    for area, pattern in (
        ("face", r"\b(face|facial|head|cheeks?|forehead|nose|nasal|ears?|eyes?|eyelids?|lips?|chin|mouth)\b"),
        ("hands", r"\b(hands?|fingers?|thumbs?|palms?|wrists?|manus)\b"),
        ("feet", r"\b(foot|feet|toes?|heels?|ankles?|soles?)\b"),
        ("genitalia", r"\b(genital\w*|penis|scrotum|vulva)\b"),
        ("perineum", r"\b(perine\w*|perianal)\b"),
        ("major_joints", r"\b(elbows?|knees?|shoulders?|hips?|axilla\w*|joints?)\b"),
    )
)

# Case keys this module reads (anything else is passed over, not an error).
CASE_KEYS = (
    "age_years",
    "weight_kg",
    "hours_since_injury",
    "mechanism",
    "inhalation_injury",
    "method",
    "burns",
    "formula",
    "fluids_given_ml",
    "voltage_v",
    "concomitant_trauma",
    "comorbidities",
    "special_areas",
)


class CaseError(ValueError):
    """Bad case data; ``field`` names the offending key (e.g. ``burns[2].fraction``)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def _number(value: Any, field: str, *, minimum: float | None = 0.0, maximum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise CaseError(field, f"must be a number, got {value!r}") from None
    value = float(value)
    if not math.isfinite(value):
        raise CaseError(field, f"must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise CaseError(field, f"must be ≥ {minimum:g}, got {value:g}")
    if maximum is not None and value > maximum:
        raise CaseError(field, f"must be ≤ {maximum:g}, got {value:g}")
    return value


def _optional_number(case: Mapping[str, Any], key: str, **limits: Any) -> float | None:
    value = case.get(key)
    return None if value is None else _number(value, key, **limits)


def _flag(case: Mapping[str, Any], key: str) -> bool | None:
    value = case.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise CaseError(key, f"must be true or false, got {value!r}")


def _choice(value: Any, field: str, allowed: Iterable[str]) -> str:
    allowed = tuple(allowed)
    if not isinstance(value, str) or value.strip().lower() not in allowed:
        raise CaseError(field, f"unknown value {value!r}; expected one of {', '.join(allowed)}")
    return value.strip().lower()


def is_paediatric(age_years: float | None, weight_kg: float | None) -> bool | None:
    """Paediatric rules: age ≤ 14 years (i.e. < 15) or weight < 30 kg; None if neither is known."""
    if age_years is None and weight_kg is None:
        return None
    return bool(
        (age_years is not None and age_years < PAEDIATRIC_AGE_BELOW)
        or (weight_kg is not None and weight_kg < PAEDIATRIC_WEIGHT_BELOW_KG)
    )


# --------------------------------------------------------------------------------------------
# TBSA
# --------------------------------------------------------------------------------------------


def lund_browder_band(age_years: float) -> str:
    """Age band key of the Lund–Browder chart: under_1, 1_to_4, 5_to_9, 10_to_14, 15, adult."""
    age = _number(age_years, "age_years")
    band = _LB_AGE_BANDS[0][0]
    for key, lower, *_ in _LB_AGE_BANDS:
        if age >= lower:
            band = key
    return band


def lund_browder_chart(age_years: float) -> dict[str, float]:
    """Percent TBSA of every Lund–Browder region at this age."""
    band = lund_browder_band(age_years)
    _, _, half_head, half_thigh, half_lower_leg = next(row for row in _LB_AGE_BANDS if row[0] == band)
    chart = {"head": 2 * half_head, **_LB_FIXED}
    for side in ("left", "right"):
        chart[f"{side}_thigh"] = 2 * half_thigh
        chart[f"{side}_lower_leg"] = 2 * half_lower_leg
    return chart


def rule_of_nines_chart(age_years: float | None) -> tuple[str, dict[str, float]]:
    """(chart name, chart): the child chart below age 10, the adult chart otherwise or if unknown."""
    if age_years is not None and age_years < RULE_OF_NINES_CHILD_BELOW_AGE:
        return "rule_of_nines_child", dict(RULE_OF_NINES_CHILD)
    return "rule_of_nines_adult", dict(RULE_OF_NINES_ADULT)


def _depth(entry: Mapping[str, Any], index: int) -> str:
    if "depth" not in entry:
        raise CaseError(f"burns[{index}].depth", "is required")
    return _choice(entry["depth"], f"burns[{index}].depth", DEPTHS)


def tbsa(
    burns: list[Mapping[str, Any]], method: str = "rule_of_nines", age_years: float | None = None
) -> dict[str, Any]:
    """Burned area by depth.

    Returns ``{"tbsa_percent", "by_depth", "chart", "special_areas"}``: ``tbsa_percent`` counts
    partial- and full-thickness burns only; ``by_depth`` has every depth, superficial included;
    ``special_areas`` maps ABA special areas touched (by chart region) to the deepest depth seen.
    """
    method = _choice(method, "method", METHODS)
    if not isinstance(burns, list):
        raise CaseError("burns", "must be a list of {region, depth, fraction} (or {palms, depth}) entries")
    by_depth = {depth: 0.0 for depth in DEPTHS}
    special: dict[str, str] = {}

    if method == "palm":
        chart_name = "palm"
        for i, entry in enumerate(burns):
            if not isinstance(entry, Mapping):
                raise CaseError(f"burns[{i}]", "must be an object {palms, depth}")
            if "palms" not in entry:
                raise CaseError(f"burns[{i}].palms", "is required for the palm method")
            palms = _number(entry["palms"], f"burns[{i}].palms")
            by_depth[_depth(entry, i)] += palms * PALM_PERCENT
        if sum(by_depth.values()) > 100.0 + 1e-9:
            raise CaseError("burns", f"palms add up to {sum(by_depth.values()):g}% TBSA, more than 100%")
    else:
        if method == "lund_browder":
            if age_years is None:
                raise CaseError("age_years", "is required for the Lund–Browder chart")
            chart_name = f"lund_browder_{lund_browder_band(age_years)}"
            chart = lund_browder_chart(age_years)
        else:
            chart_name, chart = rule_of_nines_chart(age_years)
        burned_fraction: dict[str, float] = {}
        for i, entry in enumerate(burns):
            if not isinstance(entry, Mapping):
                raise CaseError(f"burns[{i}]", "must be an object {region, depth, fraction}")
            region = entry.get("region")
            if not isinstance(region, str) or region not in chart:
                raise CaseError(
                    f"burns[{i}].region",
                    f"unknown region {region!r} for {method}; expected one of {', '.join(chart)}",
                )
            if "fraction" not in entry:
                raise CaseError(f"burns[{i}].fraction", "is required (fraction of the region burned, 0–1)")
            fraction = _number(entry["fraction"], f"burns[{i}].fraction", minimum=0.0, maximum=1.0)
            depth = _depth(entry, i)
            burned_fraction[region] = burned_fraction.get(region, 0.0) + fraction
            if burned_fraction[region] > 1.0 + 1e-9:
                raise CaseError(
                    f"burns[{i}].fraction",
                    f"entries for region {region!r} add up to {burned_fraction[region]:g} of the region (more than 100%)",
                )
            by_depth[depth] += fraction * chart[region]
            area = _SPECIAL_AREA_OF_REGION.get(region)
            if area and fraction > 0:
                special[area] = _deeper(special.get(area), depth)

    counted = sum(by_depth[d] for d in COUNTED_DEPTHS)
    return {
        "tbsa_percent": round(min(counted, 100.0), 4),
        "by_depth": {d: round(v, 4) for d, v in by_depth.items()},
        "chart": chart_name,
        "special_areas": special,
    }


def _deeper(a: str | None, b: str) -> str:
    if a is None:
        return b
    return a if DEPTHS.index(a) >= DEPTHS.index(b) else b


# --------------------------------------------------------------------------------------------
# Fluids
# --------------------------------------------------------------------------------------------


def resuscitation_threshold(paediatric: bool | None) -> float:
    """%TBSA from which formula-guided IV resuscitation applies."""
    return RESUSCITATION_THRESHOLD_CHILD if paediatric else RESUSCITATION_THRESHOLD_ADULT


def fluid_plan(
    weight_kg: float,
    tbsa_percent: float,
    hours_since_injury: float | None = None,
    *,
    formula: str = "parkland",
    fluids_given_ml: float = 0.0,
) -> dict[str, float | None]:
    """First-24-h crystalloid volume: ``ml_per_kg_per_pct × kg × %TBSA``, half in the first 8 h.

    The 8-h and 24-h windows run from the **time of injury**. Given ``hours_since_injury``
    (and the crystalloid already given since injury), ``remaining_first_window_ml`` is what is
    still due before hour 8 and ``rate_now_ml_per_h`` the hourly rate that delivers it in time;
    after hour 8, the rate delivers what remains of the 24-h volume by hour 24.
    Both are None when the hours since injury are unknown, and the rate is None after hour 24.
    """
    ml_per_kg_per_pct = FORMULAS[_choice(formula, "formula", FORMULAS)]
    weight_kg = _number(weight_kg, "weight_kg")
    tbsa_percent = _number(tbsa_percent, "tbsa_percent", maximum=100.0)
    fluids_given_ml = _number(fluids_given_ml, "fluids_given_ml")
    total = ml_per_kg_per_pct * weight_kg * tbsa_percent
    first = total / 2.0
    plan: dict[str, float | None] = {
        "ml_per_kg_per_percent": ml_per_kg_per_pct,
        "total_ml_24h": total,
        "first_8h_ml": first,
        "next_16h_ml": total - first,
        "remaining_first_window_ml": None,
        "rate_now_ml_per_h": None,
        "first_8h_rate_ml_per_h": first / 8.0,
        "next_16h_rate_ml_per_h": (total - first) / 16.0,
    }
    if hours_since_injury is None:
        return plan
    hours = _number(hours_since_injury, "hours_since_injury")
    if hours < 8.0:
        remaining = max(first - fluids_given_ml, 0.0)
        plan["remaining_first_window_ml"] = remaining
        plan["rate_now_ml_per_h"] = remaining / (8.0 - hours)
    elif hours < 24.0:
        plan["remaining_first_window_ml"] = 0.0
        plan["rate_now_ml_per_h"] = max(total - fluids_given_ml, 0.0) / (24.0 - hours)
    else:
        plan["remaining_first_window_ml"] = 0.0
    return plan


def urine_output_target(weight_kg: float, paediatric: bool) -> dict[str, float]:
    """Hourly urine-output target: 0.5 mL/kg/h adults, 1 mL/kg/h children."""
    per_kg = URINE_TARGET_CHILD_ML_PER_KG_H if paediatric else URINE_TARGET_ADULT_ML_PER_KG_H
    return {"ml_per_kg_per_h": per_kg, "ml_per_h": per_kg * _number(weight_kg, "weight_kg")}


# --------------------------------------------------------------------------------------------
# Referral (ABA burn-centre referral criteria)
# --------------------------------------------------------------------------------------------

def referral(
    *,
    by_depth: Mapping[str, float] | None,
    special_areas: Mapping[str, str],
    age_years: float | None,
    weight_kg: float | None,
    mechanism: str | None,
    inhalation_injury: bool | None,
    voltage_v: float | None = None,
    concomitant_trauma: bool | None = None,
    comorbidities: bool | None = None,
    depths_seen: Iterable[str] = (),
) -> dict[str, Any]:
    """Which ABA burn-centre referral criteria fire.

    ``by_depth`` is %TBSA per depth (None when the extent is unknown); ``depths_seen`` adds depths
    known without an extent (e.g. from an image). Returns ``{"recommended", "level", "criteria",
    "criteria_ids"}``; ``level`` is the strongest level that fired (or "none").
    """
    fired: list[tuple[str, str, str]] = []  # (id, level, text)
    depths = set(depths_seen)
    if by_depth:
        depths |= {d for d, v in by_depth.items() if v > 0}

    if "full_thickness" in depths:
        fired.append(("full_thickness", LEVEL_TRANSFER, "Full-thickness burn (any size)"))
    if by_depth is not None:
        partial = sum(by_depth.get(d, 0.0) for d in PARTIAL_DEPTHS)
        if partial >= REFERRAL_PARTIAL_TBSA:
            fired.append(
                (
                    "partial_thickness_10pct",
                    LEVEL_TRANSFER,
                    f"Partial-thickness burns ≥ 10% TBSA ({partial:.1f}%)",
                )
            )
        elif partial > 0:
            fired.append(
                (
                    "partial_thickness_under_10pct",
                    LEVEL_CONSULT,
                    f"Partial-thickness burns < 10% TBSA ({partial:.1f}%)",
                )
            )
    elif depths & PARTIAL_DEPTHS:
        fired.append(
            ("partial_thickness_extent_unknown", LEVEL_CONSULT, "Partial-thickness burn (extent not given)")
        )

    for area in SPECIAL_AREAS:
        depth = special_areas.get(area)
        if depth is None or depth == "superficial":
            continue
        name = area.replace("_", " ")
        if depth in DEEP_DEPTHS:
            fired.append(
                (
                    f"special_area_{area}",
                    LEVEL_TRANSFER,
                    f"Deep partial- or full-thickness burn of the {name}",
                )
            )
        else:
            fired.append((f"special_area_{area}", LEVEL_CONSULT, f"Partial-thickness burn of the {name}"))

    if inhalation_injury:
        fired.append(("inhalation_injury", LEVEL_TRANSFER, "Inhalation injury"))
    if mechanism == "chemical":
        fired.append(("chemical", LEVEL_TRANSFER, "Chemical injury"))
    elif mechanism == "electrical":
        if voltage_v is None:
            fired.append(
                (
                    "electrical",
                    LEVEL_TRANSFER,
                    "Electrical injury, voltage not given (treated as high voltage)",
                )
            )
        elif voltage_v >= HIGH_VOLTAGE_V:
            fired.append(
                (
                    "electrical_high_voltage",
                    LEVEL_TRANSFER,
                    f"High-voltage electrical injury ({voltage_v:g} V)",
                )
            )
        else:
            fired.append(
                ("electrical_low_voltage", LEVEL_CONSULT, f"Low-voltage electrical injury ({voltage_v:g} V)")
            )
    elif mechanism == "radiation":
        fired.append(
            ("radiation", LEVEL_CONSULT, "Radiation injury (burn centre and radiation specialist advice)")
        )
    if concomitant_trauma:
        fired.append(("concomitant_trauma", LEVEL_TRANSFER, "Burns with concomitant trauma"))
    if comorbidities:
        fired.append(("comorbidities", LEVEL_TRANSFER, "Burns with comorbidities that could complicate care"))
    if is_paediatric(age_years, weight_kg) and depths & COUNTED_DEPTHS:
        fired.append(
            (
                "paediatric",
                LEVEL_CONSULT,
                "Paediatric burn (pain, dressings, rehabilitation and non-accidental injury considerations)",
            )
        )

    levels = {level for _, level, _ in fired}
    level = LEVEL_TRANSFER if LEVEL_TRANSFER in levels else LEVEL_CONSULT if levels else LEVEL_NONE
    return {
        "recommended": bool(fired),
        "level": level,
        "criteria": [text for _, _, text in fired],
        "criteria_ids": [cid for cid, _, _ in fired],
    }


def _referral_for_case(
    p: Mapping[str, Any],
    *,
    by_depth: Mapping[str, float] | None,
    special_areas: Mapping[str, str],
    depths_seen: Iterable[str] = (),
) -> dict[str, Any]:
    """:func:`referral` with the patient fields taken from a parsed case (``_parse_case``)."""
    return referral(
        by_depth=by_depth,
        special_areas=special_areas,
        age_years=p["age_years"],
        weight_kg=p["weight_kg"],
        mechanism=p["mechanism"],
        inhalation_injury=p["inhalation_injury"],
        voltage_v=p["voltage_v"],
        concomitant_trauma=p["concomitant_trauma"],
        comorbidities=p["comorbidities"],
        depths_seen=depths_seen,
    )


def special_area_of_site(body_site: str) -> str | None:
    """ABA special area named by a free-text body site ("Left hand", "FACE"...), or None."""
    text = (body_site or "").replace("_", " ")
    for area, pattern in _SPECIAL_AREA_PATTERNS:
        if pattern.search(text):
            return area
    return None


# --------------------------------------------------------------------------------------------
# One case
# --------------------------------------------------------------------------------------------


def _parse_case(case: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(case, Mapping):
        raise CaseError("case", "must be a JSON object")
    parsed: dict[str, Any] = {
        "age_years": _optional_number(case, "age_years", maximum=130.0),
        "weight_kg": _optional_number(case, "weight_kg", maximum=700.0),
        "hours_since_injury": _optional_number(case, "hours_since_injury"),
        "fluids_given_ml": _optional_number(case, "fluids_given_ml"),
        "voltage_v": _optional_number(case, "voltage_v"),
        "inhalation_injury": _flag(case, "inhalation_injury"),
        "concomitant_trauma": _flag(case, "concomitant_trauma"),
        "comorbidities": _flag(case, "comorbidities"),
        "mechanism": None,
        "formula": _choice(case.get("formula") or "parkland", "formula", FORMULAS),
    }
    if parsed["weight_kg"] == 0:
        raise CaseError("weight_kg", "must be > 0")
    if case.get("mechanism") is not None:
        parsed["mechanism"] = _choice(case["mechanism"], "mechanism", MECHANISMS)
    burns = case.get("burns")
    method = case.get("method")
    if (
        method is None
        and isinstance(burns, list)
        and burns
        and all(isinstance(b, Mapping) and "palms" in b for b in burns)
    ):
        method = "palm"
    parsed["method"] = _choice(method or "rule_of_nines", "method", METHODS)
    parsed["burns"] = burns
    areas = case.get("special_areas") or []
    if not isinstance(areas, list):
        raise CaseError("special_areas", f"must be a list of {', '.join(SPECIAL_AREAS)}")
    parsed["special_areas"] = [_choice(a, f"special_areas[{i}]", SPECIAL_AREAS) for i, a in enumerate(areas)]
    return parsed


def _fluids(
    p: Mapping[str, Any], tbsa_percent: float | None, paediatric: bool | None, out: dict[str, Any]
) -> None:
    """Fill ``parkland``, ``urine_output_target`` and their warnings/missing entries into ``out``."""
    warnings, missing = out["warnings"], out["missing"]
    weight = p["weight_kg"]
    if weight is None:
        missing.append("weight_kg")
    else:
        out["urine_output_target"] = urine_output_target(weight, bool(paediatric))
        if p["mechanism"] == "electrical":
            warnings.append(
                "Electrical injury: TBSA underestimates tissue damage; if urine is pigmented, aim higher "
                "(about 1–1.5 mL/kg/h) until it clears."
            )
    if tbsa_percent is None or weight is None:
        return
    if paediatric is None:
        missing.append("age_years")
    threshold = resuscitation_threshold(paediatric)
    out["resuscitation_threshold_percent"] = threshold
    if tbsa_percent < threshold:
        warnings.append(
            f"Formula fluid resuscitation not applicable: {tbsa_percent:.1f}% TBSA is below the "
            f"{threshold:g}% threshold ({'child' if paediatric else 'adult'}); oral or maintenance fluids per local protocol."
        )
        return
    plan = fluid_plan(
        weight,
        tbsa_percent,
        p["hours_since_injury"],
        formula=p["formula"],
        fluids_given_ml=p["fluids_given_ml"] or 0.0,
    )
    out["parkland"] = {k: (None if v is None else round(v, 1)) for k, v in plan.items()}
    name = "Parkland" if p["formula"] == "parkland" else "Modified Brooke"
    warnings.append(
        f"{name} gives a starting rate only: titrate hourly to urine output and clinical response; "
        "avoid over-resuscitation."
    )
    if p["hours_since_injury"] is None:
        missing.append("hours_since_injury")
    else:
        hours = p["hours_since_injury"]
        if p["fluids_given_ml"] is None:
            warnings.append("fluids_given_ml not given: the remaining volumes assume no fluid since injury.")
        if 8.0 <= hours < 24.0:
            warnings.append(
                f"{hours:g} h since injury: the first-8-h window has passed; the rate now spreads what "
                "remains of the 24-h volume over the hours left to hour 24."
            )
        elif hours >= 24.0:
            warnings.append(
                f"{hours:g} h since injury: beyond the 24-h window of the formula; no rate given."
            )
    if paediatric:
        warnings.append(
            "Child: add maintenance fluid with glucose to the resuscitation volume (local protocol)."
        )


def decide(case: Mapping[str, Any]) -> dict[str, Any]:
    """Run TBSA, fluids and referral on one case (keys as ``burnscope decide`` reads them).

    Output keys: ``tbsa_percent``, ``tbsa_by_depth``, ``chart``, ``method``, ``paediatric``,
    ``parkland`` (``total_ml_24h``, ``first_8h_ml``, ``next_16h_ml``,
    ``remaining_first_window_ml``, ``rate_now_ml_per_h``, ... or None when not applicable),
    ``fluid_formula``, ``urine_output_target``, ``referral`` (``recommended``, ``level``,
    ``criteria``, ``criteria_ids``), ``warnings`` and ``missing`` (inputs that were not given).
    Raises :class:`CaseError` on bad input.
    """
    p = _parse_case(case)
    out: dict[str, Any] = {
        "method": p["method"],
        "chart": None,
        "tbsa_percent": None,
        "tbsa_by_depth": None,
        "paediatric": is_paediatric(p["age_years"], p["weight_kg"]),
        "fluid_formula": p["formula"],
        "parkland": None,
        "resuscitation_threshold_percent": None,
        "urine_output_target": None,
        "referral": None,
        "warnings": [],
        "missing": [],
    }
    special: dict[str, str] = {}
    if p["burns"] is None:
        out["missing"].append("burns")
    else:
        area = tbsa(p["burns"], p["method"], p["age_years"])
        out.update(tbsa_percent=area["tbsa_percent"], tbsa_by_depth=area["by_depth"], chart=area["chart"])
        special = dict(area["special_areas"])
        if p["method"] == "rule_of_nines":
            if p["age_years"] is None:
                out["warnings"].append("age_years not given: adult Rule-of-Nines chart used.")
            elif p["age_years"] < 15:
                out["warnings"].append(
                    "Child: the Lund–Browder chart is more accurate than the Rule of Nines."
                )
        if area["by_depth"]["superficial"] > 0:
            out["warnings"].append(
                f"Superficial (first-degree) area of {area['by_depth']['superficial']:.1f}% is not counted in TBSA."
            )
    for name in p["special_areas"]:  # areas the case names explicitly (rule of nines has no hands/feet)
        depths_known = [d for d, v in (out["tbsa_by_depth"] or {}).items() if v > 0] or [
            "superficial_partial_thickness"
        ]
        special[name] = _deeper(special.get(name), max(depths_known, key=DEPTHS.index))
    _fluids(p, out["tbsa_percent"], out["paediatric"], out)
    out["referral"] = _referral_for_case(p, by_depth=out["tbsa_by_depth"], special_areas=special)
    for key in ("age_years", "mechanism", "inhalation_injury"):
        if p[key] is None and key not in out["missing"]:
            out["missing"].append(key)
    return out


def decide_for_finding(
    finding_label: str, body_site: str = "", case: Mapping[str, Any] | None = None, *, abstained: bool = False
) -> dict[str, Any]:
    """Combine an image finding (depth label, body site) with the case data that came with it.

    Case ``burns`` (clinician-entered extent) win over the image: the image gives a depth, not an
    extent, so without ``burns`` no TBSA or fluid volume is computed and ``missing`` says so.
    Referral criteria that need no extent (full thickness, special areas, mechanism, inhalation)
    still fire from the image depth and body site, with a "depth from image" warning.
    Returns :func:`decide`'s keys plus ``depth_source`` ("case", "image" or None).
    """
    case = dict(case or {})
    has_burns = case.get("burns") is not None
    image_depth = finding_label if (finding_label in DEPTHS and not abstained) else None
    out = decide(case)
    out["body_site"] = body_site or ""
    if has_burns:
        out["depth_source"] = "case"
        if image_depth and out["tbsa_by_depth"] and out["tbsa_by_depth"].get(image_depth, 0.0) == 0.0:
            out["warnings"].append(
                f"The image suggests {image_depth.replace('_', ' ')}, a depth absent from the case's burns: check."
            )
        return out

    out["depth_source"] = "image" if image_depth else None
    if not image_depth:
        reason = (
            "the model abstained"
            if abstained or finding_label == NEEDS_REVIEW
            else f"finding is {finding_label!r}"
        )
        out["warnings"].append(f"No burn depth available ({reason}); clinician review needed.")
        return out
    out["warnings"].append(
        f"Depth from image ({image_depth.replace('_', ' ')}); not confirmed by a clinician. "
        "TBSA needs clinician-entered extent (burns)."
    )
    special: dict[str, str] = {}
    for name in case.get("special_areas") or []:
        special[name] = image_depth
    area = special_area_of_site(body_site)
    if area:
        special[area] = _deeper(special.get(area), image_depth)
    if not body_site:
        out["missing"].append("body_site")
    p = _parse_case(case)
    out["referral"] = _referral_for_case(p, by_depth=None, special_areas=special, depths_seen=[image_depth])
    return out


# --------------------------------------------------------------------------------------------
# Findings → decisions (what the graph operator calls)
# --------------------------------------------------------------------------------------------


class DecisionSupport:
    """Turns burn findings into :class:`~burnscope.common.messages.Decision` messages.

    ``default_case`` holds case data that applies to every image (e.g. CLI options); each image's
    own ``context.case`` (sidecar JSON, DICOM tags) overrides it key by key. Invalid case data
    never stops a batch: the decision carries the error as a warning and names the bad field in
    ``missing``. Results are computed once per distinct (case, label, abstained, body site) and
    reused for the images that share them (``cache_size`` of them kept; 0: none; see ``cache.py``).
    """

    def __init__(self, default_case: Mapping[str, Any] | None = None, cache_size: int | None = None):
        from burnscope.operators.decision_support.cache import DEFAULT_SIZE, DecisionCache

        self.default_case = dict(default_case or {})
        self.cache = DecisionCache(decide_for_finding, DEFAULT_SIZE if cache_size is None else cache_size)

    def decide_one(self, finding: Finding) -> Decision:
        context = finding.context
        case = {**self.default_case, **(context.case or {})}
        try:
            result = self.cache(finding.label, context.body_site, case, abstained=finding.abstained)
        except CaseError as exc:
            banner = [finding.model.banner] if finding.model.demo else []
            return Decision(
                finding=finding,
                warnings=banner + [f"Case data rejected ({exc}); no decision support computed."],
                missing=[exc.field],
                details={"error": str(exc)},
            )
        if finding.model.demo:
            result["warnings"].insert(0, finding.model.banner)
        details = {
            k: v
            for k, v in result.items()
            if k not in ("tbsa_percent", "parkland", "referral", "warnings", "missing")
        }
        return Decision(
            finding=finding,
            tbsa_percent=result["tbsa_percent"],
            parkland=FluidPlan.from_dict(result["parkland"]) if result["parkland"] else None,
            referral=Referral.from_dict(result["referral"]) if result["referral"] else None,
            warnings=list(result["warnings"]),
            missing=list(result["missing"]),
            details=details,
        )

    def __call__(self, findings: Iterable[Finding]) -> list[Decision]:
        return [self.decide_one(f) for f in findings or []]
