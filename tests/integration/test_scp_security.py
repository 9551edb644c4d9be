"""Who may store into burnscope's C-STORE SCP: AE titles, peer addresses and DICOM TLS.

Real pynetdicom SCUs (and dcmtk's storescu over TLS) talk to the real SCP on loopback; the
certificates come from a test CA made with openssl.
"""

from __future__ import annotations

import logging
import ssl
import subprocess

import pydicom
import pytest
from fixtures.dicom_helpers import DCMTK_STORESCU, GOOD_FILES
from fixtures.orthanc_local import free_port
from fixtures.pki import make_pki, openssl_available

from burnscope.common.tls import TlsError, client_context, server_context
from burnscope.operators.dicom_loader.scp import StoreSCP

pytestmark = [pytest.mark.network, pytest.mark.skipif(not openssl_available(), reason="openssl not installed")]

FILE = GOOD_FILES[0]


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def make_scp(tmp_path):
    started = []

    def make(**kwargs):
        scp = StoreSCP(port=free_port(), sop_classes="all", spool_dir=tmp_path / "spool", **kwargs)
        scp.start()
        started.append(scp)  # listening once start() returns: no port probe (it would count as a refusal)
        return scp

    yield make
    for scp in started:
        scp.stop()


def _store(port, calling="MODALITY", called="BURNSCOPE", tls=None):
    """One association and one C-STORE; returns (association, status or None)."""
    from pynetdicom import AE

    ds = pydicom.dcmread(FILE)
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.network_timeout = ae.connection_timeout = 10
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title=called, tls_args=(tls, "localhost") if tls else None)
    status = None
    if assoc.is_established:
        rsp = assoc.send_c_store(ds)
        status = int(rsp.Status) if rsp else None
        assoc.release()
    return assoc, status


def _reason(assoc) -> tuple[int, int, int]:
    rsp = assoc.acceptor.primitive
    return rsp.result, rsp.result_source, rsp.diagnostic


def test_a_calling_ae_not_on_the_list_is_rejected_with_the_dicom_reason(make_scp, caplog):
    scp = make_scp(allowed_calling_aets=["MODALITY", "CAMERA1"])
    caplog.set_level(logging.WARNING, logger="burnscope.dicom_loader.scp")
    assoc, status = _store(scp.port, calling="INTRUDER")
    assert assoc.is_rejected and status is None
    # rejected-permanent (1), service-user (1), reason 3: calling AE title not recognised
    assert _reason(assoc) == (1, 1, 3)
    assert scp.rejected_associations == 1
    assert dict(scp.rejections.by_reason) == {"calling AE not recognised": 1}
    lines = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert lines == ["rejected calling AE 'INTRUDER' from 127.0.0.1: calling AE not recognised"]
    # an AE on the list stores as before, and nothing of the intruder was spooled
    assert scp.drain() == []
    assoc, status = _store(scp.port, calling="CAMERA1")
    assert status == 0 and len(scp.drain()) == 1
    assert scp.rejected_associations == 1


def test_the_called_ae_check_rejects_associations_addressed_elsewhere(make_scp):
    scp = make_scp(require_called_aet=True)
    assoc, _ = _store(scp.port, called="PACS")
    assert assoc.is_rejected and _reason(assoc) == (1, 1, 7)  # called AE title not recognised
    assert dict(scp.rejections.by_reason) == {"called AE not recognised": 1}
    assert _store(scp.port, called="BURNSCOPE")[1] == 0
    # without the check, any called AE title is accepted (pynetdicom's default)
    open_scp = make_scp()
    assert _store(open_scp.port, called="PACS")[1] == 0


