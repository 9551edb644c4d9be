"""Holoscan operator that settles images in the service's ledger and metrics as their reports and
error records arrive (:mod:`burnscope.operators.monitoring.core`)."""

from __future__ import annotations

from typing import Any

from burnscope.operators.holoscan_runtime import holoscan  # noqa: F401  (preloads libcudart)
from holoscan.core import Operator, OperatorSpec

from burnscope.operators.monitoring.core import InFlight, image_key


def _bundle_key(bundle: Any) -> str | None:
    if getattr(bundle, "kind", "image") != "image":
        return None  # study roll-ups summarise images settled by their own reports
    src = (getattr(bundle, "report", None) or {}).get("source") or {}
    return image_key(src["file"], src.get("frame", 1)) if "file" in src else None


class SettleOp(Operator):
    """Marks images settled: reported (their bundle arrived) or failed (an error record arrived).

    Named inputs:
        reports: ``list[ReportBundle]`` (study roll-ups are not counted). Connect it after the
            folder sink's input so it sees what the sink writes.
        errors: ``list[ErrorRecord]`` of files the source could not load (optional: ``errors=False``).

    Named outputs:
        none.

    Parameters:
        in_flight: the :class:`InFlight` ledger the source accepts images into.
        errors: declare the ``errors`` port (default True).
        sink: optional folder sink core (``FolderSink``): the bundles are written first, so an
            image counts as reported once its report is on disk.
        metrics: optional recorder with ``observe_stage("write", seconds)``.
    """

    def __init__(self, fragment: Any, *args: Any, in_flight: InFlight, errors: bool = True, sink: Any = None,
                 metrics: Any = None, **kwargs: Any) -> None:
        self.in_flight = in_flight
        self.sink = sink
        self.metrics = metrics
        self.with_errors = bool(errors)
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        from holoscan.core import ConditionType

        spec.input("reports").condition(ConditionType.NONE)
        if self.with_errors:
            spec.input("errors").condition(ConditionType.NONE)
            spec.multi_port_condition(kind=ConditionType.MULTI_MESSAGE_AVAILABLE, port_names=["reports", "errors"],
                                      sampling_mode="SumOfAll", min_sum=1)
        else:
            spec.multi_port_condition(kind=ConditionType.MULTI_MESSAGE_AVAILABLE, port_names=["reports"],
                                      sampling_mode="SumOfAll", min_sum=1)

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        import time

        bundles = op_input.receive("reports") or []
        if self.sink is not None and bundles:
            started = time.perf_counter()
            self.sink.write_all(bundles)
            if self.metrics is not None:
                self.metrics.observe_stage("write", (time.perf_counter() - started) / len(bundles), len(bundles))
        for bundle in bundles:
            key = _bundle_key(bundle)
            if key is not None:
                self.in_flight.reported(key)
        if self.with_errors:
            for _record in op_input.receive("errors") or []:
                self.in_flight.error()
