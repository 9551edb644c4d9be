"""HTTPS, authentication and DICOM TLS of the network destinations, against real servers on
loopback: an HTTPS FHIR endpoint (Basic, bearer, OAuth2), a local OAuth2 token endpoint that
issues expiring tokens, and burnscope's own C-STORE SCP over DICOM TLS."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest
from fixtures.auth_servers import AuthServer, AuthServerState
from fixtures.examples import example_decision
from fixtures.orthanc_local import free_port
from fixtures.pki import make_pki, openssl_available

from burnscope.common.tls import server_context
from burnscope.operators.report.core import ReportEmitter
from burnscope.operators.sinks.network import DeliveryService, FhirTransport, TransientError
from burnscope.operators.sinks.outbox import Backoff
from burnscope.operators.sinks.security import SecuritySettingError, check_no_literal_secrets, http_session, prepare

pytestmark = [pytest.mark.network, pytest.mark.skipif(not openssl_available(), reason="openssl not installed")]

PASSWORD = "correct-horse-battery-staple-42"
CLIENT_SECRET = "oauth-client-secret-7f3a9c"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def secret_file(tmp_path):
    def write(name: str, value: str):
        path = tmp_path / "secrets" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(value + "\n")
        path.chmod(0o600)
        return str(path)

    return write


def _https(pki, state):
    return AuthServer(state, tls=server_context(pki.server.cert, pki.server.key, require_client_cert=False))


def _fhir_bundles(n: int, start: int = 1):
    decisions = [example_decision(source=f"/in/b_{i}.dcm", sop_uid=f"1.2.826.0.1.3680043.8.498.{3000 + i}")
                 for i in range(start, start + n)]
    return ReportEmitter(["fhir"]).emit(decisions)


def _service(tmp_path, destination, **kwargs):
    return DeliveryService.open(tmp_path / "outbox.sqlite", [destination],
                                backoff=Backoff(base_s=0.01, max_s=0.02), **kwargs)


def _all_output(tmp_path) -> bytes:
    """Every byte burnscope wrote under tmp_path (outbox database and WAL, audit log), secrets excluded."""
    return b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and "secrets" not in p.parts
                    and p.suffix not in (".pem", ".key"))


def test_fhir_over_https_with_basic_auth_and_a_custom_ca(tmp_path, pki, secret_file):
    state = AuthServerState(basic=("burnscope", PASSWORD))
    with _https(pki, state) as server:
        dest = {"name": "emr", "kind": "fhir", "url": f"{server.url}/fhir", "tls": {"ca": str(pki.ca)},
                "auth": {"kind": "basic", "username": "burnscope", "password_file": secret_file("pw", PASSWORD)}}
        service = _service(tmp_path, dest)
        service.submit(_fhir_bundles(2))
        assert service.drain(timeout_s=20)
        service.close()
    assert len(state.accepted) == 2 and state.refused == []
    # the outbox keeps the reference to the secret, never the secret
    stored = service.outbox.destinations()["emr"][1]
    assert stored["auth"] == {"kind": "basic", "username": "burnscope", "password_file": dest["auth"]["password_file"]}
    assert PASSWORD.encode() not in _all_output(tmp_path)


def test_a_wrong_password_is_retried_then_failed_without_the_secret(tmp_path, pki, secret_file, caplog):
    state = AuthServerState(basic=("burnscope", PASSWORD))
    wrong = "not-the-password-123"
    with _https(pki, state) as server:
        dest = {"name": "emr", "kind": "fhir", "url": f"{server.url}/fhir", "tls": {"ca": str(pki.ca)},
                "auth": {"kind": "basic", "username": "burnscope", "password_file": secret_file("pw", wrong)}}
        service = _service(tmp_path, dest, max_attempts=3)
        service.submit(_fhir_bundles(1))
        service.drain(timeout_s=10)
        service.close()
    rows = service.outbox.rows()
    assert [(r["status"], r["attempts"], r["last_status"]) for r in rows] == [("failed", 3, 401)]
    assert rows[0]["last_error"] == ("gave up after 3 attempts: FHIR POST: HTTP 401 (authentication failed: "
                                     "check the destination's credentials)")
    assert len(state.refused) == 3
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [e["outcome"] for e in audit if e["event"] == "attempt"] == ["retry", "retry", "failed"]
    assert wrong.encode() not in _all_output(tmp_path) and wrong not in caplog.text


def test_an_untrusted_server_certificate_is_retried_then_failed(tmp_path, pki):
    state = AuthServerState()
    untrusted = AuthServer(state, tls=server_context(pki.rogue_server.cert, pki.rogue_server.key,
                                                     require_client_cert=False))
    with untrusted as server:
        dest = {"name": "emr", "kind": "fhir", "url": f"{server.url}/fhir", "tls": {"ca": str(pki.ca)}}
        service = _service(tmp_path, dest, max_attempts=2)
        service.submit(_fhir_bundles(1))
        service.drain(timeout_s=10)
        service.close()
    (row,) = service.outbox.rows()
    assert row["status"] == "failed" and row["attempts"] == 2
    assert row["last_error"].startswith("gave up after 2 attempts: FHIR POST: TLS: certificate not trusted (")
    assert state.accepted == []
    # without a ca the system trust store is used: the test CA is not in it either
    with _https(pki, AuthServerState()) as server:
        transport = FhirTransport(f"{server.url}/fhir")
        with pytest.raises(TransientError, match="TLS: certificate not trusted"):
            transport.send(b"{}")
        transport.close()


def test_bearer_token_from_an_environment_variable(tmp_path, pki, monkeypatch):
    token = "static-bearer-token-abcdef123456"
    monkeypatch.setenv("BURNSCOPE_TEST_EMR_TOKEN", token)
    state = AuthServerState(bearer=token)
    with _https(pki, state) as server:
        dest = {"name": "emr", "kind": "fhir", "url": f"{server.url}/fhir", "tls": {"ca": str(pki.ca)},
                "auth": {"kind": "bearer", "token_env": "BURNSCOPE_TEST_EMR_TOKEN"}}
        service = _service(tmp_path, dest)
        service.submit(_fhir_bundles(1))
        assert service.drain(timeout_s=20)
        service.close()
    assert state.authorizations == [f"Bearer {token}"]
    assert token.encode() not in _all_output(tmp_path)


def test_oauth2_token_is_reused_then_renewed_before_it_expires(tmp_path, pki, secret_file):
    state = AuthServerState(client=("burnscope-client", CLIENT_SECRET), token_lifetime_s=2.0)
    with _https(pki, state) as server:
        auth = {"kind": "oauth2", "token_url": f"{server.url}/token", "client_id": "burnscope-client",
                "client_secret_file": secret_file("client", CLIENT_SECRET), "scope": "system/*.write"}
        session = http_session(f"{server.url}/fhir", {"ca": str(pki.ca)}, auth)
        for _ in range(3):  # one token serves all three
            assert session.post(f"{server.url}/fhir", data=b"{}", timeout=10).status_code == 200
        assert state.token_requests == 1 and session.auth.fetches == 1
        time.sleep(1.85)  # past the renewal point (lifetime - 10%), before expiry
        assert session.post(f"{server.url}/fhir", data=b"{}", timeout=10).status_code == 200
        assert state.token_requests == 2
        # the server never saw an expired token: it was renewed in time
        assert state.refused == [] and len(state.accepted) == 4
        tokens = {h for h in state.authorizations}
        assert len(tokens) == 2
        # a token the server revoked: one 401, then a fresh token on the next attempt
        state.revoke_all()
        assert session.post(f"{server.url}/fhir", data=b"{}", timeout=10).status_code == 401
        assert session.post(f"{server.url}/fhir", data=b"{}", timeout=10).status_code == 200
        assert state.token_requests == 3
        session.close()


def test_oauth2_through_the_outbox_and_a_refused_client_secret(tmp_path, pki, secret_file, caplog):
    state = AuthServerState(client=("burnscope-client", CLIENT_SECRET))
    with _https(pki, state) as server:
        good = {"name": "emr", "kind": "fhir", "url": f"{server.url}/fhir", "tls": {"ca": str(pki.ca)},
                "auth": {"kind": "oauth2", "token_url": f"{server.url}/token", "client_id": "burnscope-client",
                         "client_secret_file": secret_file("client", CLIENT_SECRET)}}
        service = _service(tmp_path / "good", good)
        service.submit(_fhir_bundles(3))
        assert service.drain(timeout_s=20)
        service.close()
        assert len(state.accepted) == 3 and state.token_requests == 1
        bad = dict(good, auth=dict(good["auth"], client_secret_file=secret_file("bad", "wrong-client-secret-99")))
        service = _service(tmp_path / "bad", bad, max_attempts=2)
        service.submit(_fhir_bundles(1, start=10))
        service.drain(timeout_s=10)
        service.close()
    (row,) = service.outbox.rows()
    assert row["status"] == "failed"
    assert row["last_error"] == "gave up after 2 attempts: FHIR POST: OAuth2 token request refused (invalid_client)"
    everything = _all_output(tmp_path)
    assert CLIENT_SECRET.encode() not in everything and b"wrong-client-secret-99" not in everything
    assert CLIENT_SECRET not in caplog.text
    for token in state.issued:  # access tokens are secrets too
        assert token.encode() not in everything


def test_settings_that_would_leak_a_secret_are_refused(tmp_path):
    with pytest.raises(ValueError, match="password: secrets are not stored in settings"):
        check_no_literal_secrets({"auth": {"kind": "basic", "username": "u", "password": "x"}})
    with pytest.raises(ValueError, match="Authorization header is a secret"):
        DeliveryService.open(tmp_path / "o.sqlite", [{"name": "emr", "kind": "fhir", "url": "https://h/fhir",
                                                      "headers": {"Authorization": "Bearer x"}}])
    assert not (tmp_path / "o.sqlite").exists() or b"Bearer x" not in (tmp_path / "o.sqlite").read_bytes()
    with pytest.raises(SecuritySettingError, match="url: holds credentials"):
        http_session("https://user:pw@emr.example.org/fhir")
    with pytest.raises(SecuritySettingError, match="url: would send credentials unencrypted; use https"):
        prepare({"kind": "fhir", "url": "http://emr.example.org/fhir",
                 "auth": {"kind": "bearer", "token_env": "HOME"}})
    with pytest.raises(SecuritySettingError, match="auth.token_url: would send credentials unencrypted"):
        prepare({"kind": "fhir", "url": "https://emr.example.org/fhir",
                 "auth": {"kind": "oauth2", "token_url": "http://idp.example.org/token", "client_id": "c",
                          "client_secret_env": "HOME"}})
    with pytest.raises(SecuritySettingError, match=r"^auth.password_env: environment variable BURNSCOPE_NOPE is not set"):
        prepare({"kind": "stowrs", "url": "https://pacs/dicom-web",
                 "auth": {"kind": "basic", "username": "u", "password_env": "BURNSCOPE_NOPE"}})
    with pytest.raises(SecuritySettingError, match=r"^tls.ca: file not found"):
        prepare({"kind": "cstore", "host": "pacs", "port": 104, "tls": {"ca": str(tmp_path / "nope.pem")}})


# --- DICOM TLS from the C-STORE SCU -------------------------------------------------------------


def _sr_bundles(n):
    decisions = [example_decision(source=f"/in/t_{i}.dcm", sop_uid=f"1.2.826.0.1.3680043.8.498.{4000 + i}")
                 for i in range(n)]
    return ReportEmitter(["sr"]).emit(decisions)


def test_cstore_over_dicom_tls_to_burnscope_s_own_scp(tmp_path, pki):
    from burnscope.operators.dicom_loader.scp import StoreSCP

    scp = StoreSCP(port=free_port(), sop_classes="all", spool_dir=tmp_path / "spool",
                   tls={"cert": pki.server.cert, "key": pki.server.key, "ca": pki.ca})
    scp.start()
    try:
        dest = {"name": "pacs", "kind": "cstore", "host": "127.0.0.1", "port": scp.port, "called_aet": "BURNSCOPE",
                "tls": {"ca": str(pki.ca), "cert": str(pki.client.cert), "key": str(pki.client.key)}}
        service = _service(tmp_path / "ok", dest)
        service.submit(_sr_bundles(2))
        assert service.drain(timeout_s=20)
        service.close()
        assert len(scp.drain()) == 2
        failing = {
            # no client certificate: the SCP refuses it; the outbox retries, then fails
            "nocert": (dict(dest, tls={"ca": str(pki.ca)}), "(TLS: the peer requires a client certificate)"),
            # an SCP certificate we cannot verify
            "untrusted": (dict(dest, tls={**dest["tls"], "ca": str(pki.rogue_ca)}), "(TLS: certificate not trusted ("),
        }
        for name, (settings, reason) in failing.items():
            service = _service(tmp_path / name, settings, max_attempts=2)
            service.submit(_sr_bundles(1))
            service.drain(timeout_s=10)
            service.close()
            (row,) = service.outbox.rows()
            assert row["status"] == "failed" and row["attempts"] == 2 and reason in row["last_error"], row
        assert scp.drain() == []
    finally:
        scp.stop()


def test_outbox_database_holds_no_secret_even_in_free_pages(tmp_path, pki, secret_file):
    """The stored settings are references: look at the raw SQLite rows too."""
    dest = {"name": "emr", "kind": "fhir", "url": "https://127.0.0.1:1/fhir", "tls": {"ca": str(pki.ca)},
            "auth": {"kind": "basic", "username": "u", "password_file": secret_file("pw", PASSWORD)}}
    service = _service(tmp_path, dest)
    service.close()
    db = sqlite3.connect(tmp_path / "outbox.sqlite")
    (settings,) = db.execute("SELECT settings FROM destinations").fetchone()
    db.close()
    assert json.loads(settings)["auth"]["password_file"].endswith("pw") and PASSWORD not in settings
