"""DecisionSupportOp in a tiny Holoscan graph: batches in, decisions out, empty batch passes."""

from __future__ import annotations

from burnscope.operators.holoscan_runtime import holoscan  # noqa: F401  (preloads libcudart)
from holoscan.conditions import CountCondition
from holoscan.core import Application, Operator, OperatorSpec

from burnscope.operators.decision_support.operator import DecisionSupportOp
from burnscope.common.messages import DEMO_BANNER, Decision, Finding, ImageContext, ModelInfo

MODEL = ModelInfo(name="test", weights="demo", demo=True)


def finding(label, body_site="", case=None, abstained=False):
    context = ImageContext(source=f"/data/{label}.dcm", body_site=body_site, case=case or {})
    return Finding(
        context=context,
        label=label,
        probabilities={label: 0.9},
        confidence=0.9,
        abstained=abstained,
        model=MODEL,
    )


class Source(Operator):
    def __init__(self, fragment, batches, **kwargs):
        self.batches = list(batches)
        super().__init__(fragment, CountCondition(fragment, len(self.batches)), **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.output("findings")

    def compute(self, op_input, op_output, context):
        op_output.emit(self.batches.pop(0), "findings")


class Sink(Operator):
    def __init__(self, fragment, received, **kwargs):
        self.received = received
        super().__init__(fragment, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input("decisions")

    def compute(self, op_input, op_output, context):
        self.received.append(op_input.receive("decisions"))


def run_graph(batches, **op_kwargs):
    received: list = []

    class App(Application):
        def compose(self):
            source = Source(self, batches, name="source")
            decide = DecisionSupportOp(self, name="decide", **op_kwargs)
            sink = Sink(self, received, name="sink")
            self.add_flow(source, decide, {("findings", "findings")})
            self.add_flow(decide, sink, {("decisions", "decisions")})

    App().run()
    return received


def test_decision_operator_in_graph():
    case = {
        "age_years": 40,
        "weight_kg": 70,
        "hours_since_injury": 2,
        "burns": [
            {"region": "anterior_trunk", "depth": "deep_partial_thickness", "fraction": 1.0},
            {"region": "left_arm", "depth": "full_thickness", "fraction": 1.0},
        ],
    }
    batches = [
        [
            finding("deep_partial_thickness", "chest", case),
            finding("full_thickness", "Left hand"),
            finding("needs_review", "arm", abstained=True),
        ],
        [],
        [finding("deep_partial_thickness", "arm", {"weight_kg": -1})],
    ]
    received = run_graph(batches, default_case={"mechanism": "thermal"})
    assert [len(b) for b in received] == [3, 0, 1]
    full, image_only, review = received[0]
    assert all(isinstance(d, Decision) for d in received[0])
    assert full.tbsa_percent == 27.0 and full.parkland.total_ml_24h == 4 * 70 * 27
    assert full.referral.recommended and full.missing == ["inhalation_injury"]
    assert full.warnings[0] == DEMO_BANNER
    # Image only: depth from image, referral from depth + body site, no extent → no fluids.
    assert image_only.tbsa_percent is None and image_only.parkland is None
    assert {"burns", "weight_kg", "age_years"} <= set(image_only.missing)
    assert "special_area_hands" in image_only.referral.criteria_ids
    assert any("Depth from image" in w for w in image_only.warnings)
    assert review.referral.recommended is False
    # Bad case data does not stop the graph; the field is named.
    (bad,) = received[2]
    assert bad.missing == ["weight_kg"] and "weight_kg" in bad.warnings[-1]
