"""Holoscan wrapper of the report emitter (:mod:`burnscope.operators.report.core`)."""

from __future__ import annotations

from collections.abc import Iterable

from burnscope.operators.holoscan_runtime import holoscan  # noqa: F401  (preloads libcudart)
from holoscan.core import Operator, OperatorSpec

from burnscope.operators.report.core import ReportEmitter


class ReportEmitterOp(Operator):
    """Renders one report bundle per decision.

    Named inputs:
        decisions: ``list[Decision]`` (a batch; may be empty).

    Named outputs:
        reports: ``list[ReportBundle]``, one per decision, in input order (empty for an empty batch);
            with ``study_rollup`` followed by the updated roll-ups (``kind="study"``) of the
            studies of this batch that have two or more images so far.

    Parameters:
        formats: artefacts to render; ``("json", "txt")`` by default, add ``"sr"``, ``"pdf"``,
            ``"pdf_dcm"``, ``"fhir"`` for the standards-based reports.
        source_root: the input folder; report names then mirror its sub-folders
            (``study-001/IMG-0001.json``). Without it names are flat.
        study_rollup: also emit study-level roll-ups (JSON + text; default False).
        emitter: a ready :class:`ReportEmitter` (overrides ``formats``/``source_root``).
    """

    def __init__(
        self,
        fragment,
        *args,
        formats: Iterable[str] = ("json", "txt"),
        source_root: str | None = None,
        study_rollup: bool = False,
        emitter: ReportEmitter | None = None,
        **kwargs,
    ):
        self.emitter = emitter or ReportEmitter(formats, source_root=source_root)
        self.study_rollup = study_rollup
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("decisions")
        spec.output("reports")

    def compute(self, op_input, op_output, context) -> None:
        decisions = list(op_input.receive("decisions") or [])
        bundles = self.emitter.emit(decisions)
        if self.study_rollup:
            touched = {d.finding.context.study_instance_uid for d in decisions}
            bundles += self.emitter.study_rollups(sorted(u for u in touched if u))
        op_output.emit(bundles, "reports")
