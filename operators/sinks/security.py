"""TLS and authentication of the network destinations (C-STORE, STOW-RS, FHIR).

A destination's settings carry two optional mappings::

    tls:  {ca, cert, key, verify: true, server_name}
    auth: {kind: basic,  username, password_file | password_env}
          {kind: bearer, token_file | token_env}
          {kind: oauth2, token_url, client_id, client_secret_file | client_secret_env, scope}

``tls`` applies to DICOM TLS (C-STORE) and to HTTPS (STOW-RS, FHIR, the OAuth2 token
endpoint): the server certificate is verified against ``ca`` (default: the system's trust
store) and its name checked (``server_name``, default the host); ``cert``/``key`` is a client
certificate. Contexts come from :mod:`burnscope.common.tls` (BCP 195). ``auth`` applies to the
HTTP destinations. Secrets are read from the named file or environment variable
(:mod:`burnscope.common.credentials`) when the transport is built; the settings — and so the
outbox's copy of them — hold only the reference. :func:`check_no_literal_secrets` refuses a
settings mapping that holds a secret itself.

OAuth2 client credentials (RFC 6749 §4.4) use Authlib's token client; the access token is reused
until shortly before it expires (a tenth of its lifetime, at most 60 s, before), then fetched
again; a 401 from the server drops it so the next attempt fetches a new one.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from burnscope.common.credentials import SecretError, read_secret, remember, remember_basic
from burnscope.common.tls import TlsError, client_context, describe_ssl_error, record_handshake_errors

log = logging.getLogger(__name__)

#: Keys that would hold a secret itself; settings name a file or a variable instead.
LITERAL_SECRET_KEYS = ("password", "token", "client_secret", "secret", "api_key", "access_token")
AUTH_KINDS = ("basic", "bearer", "oauth2")


class SecuritySettingError(ValueError):
    """A destination's ``tls`` or ``auth`` setting cannot be used; ``key`` is its path (``auth.password_file``)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


class TokenError(requests.RequestException):
    """The OAuth2 token endpoint did not issue a token (message: the OAuth2 error code only)."""


def check_no_literal_secrets(settings: Mapping[str, Any], where: str = "") -> None:
    """Raise ValueError when ``settings`` (or its ``auth``/``tls``/``headers``) holds a secret itself."""
    for key, value in settings.items():
        path = f"{where}{key}"
        if key.lower() in LITERAL_SECRET_KEYS:
            raise ValueError(f"{path}: secrets are not stored in settings; name a file ({key}_file) or an "
                             f"environment variable ({key}_env)")
        if key == "headers" and isinstance(value, Mapping) and any(h.lower() == "authorization" for h in value):
            raise ValueError(f"{path}: an Authorization header is a secret; use auth: {{kind: bearer, token_file: ...}}")
        if isinstance(value, Mapping):
            check_no_literal_secrets(value, f"{path}.")


def _is_loopback(host: str | None) -> bool:
    if host in (None, ""):
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, key: str, *, sends_credentials: bool) -> None:
    """No credentials inside URLs; credentials only over HTTPS (or to this machine)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise SecuritySettingError(key, f"must be an http(s) URL, got {parts.scheme or 'no'} scheme")
    if parts.username or parts.password:
        raise SecuritySettingError(key, "holds credentials; put them in auth (password_file or password_env)")
    if sends_credentials and parts.scheme != "https" and not _is_loopback(parts.hostname):
        raise SecuritySettingError(key, "would send credentials unencrypted; use https")


def tls_context(tls: Mapping[str, Any] | None) -> ssl.SSLContext:
    """The client TLS context of a destination (``tls`` may be None: verify with the system store)."""
    tls = dict(tls or {})
    try:
        ctx = client_context(ca=tls.get("ca"), cert=tls.get("cert"), key=tls.get("key"),
                             verify=bool(tls.get("verify", True)))
    except TlsError as exc:
        raise SecuritySettingError(f"tls.{exc.key}", exc.problem) from None
    return record_handshake_errors(ctx)


def cstore_tls_args(tls: Mapping[str, Any] | None, host: str) -> tuple[ssl.SSLContext, str] | None:
    """pynetdicom's ``tls_args`` for a C-STORE destination: (context, name the certificate must carry)."""
    if tls is None:
        return None
    return tls_context(tls), str(tls.get("server_name") or host)


