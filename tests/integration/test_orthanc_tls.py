"""DICOM TLS, HTTPS and HTTP basic authentication against a real Orthanc.

Orthanc is configured with a test CA made by openssl in the test: DICOM TLS on its DICOM port
(``DicomTlsEnabled``, client certificates required), HTTPS for its REST API and DICOMweb
(through stunnel: Orthanc's own ``SslEnabled`` crashes in Debian 12's build) and HTTP basic
authentication (``AuthenticationEnabled``, ``RegisteredUsers``).
As in test_orthanc.py, the Orthanc cases run inside a loopback-only network namespace
(:func:`test_in_loopback_namespace` re-executes this module there).
"""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from fixtures import REPO
from fixtures.orthanc_local import (
    LocalOrthanc,
    can_unshare_network,
    dicomweb_plugin,
    in_loopback_namespace,
    orthanc_binary,
    pytest_in_loopback_namespace,
)
from fixtures.pki import make_pki, openssl_available

pytestmark = pytest.mark.network

INSIDE = in_loopback_namespace()
PASSWORD = "orthanc-Pa55word-for-burnscope-31"
WRONG = "not-the-orthanc-password-08"
needs_orthanc = pytest.mark.skipif(
    orthanc_binary() is None or dicomweb_plugin() is None or not openssl_available()
    or not (shutil.which("stunnel4") or shutil.which("stunnel")),
    reason="Debian packages orthanc, orthanc-dicomweb, openssl and stunnel4 not installed",
)
inside_only = pytest.mark.skipif(not INSIDE, reason="runs inside the loopback-only namespace")


@needs_orthanc
@pytest.mark.slow
@pytest.mark.skipif(INSIDE, reason="already inside the namespace")
def test_in_loopback_namespace():
    if not can_unshare_network():
        pytest.skip("cannot create a network namespace here (unshare -n needs root)")
    out = pytest_in_loopback_namespace(__file__, cwd=REPO)
    report = out.stdout[-6000:] + out.stderr[-3000:]
    assert out.returncode == 0, report
    summary = out.stdout.strip().splitlines()[-1]
    assert "3 passed, 1 skipped" in summary and "failed" not in summary, report


# ---------------------------------------------------------------------------- inside the namespace


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def orthanc(tmp_path, pki):
    extra = {
        "DicomTlsEnabled": True,
        "DicomTlsCertificate": str(pki.server.cert),
        "DicomTlsPrivateKey": str(pki.server.key),
        "DicomTlsTrustedCertificates": str(pki.ca),
        "DicomTlsRemoteCertificateRequired": True,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {"burnscope": PASSWORD},
    }
    # HTTPS through stunnel: Orthanc's own SslEnabled segfaults in Debian 12's build (orthanc_local.py)
    server = LocalOrthanc(tmp_path / "orthanc", extra=extra, ca=pki.ca, credentials=("burnscope", PASSWORD),
                          https=pki.server)
    with server:
        yield server


def _secret(tmp_path, name, value):
    path = tmp_path / "secrets" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(value + "\n")
    path.chmod(0o600)
    return str(path)


def _cstore(orthanc, pki, **tls):
    tls = {"ca": str(pki.ca), "cert": str(pki.client.cert), "key": str(pki.client.key), **tls}
    return {"name": "pacs", "kind": "cstore", "host": "127.0.0.1", "port": orthanc.dicom_port,
            "called_aet": orthanc.aet, "calling_aet": "BURNSCOPE", "tls": {k: v for k, v in tls.items() if v}}


def _stowrs(orthanc, pki, password_file, ca=None):
    return {"name": "dicomweb", "kind": "stowrs", "url": orthanc.dicomweb_url, "tls": {"ca": str(ca or pki.ca)},
            "auth": {"kind": "basic", "username": "burnscope", "password_file": password_file}}


def _bundles(n, start):
    from burnscope.operators.report.core import ReportEmitter
    from fixtures.examples import example_decision

    decisions = [example_decision(source=f"/in/tls_{i}.dcm", sop_uid=f"1.2.826.0.1.3680043.8.498.{5000 + i}")
                 for i in range(start, start + n)]
    return ReportEmitter(["sr", "pdf_dcm"]).emit(decisions)


def _open(tmp_path, name, destinations, **kwargs):
    from burnscope.operators.sinks.network import DeliveryService
    from burnscope.operators.sinks.outbox import Backoff

    return DeliveryService.open(tmp_path / name / "outbox.sqlite", destinations,
                                backoff=Backoff(base_s=0.05, max_s=0.1), **kwargs)


