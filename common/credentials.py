"""Secrets (passwords, tokens, client secrets): read from a file or an environment variable,
never written anywhere.

A setting never holds a secret itself; it names where to find it (``password_file`` or
``password_env``, ``token_file`` or ``token_env``, ...). :func:`read_secret` reads it and
remembers the value so that :func:`redact` can blank it out of any text, and — once
:func:`install_log_redaction` ran — out of every log record of the process (message,
arguments and traceback). Settings, the outbox's stored destination settings, summaries and
the audit log therefore hold only the reference.

A reference that cannot be used (file missing, unreadable or empty; variable unset or empty)
raises :class:`SecretError` naming the reference, never the value.
"""

from __future__ import annotations

import base64
import logging
import os
import stat
import threading
import traceback
from pathlib import Path

log = logging.getLogger(__name__)

REDACTED = "***"
#: Values shorter than this are not blanked out of text (they would blank out ordinary words).
MIN_REDACTED_LENGTH = 4

_known: set[str] = set()
_lock = threading.Lock()
_installed = False


class SecretError(ValueError):
    """A secret reference that cannot be resolved; the message names the reference only."""


def remember(value: str) -> str:
    """Treat ``value`` as a secret from now on (:func:`redact` blanks it); returns it."""
    if value and len(value) >= MIN_REDACTED_LENGTH:
        with _lock:
            _known.add(value)
    return value


def remember_basic(username: str, password: str) -> None:
    """The password, and the ``user:password`` pair as an HTTP Basic header carries it."""
    remember(password)
    remember(base64.b64encode(f"{username}:{password}".encode()).decode("ascii"))


def redact(text: str) -> str:
    """``text`` with every remembered secret replaced by ``***``."""
    if not text or not _known:
        return text
    with _lock:
        values = sorted(_known, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def _read_file(path: str) -> str:
    p = Path(path).expanduser()
    try:
        mode = p.stat().st_mode
        if not stat.S_ISREG(mode):
            raise SecretError(f"not a file: {p}")
        data = p.read_bytes()
    except FileNotFoundError:
        raise SecretError(f"file not found: {p}") from None
    except OSError as exc:  # permission denied (on the file or a folder above it), I/O error
        raise SecretError(f"cannot be read: {p} ({exc.strerror or type(exc).__name__})") from None
    try:
        value = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise SecretError(f"cannot be read: {p} (not UTF-8 text)") from None
    if not value:
        raise SecretError(f"is empty: {p}")
    if "\n" in value:
        raise SecretError(f"holds more than one line: {p}")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("secret file %s can be read by other users (mode %03o); chmod 600 it", p, mode & 0o777)
    return value


def _read_env(name: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise SecretError(f"environment variable {name} is not set")
    value = value.strip()
    if not value:
        raise SecretError(f"environment variable {name} is empty")
    return value


def read_secret(file: str | os.PathLike | None = None, env: str | None = None) -> str:
    """The secret in ``file`` (one line; surrounding white space dropped) or in ``$env``.

    Exactly one of the two must be given. Raises :class:`SecretError`. The first secret read
    turns on :func:`install_log_redaction` for the process.
    """
    if bool(file) == bool(env):
        raise SecretError("give exactly one of a file and an environment variable")
    value = remember(_read_file(str(file)) if file else _read_env(str(env)))
    install_log_redaction()
    return value


def _redacting_factory(previous):
    def factory(*args, **kwargs):
        record = previous(*args, **kwargs)
        if not _known:
            return record
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to logging's own error handling
            return record
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            clean = redact(text)
            if clean != text:
                record.exc_text = clean
        return record

    return factory


def install_log_redaction() -> None:
    """Blank remembered secrets out of every log record made from now on (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        logging.setLogRecordFactory(_redacting_factory(logging.getLogRecordFactory()))
        _installed = True


__all__ = [
    "REDACTED", "SecretError", "install_log_redaction", "read_secret", "redact", "remember", "remember_basic",
]
