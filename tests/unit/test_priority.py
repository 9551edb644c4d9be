"""The emergency lane's rules (DIMSE priority, calling AE, DICOM attribute rules, sidecar) and its queue."""

from __future__ import annotations

import threading

import pytest
from pydicom.dataset import Dataset

from burnscope.common.messages import ROUTINE, STAT, ImageContext, priority_rank
from burnscope.operators.priority.core import (
    DIMSE_HIGH, DIMSE_LOW, DIMSE_MEDIUM, AttributeRule, PriorityQueue, PriorityRuleError, PriorityRules,
    find_attribute,
)

RULES = PriorityRules.from_settings({
    "dimse_high_is_stat": True, "stat_calling_aets": ["ED_CAMERA"], "sidecar": True,
    "rules": [{"attribute": "RequestedProcedurePriority", "equals": ["STAT", "HIGH"]}],
})


def _ordered(priority: str = "") -> Dataset:
    ds = Dataset()
    ds.SOPInstanceUID = "1.2.3"
    item = Dataset()
    if priority:
        item.RequestedProcedurePriority = priority
    ds.RequestAttributesSequence = [item]
    return ds


def test_rank_puts_stat_first_and_unknown_with_routine():
    assert priority_rank(STAT) < priority_rank(ROUTINE) == priority_rank("whatever")


@pytest.mark.parametrize("kwargs, expected", [
    ({"dimse_priority": DIMSE_HIGH}, (STAT, "dimse_priority_high")),
    ({"dimse_priority": DIMSE_MEDIUM}, (ROUTINE, "")),
    ({"dimse_priority": DIMSE_LOW}, (ROUTINE, "")),
    ({"calling_aet": "ED_CAMERA "}, (STAT, "calling_aet")),
    ({"calling_aet": "WARD_CAMERA"}, (ROUTINE, "")),
    ({"ds": _ordered("stat")}, (STAT, "attribute:RequestedProcedurePriority")),
    ({"ds": _ordered("ROUTINE")}, (ROUTINE, "")),
    ({"ds": _ordered()}, (ROUTINE, "")),
    ({"case": {"priority": "STAT"}}, (STAT, "sidecar")),
    ({"case": {"priority": "routine"}}, (ROUTINE, "")),
])
def test_each_source_of_stat(kwargs, expected):
    assert RULES.classify(**kwargs) == expected


def test_switched_off_sources_say_nothing():
    off = PriorityRules(dimse_high_is_stat=False, sidecar=False)
    assert off.classify(dimse_priority=DIMSE_HIGH, case={"priority": "stat"}) == (ROUTINE, "")


def test_apply_marks_the_context_and_takes_priority_out_of_the_case():
    ctx = ImageContext(source="a.dcm", case={"priority": "stat", "age_years": 30})
    RULES.apply(ctx, _ordered())
    assert (ctx.priority, ctx.priority_reason, ctx.is_stat) == (STAT, "sidecar", True)
    assert ctx.case == {"age_years": 30}
    # a STAT context keeps its first reason
    RULES.apply(ctx, dimse_priority=DIMSE_HIGH)
    assert ctx.priority_reason == "sidecar"


def test_attributes_are_found_in_nested_sequences_and_top_level():
    ds = _ordered("STAT")
    ds.ReasonForTheRequestedProcedure = "burn"
    assert find_attribute(ds, "RequestedProcedurePriority") == ["STAT"]
    ds.RequestedProcedurePriority = "LOW"
    assert sorted(find_attribute(ds, "RequestedProcedurePriority")) == ["LOW", "STAT"]


def test_unknown_rules_are_one_clear_error():
    with pytest.raises(PriorityRuleError, match=r"priority.rules\[0\]: unknown DICOM keyword 'RequestedProcedurePriorty'; "
                                                r"did you mean RequestedProcedurePriority\?"):
        PriorityRules.from_settings({"rules": [{"attribute": "RequestedProcedurePriorty", "equals": ["STAT"]}]})
    with pytest.raises(PriorityRuleError, match="lists no value"):
        AttributeRule("RequestedProcedurePriority", ())


def test_rules_pickle_for_loader_processes():
    import pickle

    again = pickle.loads(pickle.dumps(RULES))
    assert again.classify(ds=_ordered("HIGH")) == (STAT, "attribute:RequestedProcedurePriority")


def test_queue_is_stat_first_then_fifo_and_counts_depth():
    q: PriorityQueue[str] = PriorityQueue()
    for i, p in enumerate([ROUTINE, ROUTINE, STAT, ROUTINE, STAT]):
        q.push(f"{p}{i}", p)
    assert (q.depth(), q.depth(STAT), q.depth(ROUTINE)) == (5, 2, 3)
    assert q.items() == ["stat2", "stat4", "routine0", "routine1", "routine3"]
    assert q.pop_many(3) == ["stat2", "stat4", "routine0"]
    assert q.depth(STAT) == 0 and len(q) == 2 and q.peek() == "routine1"


def test_queue_is_thread_safe():
    q: PriorityQueue[int] = PriorityQueue()
    threads = [threading.Thread(target=lambda k=k: [q.push(k * 1000 + i, STAT if i % 7 == 0 else ROUTINE)
                                                    for i in range(500)]) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    items = q.pop_many(10_000)
    assert len(items) == 2000 and len(set(items)) == 2000
    stat = [i for i in items if (i % 1000) % 7 == 0]
    assert items[: len(stat)] == stat


def test_the_loader_marks_stat_from_attributes_and_sidecars(tmp_path):
    import json

    import pydicom
    from fixtures.dicom_helpers import GOOD_FILES

    from burnscope.operators.dicom_loader.core import DicomLoader

    ordered = pydicom.dcmread(GOOD_FILES[0])
    ordered.RequestAttributesSequence = [_ordered("STAT").RequestAttributesSequence[0]]
    ordered.save_as(tmp_path / "ordered.dcm")
    pydicom.dcmread(GOOD_FILES[0]).save_as(tmp_path / "sidecar.dcm")
    (tmp_path / "sidecar.json").write_text(json.dumps({"priority": "stat", "weight_kg": 70}))
    pydicom.dcmread(GOOD_FILES[0]).save_as(tmp_path / "plain.dcm")
    images, errors = DicomLoader(workers=1, priority_rules=RULES).load(tmp_path)
    by_name = {i.context.source.rsplit("/", 1)[-1]: i.context for i in images}
    assert not errors
    assert (by_name["ordered.dcm"].priority, by_name["ordered.dcm"].priority_reason) == (STAT, "attribute:RequestedProcedurePriority")
    assert (by_name["sidecar.dcm"].priority, by_name["sidecar.dcm"].priority_reason) == (STAT, "sidecar")
    assert "priority" not in by_name["sidecar.dcm"].case and by_name["sidecar.dcm"].case["weight_kg"] == 70
    assert by_name["plain.dcm"].priority == ROUTINE
