"""Delivery to a real Orthanc PACS (Debian packages orthanc + orthanc-dicomweb).

Orthanc listens on every interface, so these tests run inside a network namespace that has
loopback only: run from a normal shell, :func:`test_in_loopback_namespace` re-executes this
module with pytest under ``unshare -n`` (root needed) and asserts that it passed; inside the
namespace the real tests run. Each test starts its own Orthanc (temporary config and storage)
and stops it by its PID.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fixtures import REPO
from fixtures.orthanc_local import (
    LocalOrthanc,
    can_unshare_network,
    dicomweb_plugin,
    in_loopback_namespace,
    loopback_namespace_command,
    orthanc_binary,
)

pytestmark = pytest.mark.network

INSIDE = in_loopback_namespace()
needs_orthanc = pytest.mark.skipif(
    orthanc_binary() is None or dicomweb_plugin() is None,
    reason="Debian packages orthanc and orthanc-dicomweb not installed",
)
inside_only = pytest.mark.skipif(
    not INSIDE, reason="runs inside the loopback-only namespace (see test_in_loopback_namespace)"
)


@needs_orthanc
@pytest.mark.skipif(INSIDE, reason="already inside the namespace")
def test_in_loopback_namespace():
    if not can_unshare_network():
        pytest.skip("cannot create a network namespace here (unshare -n needs root)")
    cmd = loopback_namespace_command(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", __file__]
    )
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    report = out.stdout[-6000:] + out.stderr[-3000:]
    assert out.returncode == 0, report
    summary = out.stdout.strip().splitlines()[-1]
    # Inside, every test but this one runs (this one skips itself there).
    assert "3 passed, 1 skipped" in summary and "failed" not in summary, report


# ---------------------------------------------------------------------------- inside the namespace


def _bundles(n: int, start: int = 1):
    from burnscope.operators.report.core import ReportEmitter
    from fixtures.examples import example_decision

    decisions = [
        example_decision(source=f"/in/burn_{i:04d}.dcm", sop_uid=f"1.2.826.0.1.3680043.8.498.{1000 + i}")
        for i in range(start, start + n)
    ]
    return ReportEmitter(["sr", "pdf_dcm"]).emit(decisions)


def _destinations(orthanc: LocalOrthanc):
    return [
        {
            "name": "pacs",
            "kind": "cstore",
            "host": "127.0.0.1",
            "port": orthanc.dicom_port,
            "called_aet": orthanc.aet,
            "calling_aet": "BURNSCOPE",
        },
        {"name": "dicomweb", "kind": "stowrs", "url": orthanc.dicomweb_url},
    ]


def _keys(bundles):
    return {d["key"] for b in bundles for d in b.deliveries}


def _delivered_events(audit: Path) -> list[tuple[str, str]]:
    import json

    events = [json.loads(line) for line in audit.read_text().splitlines()]
    return [
        (e["key"], e["destination"])
        for e in events
        if e["event"] == "attempt" and e["outcome"] == "delivered"
    ]


@needs_orthanc
@inside_only
def test_cstore_and_stowrs_round_trip(tmp_path):
    from burnscope.operators.sinks.network import DeliveryService

    with LocalOrthanc(tmp_path / "orthanc") as orthanc:
        service = DeliveryService.open(tmp_path / "outbox.sqlite", _destinations(orthanc))
        assert service.echo() == {"pacs": "ok"}
        bundles = _bundles(3)
        assert service.submit(bundles) == 12  # 3 SR + 3 PDF, to two destinations
        assert service.submit(bundles) == 0  # idempotent
        assert service.drain(timeout_s=30)
        counts = service.outbox.counts()
        assert counts["pacs"]["delivered"] == 6 and counts["dicomweb"]["delivered"] == 6
        assert service.transports["pacs"].associations_opened == 1  # one association, reused
        stored = orthanc.instance_uids()
        assert set(stored) == _keys(bundles)
        assert set(stored.values()) == {"1.2.826.0.1.3680043.8.498.11"}  # the source study
        classes = {
            orthanc.get(f"/instances/{i}/simplified-tags")["SOPClassUID"] for i in orthanc.get("/instances")
        }
        assert classes == {"1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.104.1"}
        # Ask back over DICOMweb (QIDO-RS) too: the study lists both series.
        series = orthanc.get("/dicom-web/studies/1.2.826.0.1.3680043.8.498.11/series")
        assert sorted(s["00080060"]["Value"][0] for s in series) == ["DOC", "SR"]
        audit = (tmp_path / "audit.jsonl").read_text()
        assert "Doe" not in audit and "PID-0001" not in audit and "19800101" not in audit
        service.close()


@needs_orthanc
@inside_only
def test_outage_reports_wait_then_arrive_exactly_once(tmp_path):
    from burnscope.operators.sinks.network import DeliveryService
    from burnscope.operators.sinks.outbox import Backoff

    # Orthanc waits for open associations when it stops; a short SCP timeout keeps this test fast.
    orthanc = LocalOrthanc(tmp_path / "orthanc", extra={"DicomScpTimeout": 2}).start()
    ports = (orthanc.http_port, orthanc.dicom_port)
    service = DeliveryService.open(
        tmp_path / "outbox.sqlite", _destinations(orthanc), backoff=Backoff(base_s=0.05, max_s=0.2)
    )
    before = _bundles(1, start=10)
    service.submit(before)
    assert service.drain(timeout_s=30)  # delivered; the C-STORE association stays open
    orthanc.stop()  # the PACS goes down while the app emits reports
    bundles = _bundles(2)
    service.submit(bundles)
    assert service.pump() == 0
    assert service.outbox.pending_count() == 8
    rows = service.outbox.rows("pending")
    assert len(rows) == 8 and max(r["attempts"] for r in rows) == 1
    assert all(r["last_error"] for r in rows if r["attempts"])
    assert not service.drain(timeout_s=0.5)  # still down: retried, still waiting
    orthanc = LocalOrthanc(tmp_path / "orthanc", http_port=ports[0], dicom_port=ports[1]).start()
    try:
        assert service.drain(timeout_s=30)
        assert set(orthanc.instance_uids()) == _keys(before) | _keys(bundles)
        delivered = _delivered_events(tmp_path / "audit.jsonl")
        assert len(delivered) == len(set(delivered)) == 12  # each (object, destination) exactly once
        assert max(r["attempts"] for r in service.outbox.rows()) >= 2
    finally:
        service.close()
        orthanc.stop()


_KILLED_WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from burnscope.operators.report.core import ReportEmitter
    from fixtures.examples import example_decision
    from burnscope.operators.sinks.network import CStoreTransport, DeliveryService

    outbox, port, marker = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])

    class StallAfterThird(CStoreTransport):
        sent = 0
        def send(self, payload):
            status = super().send(payload)
            StallAfterThird.sent += 1
            if StallAfterThird.sent == 3:  # the PACS has it, the outbox does not know yet
                marker.write_text("3")
                time.sleep(600)
            return status

    dest = {"host": "127.0.0.1", "port": port, "called_aet": "ORTHANC"}
    service = DeliveryService.open(outbox, [dict(name="pacs", kind="cstore", **dest)])
    service.transports["pacs"] = StallAfterThird(**dest)
    decisions = [example_decision(source=f"/in/k_{i}.dcm", sop_uid=f"1.2.826.0.1.3680043.8.498.{2000 + i}")
                 for i in range(3)]
    service.submit(ReportEmitter(["sr", "pdf_dcm"]).emit(decisions))
    service.drain(timeout_s=600)
""")


