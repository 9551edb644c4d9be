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


class ReportPoolOp(Operator):
    """Renders reports off the hot path: the standards formats in worker processes, STAT first.

    Named inputs:
        decisions: ``list[Decision]`` (a batch; may be empty). Never blocks inference: decisions
            wait in the pool's queue, STAT first.

    Named outputs:
        reports: ``list[ReportBundle]`` of the reports finished since the last tick (STAT ones
            first), followed, with ``study_rollup``, by the updated roll-ups of their studies.
            Emitted only when something finished.

    The emitter (report names, instance numbers, study roll-ups) stays in this process; workers
    get the finding, decision and thumbnail (:class:`~burnscope.operators.report.core.RenderTask`)
    and return the rendered bytes. The operator ticks every ``tick_ms`` (a ``PeriodicCondition``
    it adds itself) to collect finished reports.

    Parameters:
        emitter: the :class:`ReportEmitter` (formats, source root, date format).
        pool: a :class:`~burnscope.operators.report.pool.ReportingPool` (else one of ``workers``
            processes; None: one per core but one; 0: render in this operator, as ``ReportEmitterOp``).
        study_rollup: also emit study-level roll-ups (default False).
        tick_ms: how often finished reports are collected (default 5).
        metrics: optional recorder with ``observe_stage(stage, seconds)`` and ``set_queue(name, depth)``.
    """

    def __init__(self, fragment, *args, emitter: ReportEmitter, pool=None, workers: int | None = None,
                 study_rollup: bool = False, tick_ms: float = 5.0, metrics=None, **kwargs):
        import datetime

        from holoscan.conditions import PeriodicCondition

        from burnscope.operators.report.pool import ReportingPool

        self.emitter = emitter
        if pool is None:  # JSON and text only: nothing worth a process
            standards = any(not f.final for f in emitter._formats)
            pool = ReportingPool(workers if emitter.renders_anywhere and standards else 0)
        self.pool = pool
        self.study_rollup = study_rollup
        self.metrics = metrics
        self.reports_emitted = 0
        period = PeriodicCondition(fragment, recess_period=datetime.timedelta(milliseconds=tick_ms), name="report_tick")
        super().__init__(fragment, period, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        from holoscan.core import ConditionType

        spec.input("decisions").condition(ConditionType.NONE)
        spec.output("reports")

    def start(self) -> None:
        self.pool.start()

    def stop(self) -> None:
        self.pool.close()

    def compute(self, op_input, op_output, context) -> None:
        while True:
            decisions = op_input.receive("decisions")
            if decisions is None:
                break
            for d in decisions:
                self.pool.submit(self.emitter.prepare(d, self.emitter.stem_for(d)), d.finding.context.priority)
        finished = self.pool.collect()
        if self.metrics is not None:
            self.metrics.set_queue("reporting", self.pool.pending)
            for r in finished:
                self.metrics.observe_stage("report_queue", r.queued_s)
                self.metrics.observe_stage("render", r.render_s)
        if not finished:
            return
        bundles = [self.emitter.finish(r.task) for r in finished]
        if self.study_rollup:
            touched = {r.task.decision.finding.context.study_instance_uid for r in finished}
            bundles += self.emitter.study_rollups(sorted(u for u in touched if u))
        self.reports_emitted += len(finished)
        op_output.emit(bundles, "reports")

    @property
    def pending(self) -> int:
        return self.pool.pending
