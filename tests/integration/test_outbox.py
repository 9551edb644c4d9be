"""The durable outbox: recorded before attempted, backoff with jitter, survives restarts,
idempotent, permanent rejections kept as failed; C-STORE against a real pynetdicom SCP that
refuses the Encapsulated PDF SOP class; the outbox CLI; NetworkSinkOp in a Holoscan graph."""

from __future__ import annotations

import json
import random

import pytest
from typer.testing import CliRunner

from burnscope.operators.report.core import ReportEmitter
from fixtures.examples import example_decision
from burnscope.operators.sinks.network import DeliveryService
from fixtures.orthanc_local import free_port
from burnscope.operators.sinks.outbox import Backoff, Outbox


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_enqueue_is_recorded_idempotent_and_survives_reopen(tmp_path):
    db = tmp_path / "outbox.sqlite"
    with Outbox(db) as outbox:
        assert outbox.enqueue("1.2.3", "pacs", "dicom", b"payload", label="1.2.3")
        assert not outbox.enqueue("1.2.3", "pacs", "dicom", b"other")  # same key: no-op
        assert outbox.enqueue("1.2.3", "web", "dicom", b"payload")  # another destination
    with Outbox(db) as outbox:  # a restarted app sees both, payload intact
        rows = outbox.rows()
        assert [(r["key"], r["destination"], r["status"]) for r in rows] == [
            ("1.2.3", "pacs", "pending"),
            ("1.2.3", "web", "pending"),
        ]
        assert outbox.claim_due("pacs")[0].payload == b"payload"
    with pytest.raises(ValueError):
        Outbox(db).enqueue("", "pacs", "dicom", b"x")


def test_interrupted_delivery_is_recovered_after_restart(tmp_path):
    db = tmp_path / "outbox.sqlite"
    outbox = Outbox(db)
    outbox.enqueue("k", "pacs", "dicom", b"x")
    assert [d.key for d in outbox.claim_due()] == ["k"]
    outbox.close()  # the process dies while "delivering"
    outbox = Outbox(db)
    assert outbox.claim_due() == []  # still marked delivering
    assert outbox.recover() == 1
    again = outbox.claim_due()
    assert [d.key for d in again] == ["k"] and again[0].attempts == 2


