"""Every TLS context burnscope uses, built here: DICOM TLS and HTTPS.

The profile is DICOM PS3.15 Annex B.9, "BCP 195 TLS Secure Transport Connection Profile"
(IETF BCP 195: RFC 7525, updated by RFC 9325):

* TLS 1.2 or 1.3 only (SSL, TLS 1.0 and 1.1 are refused);
* TLS 1.2 suites with forward secrecy (ECDHE or DHE) and AEAD ciphers only (AES-GCM,
  ChaCha20-Poly1305); TLS 1.3 suites are all AEAD;
* no TLS compression, no renegotiation;
* the server's certificate is verified against a trust store and its name checked
  (a client never connects to an unverified server unless told ``verify=False``);
* a server verifies the client certificates it asks for and, by default, requires one.

:func:`server_context` serves the C-STORE SCP; :func:`client_context` serves the C-STORE SCU
and HTTPS (STOW-RS, FHIR, the OAuth2 token endpoint). A bad setting raises :class:`TlsError`
naming the key (``cert``, ``key``, ``ca``) and the problem, never a bare ``ssl.SSLError``.
"""

from __future__ import annotations

import logging
import os
import ssl
import stat
from pathlib import Path

log = logging.getLogger(__name__)

#: OpenSSL cipher string for TLS 1.2 (BCP 195 / RFC 9325 §4.2): forward secrecy and AEAD only.
BCP195_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS:!PSK:!SRP"
MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


