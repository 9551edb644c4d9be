"""Holoscan wrappers of the sinks (:mod:`burnscope.operators.sinks.folder`).

Each takes an optional ``ledger`` (:class:`~burnscope.operators.flow.ledger.RunLedger`): it then
registers as a terminal of the graph, settles what it stored there (reports, error records,
handed-off deliveries) and counts each message it has processed, so the run can prove that
nothing was lost and end once everything has drained.
"""

from __future__ import annotations

import logging

from burnscope.operators.holoscan_runtime import holoscan  # noqa: F401  (preloads libcudart)
from holoscan.core import Operator, OperatorSpec

from burnscope.operators.sinks.folder import ErrorSink, FolderSink

log = logging.getLogger(__name__)


def _register(op, ledger) -> None:
    if ledger is not None:
        ledger.register_terminal(op.name)


class FolderSinkOp(Operator):
    """Writes report bundles into a folder, atomically, never replacing a different report.

    Named inputs:
        reports: ``list[ReportBundle]`` (may be empty).

    Named outputs:
        none.

    Parameters:
        out_dir: output folder (created when missing).
        fsync: flush each file to disk before it is renamed into place (default True).
        ledger: settle each image report (``reported``, or ``error`` when it could not be written).

    After ``app.run()`` read ``written``, ``unchanged``, ``errors``, ``labels``, ``messages`` (or
    ``sink``, the core).
    """

    def __init__(self, fragment, *args, out_dir, fsync: bool = True, ledger=None, **kwargs):
        self.sink = FolderSink(out_dir, fsync=fsync)
        self.ledger = ledger
        self.messages = 0
        super().__init__(fragment, *args, **kwargs)
        _register(self, ledger)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("reports")

    def compute(self, op_input, op_output, context) -> None:
        bundles = list(op_input.receive("reports") or [])
        results = self.sink.write_all(bundles)
        self.messages += 1
        if self.ledger is not None:
            self.ledger.settle_reports(bundles, [r.status for r in results])
            self.ledger.message_done(self.name)

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
        ledger: settle the file of each loader error record (``error``).

    After ``app.run()`` read ``errors`` (records received), ``written``, ``by_reason`` (= ``reasons``),
    ``messages``.
    """

    def __init__(self, fragment, *args, out_dir, ledger=None, **kwargs):
        self.sink = ErrorSink(out_dir)
        self.ledger = ledger
        self.messages = 0
        super().__init__(fragment, *args, **kwargs)
        _register(self, ledger)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("errors")

    def compute(self, op_input, op_output, context) -> None:
        records = list(op_input.receive("errors") or [])
        self.sink.write(records)
        self.messages += 1
        if self.ledger is not None:
            self.ledger.settle_errors(records)
            self.ledger.message_done(self.name)

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
        ledger: hand each image report off there once its deliveries are in the outbox (or
            refused by it: the database locked by another process, the disk full).

    A bundle the outbox cannot take now (locked, full) is kept in memory and offered again with
    the next message and at ``stop()``; what it still refuses then is reported as not queued
    (``not_queued``), never dropped silently.

    After ``app.run()`` read ``enqueued``, ``delivered``, ``failed``, ``pending``, ``not_queued``,
    ``messages``.
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
        ledger=None,
        **kwargs,
    ):
        from burnscope.operators.sinks.network import DeliveryService

        self.service = DeliveryService.open(outbox_path, destinations, audit_path=audit_path)
        self.do_echo = echo
        self.drain_timeout_s = drain_timeout_s
        self.pump_budget_s = pump_budget_s
        self.ledger = ledger
        self.messages = 0
        self.not_queued = 0
        self._backlog: list = []
        self._last_refusal = ""
        super().__init__(fragment, *args, **kwargs)
        _register(self, ledger)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("reports")

    def start(self) -> None:
        if self.do_echo:
            self.service.echo()

    def _submit(self, bundles: list) -> bool:
        """Offer the backlog and ``bundles`` to the outbox; True when it took them all."""
        import sqlite3

        from burnscope.operators.sinks.outbox import OutboxError

        todo = self._backlog + bundles
        try:
            self.service.submit(todo)
        except (OutboxError, sqlite3.Error, OSError) as exc:
            self._backlog = todo
            reason = str(exc)
            if reason != self._last_refusal:
                log.error("outbox refused %d report(s), kept for the next attempt: %s", len(todo), reason)
            self._last_refusal = reason
            return False
        self._backlog = []
        if self.ledger is not None:
            self.ledger.handed_off(todo)
        return True

    def compute(self, op_input, op_output, context) -> None:
        import time

        if self._submit(list(op_input.receive("reports") or [])):
            try:
                self.service.pump(deadline=time.monotonic() + self.pump_budget_s)
            except Exception as exc:  # the outbox is unusable now: what it holds is retried later
                log.error("delivery round failed: %s", exc)
        self.messages += 1
        if self.ledger is not None:
            self.ledger.message_done(self.name)

    def stop(self) -> None:
        if self._backlog and not self._submit([]):
            self.not_queued = len(self._backlog)
            if self.ledger is not None:
                self.ledger.handed_off(self._backlog, ok=False, reason=self._last_refusal)
        try:
            self.service.drain(timeout_s=self.drain_timeout_s)
        except Exception as exc:
            log.error("delivery at the end of the run failed: %s; the outbox keeps the rest", exc)
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
