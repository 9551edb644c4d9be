"""When a run is over (no Holoscan): drained, interrupted, out of grace time, or stalled.

A Holoscan graph whose source has stopped ends when the scheduler's deadlock detection finds no
operator ready or running. That rule knows nothing of the messages: an operator whose wake-up is
missed, or a race between a worker taking a job and the detector counting running workers,
ends the run with messages still queued, and ``run()`` returns normally (exit code 0). burnscope
keeps a periodic :class:`~burnscope.operators.flow.operator.RunMonitorOp` in the graph, so the
detector never fires while the run is alive, and ends the graph itself when the
:class:`~burnscope.operators.flow.ledger.RunLedger` has drained:

* ``drained``: the source has finished and every terminal processed every message;
* ``interrupted``: a stop was requested (SIGINT/SIGTERM); the source stops taking input and the
  monitor waits, at most ``grace_s``, for what is in flight to drain (then ``grace_expired``);
* ``stalled``: work is in flight but nothing has moved for ``stall_timeout_s`` (a stuck stage or
  a lost wake-up): the run ends and the ledger lists what was not reported.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from burnscope.operators.flow.ledger import RunLedger

log = logging.getLogger(__name__)

DRAINED, INTERRUPTED, GRACE_EXPIRED, STALLED = "drained", "interrupted", "grace_expired", "stalled"


class StopRequest:
    """A request to stop taking input and finish what is in flight (set from a signal handler).

    ``signum``: the signal that asked (None when stopped from code); ``at``: when (monotonic);
    ``forced``: a second request, meaning stop now without waiting.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signum: int | None = None
        self.at: float | None = None
        self.forced = False

    def request(self, signum: int | None = None) -> None:
        if self._event.is_set():
            self.forced = True
            return
        self.signum, self.at = signum, time.monotonic()
        self._event.set()

    def __bool__(self) -> bool:
        return self._event.is_set()

    is_set = __bool__

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)


class RunMonitor:
    """Decides when the graph may end (see the module docstring).

    Parameters:
        ledger: the run's ledger (source ticks and finish, terminal message counts, open units).
        stop: a :class:`StopRequest` (optional).
        grace_s: after a stop request, how long in-flight work may take to drain.
        stall_timeout_s: how long work in flight may go without progress; None: no limit.
        clock: time source.
    """

    def __init__(
        self,
        ledger: RunLedger,
        stop: StopRequest | None = None,
        *,
        grace_s: float = 30.0,
        stall_timeout_s: float | None = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ledger = ledger
        self.stop = stop if stop is not None else StopRequest()
        self.grace_s = float(grace_s)
        self.stall_timeout_s = stall_timeout_s
        self.clock = clock
        self.outcome: str | None = None
        self.ended_at: float | None = None
        self._stop_seen_at: float | None = None
        self._started = threading.Event()

    def started(self) -> None:
        """The graph is running (the monitor operator's ``start``)."""
        self._started.set()

    def wait_started(self, timeout: float | None = None) -> bool:
        return self._started.wait(timeout)

    def _decide(self, outcome: str) -> str:
        self.outcome, self.ended_at = outcome, self.clock()
        level = logging.INFO if outcome == DRAINED else logging.WARNING
        log.log(level, "run %s (%d message(s) in flight, %d unit(s) open)",
                outcome, self.ledger.in_flight(), self.ledger.open_count)
        return outcome

    def check(self) -> str | None:
        """None while the run goes on; else the outcome (decided once)."""
        if self.outcome is not None:
            return self.outcome
        ledger = self.ledger
        if ledger.drained():
            return self._decide(INTERRUPTED if self.stop else DRAINED)
        now = self.clock()
        if self.stop:
            if self._stop_seen_at is None:
                self._stop_seen_at = now
            if self.stop.forced or now - self._stop_seen_at >= self.grace_s:
                return self._decide(GRACE_EXPIRED)
        stuck = ledger.in_flight() > 0 and self.stall_timeout_s is not None
        if stuck and now - ledger.last_progress >= self.stall_timeout_s:
            return self._decide(STALLED)
        return None


__all__ = ["DRAINED", "GRACE_EXPIRED", "INTERRUPTED", "STALLED", "RunMonitor", "StopRequest"]
