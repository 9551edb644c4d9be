"""Reports a clinician can read: names, dates, levels and quantities worded, one PDF page,
the demo banner once in the SR's notes."""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pydicom
import pytest

from burnscope.common.clinical import LEVEL_CONSULT, LEVEL_NONE, LEVEL_TRANSFER
from burnscope.common.messages import DEMO_BANNER, PatientIdentity
from burnscope.operators.decision_support.core import DecisionSupport
from burnscope.operators.report import presentation
from burnscope.operators.report.core import ReportEmitter, build_report, render_text
from fixtures.examples import example_decision

FIXED = dt.datetime(2026, 1, 1, 9, 30, tzinfo=dt.timezone.utc)
CASE_27 = {  # 27% TBSA adult, 2 h after injury, 500 mL given
    "age_years": 46, "weight_kg": 80, "hours_since_injury": 2.0, "fluids_given_ml": 500, "mechanism": "thermal",
    "inhalation_injury": False,
    "burns": [{"region": "anterior_trunk", "depth": "deep_partial_thickness", "fraction": 1.0},
              {"region": "left_arm", "depth": "superficial_partial_thickness", "fraction": 1.0}],
}
WORST = {  # every warning and criterion at once
    "age_years": 7, "weight_kg": 24, "hours_since_injury": 10.0, "mechanism": "electrical", "inhalation_injury": True,
    "concomitant_trauma": True, "comorbidities": True,
    "burns": [{"region": "anterior_trunk", "depth": "full_thickness", "fraction": 1.0},
              {"region": "head_neck", "depth": "deep_partial_thickness", "fraction": 1.0},
              {"region": "left_arm", "depth": "superficial", "fraction": 1.0},
              {"region": "perineum", "depth": "superficial_partial_thickness", "fraction": 1.0}],
}


def _decision(case, thumbnail=None):
    base = example_decision(thumbnail=thumbnail,
                            patient=PatientIdentity("MARTINEZ^ELENA^ROSA", "BSN-4471203", "19780412", "F"))
    base.finding.context.case = dict(case)
    return DecisionSupport()([base.finding])[0]


@pytest.mark.parametrize(("pn", "shown"), [
    ("MARTINEZ^ELENA^ROSA", "MARTINEZ, ELENA ROSA"),
    ("Doe^Jane", "Doe, Jane"),
    ("Okafor", "Okafor"),
    ("Smith^John^^Dr^Jr", "Smith, Dr John Jr"),
    ("Yamada^Tarou=山田^太郎", "Yamada, Tarou"),
    ("", "not available"),
])
def test_person_names_read_family_then_given(pn, shown):
    assert presentation.person_name(pn) == shown


def test_dates_are_iso_or_the_sites_pattern():
    assert presentation.display_date("19780412") == "1978-04-12"
    assert presentation.display_date("19780412", "%d/%m/%Y") == "12/04/1978"
    assert presentation.display_date("1978-13-45") == "1978-13-45"  # malformed values are shown, not guessed


def test_referral_levels_are_sentences():
    assert set(presentation.REFERRAL_LEVEL_TEXT) == {LEVEL_TRANSFER, LEVEL_CONSULT, LEVEL_NONE}
    assert all(" " in text and "_" not in text for text in presentation.REFERRAL_LEVEL_TEXT.values())


def test_text_report_words_every_value_with_units():
    text = render_text(build_report(_decision(CASE_27)))
    for raw in ("MARTINEZ^ELENA", "19780412", "consultation_recommended", "immediate_consultation", "criteria ids",
                "total ml 24h", "remaining first window", "ml_per_h"):
        assert raw not in text
    for shown in ("MARTINEZ, ELENA ROSA", "1978-04-12", "27.0 %TBSA", "8,640 mL", "4,320 mL (average 540 mL/h)",
                  "Still due in the first 8 h:  3,820 mL", "637 mL/h", "Urine-output target:", "40 mL/h (0.5 mL/kg/h)",
                  "Immediate burn-centre consultation; consider transfer"):
        assert shown in text, shown
    assert re.search(r"Generated 2\d{3}-\d\d-\d\d \d\d:\d\d UTC", text)


def _pages(pdf: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page(?![s\w])", pdf))


@pytest.mark.parametrize("case", [CASE_27, WORST], ids=["27pct", "every-warning"])
def test_pdf_is_one_page(case):
    thumb = (np.random.default_rng(0).random((128, 96, 3)) * 255).astype(np.uint8)
    bundle = ReportEmitter(["json", "pdf"], clock=lambda: FIXED).emit([_decision(case, thumb)])[0]
    assert _pages(bundle.artefacts[".pdf"]) == 1


def test_site_date_format_reaches_text_and_pdf():
    bundle = ReportEmitter(["txt"], clock=lambda: FIXED, date_format="%d.%m.%Y").emit([_decision(CASE_27)])[0]
    assert "12.04.1978" in bundle.artefacts[".txt"].decode()


def test_sr_notes_hold_the_demo_banner_once():
    bundle = ReportEmitter(["sr"], clock=lambda: FIXED).emit([_decision(CASE_27)])[0]
    sr = pydicom.dcmread(__import__("io").BytesIO(bundle.artefacts[".sr.dcm"]))

    def texts(items):
        for item in items:
            if getattr(item, "ValueType", "") == "TEXT":
                yield item.TextValue
            yield from texts(getattr(item, "ContentSequence", []))

    assert list(texts(sr.ContentSequence)).count(DEMO_BANNER) == 1