def test_a_peer_outside_the_allowed_networks_is_disconnected_before_dicom(make_scp, caplog):
    caplog.set_level(logging.WARNING, logger="burnscope.dicom_loader.scp")
    closed = make_scp(allowed_addresses=["10.0.0.0/8", "192.0.2.7"])
    assoc, status = _store(closed.port)
    assert not assoc.is_established and not assoc.is_rejected and status is None
    assert dict(closed.rejections.by_reason) == {"peer address not allowed": 1}
    assert any("connection from 127.0.0.1: peer address not allowed" in r.getMessage() for r in caplog.records)
    assert closed.drain() == []
    allowed = make_scp(allowed_addresses=["127.0.0.0/8"])
    assert _store(allowed.port)[1] == 0 and allowed.rejected_associations == 0


def test_bad_access_settings_are_refused():
    with pytest.raises(ValueError, match="not an IP address or CIDR network: 'everyone'"):
        StoreSCP(port=0, allowed_addresses=["everyone"])
    with pytest.raises(ValueError, match="allowed_calling_aets is empty"):
        StoreSCP(port=0, allowed_calling_aets=[])


# --- DICOM TLS ----------------------------------------------------------------------------------


def _tls_scp(make_scp, pki, require_client_cert=True):
    tls = {"cert": pki.server.cert, "key": pki.server.key, "ca": pki.ca, "require_client_cert": require_client_cert}
    return make_scp(tls=tls, allowed_calling_aets=["MODALITY"])


def test_tls_scp_with_client_certificates_required(make_scp, pki):
    scp = _tls_scp(make_scp, pki)
    with_cert = client_context(ca=pki.ca, cert=pki.client.cert, key=pki.client.key)
    assoc, status = _store(scp.port, tls=with_cert)
    assert status == 0 and assoc.is_released
    assert len(scp.drain()) == 1
    # no client certificate, or one from a CA the SCP does not trust: the handshake fails
    assert _store(scp.port, tls=client_context(ca=pki.ca))[1] is None
    rogue = client_context(ca=pki.ca, cert=pki.rogue_client.cert, key=pki.rogue_client.key)
    assert _store(scp.port, tls=rogue)[1] is None
    # plain DICOM to the TLS port, too
    assert _store(scp.port)[1] is None
    assert scp.drain() == []
    assert dict(scp.rejections.by_reason) == {"TLS handshake failed": 3}
    # inside TLS the AE title check still applies
    assoc, _ = _store(scp.port, calling="INTRUDER", tls=with_cert)
    assert assoc.is_rejected and _reason(assoc) == (1, 1, 3)
    assert scp.rejected_associations == 4


def test_tls_scp_with_optional_client_certificates(make_scp, pki):
    scp = _tls_scp(make_scp, pki, require_client_cert=False)
    assert _store(scp.port, tls=client_context(ca=pki.ca))[1] == 0
    # a certificate that is presented is still verified
    rogue = client_context(ca=pki.ca, cert=pki.rogue_client.cert, key=pki.rogue_client.key)
    assert _store(scp.port, tls=rogue)[1] is None
    assert scp.rejected_associations == 1


def test_the_client_refuses_an_scp_it_cannot_verify(make_scp, pki):
    scp = make_scp(tls={"cert": pki.rogue_server.cert, "key": pki.rogue_server.key, "require_client_cert": False})
    ctx = client_context(ca=pki.ca)
    assert _store(scp.port, tls=ctx)[1] is None
    assert scp.drain() == []


