"""Decision-support core: textbook worked examples, bad input, properties (hypothesis), CLI."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from burnscope.operators.decision_support import core
from burnscope.operators.decision_support.core import CaseError, decide, fluid_plan, lund_browder_chart, tbsa

ROR_REGIONS = list(core.RULE_OF_NINES_ADULT)
LB_REGIONS = list(lund_browder_chart(30))


def burn(region, depth="deep_partial_thickness", fraction=1.0):
    return {"region": region, "depth": depth, "fraction": fraction}


# ---------------------------------------------------------------- charts


def test_rule_of_nines_charts_sum_to_100():
    assert sum(core.RULE_OF_NINES_ADULT.values()) == 100
    assert sum(core.RULE_OF_NINES_CHILD.values()) == 100
    assert core.RULE_OF_NINES_CHILD["head_neck"] == 18


@pytest.mark.parametrize("age", [0, 0.5, 1, 4.9, 5, 9, 10, 14, 15, 15.9, 16, 40, 90])
def test_lund_browder_every_band_sums_to_100(age):
    assert sum(lund_browder_chart(age).values()) == pytest.approx(100.0)


@pytest.mark.parametrize(
    "age, band, head, thigh, lower_leg",
    [
        (0.5, "under_1", 19.0, 5.5, 5.0),
        (3, "1_to_4", 17.0, 6.5, 5.0),
        (7, "5_to_9", 13.0, 8.0, 5.5),
        (12, "10_to_14", 11.0, 8.5, 6.0),
        (15, "15", 9.0, 9.0, 6.5),
        (45, "adult", 7.0, 9.5, 7.0),
    ],
)
def test_lund_browder_published_values(age, band, head, thigh, lower_leg):
    chart = lund_browder_chart(age)
    assert core.lund_browder_band(age) == band
    assert chart["head"] == head and chart["left_thigh"] == thigh and chart["right_lower_leg"] == lower_leg
    assert chart["anterior_trunk"] == 13 and chart["left_hand"] == 2.5 and chart["neck"] == 2


# ---------------------------------------------------------------- TBSA worked examples


def test_rule_of_nines_adult_worked_example():
    # Whole anterior trunk (18) + whole left arm (9) + half right leg (9) = 36 %TBSA.
    result = tbsa(
        [
            burn("anterior_trunk"),
            burn("left_arm", "full_thickness"),
            burn("right_leg", "superficial_partial_thickness", 0.5),
        ],
        "rule_of_nines",
        age_years=40,
    )
    assert result["tbsa_percent"] == 36.0
    assert result["chart"] == "rule_of_nines_adult"
    assert result["by_depth"]["full_thickness"] == 9.0


def test_rule_of_nines_child_chart_for_a_toddler():
    # Head (18) + one leg (13.5) in a 2-year-old.
    result = tbsa([burn("head_neck"), burn("left_leg")], "rule_of_nines", age_years=2)
    assert result["chart"] == "rule_of_nines_child"
    assert result["tbsa_percent"] == 31.5


def test_superficial_burns_are_not_counted():
    result = tbsa([burn("anterior_trunk", "superficial"), burn("left_arm")], "rule_of_nines")
    assert result["tbsa_percent"] == 9.0
    assert result["by_depth"]["superficial"] == 18.0


def test_lund_browder_worked_example_child():
    # 3-year-old: whole head (17) + both hands (2 × 2.5) + anterior trunk half (6.5) = 28.5.
    burns = [burn("head"), burn("left_hand"), burn("right_hand"), burn("anterior_trunk", fraction=0.5)]
    result = tbsa(burns, "lund_browder", age_years=3)
    assert result["tbsa_percent"] == 28.5
    assert result["chart"] == "lund_browder_1_to_4"
    assert result["special_areas"] == {"face": "deep_partial_thickness", "hands": "deep_partial_thickness"}


def test_palm_method():
    result = tbsa(
        [{"palms": 3, "depth": "superficial_partial_thickness"}, {"palms": 2, "depth": "superficial"}], "palm"
    )
    assert result["tbsa_percent"] == 3.0


# ---------------------------------------------------------------- fluids worked examples


def test_parkland_textbook_example():
    # 70 kg, 40 %TBSA: 4 × 70 × 40 = 11,200 mL; 5,600 mL in the first 8 h (700 mL/h), 5,600 over 16 h (350 mL/h).
    plan = fluid_plan(70, 40, hours_since_injury=0)
    assert plan["total_ml_24h"] == 11200
    assert plan["first_8h_ml"] == plan["next_16h_ml"] == 5600
    assert plan["rate_now_ml_per_h"] == pytest.approx(700)
    assert plan["next_16h_rate_ml_per_h"] == pytest.approx(350)


def test_parkland_counts_from_time_of_injury_not_arrival():
    # Arrives 3 h after injury with 1,000 mL given: 4,600 mL still due in the 5 h left → 920 mL/h.
    plan = fluid_plan(70, 40, hours_since_injury=3, fluids_given_ml=1000)
    assert plan["remaining_first_window_ml"] == pytest.approx(4600)
    assert plan["rate_now_ml_per_h"] == pytest.approx(920)


def test_parkland_after_first_window():
    plan = fluid_plan(70, 40, hours_since_injury=12, fluids_given_ml=6000)
    assert plan["remaining_first_window_ml"] == 0
    assert plan["rate_now_ml_per_h"] == pytest.approx(5200 / 12)
    assert fluid_plan(70, 40, hours_since_injury=30)["rate_now_ml_per_h"] is None


def test_modified_brooke_is_half_of_parkland():
    assert fluid_plan(80, 30, formula="modified_brooke")["total_ml_24h"] == 2 * 80 * 30


def test_decide_full_case_adult():
    case = {
        "age_years": 35,
        "weight_kg": 80,
        "hours_since_injury": 2,
        "mechanism": "thermal",
        "inhalation_injury": False,
        "method": "rule_of_nines",
        "burns": [
            burn("anterior_trunk"),
            burn("posterior_trunk", "superficial_partial_thickness", 0.5),
            burn("left_arm", "superficial"),
        ],
    }
    result = decide(case)
    assert result["tbsa_percent"] == 27.0
    parkland = result["parkland"]
    assert parkland["total_ml_24h"] == 4 * 80 * 27
    assert parkland["first_8h_ml"] == parkland["next_16h_ml"] == 4320
    assert parkland["remaining_first_window_ml"] == 4320
    assert parkland["rate_now_ml_per_h"] == 720.0
    assert result["urine_output_target"] == {"ml_per_kg_per_h": 0.5, "ml_per_h": 40.0}
    assert result["referral"]["recommended"] is True
    assert "partial_thickness_10pct" in result["referral"]["criteria_ids"]
    assert result["missing"] == []
    assert any("not counted" in w for w in result["warnings"])


def test_child_thresholds_and_urine_target():
    case = {
        "age_years": 4,
        "weight_kg": 16,
        "hours_since_injury": 1,
        "method": "lund_browder",
        "burns": [burn("anterior_trunk")],
    }  # 13 %TBSA
    result = decide(case)
    assert result["paediatric"] is True
    assert result["parkland"]["total_ml_24h"] == 4 * 16 * 13
    assert result["urine_output_target"]["ml_per_kg_per_h"] == 1.0
    assert "paediatric" in result["referral"]["criteria_ids"]
    # The same 13 % in an adult is below the 20 % threshold: no formula volume.
    adult = decide({**case, "age_years": 40, "weight_kg": 70})
    assert adult["parkland"] is None
    assert any("not applicable" in w for w in adult["warnings"])


def test_missing_weight_means_no_parkland_and_says_so():
    result = decide({"age_years": 30, "burns": [burn("anterior_trunk"), burn("posterior_trunk")]})
    assert result["parkland"] is None
    assert "weight_kg" in result["missing"]


# ---------------------------------------------------------------- referral


def test_referral_criteria():
    small_superficial = decide({"age_years": 30, "burns": [burn("left_arm", "superficial", 0.2)]})
    assert small_superficial["referral"]["recommended"] is False
    ids = decide(
        {
            "age_years": 30,
            "mechanism": "chemical",
            "inhalation_injury": True,
            "burns": [burn("perineum", "full_thickness")],
        }
    )["referral"]["criteria_ids"]
    assert {"full_thickness", "special_area_perineum", "inhalation_injury", "chemical"} <= set(ids)
    low_voltage = decide({"age_years": 30, "mechanism": "electrical", "voltage_v": 230, "burns": []})[
        "referral"
    ]
    assert low_voltage["level"] == core.LEVEL_CONSULT
    high = decide({"age_years": 30, "mechanism": "electrical", "burns": []})["referral"]
    assert high["level"] == core.LEVEL_TRANSFER
    trauma = decide({"age_years": 30, "concomitant_trauma": True, "comorbidities": True, "burns": []})[
        "referral"
    ]
    assert (
        trauma["criteria_ids"] == ["concomitant_trauma", "comorbidities"]
        and trauma["level"] == core.LEVEL_TRANSFER
    )
    # ABA paediatric definition: ≤ 14 years or < 30 kg.
    teen = {"burns": [burn("left_arm", "superficial_partial_thickness", 0.1)]}
    assert "paediatric" in decide({**teen, "age_years": 14.5})["referral"]["criteria_ids"]
    assert "paediatric" not in decide({**teen, "age_years": 15, "weight_kg": 60})["referral"]["criteria_ids"]
    assert "paediatric" in decide({**teen, "age_years": 16, "weight_kg": 28})["referral"]["criteria_ids"]


def test_decide_for_finding_uses_image_depth_without_guessing_extent():
    result = core.decide_for_finding("full_thickness", "Right hand", {"weight_kg": 70, "age_years": 50})
    assert result["tbsa_percent"] is None and result["parkland"] is None
    assert "burns" in result["missing"]
    assert {"full_thickness", "special_area_hands"} <= set(result["referral"]["criteria_ids"])
    assert any("Depth from image" in w for w in result["warnings"])
    abstained = core.decide_for_finding("needs_review", "Right hand", {}, abstained=True)
    assert abstained["referral"]["recommended"] is False
    assert abstained["depth_source"] is None


@pytest.mark.parametrize(
    "site, area",
    [
        ("Left hand", "hands"),
        ("Structure of right hand", "hands"),
        ("FACE", "face"),
        ("left_foot", "feet"),
        ("Knee", "major_joints"),
        ("perineal region", "perineum"),
        ("left forearm", None),
        ("anterior chest", None),
        ("", None),
        ("upper back", None),
    ],
)
def test_special_area_of_body_site(site, area):
    assert core.special_area_of_site(site) == area


def test_decide_for_finding_prefers_case_burns():
    case = {
        "age_years": 30,
        "weight_kg": 70,
        "hours_since_injury": 0,
        "burns": [burn("anterior_trunk"), burn("left_arm")],
    }
    result = core.decide_for_finding("superficial", "trunk", case)
    assert result["depth_source"] == "case" and result["tbsa_percent"] == 27.0
    assert any("absent from the case" in w for w in result["warnings"])


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "case, field",
    [
        ({"burns": [burn("tail")]}, "burns[0].region"),
        ({"burns": [burn("left_arm", fraction=1.5)]}, "burns[0].fraction"),
        ({"burns": [burn("left_arm", fraction=-0.1)]}, "burns[0].fraction"),
        (
            {"burns": [burn("left_arm", fraction=0.7), burn("left_arm", "full_thickness", 0.6)]},
            "burns[1].fraction",
        ),
        ({"weight_kg": -3, "burns": []}, "weight_kg"),
        ({"weight_kg": "heavy", "burns": []}, "weight_kg"),
        ({"burns": [burn("left_arm", depth="fourth_degree")]}, "burns[0].depth"),
        ({"method": "lund_browder", "burns": [burn("head")]}, "age_years"),
        ({"method": "palm", "burns": [{"palms": 101, "depth": "full_thickness"}]}, "burns"),
        ({"mechanism": "magic"}, "mechanism"),
        ({"method": "guess"}, "method"),
        ({"hours_since_injury": -1}, "hours_since_injury"),
    ],
)
def test_bad_input_names_the_field(case, field):
    with pytest.raises(CaseError) as info:
        decide(case)
    assert info.value.field == field
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith(field)


# ---------------------------------------------------------------- properties

fractions = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
depths = st.sampled_from(core.DEPTHS)


@settings(max_examples=60, deadline=None)
@given(
    method=st.sampled_from(["rule_of_nines", "lund_browder"]),
    age=st.floats(min_value=0, max_value=100),
    entries=st.dictionaries(
        st.sampled_from(LB_REGIONS + ROR_REGIONS), st.tuples(depths, fractions), max_size=20
    ),
)
def test_tbsa_never_exceeds_100(method, age, entries):
    chart = lund_browder_chart(age) if method == "lund_browder" else core.rule_of_nines_chart(age)[1]
    burns = [burn(r, d, f) for r, (d, f) in entries.items() if r in chart]
    assert 0.0 <= tbsa(burns, method, age)["tbsa_percent"] <= 100.0


@settings(max_examples=60, deadline=None)
@given(
    age=st.floats(min_value=0, max_value=100),
    base=st.lists(st.tuples(depths, fractions), min_size=len(LB_REGIONS), max_size=len(LB_REGIONS)),
    index=st.integers(0, len(LB_REGIONS) - 1),
    bump=fractions,
)
def test_tbsa_monotone_in_every_fraction(age, base, index, bump):
    burns = [burn(r, d, f) for r, (d, f) in zip(LB_REGIONS, base)]
    before = tbsa(burns, "lund_browder", age)["tbsa_percent"]
    region, depth, fraction = LB_REGIONS[index], base[index][0], base[index][1]
    burns[index] = burn(region, depth, fraction + (1.0 - fraction) * bump)
    assert tbsa(burns, "lund_browder", age)["tbsa_percent"] >= before - 1e-9


@settings(max_examples=60, deadline=None)
@given(
    weight=st.floats(min_value=1, max_value=300),
    tbsa_pct=st.floats(min_value=0, max_value=50),
    k=st.floats(min_value=0.1, max_value=2.0),
    formula=st.sampled_from(list(core.FORMULAS)),
)
def test_parkland_linear_in_weight_and_tbsa(weight, tbsa_pct, k, formula):
    base = fluid_plan(weight, tbsa_pct, formula=formula)["total_ml_24h"]
    assert fluid_plan(weight * k, tbsa_pct, formula=formula)["total_ml_24h"] == pytest.approx(
        k * base, rel=1e-9, abs=1e-9
    )
    assert fluid_plan(weight, tbsa_pct * k, formula=formula)["total_ml_24h"] == pytest.approx(
        k * base, rel=1e-9, abs=1e-9
    )
    assert fluid_plan(weight, tbsa_pct, formula=formula)["first_8h_ml"] == pytest.approx(base / 2)


# ---------------------------------------------------------------- CLI


def test_cli_decide_json_and_table(tmp_path, capsys):
    from burnscope.applications.cli import main

    case_file = tmp_path / "case.json"
    case_file.write_text(
        json.dumps(
            {
                "age_years": 30,
                "weight_kg": 70,
                "hours_since_injury": 0,
                "burns": [burn("anterior_trunk"), burn("left_leg")],
            }
        )
    )
    assert main(["decide", str(case_file), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["tbsa_percent"] == 36.0 and result["parkland"]["total_ml_24h"] == 4 * 70 * 36
    assert main(["decide", str(case_file)]) == 0
    assert "Parkland" in capsys.readouterr().out


def test_cli_decide_bad_input_one_line(tmp_path, capsys):
    from burnscope.applications.cli import main

    case_file = tmp_path / "bad.json"
    case_file.write_text(json.dumps({"burns": [burn("tail")]}))
    assert main(["decide", str(case_file)]) != 0
    err = capsys.readouterr().err.strip()
    assert "burns[0].region" in err and "Traceback" not in err
    assert main(["decide", str(tmp_path / "missing.json")]) != 0


@settings(max_examples=40, deadline=None)
@given(
    age=st.floats(min_value=0, max_value=100),
    base=st.lists(st.tuples(depths, fractions), min_size=len(ROR_REGIONS), max_size=len(ROR_REGIONS)),
    index=st.integers(0, len(ROR_REGIONS) - 1),
    bump=fractions,
)
def test_rule_of_nines_monotone_and_bounded(age, base, index, bump):
    burns = [burn(r, d, f) for r, (d, f) in zip(ROR_REGIONS, base)]
    before = tbsa(burns, "rule_of_nines", age)["tbsa_percent"]
    region, (depth, fraction) = ROR_REGIONS[index], base[index]
    burns[index] = burn(region, depth, fraction + (1.0 - fraction) * bump)
    after = tbsa(burns, "rule_of_nines", age)["tbsa_percent"]
    assert before - 1e-9 <= after <= 100.0


@settings(max_examples=40, deadline=None)
@given(
    weight=st.floats(min_value=3, max_value=200),
    tbsa_pct=st.floats(min_value=0, max_value=100),
    hours=st.floats(min_value=0, max_value=7.99),
    given_ml=st.floats(min_value=0, max_value=50_000),
)
def test_rate_now_delivers_the_first_window_on_time(weight, tbsa_pct, hours, given_ml):
    plan = fluid_plan(weight, tbsa_pct, hours, fluids_given_ml=given_ml)
    assert plan["remaining_first_window_ml"] == pytest.approx(max(plan["first_8h_ml"] - given_ml, 0.0))
    assert plan["rate_now_ml_per_h"] * (8.0 - hours) == pytest.approx(plan["remaining_first_window_ml"])
