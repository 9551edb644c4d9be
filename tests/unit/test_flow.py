"""The run ledger (accounting, drain) and the run monitor (when a run is over), without Holoscan;
and RunMonitorOp ending a small Holoscan graph only once every message has drained."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from burnscope.common.messages import ErrorRecord, ImageContext, ImageRecord, ReportBundle
from burnscope.operators.dicom_loader.records import FileResult
from burnscope.operators.flow.ledger import RunLedger, bundle_key, image_key
from burnscope.operators.flow.monitor import DRAINED, GRACE_EXPIRED, INTERRUPTED, STALLED, RunMonitor, StopRequest


def _images(path: str, frames: int = 1, uid: str = "1.2.3") -> FileResult:
    records = [ImageRecord(ImageContext(source=path, sop_instance_uid=uid, frame_number=f), np.zeros((2, 2, 3), np.uint8))
               for f in range(1, frames + 1)]
    return FileResult(path=Path(path), images=records)


def _bundle(path: str, frame: int = 1, kind: str = "image", errors=()) -> ReportBundle:
    report = {"source": {"file": path, "frame": frame}} if kind == "image" else {}
    return ReportBundle(stem=Path(path).stem, artefacts={".json": b"{}"}, label=f"uid#{frame}", report=report,
                        kind=kind, errors=list(errors))


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_every_unit_ends_as_one_outcome_multiframe_errors_skips_and_rollups():
    done = []
    ledger = RunLedger(on_file_done=lambda path, outcome: done.append((Path(path).name, outcome)))
    ledger.accept(_images("in/a.dcm", frames=3))
    ledger.accept(FileResult(path=Path("in/bad.dcm"), error=ErrorRecord("in/bad.dcm", "truncated", "short", "9.9")))
    ledger.accept(FileResult(path=Path("in/other.dcm"), skipped=True))
    assert done == [("other.dcm", "skipped")]  # a skip settles at once
    snap = ledger.snapshot()
    assert (snap.accepted, snap.open, snap.skipped) == (5, 4, 1)

    # two frames reported, a study roll-up (not a unit), a render error beside an image's report
    render_error = ErrorRecord("in/a.dcm", "report_pdf_failed", "x", stage="report")
    ledger.settle_reports([_bundle("in/a.dcm", 1), _bundle("in/a.dcm", 2, errors=[render_error]),
                           _bundle("in/study", kind="study")])
    ledger.settle_errors([render_error, ErrorRecord("in/bad.dcm", "truncated", "short", "9.9")])
    assert done[-1] == ("bad.dcm", "error")
    acc = ledger.accounting()
    assert acc["lost"] == 1 and acc["render_errors"] == 1 and acc["balanced"]
    assert acc["lost_items"] == [{"label": "1.2.3#3", "file": "a.dcm", "waiting_for": "report"}]
    ledger.settle_reports([_bundle("in/a.dcm", 3)])
    assert done[-1] == ("a.dcm", "reported")
    acc = ledger.accounting()
    assert (acc["accepted"], acc["reported"], acc["errors"], acc["skipped"], acc["lost"]) == (5, 3, 1, 1, 0)


def test_a_second_report_for_the_same_image_is_a_duplicate_and_an_unwritten_report_an_error():
    ledger = RunLedger()
    ledger.accept(_images("a.dcm"))
    ledger.accept(_images("b.dcm", uid="4.5"))
    ledger.settle_reports([_bundle("a.dcm"), _bundle("b.dcm")], ["written", "error"])
    ledger.settle_reports([_bundle("a.dcm")])
    acc = ledger.accounting()
    assert acc["reported"] == 1 and acc["errors"] == 1 and acc["lost"] == 0
    assert acc["duplicates"] == 1 and acc["write_failures"] == [{"label": "uid#1"}]
    assert ledger.snapshot().by_reason == {"write_failed": 1}


def test_the_same_file_accepted_twice_needs_two_reports():
    ledger = RunLedger()
    ledger.accept(_images("same.dcm"))
    ledger.accept(_images("same.dcm"))  # an SCU sent the instance again
    ledger.settle_reports([_bundle("same.dcm")])
    assert ledger.open_count == 1
    ledger.settle_reports([_bundle("same.dcm")])
    assert ledger.open_count == 0 and ledger.accounting()["reported"] == 2 and "duplicates" not in ledger.accounting()


def test_with_delivery_a_report_is_complete_once_the_outbox_took_it_in_either_order():
    ledger = RunLedger(deliveries=True)
    for name in ("a.dcm", "b.dcm", "c.dcm"):
        ledger.accept(_images(name))
    ledger.handed_off([_bundle("a.dcm")])  # the delivery sink first
    assert ledger.open_count == 3
    ledger.settle_reports([_bundle("a.dcm"), _bundle("b.dcm"), _bundle("c.dcm")])
    assert ledger.open_count == 2
    ledger.handed_off([_bundle("b.dcm")])
    ledger.handed_off([_bundle("c.dcm")], ok=False, reason="outbox locked")
    acc = ledger.accounting()
    assert (acc["lost"], acc["queued_for_delivery"], acc["not_queued"]) == (0, 2, 1)
    assert acc["not_queued_items"] == [{"label": "1.2.3", "reason": "outbox locked"}]


def test_drain_needs_the_source_finished_and_every_terminal_at_every_tick():
    ledger = RunLedger()
    ledger.register_terminal("folder")
    ledger.register_terminal("delivery")
    ledger.tick()
    ledger.tick()
    ledger.finish()
    ledger.message_done("folder")
    ledger.message_done("folder")
    ledger.message_done("delivery")
    assert not ledger.drained() and ledger.in_flight() == 1
    ledger.message_done("delivery")
    assert ledger.drained() and ledger.in_flight() == 0


def _stoppable(clock):
    """A ledger with one terminal and one message in flight, a stop request, a monitor (grace 5 s)."""
    ledger = RunLedger(clock=clock)
    ledger.register_terminal("sink")
    stop = StopRequest()
    monitor = RunMonitor(ledger, stop, grace_s=5, clock=clock)
    ledger.tick()
    return ledger, stop, monitor


def test_monitor_outcomes_drained_interrupted_grace_and_stall():
    clock = Clock()
    ledger = RunLedger(clock=clock)
    ledger.register_terminal("sink")
    monitor = RunMonitor(ledger, grace_s=5, stall_timeout_s=60, clock=clock)
    ledger.tick()
    assert monitor.check() is None
    clock.now += 59
    assert monitor.check() is None
    ledger.message_done("sink")  # progress
    ledger.tick()
    clock.now += 59
    assert monitor.check() is None
    clock.now += 2
    assert monitor.check() == STALLED and monitor.check() == STALLED  # decided once

    idle = RunLedger(clock=clock)
    idle.register_terminal("sink")
    service = RunMonitor(idle, grace_s=5, stall_timeout_s=60, clock=clock)
    clock.now += 3600
    assert service.check() is None  # an idle service is not stalled

    ledger, stop, monitor = _stoppable(clock)
    stop.request(15)
    assert monitor.check() is None
    ledger.finish()
    ledger.message_done("sink")
    assert monitor.check() == INTERRUPTED

    ledger, stop, monitor = _stoppable(clock)
    stop.request(2)
    assert monitor.check() is None
    clock.now += 6
    assert monitor.check() == GRACE_EXPIRED
    stop2 = StopRequest()
    stop2.request(2)
    stop2.request(2)
    assert stop2.forced and RunMonitor(ledger, stop2, clock=clock).check() == GRACE_EXPIRED

    done = RunLedger(clock=clock)
    done.finish()
    assert RunMonitor(done, clock=clock).check() == DRAINED


def test_keys():
    assert image_key("a/b.dcm", 2) == "a/b.dcm#2" and image_key("x", 0) == "x#1"
    assert bundle_key(_bundle("a.dcm", 3)) == "a.dcm#3" and bundle_key(_bundle("s", kind="study")) is None


# -- the operator in a real Holoscan graph --------------------------------------------------------

def _graph(ledger, *, count, min_size=1, last_s=0.0, monitor=None):
    """source → sink; the sink consumes one message per tick but only runs with ``min_size`` queued."""
    from burnscope.operators.holoscan_runtime import holoscan  # noqa: F401
    from holoscan.core import Application, ConditionType, IOSpec, Operator

    from burnscope.operators.flow.operator import RunMonitorOp

    class Source(Operator):
        def __init__(self, *args, **kwargs):
            self.sent = 0
            super().__init__(*args, **kwargs)

        def setup(self, spec):
            spec.output("out")

        def compute(self, op_input, op_output, context):
            op_output.emit(self.sent, "out")
            self.sent += 1
            ledger.tick()
            if self.sent == count:
                ledger.finish()
                self.stop_execution()

    class Sink(Operator):
        def __init__(self, *args, **kwargs):
            self.got = []
            super().__init__(*args, **kwargs)
            ledger.register_terminal(self.name)

        def setup(self, spec):
            port = spec.input("in").connector(IOSpec.ConnectorType.DOUBLE_BUFFER, capacity=2)
            port.condition(ConditionType.MESSAGE_AVAILABLE, min_size=min_size)

        def compute(self, op_input, op_output, context):
            import time

            value = op_input.receive("in")
            if value == count - 1:
                time.sleep(last_s)
            self.got.append(value)
            ledger.message_done(self.name)

    class App(Application):
        def compose(self):
            src = Source(self, name="src")
            self.sink = Sink(self, name="sink")
            self.add_flow(src, self.sink)
            if monitor is not None:
                self.add_operator(RunMonitorOp(self, name="run_monitor", monitor=monitor, period_s=0.02))

    return App()


def _event_based(app, timeout_ms=0):
    from holoscan.schedulers import EventBasedScheduler

    app.scheduler(EventBasedScheduler(app, worker_thread_number=2, stop_on_deadlock=True,
                                      stop_on_deadlock_timeout=timeout_ms))
    return app


def test_holoscan_ends_a_graph_with_a_message_still_queued_and_run_returns_normally():
    # The scheduler's rule: nothing ready, nothing running -> the end. A receiver holding a message
    # its condition does not (yet) accept counts as waiting, not as work.
    ledger = RunLedger()
    app = _event_based(_graph(ledger, count=3, min_size=2))
    app.run()  # no error, no warning to the caller
    assert app.sink.got == [0, 1] and ledger.in_flight() == 1


def test_with_the_monitor_that_run_does_not_end_silently_it_stalls_with_the_message_counted():
    ledger = RunLedger()
    monitor = RunMonitor(ledger, stall_timeout_s=1.0)
    app = _event_based(_graph(ledger, count=3, min_size=2, monitor=monitor), timeout_ms=200)
    app.run()
    assert monitor.outcome == STALLED and app.sink.got == [0, 1] and ledger.in_flight() == 1


def test_monitor_op_ends_the_graph_once_drained(holoscan_last_s=0.4):
    ledger = RunLedger()
    monitor = RunMonitor(ledger)
    app = _event_based(_graph(ledger, count=5, last_s=holoscan_last_s, monitor=monitor), timeout_ms=50)
    app.run()
    assert app.sink.got == [0, 1, 2, 3, 4] and monitor.outcome == DRAINED
