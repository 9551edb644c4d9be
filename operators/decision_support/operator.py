"""Holoscan wrapper of clinical decision support (:mod:`burnscope.operators.decision_support.core`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from burnscope.operators.holoscan_runtime import holoscan  # noqa: F401  (preloads libcudart)
from holoscan.core import Operator, OperatorSpec

from burnscope.operators.decision_support.core import DecisionSupport


class DecisionSupportOp(Operator):
    """Combines each burn finding with its case data: TBSA, Parkland fluids, ABA referral.

    Named inputs:
        findings: ``list[Finding]`` (a batch; may be empty). Depth comes from ``Finding.label``,
            body site from ``Finding.context.body_site``, case data from ``Finding.context.case``
            (keys as ``burnscope decide`` reads them).

    Named outputs:
        decisions: ``list[Decision]``, one per finding, in input order. Inputs that were not
            given are named in ``Decision.missing``; nothing is guessed.

    Parameters:
        default_case: case data applied to every image (e.g. CLI options); per-image case data
            overrides it key by key.
    """

    def __init__(self, fragment, *args, default_case: Mapping[str, Any] | None = None, **kwargs):
        self.support = DecisionSupport(default_case)
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("findings")
        spec.output("decisions")

    def compute(self, op_input, op_output, context) -> None:
        findings = op_input.receive("findings") or []
        op_output.emit(self.support(list(findings)), "decisions")
