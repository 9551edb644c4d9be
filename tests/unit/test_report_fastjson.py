"""The fast indented JSON writer gives json.dumps's bytes for every value, and its errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from burnscope.operators.report.fastjson import dumps_indent2


def reference(value):
    return json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)


scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.tuples(children, children)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(values)
def test_same_text_as_json_dumps(value):
    assert dumps_indent2(value) == reference(value)


@pytest.mark.parametrize("value", [
    {"ünïcode": "Ä\u2028\x00\"\\", "e": [], "d": {}, "big": 10**30, "tiny": 5e-324, "neg": -0.0},
    {1: "int key", 2.5: "float key", True: "bool key", None: "none key"},
    {"np": np.float64(0.1), "nested": [np.float64(2.5)]},
    [True, False, None, 1.5e300, "x"],
])
def test_edge_values(value):
    assert dumps_indent2(value) == reference(value)


@pytest.mark.parametrize("bad", [{"x": math.nan}, [math.inf], {"s": {1, 2}}, {(1, 2): "tuple key"}])
def test_errors_are_json_s_own(bad):
    with pytest.raises((ValueError, TypeError)) as expected:
        reference(bad)
    with pytest.raises(type(expected.value), match=str(expected.value).split(":")[0]):
        dumps_indent2(bad)


def test_cycles_raise_like_json():
    cycle: list = []
    cycle.append(cycle)
    with pytest.raises(ValueError, match="Circular reference"):
        dumps_indent2(cycle)


def test_a_report_renders_byte_identically():
    from burnscope.operators.report.core import build_report, render_json
    from fixtures.examples import example_decision

    report = build_report(example_decision())
    assert render_json(report) == (reference(report) + "\n").encode("utf-8")