class TlsError(ValueError):
    """A TLS setting that cannot be used; ``key`` names it (``cert``, ``key``, ``ca``)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.problem = message


def _readable_file(key: str, path: str | os.PathLike) -> str:
    p = Path(path)
    try:
        if not stat.S_ISREG(p.stat().st_mode):
            raise TlsError(key, f"not a file: {p}")
        with open(p, "rb") as handle:
            head = handle.read(65536)  # PEM files may open with comment lines
    except FileNotFoundError:
        raise TlsError(key, f"file not found: {p}") from None
    except OSError as exc:  # permission denied (on the file or a folder above it), I/O error
        raise TlsError(key, f"cannot be read: {p} ({exc.strerror or type(exc).__name__})") from None
    if b"-----BEGIN " not in head:
        raise TlsError(key, f"not a PEM file: {p}")
    return str(p)


def _warn_if_shared(path: str) -> None:
    mode = os.stat(path).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("private key %s can be read by other users (mode %03o); chmod 600 it", path, mode & 0o777)


def _no_passphrase() -> bytes:
    raise TlsError("key", "the private key is encrypted; give an unencrypted key file readable by this user only")


def _base_context(purpose: ssl.Purpose) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if purpose is ssl.Purpose.CLIENT_AUTH else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = MINIMUM_VERSION
    ctx.set_ciphers(BCP195_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    if purpose is ssl.Purpose.CLIENT_AUTH:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_SINGLE_ECDH_USE
    return ctx


def _load_chain(ctx: ssl.SSLContext, cert: str | os.PathLike, key: str | os.PathLike | None) -> None:
    cert_path = _readable_file("cert", cert)
    key_path = _readable_file("key", key) if key else None
    try:
        ctx.load_cert_chain(cert_path, key_path, password=_no_passphrase)
    except TlsError:
        raise
    except ssl.SSLError as exc:
        reason = (exc.reason or "").upper()
        if "KEY_VALUES_MISMATCH" in reason:
            raise TlsError("key", f"does not belong to the certificate {cert_path}") from None
        if key_path is None:
            raise TlsError("cert", f"{cert_path} holds no certificate and private key (give key too)") from None
        raise TlsError("cert", f"{cert_path} and {key_path} are not a PEM certificate and private key") from None
    _warn_if_shared(key_path or cert_path)


def _load_ca(ctx: ssl.SSLContext, ca: str | os.PathLike) -> None:
    ca_path = _readable_file("ca", ca)
    try:
        ctx.load_verify_locations(cafile=ca_path)
    except ssl.SSLError:
        raise TlsError("ca", f"{ca_path} holds no PEM CA certificate") from None


def server_context(
    cert: str | os.PathLike,
    key: str | os.PathLike | None = None,
    ca: str | os.PathLike | None = None,
    require_client_cert: bool = True,
) -> ssl.SSLContext:
    """TLS context of a server (the C-STORE SCP).

    ``cert``/``key``: the server's certificate chain and private key (PEM; ``key`` may be left
    out when ``cert`` holds both). ``ca``: the CA certificates that client certificates must
    chain to. ``require_client_cert``: refuse clients without a valid certificate (mutual
    TLS); false with a ``ca``: verify a certificate when one is presented; false without:
    accept any client (TLS protects the data, the AE title and address checks do the rest).
    """
    ctx = _base_context(ssl.Purpose.CLIENT_AUTH)
    _load_chain(ctx, cert, key)
    if require_client_cert and not ca:
        raise TlsError("ca", "needed to verify client certificates (or set require_client_cert: false)")
    if ca:
        _load_ca(ctx, ca)
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def client_context(
    ca: str | os.PathLike | None = None,
    cert: str | os.PathLike | None = None,
    key: str | os.PathLike | None = None,
    verify: bool = True,
) -> ssl.SSLContext:
    """TLS context of a client (C-STORE SCU, HTTPS).

    ``ca``: the CA certificates the server's certificate must chain to (default: the system's
    trust store). ``cert``/``key``: a client certificate for servers that require one.
    ``verify=False`` turns off certificate and name checks: for tests only, logged as a warning.
    """
    ctx = _base_context(ssl.Purpose.SERVER_AUTH)
    if key and not cert:
        raise TlsError("cert", "a client key needs its certificate")
    if cert:
        _load_chain(ctx, cert, key)
    if not verify:
        log.warning("TLS server certificate verification is OFF for this connection: for tests only")
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = True
    if ca:
        _load_ca(ctx, ca)
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    return ctx


def describe_ssl_error(exc: BaseException) -> str:
    """A short, secret-free description of a TLS failure (for logs, the outbox and the audit)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not trusted ({exc.verify_message or exc.reason or 'verification failed'})"
    if isinstance(exc, ssl.SSLError):
        reason = (exc.reason or "").lower().replace("_", " ")
        if "certificate required" in reason:
            return "the peer requires a client certificate"
        if "unknown ca" in reason or "bad certificate" in reason:
            return f"the peer did not accept our certificate ({reason})"
        return f"TLS handshake failed ({reason or type(exc).__name__})"
    return f"TLS handshake failed ({type(exc).__name__})"


class _RecordingSSLSocket(ssl.SSLSocket):
    """Keeps the last TLS failure on its context, for libraries that swallow it.

    With TLS 1.3 a server refuses a client certificate after the client's handshake finished,
    so the alert shows up on the first read: reads are watched too.
    """

    def _record(self, exc: BaseException) -> None:
        self.context.last_handshake_error = describe_ssl_error(exc)  # type: ignore[attr-defined]

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except (ssl.SSLError, OSError) as exc:
            self._record(exc)
            raise

    def recv(self, *args, **kwargs):
        try:
            return super().recv(*args, **kwargs)
        except ssl.SSLError as exc:
            self._record(exc)
            raise


def record_handshake_errors(ctx: ssl.SSLContext) -> ssl.SSLContext:
    """Make ``ctx`` remember its last client-side TLS failure in ``ctx.last_handshake_error``.

    pynetdicom logs a failed TLS connect and reports only "no connection"; with this the
    C-STORE SCU can say why (untrusted certificate, client certificate required, ...).
    """
    ctx.sslsocket_class = _RecordingSSLSocket
    ctx.last_handshake_error = None  # type: ignore[attr-defined]
    return ctx


__all__ = [
    "BCP195_CIPHERS", "MINIMUM_VERSION", "TlsError", "client_context", "describe_ssl_error",
    "record_handshake_errors", "server_context",
]
