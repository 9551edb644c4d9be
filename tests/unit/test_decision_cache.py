"""Decision support once per distinct case: same decisions as without the cache, keyed by content."""

from __future__ import annotations

import copy
import json

import pytest

from burnscope.common.messages import ImageContext
from burnscope.operators.decision_support.cache import DecisionCache, content_key
from burnscope.operators.decision_support.core import DecisionSupport, decide_for_finding
from fixtures import SAMPLE_DATA
from fixtures.examples import example_decision

CASES = [json.loads((SAMPLE_DATA / f"study-00{i}" / "case.json").read_text()) for i in (1, 2, 3)]
LABELS = ["superficial", "superficial_partial_thickness", "deep_partial_thickness", "full_thickness", "needs_review"]
SITES = ["", "Left hand", "Anterior trunk", "face"]


def test_cached_results_equal_fresh_ones_and_are_private_copies():
    cache = DecisionCache(decide_for_finding)
    for _ in range(3):
        for case in [{}, *CASES]:
            for label in LABELS:
                for site in SITES:
                    abstained = label == "needs_review"
                    got = cache(label, site, copy.deepcopy(case), abstained=abstained)
                    assert got == decide_for_finding(label, site, case, abstained=abstained)
                    got["warnings"].insert(0, "edited by a caller")  # must not reach the next call
                    if got.get("tbsa_by_depth"):
                        got["tbsa_by_depth"]["full_thickness"] = -1
    distinct = 4 * len(LABELS) * len(SITES)
    assert cache.misses == distinct and cache.hits == 2 * distinct


@pytest.mark.parametrize("a, b", [
    ({"weight_kg": 1}, {"weight_kg": 1.0}),
    ({"inhalation_injury": True}, {"inhalation_injury": 1}),
    ({"burns": [{"region": "left_arm", "depth": "full_thickness", "fraction": 0.5}]},
     {"burns": ({"region": "left_arm", "depth": "full_thickness", "fraction": 0.5},)}),
])
def test_values_of_other_types_are_other_keys(a, b):
    assert content_key(a) != content_key(b)
    assert content_key(a) == content_key(copy.deepcopy(a))
    cache = DecisionCache(decide_for_finding)
    first = cache("full_thickness", "", a, abstained=False)
    try:
        second = cache("full_thickness", "", b, abstained=False)
    except ValueError:  # a tuple of burns is rejected, as without the cache
        second = None
    assert cache.misses == 2
    assert first == decide_for_finding("full_thickness", "", a)
    if second is not None:
        assert second == decide_for_finding("full_thickness", "", b)


def test_bad_cases_raise_every_time_and_the_lru_is_bounded():
    cache = DecisionCache(decide_for_finding, size=2)
    for _ in range(2):
        with pytest.raises(ValueError, match="weight_kg"):
            cache("full_thickness", "", {"weight_kg": "heavy"}, abstained=False)
    assert cache.misses == 2 and cache.hits == 0
    for weight in (10, 20, 30, 10):
        cache("full_thickness", "", {"weight_kg": weight}, abstained=False)
    assert len(cache._entries) == 2 and cache.hits == 0  # 10 was dropped before it came back


def test_decision_support_with_and_without_the_cache_agree():
    base = example_decision().finding
    findings = []
    for i, case in enumerate([*CASES, *CASES, {}]):
        context = ImageContext(source=f"img{i}.dcm", body_site=SITES[i % len(SITES)], case=dict(case))
        findings.append(copy.replace(base, context=context) if hasattr(copy, "replace") else
                        type(base)(**{**base.__dict__, "context": context}))
    cached = DecisionSupport(cache_size=None)(findings)
    plain = DecisionSupport(cache_size=0)(findings)
    assert [d.__dict__ for d in cached] == [d.__dict__ for d in plain]
    assert all(d.warnings[0] == base.model.banner for d in cached) if base.model.demo else True
