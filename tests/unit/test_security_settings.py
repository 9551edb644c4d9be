"""Security settings in the schema: SCP access control and TLS, destination TLS and auth."""

from __future__ import annotations

import pytest

from burnscope.applications.burn_triage.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"source": {"scp": {"allowed_calling_aets": ["OK", "WAY-TOO-LONG-AE-TITLE"]}}},
         "source.scp.allowed_calling_aets: must be 1–16 characters"),
        ({"source": {"scp": {"allowed_calling_aets": []}}}, "source.scp.allowed_calling_aets: is empty"),
        ({"source": {"scp": {"allowed_addresses": ["10.0.0.0/33"]}}}, "not an IP address or CIDR network: '10.0.0.0/33'"),
        ({"source": {"scp": {"tls": {"key": "k.pem"}}}}, "source.scp.tls.cert: is required"),
        ({"delivery": {"destinations": [{"name": "p", "kind": "cstore", "host": "h", "port": 104,
                                         "auth": {"kind": "bearer", "token_env": "T"}}]}},
         "auth applies to stowrs and fhir; C-STORE uses tls"),
        ({"delivery": {"destinations": [{"name": "e", "kind": "fhir", "url": "https://h",
                                         "auth": {"kind": "basic", "username": "u", "password": "x"}}]}},
         "delivery.destinations[0].auth.password: unknown key; did you mean password_env?"),
        ({"delivery": {"destinations": [{"name": "e", "kind": "fhir", "url": "https://h",
                                         "auth": {"kind": "kerberos"}}]}},
         "delivery.destinations[0].auth.kind: unknown kind 'kerberos'; choose one of: basic, bearer, oauth2"),
        ({"delivery": {"destinations": [{"name": "e", "kind": "fhir", "url": "https://h",
                                         "tls": {"ca": "ca.pem", "verfy": False}}]}},
         "delivery.destinations[0].tls.verfy: unknown key; did you mean verify?"),
    ],
)
def test_bad_security_settings_name_the_key(overrides, message):
    with pytest.raises(SettingsError) as excinfo:
        load_settings(overrides=overrides)
    assert message in str(excinfo.value)


def test_defaults_leave_the_scp_open_on_loopback_only_and_tls_off():
    scp = load_settings()["source"]["scp"]
    assert scp["bind_address"] == "127.0.0.1"
    assert (scp["allowed_calling_aets"], scp["allowed_addresses"], scp["tls"], scp["require_called_aet"]) == (
        None, None, None, False)


def test_destination_tls_and_auth_keep_only_the_keys_given():
    dest = {"name": "emr", "kind": "fhir", "url": "https://h/fhir", "tls": {"ca": "/etc/ca.pem"},
            "auth": {"kind": "oauth2", "token_url": "https://idp/token", "client_id": "c",
                     "client_secret_env": "EMR_SECRET"}}
    (checked,) = load_settings(overrides={"delivery": {"destinations": [dest]}})["delivery"]["destinations"]
    assert checked == {**dest, "tls": {"ca": "/etc/ca.pem", "verify": True}}


@pytest.mark.parametrize("scp", [
    {"allowed_calling_aets": ["WOUNDCAM1"]},
    {"allowed_addresses": ["10.20.0.0/16"]},
    {"tls": {"cert": "scp.pem", "ca": "modalities-ca.pem"}},  # require_client_cert defaults to true
    {"allow_any_caller": True},
])
def test_an_scp_off_loopback_needs_someone_to_say_who_may_store(scp):
    with pytest.raises(SettingsError, match="source.scp: bind_address 0.0.0.0 is reachable from the network"):
        load_settings(overrides={"source": {"scp": {"bind_address": "0.0.0.0"}}})
    with pytest.raises(SettingsError, match="nothing says who may store"):  # TLS without client certificates
        load_settings(overrides={"source": {"scp": {"bind_address": "10.1.2.3",
                                                    "tls": {"cert": "s.pem", "require_client_cert": False}}}})
    checked = load_settings(overrides={"source": {"scp": {"bind_address": "0.0.0.0", **scp}}})["source"]["scp"]
    assert checked["bind_address"] == "0.0.0.0"


def test_metrics_off_loopback_need_a_token():
    with pytest.raises(SettingsError, match="metrics: bind_address 0.0.0.0 is reachable from the network: set token_file"):
        load_settings(overrides={"metrics": {"bind_address": "0.0.0.0"}})
    assert load_settings(overrides={"metrics": {"bind_address": "::1"}})["metrics"]["bind_address"] == "::1"
    for extra in ({"token_env": "BURNSCOPE_METRICS_TOKEN"}, {"token_file": "/run/secrets/metrics"},
                  {"allow_unauthenticated": True}):
        assert load_settings(overrides={"metrics": {"bind_address": "0.0.0.0", **extra}})["metrics"]["bind_address"]


def test_allow_any_caller_is_a_settings_key_only():
    """It never reaches the SCP's constructor (which would refuse an unknown argument)."""
    from burnscope.applications.burn_triage.app import scp_options

    source = load_settings(overrides={"source": {"kind": "scp", "scp": {"bind_address": "0.0.0.0",
                                                                       "allow_any_caller": True}}})["source"]
    assert "allow_any_caller" not in scp_options(source, None)
