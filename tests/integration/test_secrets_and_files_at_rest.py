"""A whole ``burnscope run`` with authenticated HTTPS destinations: no secret in any output, every
file it writes readable by its owner only; and bad security settings stop it at start.

The run is a real subprocess (debug logging on) delivering to real HTTPS servers on loopback:
FHIR with HTTP Basic, FHIR with OAuth2 client credentials from a local token endpoint, FHIR with
a bearer token, and FHIR with a wrong password. Then every byte it left — stdout, stderr,
reports, summary.json, errors.jsonl, the outbox database and its WAL, the audit log — and the
output of ``burnscope info`` and ``burnscope outbox status`` is searched for every secret.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys

import pytest
import yaml
from fixtures import REPO, SAMPLE_DATA
from fixtures.auth_servers import AuthServer, AuthServerState
from fixtures.pki import make_pki, openssl_available
from typer.testing import CliRunner

from burnscope.applications.cli import app as cli_app
from burnscope.common.tls import server_context

pytestmark = [pytest.mark.network, pytest.mark.skipif(not openssl_available(), reason="openssl not installed")]

PASSWORD = "Pa55-w0rd-for-the-emr-7781"
WRONG_PASSWORD = "wrong-Pa55-for-the-emr-0042"
CLIENT_SECRET = "client-secret-of-burnscope-5b1e"
BEARER = "fixed-bearer-token-c0ffee-9911"
MANIFEST = json.loads((SAMPLE_DATA / "manifest.json").read_text())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def _cli(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "burnscope.applications.cli", *args], capture_output=True,
                          text=True, timeout=600, env={**os.environ, **(env or {})}, cwd=cwd or REPO)


def _secret_file(folder, name, value):
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return str(path)


@pytest.mark.slow
def test_a_run_with_authenticated_destinations_leaks_no_secret_and_keeps_files_private(tmp_path, pki):
    secrets_dir = tmp_path / "secrets"
    tls = server_context(pki.server.cert, pki.server.key, require_client_cert=False)
    main = AuthServerState(basic=("burnscope", PASSWORD), client=("burnscope-client", CLIENT_SECRET))
    bearer = AuthServerState(bearer=BEARER)
    with AuthServer(main, tls=tls) as server, AuthServer(bearer, tls=tls) as bearer_server:
        ca = {"ca": str(pki.ca)}
        destinations = [
            {"name": "emr-basic", "kind": "fhir", "url": f"{server.url}/fhir", "tls": ca,
             "auth": {"kind": "basic", "username": "burnscope",
                      "password_file": _secret_file(secrets_dir, "emr.pw", PASSWORD)}},
            {"name": "emr-oauth2", "kind": "fhir", "url": f"{server.url}/fhir", "tls": ca,
             "auth": {"kind": "oauth2", "token_url": f"{server.url}/token", "client_id": "burnscope-client",
                      "client_secret_env": "BURNSCOPE_TEST_CLIENT_SECRET"}},
            {"name": "emr-bearer", "kind": "fhir", "url": f"{bearer_server.url}/fhir", "tls": ca,
             "auth": {"kind": "bearer", "token_file": _secret_file(secrets_dir, "emr.token", BEARER)}},
            {"name": "emr-wrong", "kind": "fhir", "url": f"{server.url}/fhir", "tls": ca,
             "auth": {"kind": "basic", "username": "burnscope",
                      "password_file": _secret_file(secrets_dir, "wrong.pw", WRONG_PASSWORD)}},
        ]
        config = tmp_path / "site.yaml"
        config.write_text(yaml.safe_dump({
            "inference": {"model_config": "biomedclip-tiny"},
            "report": {"formats": ["json", "txt", "fhir"]},
            "delivery": {"destinations": destinations, "drain_timeout_s": 5},
        }))
        out = tmp_path / "out"
        env = {"BURNSCOPE_TEST_CLIENT_SECRET": CLIENT_SECRET}
        run = _cli("-vv", "run", "burn-triage", "-i", str(SAMPLE_DATA), "-o", str(out), "-c", str(config), "-q",
                   env=env)
        assert run.returncode == 0, run.stderr[-3000:]
        status = _cli("outbox", "status", "--db", str(out / "outbox.sqlite"), "--json", "--failed")
        info = _cli("info", "--json", env=env)
    images = MANIFEST["expected_images"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reports"] == images
    # three destinations got every report; the wrong password got none
    assert summary["delivery"]["delivered"] == 3 * images, summary
    assert len(main.accepted) == 2 * images and len(bearer.accepted) == images
    assert main.token_requests == 1  # one OAuth2 token served the whole run
    counts = json.loads(status.stdout)["counts"]
    assert counts["emr-wrong"]["delivered"] == 0 and counts["emr-wrong"]["pending"] == images
    failed_or_waiting = [r for r in json.loads(status.stdout)["failed"]]
    assert all("authentication failed" in r["last_error"] for r in failed_or_waiting)

    secrets = [PASSWORD, WRONG_PASSWORD, CLIENT_SECRET, BEARER, *main.issued,
               base64.b64encode(f"burnscope:{PASSWORD}".encode()).decode(),
               base64.b64encode(f"burnscope:{WRONG_PASSWORD}".encode()).decode()]
    texts = {"stdout": run.stdout, "stderr": run.stderr, "outbox status": status.stdout + status.stderr,
             "info": info.stdout + info.stderr}
    assert "DEBUG" in run.stderr  # the debug log was on: there was something to leak into
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"summary.json", "errors.jsonl", "outbox.sqlite", "audit.jsonl"}
    for secret in secrets:
        for name, text in texts.items():
            assert secret not in text, f"secret in {name}"
        for path in files:
            assert secret.encode() not in path.read_bytes(), f"secret in {path}"
    # files at rest: 0600 files, 0700 folders (the output folder and the study sub-folders)
    modes = {p.relative_to(out).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in [out, *out.rglob("*")]}
    wrong = {name: oct(mode) for name, mode in modes.items()
             if mode != (0o700 if (out / name).is_dir() else 0o600)}
    assert not wrong, wrong


runner = CliRunner()


def _run_with(tmp_path, site: dict, *extra):
    config = tmp_path / "site.yaml"
    config.write_text(yaml.safe_dump(site))
    out = tmp_path / "out"
    # a model path that does not exist: if the model were loaded first, that would be the error
    result = runner.invoke(cli_app, ["run", "burn-triage", "-i", str(SAMPLE_DATA), "-o", str(out), "-c", str(config),
                                     "-m", str(tmp_path / "no-such-model.bin"), *extra])
    lines = [line for line in result.output.splitlines() if line.strip()]
    return result, lines, out


def _scp(tls=None, **kwargs):
    return {"source": {"scp": {"tls": tls, "port": 0, **kwargs}}}


def _fhir(auth=None, tls=None):
    dest = {"name": "emr", "kind": "fhir", "url": "https://emr.example.org/fhir"}
    if auth is not None:
        dest["auth"] = auth
    if tls is not None:
        dest["tls"] = tls
    return {"delivery": {"destinations": [dest]}}


def _bad_settings(tmp_path, pki):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    folder = tmp_path / "a-folder"
    folder.mkdir()
    missing = str(tmp_path / "missing.pem")
    return [
        (_scp({"cert": missing}), ["--listen", "0"], f"source.scp.tls.cert: file not found: {missing}"),
        (_scp({"cert": str(pki.server.cert), "key": str(garbage), "ca": str(pki.ca)}), ["--listen", "0"],
         "source.scp.tls.key: not a PEM file"),
        (_scp({"cert": str(pki.server.cert), "key": str(pki.client.key), "ca": str(pki.ca)}), ["--listen", "0"],
         "source.scp.tls.key: does not belong to the certificate"),
        (_scp({"cert": str(pki.server.cert), "key": str(pki.server.key)}), ["--listen", "0"],
         "source.scp.tls.ca: needed to verify client certificates"),
        (_scp({"cert": str(pki.server.cert), "kee": "x"}), ["--listen", "0"],
         "source.scp.tls.kee: unknown key; did you mean key?"),
        (_scp("yes"), ["--listen", "0"], "source.scp.tls: Input should be a valid dictionary"),
        (_scp(allowed_addresses=["the ward"]), ["--listen", "0"],
         "source.scp.allowed_addresses: not an IP address or CIDR network: 'the ward'"),
        (_fhir(tls={"ca": missing}), [], f"delivery.destinations[0].tls.ca: file not found: {missing}"),
        (_fhir({"kind": "basic", "username": "u", "password_file": str(folder)}), [],
         f"delivery.destinations[0].auth.password_file: not a file: {folder}"),
        (_fhir({"kind": "basic", "username": "u", "password_file": missing}), [],
         f"delivery.destinations[0].auth.password_file: file not found: {missing}"),
        (_fhir({"kind": "bearer", "token_env": "BURNSCOPE_TEST_NOT_SET"}), [],
         "delivery.destinations[0].auth.token_env: environment variable BURNSCOPE_TEST_NOT_SET is not set"),
        (_fhir({"kind": "basic", "password_env": "X"}), [],
         "delivery.destinations[0].auth: basic authentication needs username"),
        (_fhir({"kind": "bearer", "token_file": "a", "token_env": "B"}), [],
         "needs exactly one of token_file and token_env"),
        (_fhir({"kind": "oauth2", "token_url": "https://idp/token", "client_id": "c", "password_env": "X",
                "client_secret_env": "Y"}), [], "password_env do(es) not apply to oauth2 authentication"),
    ]


def test_bad_security_settings_stop_the_run_at_start_with_one_line(tmp_path, pki, monkeypatch):
    monkeypatch.delenv("BURNSCOPE_TEST_NOT_SET", raising=False)
    for number, (site, extra, message) in enumerate(_bad_settings(tmp_path, pki)):
        case = tmp_path / f"case-{number}"
        case.mkdir()
        result, lines, out = _run_with(case, site, *extra)
        assert result.exit_code == 2, (message, result.output)
        assert len(lines) == 1 and lines[0].startswith("error: "), (message, lines)
        assert message in lines[0], (message, lines)
        assert not out.exists(), message  # nothing half-started


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/usr/bin/setpriv"), reason="needs root and setpriv")
def test_a_secret_file_the_user_may_not_read_is_named():
    """Root reads every file, so the check runs as nobody, on a file only root may read."""
    import shutil
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp(prefix="burnscope-secret-"))
    try:
        folder.chmod(0o755)
        secret = folder / "pw"
        secret.write_text("root-only-secret-value\n")
        secret.chmod(0o600)
        code = ("from burnscope.common.credentials import read_secret, SecretError\n"
                f"try:\n    read_secret(file={str(secret)!r})\nexcept SecretError as exc:\n    print(exc)\n")
        out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                              code], capture_output=True, text=True, timeout=60, cwd="/")
        if out.returncode != 0 and not out.stdout:
            pytest.skip(f"the interpreter or burnscope is not readable by nobody here: {out.stderr[-300:]}")
        assert out.stdout.strip() == f"cannot be read: {secret} (Permission denied)", out.stderr[-2000:]
        assert "root-only-secret-value" not in out.stdout + out.stderr
    finally:
        shutil.rmtree(folder)