@needs_orthanc
@inside_only
def test_killed_mid_delivery_then_restarted_loses_and_duplicates_nothing(tmp_path):
    from burnscope.operators.sinks.network import DeliveryService

    with LocalOrthanc(tmp_path / "orthanc") as orthanc:
        marker = tmp_path / "stalled"
        script = tmp_path / "worker.py"
        script.write_text(_KILLED_WORKER)
        worker = subprocess.Popen(
            [
                sys.executable,
                str(script),
                str(tmp_path / "outbox.sqlite"),
                str(orthanc.dicom_port),
                str(marker),
            ],
            env={**os.environ, "PYTHONPATH": str(REPO / "tests")},  # finds fixtures/
        )
        try:
            end = time.monotonic() + 60
            while not marker.exists() and time.monotonic() < end and worker.poll() is None:
                time.sleep(0.05)
            assert marker.exists(), "worker never reached the third send"
        finally:
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
        assert len(orthanc.instance_uids()) == 3  # three sent before the kill

        service = DeliveryService.open(tmp_path / "outbox.sqlite")  # destinations come from the outbox
        rows = service.outbox.rows()
        assert len(rows) == 6 and {r["status"] for r in rows} <= {"pending", "delivered"}
        assert service.drain(timeout_s=30)
        stored = orthanc.instance_uids()
        assert set(stored) == {r["key"] for r in rows}  # nothing lost
        assert len(orthanc.get("/instances")) == 6  # nothing duplicated
        assert service.outbox.counts()["pacs"]["delivered"] == 6
        service.close()