@needs_orthanc
@inside_only
def test_cstore_over_dicom_tls_and_stowrs_over_https_with_basic_auth(tmp_path, pki, orthanc):
    destinations = [_cstore(orthanc, pki), _stowrs(orthanc, pki, _secret(tmp_path, "pw", PASSWORD))]
    service = _open(tmp_path, "ok", destinations)
    assert service.echo() == {"pacs": "ok"}  # C-ECHO over DICOM TLS
    pacs_bundles, web_bundles = _bundles(2, 1), _bundles(2, 10)
    service.submit(pacs_bundles)
    assert service.drain(timeout_s=60)
    counts = service.outbox.counts()
    assert counts["pacs"]["delivered"] == 4 and counts["dicomweb"]["delivered"] == 4
    service.close()
    stored = orthanc.instance_uids()  # asked back over HTTPS with the password
    assert set(stored) == {d["key"] for b in pacs_bundles for d in b.deliveries}
    # a second run: the destinations come from the outbox (references only), secrets read again
    service = _open(tmp_path, "ok", None)
    service.submit(web_bundles)
    assert service.drain(timeout_s=60)
    service.close()
    assert set(orthanc.instance_uids()) >= {d["key"] for b in web_bundles for d in b.deliveries}
    written = b"".join(p.read_bytes() for p in (tmp_path / "ok").rglob("*") if p.is_file())
    assert PASSWORD.encode() not in written


@needs_orthanc
@inside_only
def test_a_wrong_password_is_retried_then_failed(tmp_path, pki, orthanc):
    service = _open(tmp_path, "wrong", [_stowrs(orthanc, pki, _secret(tmp_path, "wrong", WRONG))], max_attempts=3)
    service.submit(_bundles(1, 20))
    service.drain(timeout_s=30)
    service.close()
    rows = service.outbox.rows()
    assert {(r["status"], r["attempts"], r["last_status"]) for r in rows} == {("failed", 3, 401)}
    assert {r["last_error"] for r in rows} == {
        "gave up after 3 attempts: STOW-RS: HTTP 401 (authentication failed: check the destination's credentials)"}
    audit = (tmp_path / "wrong" / "audit.jsonl").read_text()
    outcomes = [json.loads(line)["outcome"] for line in audit.splitlines() if '"attempt"' in line]
    assert outcomes.count("retry") == 4 and outcomes.count("failed") == 2  # two objects, three tries each
    written = b"".join(p.read_bytes() for p in (tmp_path / "wrong").rglob("*") if p.is_file())
    assert WRONG.encode() not in written
    assert orthanc.get("/instances") == []


@needs_orthanc
@inside_only
def test_untrusted_certificates_are_retried_then_failed(tmp_path, pki, orthanc):
    pw = _secret(tmp_path, "pw", PASSWORD)
    cases = {
        # we do not trust Orthanc's certificate (its CA is not ours)
        "untrusted-pacs": [_cstore(orthanc, pki, ca=str(pki.rogue_ca))],
        "untrusted-web": [_stowrs(orthanc, pki, pw, ca=pki.rogue_ca)],
        # Orthanc does not trust ours, or we present none
        "rogue-client": [_cstore(orthanc, pki, cert=str(pki.rogue_client.cert), key=str(pki.rogue_client.key))],
        "no-client-cert": [_cstore(orthanc, pki, cert=None, key=None)],
    }
    errors = {}
    for name, destinations in cases.items():
        service = _open(tmp_path, name, destinations, max_attempts=2)
        service.submit(_bundles(1, 30))
        service.drain(timeout_s=30)
        service.close()
        rows = service.outbox.rows()
        assert {(r["status"], r["attempts"]) for r in rows} == {("failed", 2)}, (name, rows)
        errors[name] = rows[0]["last_error"]
    assert "STOW-RS: TLS: certificate not trusted (" in errors["untrusted-web"]
    assert "(TLS: certificate not trusted (" in errors["untrusted-pacs"]
    assert "failed (TLS: the peer did not accept our certificate" in errors["rogue-client"]
    assert "failed (TLS: the peer requires a client certificate)" in errors["no-client-cert"]
    assert orthanc.get("/instances") == []
    print(json.dumps(errors, indent=1), file=sys.stderr)
