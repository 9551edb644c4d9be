"""Holoscan operator that ends a graph when its :class:`~burnscope.operators.flow.ledger.RunLedger`
says every message has drained (see :mod:`burnscope.operators.flow.monitor`)."""

from __future__ import annotations

import datetime
from typing import Any

from burnscope.operators.holoscan_runtime import holoscan  # noqa: F401  (preloads libcudart)
from holoscan.conditions import PeriodicCondition
from holoscan.core import Operator, OperatorSpec

from burnscope.operators.flow.monitor import RunMonitor


class RunMonitorOp(Operator):
    """Keeps the graph alive until it has drained, then stops it; stops it early on request.

    Named inputs:
        none.

    Named outputs:
        none.

    The operator ticks every ``period_s`` (a ``PeriodicCondition`` it adds itself). Its
    periodic tick keeps the scheduler's deadlock detection from ending the run while work is in
    flight; when :meth:`RunMonitor.check` says so it calls ``fragment.stop_execution()``.

    Parameters:
        monitor: a :class:`RunMonitor` (the ledger, the stop request, the stall and grace limits).
        period_s: seconds between checks (default 0.05).

    After ``app.run()`` read ``monitor.outcome``: ``drained``, ``interrupted``, ``grace_expired``
    or ``stalled`` (None if the graph ended before the monitor decided, i.e. the scheduler ended
    it: the ledger then shows what was left open).
    """

    def __init__(self, fragment: Any, *args: Any, monitor: RunMonitor, period_s: float = 0.05, **kwargs: Any) -> None:
        self.monitor = monitor
        if not any(isinstance(a, PeriodicCondition) for a in args):
            period = datetime.timedelta(seconds=float(period_s))
            args = (PeriodicCondition(fragment, recess_period=period, name="monitor_period"), *args)
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        pass

    def start(self) -> None:
        self.monitor.started()

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        if self.monitor.check() is not None:
            self.fragment.stop_execution()


__all__ = ["RunMonitorOp"]
