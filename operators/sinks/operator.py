"""Holoscan wrappers of the sinks (:mod:`burnscope.operators.sinks.folder`)."""

from __future__ import annotations

from burnscope.operators.holoscan_runtime import holoscan  # noqa: F401  (preloads libcudart)
from holoscan.core import Operator, OperatorSpec

from burnscope.operators.sinks.folder import ErrorSink, FolderSink


class FolderSinkOp(Operator):
    """Writes report bundles into a folder, atomically, never replacing a different report.

    Named inputs:
        reports: ``list[ReportBundle]`` (may be empty).

    Named outputs:
        none.

    Parameters:
        out_dir: output folder (created when missing).
        fsync: flush each file to disk before it is renamed into place (default True).

    After ``app.run()`` read ``written``, ``unchanged``, ``errors``, ``labels`` (or ``sink``, the core).
    """

    def __init__(self, fragment, *args, out_dir, fsync: bool = True, **kwargs):
        self.sink = FolderSink(out_dir, fsync=fsync)
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("reports")

    def compute(self, op_input, op_output, context) -> None:
        self.sink.write_all(op_input.receive("reports") or [])

    @property
    def written(self) -> int:
        return self.sink.written

    @property
    def unchanged(self) -> int:
        return self.sink.unchanged

    @property
    def new(self) -> int:
        return self.sink.new

    @property
    def errors(self) -> int:
        return self.sink.errors

    @property
    def labels(self) -> dict[str, int]:
        return dict(self.sink.labels)


class ErrorSinkOp(Operator):
    """Appends error records to ``<out_dir>/errors.jsonl`` and counts them.

    Named inputs:
        errors: ``list[ErrorRecord]`` (may be empty).

    Named outputs:
        none.

    Parameters:
        out_dir: output folder.

    After ``app.run()`` read ``errors`` (records received), ``written``, ``by_reason`` (= ``reasons``).
    """

    def __init__(self, fragment, *args, out_dir, **kwargs):
        self.sink = ErrorSink(out_dir)
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("errors")

    def compute(self, op_input, op_output, context) -> None:
        self.sink.write(op_input.receive("errors") or [])

    @property
    def errors(self) -> int:
        return self.sink.errors

    @property
    def written(self) -> int:
        return self.sink.written

    @property
    def by_reason(self) -> dict[str, int]:
        return dict(self.sink.by_reason)

    reasons = by_reason


class NetworkSinkOp(Operator):
    """Delivers report bundles to PACS / DICOMweb / FHIR destinations through the durable outbox.

    Every delivery is recorded in the outbox (SQLite) before it is attempted; what cannot be
    delivered now is retried with backoff, at the end of the run (``drain_timeout_s``) and by the
    next run or ``burnscope outbox retry``.

    Named inputs:
        reports: ``list[ReportBundle]`` (may be empty); their ``deliveries`` name what to send.

    Named outputs:
        none.

    Parameters:
        outbox_path: the outbox database (e.g. ``<output>/outbox.sqlite``).
        destinations: list of dicts ``{name, kind: cstore|stowrs|fhir, ...transport settings}``.
        audit_path: JSON-lines audit log (default: ``audit.jsonl`` beside the outbox).
        echo: C-ECHO the C-STORE destinations at start (default True).
        drain_timeout_s: how long ``stop()`` keeps delivering what is left (default 30 s).
        pump_budget_s: time each ``compute()`` may spend sending (default 2 s).

    After ``app.run()`` read ``enqueued``, ``delivered``, ``failed``, ``pending``.
    """

    def __init__(
        self,
        fragment,
        *args,
        outbox_path,
        destinations,
        audit_path=None,
        echo: bool = True,
        drain_timeout_s: float = 30.0,
        pump_budget_s: float = 2.0,
        **kwargs,
    ):
        from burnscope.operators.sinks.network import DeliveryService

        self.service = DeliveryService.open(outbox_path, destinations, audit_path=audit_path)
        self.do_echo = echo
        self.drain_timeout_s = drain_timeout_s
        self.pump_budget_s = pump_budget_s
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("reports")

    def start(self) -> None:
        if self.do_echo:
            self.service.echo()

    def compute(self, op_input, op_output, context) -> None:
        import time

        self.service.submit(op_input.receive("reports") or [])
        self.service.pump(deadline=time.monotonic() + self.pump_budget_s)

    def stop(self) -> None:
        self.service.drain(timeout_s=self.drain_timeout_s)
        self.service.close()

    @property
    def enqueued(self) -> int:
        return self.service.enqueued

    @property
    def delivered(self) -> int:
        return self.service.delivered

    @property
    def failed(self) -> int:
        return self.service.failed

    @property
    def pending(self) -> int:
        return self.service.outbox.pending_count()
