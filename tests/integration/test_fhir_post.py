"""FHIR POST through the outbox, against a small local FHIR endpoint that validates each
transaction Bundle with fhir.resources (no FHIR server package exists here)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fhir.resources.R4B.bundle import Bundle

from burnscope.operators.report.core import ReportEmitter
from fixtures.examples import example_decision
from burnscope.operators.sinks.network import DeliveryService
from fixtures.orthanc_local import free_port
from burnscope.operators.sinks.outbox import Backoff


pytestmark = pytest.mark.network

class _FhirEndpoint(BaseHTTPRequestHandler):
    """POST / takes a transaction Bundle; 400 with an OperationOutcome when it does not validate."""

    received: list[dict] = []
    outage = 0  # answer this many requests with 503 first

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if type(self).outage > 0:
            type(self).outage -= 1
            return self._reply(
                503,
                {
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": "transient", "diagnostics": "maintenance"}],
                },
            )
        if self.headers.get("Content-Type", "").split(";")[0] != "application/fhir+json":
            return self._reply(
                415,
                {
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": "not-supported"}],
                },
            )
        try:
            bundle = Bundle.model_validate_json(body)
            assert bundle.type == "transaction"
        except Exception as exc:
            return self._reply(
                400,
                {
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": "invalid", "diagnostics": str(exc)[:300]}],
                },
            )
        type(self).received.append(json.loads(body))
        entries = [{"response": {"status": "201 Created"}} for _ in bundle.entry or []]
        self._reply(200, {"resourceType": "Bundle", "type": "transaction-response", "entry": entries})

    def _reply(self, code: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def endpoint():
    _FhirEndpoint.received = []
    _FhirEndpoint.outage = 0
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _FhirEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _service(tmp_path, url):
    return DeliveryService.open(
        tmp_path / "outbox.sqlite",
        [{"name": "emr", "kind": "fhir", "url": url}],
        backoff=Backoff(base_s=0.02, max_s=0.05),
    )


def test_bundles_posted_validated_and_delivered_once(tmp_path, endpoint):
    url = f"http://127.0.0.1:{endpoint.server_port}/fhir"
    bundles = ReportEmitter(["fhir"]).emit(
        [example_decision(), example_decision(source="/in/b.dcm", sop_uid="1.2.3.9")]
    )
    service = _service(tmp_path, url)
    assert service.submit(bundles) == 2 and service.submit(bundles) == 0
    assert service.drain(timeout_s=10)
    ids = {b.deliveries[0]["key"] for b in bundles}
    assert {b["id"] for b in _FhirEndpoint.received} == ids and len(_FhirEndpoint.received) == 2
    assert service.outbox.counts()["emr"]["delivered"] == 2
    # Re-running the same reports sends nothing again.
    assert service.submit(bundles) == 0 and service.pump() == 0 and len(_FhirEndpoint.received) == 2
    service.close()


def test_server_outage_is_retried_until_it_answers(tmp_path, endpoint):
    _FhirEndpoint.outage = 2
    url = f"http://127.0.0.1:{endpoint.server_port}/"
    service = _service(tmp_path, url)
    service.submit(ReportEmitter(["fhir"]).emit([example_decision()]))
    assert service.pump() == 0  # 503: transient
    row = service.outbox.rows()[0]
    assert row["status"] == "pending" and row["last_status"] == 503
    assert service.drain(timeout_s=10)
    assert len(_FhirEndpoint.received) == 1 and service.outbox.rows()[0]["attempts"] == 3
    service.close()


def test_invalid_bundle_is_rejected_permanently_with_status(tmp_path, endpoint):
    url = f"http://127.0.0.1:{endpoint.server_port}/"
    service = _service(tmp_path, url)
    service.outbox.enqueue("not-a-bundle", "emr", "fhir", b'{"resourceType": "Bundle", "type": "nonsense"}')
    service.drain(timeout_s=5)
    row = service.outbox.rows()[0]
    assert row["status"] == "failed" and row["last_status"] == 400 and "HTTP 400" in row["last_error"]
    assert service.pump() == 0 and service.outbox.rows()[0]["attempts"] == 1  # not retried
    service.close()


def test_unreachable_endpoint_keeps_reports_waiting(tmp_path):
    service = _service(tmp_path, f"http://127.0.0.1:{free_port()}/fhir")
    service.submit(ReportEmitter(["fhir"]).emit([example_decision()]))
    assert not service.drain(timeout_s=0.3)
    row = service.outbox.rows()[0]
    assert row["status"] == "pending" and row["attempts"] >= 2 and "ConnectionError" in row["last_error"]
    service.close()


class _EchoingRejection(_FhirEndpoint):
    """A server that rejects with a 412 whose diagnostics echo the Patient search (as HAPI does)."""

    def do_POST(self):
        bundle = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        patient = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
        diagnostics = f'Failed to CREATE resource with match URL "{patient["request"]["ifNoneExist"]}"'
        self._reply(412, {"resourceType": "OperationOutcome",
                          "issue": [{"severity": "error", "code": "duplicate", "diagnostics": diagnostics}]})


def test_a_rejection_echoing_patient_data_is_recorded_without_it(tmp_path, caplog):
    caplog.set_level("DEBUG")
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _EchoingRejection)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        service = _service(tmp_path, f"http://127.0.0.1:{server.server_port}/")
        service.submit(ReportEmitter(["fhir"]).emit([example_decision()]))
        service.drain(timeout_s=5)
        row = service.outbox.rows()[0]
        service.close()
    finally:
        server.shutdown()
        server.server_close()
    assert row["status"] == "failed" and row["last_status"] == 412
    assert "duplicate" in row["last_error"]  # the coded reason is kept
    audit = (tmp_path / "audit.jsonl").read_text()
    for text in (caplog.text, audit, row["last_error"]):
        assert "PID-0001" not in text