def test_tls_1_1_and_weak_ciphers_are_refused(make_scp, pki):
    scp = _tls_scp(make_scp, pki, require_client_cert=False)
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(pki.ca)
    old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        old.set_ciphers("ALL:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    assert _store(scp.port, tls=old)[1] is None
    weak = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    weak.load_verify_locations(pki.ca)
    weak.maximum_version = ssl.TLSVersion.TLSv1_2
    weak.set_ciphers("AES128-SHA256:AES256-SHA256")  # RSA key exchange, no forward secrecy, CBC
    assert _store(scp.port, tls=weak)[1] is None
    assert scp.rejected_associations == 2
    ctx = server_context(pki.server.cert, pki.server.key, require_client_cert=False)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    tls12 = {c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12 and all(("ECDHE" in n or "DHE" in n) and ("GCM" in n or "CHACHA20" in n) for n in tls12)


def test_a_stalled_tls_client_does_not_hold_up_others(make_scp, pki):
    import socket

    scp = _tls_scp(make_scp, pki, require_client_cert=False)
    stalled = socket.create_connection(("127.0.0.1", scp.port))  # connects, never says hello
    try:
        assert _store(scp.port, tls=client_context(ca=pki.ca))[1] == 0
    finally:
        stalled.close()


@pytest.mark.skipif(DCMTK_STORESCU is None, reason="dcmtk (storescu) not installed")
def test_dcmtk_storescu_over_tls(make_scp, pki):
    scp = _tls_scp(make_scp, pki)
    base = [DCMTK_STORESCU, "-aec", "BURNSCOPE", "-aet", "MODALITY", "+tls", str(pki.client.key), str(pki.client.cert),
            "+cf", str(pki.ca)]
    out = subprocess.run([*base, "127.0.0.1", str(scp.port), str(FILE)], capture_output=True, text=True, timeout=60)
    if "unrecognized option" in out.stderr or "+tls" in out.stderr and "unknown" in out.stderr:
        pytest.skip("this storescu was built without TLS")
    assert out.returncode == 0, out.stderr
    assert len(scp.drain()) == 1


def test_tls_settings_errors_name_the_key(pki, tmp_path):
    with pytest.raises(TlsError, match=r"^cert: file not found: .*missing\.pem"):
        server_context(tmp_path / "missing.pem", pki.server.key, pki.ca)
    with pytest.raises(TlsError, match="^key: does not belong to the certificate"):
        server_context(pki.server.cert, pki.client.key, pki.ca)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello\n")
    with pytest.raises(TlsError, match="^ca: not a PEM file"):
        client_context(ca=garbage)
    with pytest.raises(TlsError, match="^ca: needed to verify client certificates"):
        server_context(pki.server.cert, pki.server.key)
    not_a_ca = tmp_path / "not-a-ca.pem"
    not_a_ca.write_bytes(pki.server.key.read_bytes())
    with pytest.raises(TlsError, match="^ca: .* holds no PEM CA certificate"):
        client_context(ca=not_a_ca)


# --- the application: refusals reach summary.json; the spool is private ------------------------


def test_the_app_counts_refused_associations_in_its_summary(tmp_path):
    import json
    import stat

    from fixtures.dicom_helpers import in_background, pynetdicom_send, wait_for_port

    from burnscope.applications.burn_triage.app import build_components
    from burnscope.applications.burn_triage.runner import run_triage, write_json
    from burnscope.applications.burn_triage.settings import load_settings

    port = free_port()
    spool = tmp_path / "spool"
    settings = load_settings(overrides={
        "inference": {"model_config": "biomedclip-tiny"},
        "report": {"formats": ["json"]},
        "source": {"kind": "scp", "max_files": len(GOOD_FILES), "stop_after_idle": 30,
                   "scp": {"port": port, "sop_classes": "all", "spool_dir": str(spool),
                           "allowed_calling_aets": ["MODALITY"]}},
    })
    statuses = []

    def send():
        wait_for_port(port)
        assert _store(port, calling="INTRUDER")[0].is_rejected
        statuses.extend(pynetdicom_send(port, GOOD_FILES, ae_title="MODALITY"))

    components = build_components(settings)
    thread = in_background(send)
    summary = run_triage(settings, tmp_path, tmp_path / "out", components)
    thread.join(timeout=30)
    write_json(summary, tmp_path / "out" / "summary.json")
    assert statuses == [0] * len(GOOD_FILES)
    assert summary["rejected_associations"] == 1
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["rejected_associations"] == 1
    spooled = list(spool.glob("*.dcm"))
    assert len(spooled) == len(GOOD_FILES)
    assert stat.S_IMODE(spool.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in spooled} == {0o600}
