"""Service metrics and health: the names and labels operators expect, scraped over HTTP and read
back with prometheus_client's own text parser; readiness; a port in use; the in-flight ledger."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from burnscope.common.messages import ROUTINE, STAT, ImageContext, ModelInfo
from burnscope.operators.monitoring.core import (
    CachedCheck, HealthServer, InFlight, ServiceMetrics, bind_error, tcp_reachable,
)


def _samples(text: str) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture()
def server():
    metrics = ServiceMetrics()
    srv = HealthServer(metrics, 0).start()
    yield srv
    srv.stop()


def _get(srv, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_metrics_endpoint_has_every_metric_and_counts(server):
    m, clock = server.metrics, [1000.0]
    ledger = InFlight(m, clock=lambda: clock[0])
    m.set_model(ModelInfo("BiomedCLIP", "demo", True, backend="onnxruntime", precision="fp32", device="cpu"))
    ledger.accept(ImageContext("a.dcm", priority=STAT, received_at=999.5))
    ledger.accept(ImageContext("b.dcm", received_at=999.0))
    clock[0] = 1000.25
    ledger.reported("a.dcm#1")
    ledger.error()
    ledger.skipped(2)
    m.observe_batch(3, ROUTINE)
    m.observe_stage("inference", 0.02, count=3)
    m.set_queue("batcher", 4)
    m.sync_rejections(2)
    m.sync_rejections(2)
    m.watch_outbox(lambda: {("pacs", "pending"): 5, ("pacs", "failed"): 1})
    status, text = _get(server, "/metrics")
    assert status == 200
    s = _samples(text)
    assert s[("burnscope_images_total", (("outcome", "reported"), ("priority", "stat")))] == 1
    assert s[("burnscope_images_total", (("outcome", "reported"), ("priority", "routine")))] == 0
    assert s[("burnscope_images_total", (("outcome", "error"), ("priority", "routine")))] == 1
    assert s[("burnscope_images_total", (("outcome", "skipped"), ("priority", "routine")))] == 2
    assert s[("burnscope_e2e_seconds_count", (("priority", "stat"),))] == 1
    assert s[("burnscope_e2e_seconds_sum", (("priority", "stat"),))] == pytest.approx(0.75)
    assert s[("burnscope_batch_size_sum", (("lane", "routine"),))] == 3
    assert s[("burnscope_stage_seconds_count", (("stage", "inference"),))] == 3
    assert s[("burnscope_queue_depth", (("queue", "batcher"),))] == 4
    assert s[("burnscope_in_flight", ())] == 1
    assert s[("burnscope_rejected_associations_total", ())] == 2
    assert s[("burnscope_outbox_deliveries", (("destination", "pacs"), ("status", "pending")))] == 5
    info = {k: v for (name, labels), v in s.items() if name == "burnscope_model_info" for k in [labels]}
    (labels,) = info
    assert dict(labels)["demo"] == "true" and dict(labels)["backend"] == "onnxruntime"
    assert ledger.accounting() == {"accepted": 5, "reported": 1, "errors": 1, "skipped": 2, "pending": 1}
    assert ledger.pending_labels() == ["b.dcm"]


def test_health_and_readiness(server):
    assert _get(server, "/healthz") == (200, "ok\n")
    status, body = _get(server, "/readyz")
    assert status == 503 and '"ready": false' in body  # no check yet: not ready
    state = {"warm": False}
    server.add_check("model_warm", lambda: (state["warm"], "engine warmed up" if state["warm"] else "loading"))
    assert _get(server, "/readyz")[0] == 503
    state["warm"] = True
    status, body = _get(server, "/readyz")
    assert status == 200 and "engine warmed up" in body
    assert _get(server, "/nothing")[0] == 404
    assert "burnscope_ready 1.0" in _get(server, "/metrics")[1]


def test_a_port_in_use_is_one_clear_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError) as info:
            HealthServer(ServiceMetrics(), port)
    assert bind_error(info.value, "127.0.0.1", port) == f"--metrics-port {port} on 127.0.0.1: the port is in use by another process"


def test_default_bind_is_loopback():
    srv = HealthServer(ServiceMetrics(), 0)
    try:
        assert srv.server_address[0] == "127.0.0.1"
    finally:
        srv.server_close()


def test_tcp_reachability_and_cached_checks():
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        assert tcp_reachable("127.0.0.1", port)[0]
    assert not tcp_reachable("127.0.0.1", port, timeout_s=1)[0]
    calls = []
    check = CachedCheck(lambda: calls.append(1) or (True, "x"), every_s=60)
    assert check() == check() == (True, "x") and len(calls) == 1


def _get_with(srv, path, authorization):
    request = urllib.request.Request(f"http://127.0.0.1:{srv.port}{path}", headers={"Authorization": authorization})
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_a_metrics_token_guards_metrics_and_readiness_not_liveness():
    srv = HealthServer(ServiceMetrics(), 0, token="s3cret-token").start()
    try:
        assert _get(srv, "/metrics")[0] == 401 and _get(srv, "/readyz")[0] == 401
        assert _get_with(srv, "/metrics", "Bearer wrong")[0] == 401
        assert _get_with(srv, "/metrics", "Basic s3cret-token")[0] == 401
        status, text = _get_with(srv, "/metrics", "Bearer s3cret-token")
        assert status == 200 and _samples(text)  # parsed by prometheus_client
        assert _get(srv, "/healthz") == (200, "ok\n")  # a liveness probe needs no secret
        assert "s3cret-token" not in _get(srv, "/metrics")[1]
    finally:
        srv.stop()
