"""Rule-based series selection and study → series grouping."""

from __future__ import annotations

import json

import pydicom
import pytest

from burnscope.applications.cli.cmd_dicom import inspect_paths
from burnscope.operators.dicom_loader.core import DicomLoader
from burnscope.operators.dicom_loader.selector import RuleError, SeriesSelector, group_by_study
from fixtures import SAMPLE_DATA

SAMPLE = SAMPLE_DATA
VL_PHOTO = "1.2.840.10008.5.1.4.1.1.77.1.4"


def _load(rules) -> tuple[list, list, int]:
    loader = DicomLoader(workers=1, selector=SeriesSelector(rules))
    results = list(loader.iter_file_results(loader.scan(SAMPLE), SAMPLE))
    images = [img for r in results for img in r.images]
    errors = [r.error for r in results if r.error]
    return images, errors, sum(r.skipped for r in results)


def test_only_vl_photographic_series():
    images, errors, skipped = _load({"selections": [{"name": "photos", "include": {"SOPClassUID": VL_PHOTO}}]})
    assert len(images) == 7 and {r.context.sop_class_uid for r in images} == {VL_PHOTO}
    assert skipped == 2  # the multi-frame and the greyscale secondary captures
    # Selection reads the header only: the truncated VL photo is still reported, as is the text file.
    assert sorted(e.reason for e in errors) == ["not_dicom", "truncated"]


def test_regex_range_exclude_and_hex_tags():
    rules = {"selections": [{
        "include": {"(0008,0060)": ["XC", "OT"], "Rows": {"range": [300, None]}},
        "exclude": {"SeriesDescription": {"regex": "(?i)sequence|greyscale"}},
    }]}
    images, _, _ = _load(rules)
    assert sorted((r.context.source.split("sample_data/")[1]) for r in images) == [
        "study-001/IMG-0002.dcm", "study-002/IMG-0001.dcm", "study-003/IMG-0001.dcm",
    ]


def test_any_selection_and_multi_valued_and_present():
    ds = pydicom.dcmread(SAMPLE / "study-003" / "IMG-0004-greyscale.dcm")
    selector = SeriesSelector({"selections": [
        {"name": "colour", "include": {"SamplesPerPixel": 3}},
        {"name": "derived-grey",
         "include": {"ImageType": "derived", "AcquisitionContextSequence": {"present": False}}},
    ]})
    assert selector.match(ds) == "derived-grey"
    ds.AcquisitionContextSequence = [pydicom.Dataset()]
    ds.AcquisitionContextSequence[0].ValueType = "TEXT"
    assert selector.match(ds) is None


def test_rules_from_json_file(tmp_path):
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"selections": [{"include": {"BodyPartExamined": "hand"}}]}))
    images, _, skipped = _load(path)
    assert {r.context.body_site for r in images} == {"left hand", "right hand"} and len(images) == 4


@pytest.mark.parametrize("rules, message", [
    ({"selections": []}, "non-empty"),
    ({"selections": [{"include": {"NotAKeyword": "x"}}]}, "NotAKeyword"),
    ({"selections": [{"include": {"Rows": {"between": [1, 2]}}}]}, "Rows"),
    ({"selections": [{"include": {"Modality": {"regex": "("}}}]}, "bad regex"),
    ({"selections": [{"inclde": {"Modality": "XC"}}]}, "unknown key"),
])
def test_bad_rules_name_the_problem(rules, message):
    with pytest.raises(RuleError, match=message):
        SeriesSelector(rules)


def test_group_by_study_and_series():
    images, _ = DicomLoader(workers=1).load(SAMPLE)
    studies = group_by_study(images)
    assert len(studies) == 3
    assert [len(s.series) for s in studies] == [1, 1, 3]
    last = studies[2]
    assert [len(s.images) for s in last.series] == [2, 2, 1]  # photos, 2-frame sequence, greyscale
    assert sum(len(s.images) for s in studies) == 10 and len(last.images) == 5


def test_inspect_marks_skipped_files(tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"selections": [{"include": {"SOPClassUID": VL_PHOTO}}]}))
    rows = inspect_paths([SAMPLE / "study-003"], select=rules)
    assert [r["decision"] for r in rows] == ["accepted", "accepted", "skipped", "skipped"]