def test_backoff_grows_exponentially_with_jitter_and_cap():
    backoff = Backoff(base_s=1.0, factor=2.0, max_s=30.0, jitter=0.5)
    rng = random.Random(0)
    for attempt, raw in [(1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (9, 30.0)]:
        delays = [backoff.delay(attempt, rng) for _ in range(200)]
        assert all(raw * 0.5 <= d <= raw for d in delays)
        assert max(delays) - min(delays) > raw * 0.3  # jitter spreads retries


def test_transient_failure_schedules_retry_and_gives_up_at_max_attempts(tmp_path):
    clock = FakeClock()
    outbox = Outbox(
        tmp_path / "o.sqlite", backoff=Backoff(base_s=10, jitter=0.0), max_attempts=3, clock=clock
    )
    outbox.enqueue("k", "pacs", "dicom", b"x")
    d = outbox.claim_due()[0]
    assert outbox.mark_retry(d.id, "connection refused") == ("pending", 10.0)
    assert outbox.claim_due() == []  # not due yet
    clock.t += 10
    d = outbox.claim_due()[0]
    assert outbox.mark_retry(d.id, "connection refused")[1] == 20.0
    clock.t += 20
    d = outbox.claim_due()[0]
    assert outbox.mark_retry(d.id, "connection refused")[0] == "failed"
    row = outbox.rows()[0]
    assert row["status"] == "failed" and "gave up after 3 attempts" in row["last_error"]


def test_retry_and_purge(tmp_path):
    outbox = Outbox(tmp_path / "o.sqlite")
    for key in ("a", "b", "c"):
        outbox.enqueue(key, "pacs", "dicom", b"x")
    a, b, c = outbox.claim_due(limit=3)
    outbox.mark_delivered(a.id, 0)
    outbox.mark_failed(b.id, "refused", 0x0122)
    outbox.mark_retry(c.id, "down")
    assert outbox.counts()["pacs"] == {"pending": 1, "delivering": 0, "delivered": 1, "failed": 1}
    assert outbox.retry() == 2
    assert {r["key"]: (r["status"], r["attempts"]) for r in outbox.rows()} == {
        "a": ("delivered", 1),
        "b": ("pending", 0),
        "c": ("pending", 0),
    }
    assert outbox.purge_delivered() == 1 and [r["key"] for r in outbox.rows()] == ["b", "c"]


# ------------------------------------------------------------ a real DICOM SCP that refuses a SOP class


@pytest.fixture
def sr_only_scp():
    """pynetdicom Storage SCP that accepts Comprehensive SR but not Encapsulated PDF."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import ComprehensiveSRStorage, Verification

    received: list[str] = []

    def on_store(event):
        received.append(event.dataset.SOPInstanceUID)
        return 0x0000

    ae = AE(ae_title="SRONLY")
    ae.add_supported_context(Verification)
    ae.add_supported_context(ComprehensiveSRStorage)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    yield port, received
    server.shutdown()


@pytest.mark.network
def test_cstore_delivers_sr_and_marks_refused_sop_class_failed(tmp_path, sr_only_scp):
    port, received = sr_only_scp
    bundles = ReportEmitter(["sr", "pdf_dcm"]).emit([example_decision()])
    service = DeliveryService.open(
        tmp_path / "outbox.sqlite",
        [{"name": "pacs", "kind": "cstore", "host": "127.0.0.1", "port": port, "called_aet": "SRONLY"}],
    )
    assert service.echo() == {"pacs": "ok"}
    service.submit(bundles)
    assert service.drain(timeout_s=10)
    sr_uid, pdf_uid = (d["key"] for d in bundles[0].deliveries)
    assert received == [sr_uid]
    rows = {r["key"]: r for r in service.outbox.rows()}
    assert rows[sr_uid]["status"] == "delivered"
    assert rows[pdf_uid]["status"] == "failed" and rows[pdf_uid]["last_status"] == 0x0122
    assert service.pump() == 0 and service.outbox.rows()[1]["attempts"] == 1  # not retried forever
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert {(e["key"], e["outcome"]) for e in audit if e["event"] == "attempt"} == {
        (sr_uid, "delivered"),
        (pdf_uid, "failed"),
    }
    text = (tmp_path / "audit.jsonl").read_text()
    assert "Doe" not in text and "PID-0001" not in text  # no PHI in the audit log
    service.close()


@pytest.mark.network
def test_outbox_cli_status_retry_purge(tmp_path, sr_only_scp):
    import typer

    from burnscope.applications.cli import cmd_reports

    port, received = sr_only_scp
    db = tmp_path / "outbox.sqlite"
    service = DeliveryService.open(
        db, [{"name": "pacs", "kind": "cstore", "host": "127.0.0.1", "port": port, "called_aet": "SRONLY"}]
    )
    service.submit(ReportEmitter(["sr", "pdf_dcm"]).emit([example_decision()]))
    service.drain(timeout_s=10)
    service.close()

    app = typer.Typer()
    cmd_reports.register(app, typer.Typer())
    runner = CliRunner()
    result = runner.invoke(app, ["outbox", "status", "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert status["counts"]["pacs"]["delivered"] == 1 and status["counts"]["pacs"]["failed"] == 1
    assert status["failed"][0]["last_status"] == 0x0122
    result = runner.invoke(app, ["outbox", "status", "--db", str(db)])
    assert result.exit_code == 0 and "pacs" in result.output and "0x0122" in result.output
    # Retry: still refused (the PACS has not changed), so it ends failed again, attempted once more.
    result = runner.invoke(app, ["outbox", "retry", "--db", str(db), "--timeout", "5"])
    assert result.exit_code == 0, result.output
    assert "1 delivery(ies) due now" in result.output and "failed 1" in result.output
    result = runner.invoke(app, ["outbox", "purge-delivered", "--db", str(db)])
    assert result.exit_code == 0 and "purged 1" in result.output
    result = runner.invoke(app, ["outbox", "status", "--db", str(tmp_path / "missing.sqlite")])
    assert result.exit_code == 2


@pytest.mark.network
def test_network_sink_op_in_a_holoscan_graph(tmp_path, sr_only_scp):
    from burnscope.operators.holoscan_runtime import holoscan  # noqa: F401
    from holoscan.conditions import CountCondition
    from holoscan.core import Application, Operator, OperatorSpec

    from burnscope.operators.report.operator import ReportEmitterOp
    from burnscope.operators.sinks.operator import NetworkSinkOp

    port, received = sr_only_scp
    batches = [[example_decision()], [], [example_decision(source="/in/b.dcm", sop_uid="1.2.3.77")]]

    class Source(Operator):
        def setup(self, spec: OperatorSpec):
            spec.output("decisions")

        def compute(self, op_input, op_output, context):
            self.i = getattr(self, "i", -1) + 1
            op_output.emit(batches[self.i], "decisions")

    class App(Application):
        def compose(self):
            src = Source(self, CountCondition(self, len(batches)), name="source")
            emitter = ReportEmitterOp(self, name="report", formats=["sr"])
            self.net = NetworkSinkOp(
                self,
                name="pacs",
                outbox_path=str(tmp_path / "outbox.sqlite"),
                destinations=[
                    {
                        "name": "pacs",
                        "kind": "cstore",
                        "host": "127.0.0.1",
                        "port": port,
                        "called_aet": "SRONLY",
                    }
                ],
                drain_timeout_s=10,
            )
            self.add_flow(src, emitter, {("decisions", "decisions")})
            self.add_flow(emitter, self.net, {("reports", "reports")})

    app = App()
    app.run()
    assert (app.net.enqueued, app.net.delivered, app.net.failed, app.net.pending) == (2, 2, 0, 0)
    assert len(received) == 2


@pytest.mark.network
def test_cli_retry_of_one_destination_touches_no_other(tmp_path):
    import typer

    from burnscope.applications.cli import cmd_reports

    db = tmp_path / "outbox.sqlite"
    closed = free_port()  # nothing listens: every attempt is a transient failure
    service = DeliveryService.open(db, [
        {"name": "pacs", "kind": "cstore", "host": "127.0.0.1", "port": closed, "called_aet": "PACS", "timeout_s": 2},
        {"name": "emr", "kind": "fhir", "url": f"http://127.0.0.1:{closed}/fhir", "timeout_s": 2},
    ])
    service.submit(ReportEmitter(["sr", "fhir"]).emit([example_decision()]))
    service.close()
    with Outbox(db) as outbox:  # both waiting for their next attempt
        before = {r["destination"]: r["attempts"] for r in outbox.rows()}
    app = typer.Typer()
    cmd_reports.register(app, typer.Typer())
    result = CliRunner().invoke(app, ["outbox", "retry", "--db", str(db), "--destination", "pacs", "--timeout", "3"])
    assert "1 delivery(ies) due now" in result.output, result.output
    with Outbox(db) as outbox:
        after = {r["destination"]: r["attempts"] for r in outbox.rows()}
    assert after["emr"] == before["emr"]  # the EMR was not tried
    assert after["pacs"] >= 1  # the PACS was
    result = CliRunner().invoke(app, ["outbox", "retry", "--db", str(db), "--destination", "nowhere"])
    assert result.exit_code == 2 and "no destination 'nowhere'" in result.output