class _TlsAdapter(HTTPAdapter):
    """requests adapter that uses one of our contexts (and not requests' own CA bundle)."""

    def __init__(self, context: ssl.SSLContext, **kwargs: Any) -> None:
        self.ssl_context = context
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self.ssl_context
        super().init_poolmanager(*args, **kwargs)

    def proxy_manager_for(self, proxy: str, **kwargs: Any):
        kwargs["ssl_context"] = self.ssl_context
        return super().proxy_manager_for(proxy, **kwargs)

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, _ = super().build_connection_pool_key_attributes(request, verify, cert)
        reqs = "CERT_NONE" if self.ssl_context.verify_mode == ssl.CERT_NONE else "CERT_REQUIRED"
        return host_params, {"ssl_context": self.ssl_context, "cert_reqs": reqs}

    def cert_verify(self, conn, url, verify, cert) -> None:
        pass  # the context decides: it holds the CA, the client certificate and the checks


def _secret(auth: Mapping[str, Any], name: str) -> str:
    file, env = auth.get(f"{name}_file"), auth.get(f"{name}_env")
    if not file and not env:
        raise SecuritySettingError(f"auth.{name}_file", f"give {name}_file or {name}_env")
    if file and env:
        raise SecuritySettingError(f"auth.{name}_file", f"give one of {name}_file and {name}_env, not both")
    try:
        return read_secret(file=file, env=env)
    except SecretError as exc:
        raise SecuritySettingError(f"auth.{name}_file" if file else f"auth.{name}_env", str(exc)) from None


class BearerAuth(requests.auth.AuthBase):
    """``Authorization: Bearer <token>`` with a fixed token."""

    def __init__(self, token: str) -> None:
        self._token = remember(token)

    def __call__(self, request):
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "BearerAuth(***)"


