"""Delivery faults against real local servers: a FHIR or DICOMweb server that is slow (timeouts),
answers 5xx or 429 with Retry-After, and a DICOM SCP that does not answer in time. Each fault
leaves the report pending in the outbox with its reason, and it is delivered once the server
behaves."""

from __future__ import annotations

import datetime as dt
import threading
import time
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fixtures.examples import example_decision
from fixtures.orthanc_local import free_port

from burnscope.operators.report.core import ReportEmitter
from burnscope.operators.sinks.network import DeliveryService
from burnscope.operators.sinks.outbox import Backoff
from burnscope.operators.sinks.retry_after import MAX_RETRY_AFTER_S, retry_after_seconds

pytestmark = pytest.mark.network


class _Scripted(BaseHTTPRequestHandler):
    """Answers POSTs from a script: each entry is (status, headers, delay_s); then 200 (FHIR) or a
    STOW-RS response."""

    script: list[tuple[int, dict, float]] = []
    received: list[bytes] = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0)) if "Content-Length" in self.headers \
            else self._chunked()
        status, headers, delay = type(self).script.pop(0) if type(self).script else (200, {}, 0.0)
        time.sleep(delay)
        if status == 200:
            type(self).received.append(body)
        is_stow = "studies" in self.path
        payload = (b'{"00081199": {"vr": "SQ", "Value": []}}' if is_stow else
                   b'{"resourceType": "Bundle", "type": "transaction-response", "entry": []}')
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/dicom+json" if is_stow else "application/fhir+json")
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            pass

    def _chunked(self) -> bytes:
        data = b""
        while True:
            size = int(self.rfile.readline().strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return data
            data += self.rfile.read(size)
            self.rfile.readline()


@pytest.fixture
def server():
    # a class of its own per test: a handler still sleeping from an earlier test cannot touch it
    handler = type("Scripted", (_Scripted,), {"script": [], "received": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    httpd.handler = handler
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _service(tmp_path, destination):
    return DeliveryService.open(tmp_path / "outbox.sqlite", [destination], backoff=Backoff(base_s=0.05, max_s=0.2))


def _fhir(server, timeout_s=5.0):
    return {"name": "emr", "kind": "fhir", "url": f"http://127.0.0.1:{server.server_port}/fhir", "timeout_s": timeout_s}


def test_a_slow_fhir_server_times_out_is_retried_and_delivered_once(tmp_path, server):
    server.handler.script = [(200, {}, 2.0)]  # answers, but after the client's timeout
    service = _service(tmp_path, _fhir(server, timeout_s=0.5))
    service.submit(ReportEmitter(["fhir"]).emit([example_decision()]))
    started = time.monotonic()
    assert service.pump() == 0
    assert time.monotonic() - started < 1.8  # the timeout, not the server, decided
    row = service.outbox.rows()[0]
    assert row["status"] == "pending" and "timeout" in row["last_error"]
    assert service.drain(timeout_s=10)
    assert service.outbox.rows()[0]["status"] == "delivered" and service.outbox.rows()[0]["attempts"] == 2
    service.close()


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_transient(tmp_path, server, status):
    server.handler.script = [(status, {}, 0.0)]
    service = _service(tmp_path, _fhir(server))
    service.submit(ReportEmitter(["fhir"]).emit([example_decision()]))
    assert service.pump() == 0
    row = service.outbox.rows()[0]
    assert row["status"] == "pending" and row["last_status"] == status
    assert service.drain(timeout_s=10) and len(server.handler.received) == 1
    service.close()


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_429_with_retry_after_waits_at_least_that_long(tmp_path, server, form):
    wait_s = 2
    value = str(wait_s) if form == "seconds" else format_datetime(
        dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=wait_s + 1), usegmt=True)
    server.handler.script = [(429, {"Retry-After": value}, 0.0)]
    service = _service(tmp_path, _fhir(server))
    service.submit(ReportEmitter(["fhir"]).emit([example_decision()]))
    asked = time.time()
    assert service.pump() == 0
    row = service.outbox.rows()[0]
    assert row["status"] == "pending" and row["last_status"] == 429 and "retry after" in row["last_error"]
    assert row["next_attempt_at"] - asked >= wait_s - 0.5  # not the 0.05 s backoff
    assert service.pump() == 0 and len(server.handler.received) == 0  # not due yet: no request sent
    assert service.drain(timeout_s=15)
    assert len(server.handler.received) == 1 and time.time() - asked >= wait_s - 0.5
    service.close()


def test_a_slow_dicomweb_server_times_out(tmp_path, server):
    server.handler.script = [(200, {}, 2.0)]
    service = _service(tmp_path, {"name": "dicomweb", "kind": "stowrs", "timeout_s": 0.5,
                                  "url": f"http://127.0.0.1:{server.server_port}/dicom-web"})
    service.submit(ReportEmitter(["sr"]).emit([example_decision()]))
    started = time.monotonic()
    assert service.pump() == 0 and time.monotonic() - started < 1.8
    row = service.outbox.rows()[0]
    assert row["status"] == "pending" and "timeout" in row["last_error"]
    service.close()


def test_a_dicom_scp_that_does_not_answer_in_time_is_retried(tmp_path):
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import ComprehensiveSRStorage, Verification

    delays = [3.0]
    received = []

    def on_store(event):
        time.sleep(delays.pop(0) if delays else 0)
        received.append(str(event.dataset.SOPInstanceUID))
        return 0x0000

    ae = AE(ae_title="SLOWPACS")
    ae.add_supported_context(Verification)
    ae.add_supported_context(ComprehensiveSRStorage)
    port = free_port()
    scp = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        service = _service(tmp_path, {"name": "pacs", "kind": "cstore", "host": "127.0.0.1", "port": port,
                                      "called_aet": "SLOWPACS", "timeout_s": 1.0})
        service.submit(ReportEmitter(["sr"]).emit([example_decision()]))
        assert service.pump() == 0
        row = service.outbox.rows()[0]
        assert row["status"] == "pending" and "C-STORE" in row["last_error"]
        time.sleep(2.5)  # the slow store finishes on the SCP side; the retry stores it again (same UID)
        assert service.drain(timeout_s=15) and service.outbox.rows()[0]["status"] == "delivered"
        service.close()
    finally:
        scp.shutdown()
    assert len(set(received)) == 1  # one instance; a PACS keeps one copy per SOP Instance UID


def test_retry_after_parsing():
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds("Thu, 01 Jan 2026 00:01:30 GMT", now=now) == 90.0
    assert retry_after_seconds("Wed, 31 Dec 2025 23:00:00 GMT", now=now) == 0.0  # in the past
    assert retry_after_seconds("99999999") == MAX_RETRY_AFTER_S
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None and retry_after_seconds("") is None