class OAuth2ClientCredentials(requests.auth.AuthBase):
    """OAuth2 client-credentials grant: fetches an access token, reuses it, renews it before expiry.

    Counters: ``fetches`` (tokens fetched). ``leeway_s``: renew this long before expiry at most
    (and never earlier than nine tenths of the token's lifetime).
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        scope: str | None = None,
        *,
        context: ssl.SSLContext | None = None,
        timeout_s: float = 30.0,
        leeway_s: float = 60.0,
        clock=time.time,
    ) -> None:
        from authlib.integrations.requests_client import OAuth2Session

        self.token_url = token_url
        self.timeout_s = timeout_s
        self.leeway_s = leeway_s
        self.clock = clock
        self.fetches = 0
        self._client = OAuth2Session(client_id, remember(client_secret), scope=scope)
        if context is not None:
            self._client.mount("https://", _TlsAdapter(context))
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OAuth2ClientCredentials({self.token_url!r}, ***)"

    def _fetch(self) -> None:
        from authlib.common.errors import AuthlibBaseError

        try:
            token = self._client.fetch_token(self.token_url, grant_type="client_credentials", timeout=self.timeout_s)
        except AuthlibBaseError as exc:
            code = "".join(c for c in str(getattr(exc, "error", "") or "") if c.isalnum() or c == "_")
            raise TokenError(f"OAuth2 token request refused ({code or 'no error code'})") from None
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "?"
            raise TokenError(f"OAuth2 token endpoint answered HTTP {status}") from None
        except requests.RequestException as exc:
            raise TokenError(f"OAuth2 token endpoint unreachable ({describe_request_failure(exc)})") from None
        except ValueError:  # not a JSON token response
            raise TokenError("OAuth2 token endpoint gave no token (not a JSON token response)") from None
        access = str(token.get("access_token") or "")
        if not access:
            raise TokenError("OAuth2 token endpoint gave no access_token")
        now = self.clock()
        lifetime = float(token.get("expires_in") or 0)
        self._token = remember(access)
        self._renew_at = now + lifetime - min(self.leeway_s, lifetime / 10) if lifetime > 0 else float("inf")
        self.fetches += 1
        log.info("OAuth2 access token fetched from %s (valid %s s)", self.token_url, int(lifetime) or "?")

    def access_token(self) -> str:
        with self._lock:
            if self._token is None or self.clock() >= self._renew_at:
                self._fetch()
            return self._token

    def invalidate(self) -> None:
        with self._lock:
            self._token = None

    def _on_response(self, response, **_: Any):
        if response.status_code == 401:
            self.invalidate()  # revoked or expired early: fetch a new one next time
        return response

    def __call__(self, request):
        request.headers["Authorization"] = f"Bearer {self.access_token()}"
        request.register_hook("response", self._on_response)
        return request


def http_auth(auth: Mapping[str, Any] | None, context: ssl.SSLContext | None = None,
              timeout_s: float = 30.0) -> requests.auth.AuthBase | None:
    """The requests auth object of an ``auth`` mapping (secrets read now); None without auth."""
    if not auth:
        return None
    kind = auth.get("kind")
    if kind == "basic":
        username = str(auth.get("username") or "")
        if not username:
            raise SecuritySettingError("auth.username", "is required for basic authentication")
        password = _secret(auth, "password")
        remember_basic(username, password)
        return requests.auth.HTTPBasicAuth(username, password)
    if kind == "bearer":
        return BearerAuth(_secret(auth, "token"))
    if kind == "oauth2":
        for key in ("token_url", "client_id"):
            if not auth.get(key):
                raise SecuritySettingError(f"auth.{key}", "is required for oauth2")
        check_url(str(auth["token_url"]), "auth.token_url", sends_credentials=True)
        return OAuth2ClientCredentials(
            str(auth["token_url"]), str(auth["client_id"]), _secret(auth, "client_secret"), auth.get("scope"),
            context=context, timeout_s=timeout_s,
        )
    raise SecuritySettingError("auth.kind", f"unknown kind {kind!r}; choose one of: {', '.join(AUTH_KINDS)}")


def http_session(url: str, tls: Mapping[str, Any] | None = None, auth: Mapping[str, Any] | None = None,
                 timeout_s: float = 30.0) -> requests.Session:
    """A requests session for an HTTP destination: BCP 195 TLS, verified certificates, auth attached."""
    check_url(url, "url", sends_credentials=bool(auth))
    context = tls_context(tls)
    session = requests.Session()
    session.mount("https://", _TlsAdapter(context))
    session.auth = http_auth(auth, context, timeout_s)
    return session


def prepare(settings: Mapping[str, Any]) -> None:
    """Build everything secret or TLS a destination needs, without connecting (start-up check).

    Raises :class:`SecuritySettingError` naming the key within the destination.
    """
    kind = settings.get("kind")
    if kind == "cstore":
        cstore_tls_args(settings.get("tls"), str(settings.get("host") or ""))
        if settings.get("auth"):
            raise SecuritySettingError("auth", "applies to stowrs and fhir destinations; C-STORE uses tls")
    elif settings.get("url"):
        http_session(str(settings["url"]), settings.get("tls"), settings.get("auth")).close()


def describe_request_failure(exc: BaseException) -> str:
    """Why a request failed, without URLs, headers or bodies: TLS reason, token error or the type."""
    if isinstance(exc, TokenError):
        return str(exc)
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ssl.SSLError):
            return f"TLS: {describe_ssl_error(item)}"
        if isinstance(item, TokenError):
            return str(item)
        stack += [item.__cause__, item.__context__, getattr(item, "reason", None), *item.args]
    return type(exc).__name__


__all__ = [
    "BearerAuth", "LITERAL_SECRET_KEYS", "OAuth2ClientCredentials", "SecuritySettingError", "TokenError",
    "check_no_literal_secrets", "check_url", "cstore_tls_args", "describe_request_failure", "http_auth",
    "http_session", "prepare", "tls_context",
]
