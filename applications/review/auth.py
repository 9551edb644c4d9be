"""Who may use the review app: local users (argon2 hashes), API tokens, sessions, CSRF tokens.

* **Users file** (JSON, written atomically with mode 0600): user name → argon2id hash, role
  (``viewer`` or ``clinician``), DICOM person name (``Family^Given``, the Verifying Observer of
  what the user signs) and organisation. ``burnscope web users add|remove`` maintains it.
* **API tokens** (``--api-token-file``): one token a line, optionally followed by a role and a
  person name (``TOKEN clinician Smith^Anna``); the role defaults to ``viewer``. Tokens shorter
  than 32 characters are refused at start. Only SHA-256 digests are kept in memory.
* **Sessions**: a random id in an HttpOnly, SameSite=Strict cookie (Secure behind TLS); state is
  kept server-side (idle and absolute timeouts), so nothing in the cookie can be forged or read.
* **CSRF**: every session has a token; forms carry it as a hidden field and scripts send it as
  ``X-CSRF-Token``. Bearer-token requests need none (a browser never adds that header by itself).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

ROLES = ("viewer", "clinician")
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,31}$")
MIN_PASSWORD_LENGTH = 10
MIN_TOKEN_LENGTH = 32
SESSION_COOKIE = "burnscope_session"
LOGIN_CSRF_COOKIE = "burnscope_login_csrf"


class AuthError(ValueError):
    """A bad user, password, role or token file; the message says which (never the secret)."""


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    username: str
    role: str
    person_name: str = ""
    organization: str = ""
    via: str = "session"  # "session" or "token"
    csrf: str = field(default="", repr=False)

    @property
    def is_clinician(self) -> bool:
        return self.role == "clinician"

    def reviewer(self):
        """This caller as the signer of a review."""
        from burnscope.operators.report.review import Reviewer

        return Reviewer(self.username, self.person_name, self.organization)

    @property
    def display(self) -> str:
        return self.reviewer().display


_HASHER = PasswordHasher()
#: Verified against when the user does not exist, so that a wrong name costs as long as a wrong password.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


class UserStore:
    """The users file. Re-read when it changes on disk (``users add`` while the app runs)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, dict[str, Any]] = {}

    def _load(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            try:
                st = self.path.stat()
            except FileNotFoundError:
                self._stamp, self._users = None, {}
                return self._users
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp != self._stamp:
                try:
                    data = json.loads(self.path.read_text(encoding="utf-8"))
                except (OSError, ValueError) as exc:
                    raise AuthError(f"users file {self.path} is not valid JSON ({type(exc).__name__})") from None
                users = data.get("users") if isinstance(data, dict) else None
                if not isinstance(users, dict):
                    raise AuthError(f"users file {self.path} has no 'users' object")
                self._users, self._stamp = users, stamp
            return self._users

    def users(self) -> dict[str, dict[str, Any]]:
        """user name → record (hash included); for listing, drop ``hash``."""
        return dict(self._load())

    def _save(self, users: dict[str, dict[str, Any]]) -> None:
        from burnscope.operators.sinks.folder import write_atomic

        data = json.dumps({"version": 1, "users": users}, indent=2, sort_keys=True).encode("utf-8")
        write_atomic(self.path, data, overwrite=True)  # a temporary file from mkstemp: mode 0600
        self.path.chmod(0o600)

    def add(
        self, username: str, password: str, role: str, *, person_name: str = "", organization: str = "", replace: bool = False
    ) -> None:
        if not USERNAME_RE.match(username or ""):
            raise AuthError("user name: 1–32 characters, lower-case letters, digits, '.', '_' or '-'")
        if role not in ROLES:
            raise AuthError(f"role must be one of {', '.join(ROLES)}")
        if len(password or "") < MIN_PASSWORD_LENGTH:
            raise AuthError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
        if len(person_name) > 64 or "\\" in person_name:
            raise AuthError("person name: at most 64 characters, no backslash")
        users = self.users()
        if username in users and not replace:
            raise AuthError(f"user {username!r} exists (use --replace to change the password or role)")
        users[username] = {
            "hash": _HASHER.hash(password),
            "role": role,
            "person_name": person_name,
            "organization": organization[:64],
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        self._save(users)

    def remove(self, username: str) -> bool:
        users = self.users()
        if username not in users:
            return False
        del users[username]
        self._save(users)
        return True

    def authenticate(self, username: str, password: str) -> Principal | None:
        """The principal, or None for an unknown user or a wrong password (same cost either way)."""
        record = self._load().get(username or "")
        stored = record.get("hash") if isinstance(record, dict) else None
        try:
            _HASHER.verify(stored or _DUMMY_HASH, password or "")
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if not stored:
            return None
        if _HASHER.check_needs_rehash(stored):  # argon2 parameters went up since the hash was made
            try:
                self.add(username, password, record["role"], person_name=record.get("person_name", ""),
                         organization=record.get("organization", ""), replace=True)
            except (AuthError, OSError):
                pass
        role = record.get("role")
        if role not in ROLES:
            return None
        return Principal(username, role, record.get("person_name", ""), record.get("organization", ""))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenStore:
    """API tokens from a file: ``TOKEN [ROLE [PERSON^NAME]]`` a line; ``#`` starts a comment."""

    def __init__(self, path: str | Path | None = None) -> None:
        self._tokens: dict[str, Principal] = {}
        if path is None:
            return
        path = Path(path)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise AuthError(f"API token file {path}: {exc.strerror or type(exc).__name__}") from None
        for number, line in enumerate(lines, 1):
            parts = line.split("#", 1)[0].split()
            if not parts:
                continue
            token, role = parts[0], (parts[1] if len(parts) > 1 else "viewer")
            if len(token) < MIN_TOKEN_LENGTH:
                raise AuthError(f"API token file {path}, line {number}: tokens need at least {MIN_TOKEN_LENGTH} characters")
            if role not in ROLES:
                raise AuthError(f"API token file {path}, line {number}: role must be one of {', '.join(ROLES)}")
            person = " ".join(parts[2:])
            self._tokens[_digest(token)] = Principal(f"token-{number}", role, person, "", via="token")

    def __len__(self) -> int:
        return len(self._tokens)

    def authenticate(self, token: str) -> Principal | None:
        wanted = _digest(token or "")
        for digest, principal in self._tokens.items():
            if hmac.compare_digest(digest, wanted):
                return principal
        return None


@dataclass
class _Session:
    principal: Principal
    created: float
    seen: float


class SessionStore:
    """Server-side sessions: random ids, idle and absolute expiry, CSRF token per session."""

    def __init__(self, idle_s: float = 30 * 60, absolute_s: float = 12 * 3600, clock=time.monotonic) -> None:
        self.idle_s, self.absolute_s, self.clock = float(idle_s), float(absolute_s), clock
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()

    def create(self, principal: Principal) -> str:
        sid = secrets.token_urlsafe(32)
        now = self.clock()
        with_csrf = Principal(**{**principal.__dict__, "via": "session", "csrf": secrets.token_urlsafe(32)})
        with self._lock:
            self._expire(now)
            self._sessions[_digest(sid)] = _Session(with_csrf, now, now)
        return sid

    def get(self, sid: str | None) -> Principal | None:
        if not sid:
            return None
        now = self.clock()
        with self._lock:
            session = self._sessions.get(_digest(sid))
            if session is None:
                return None
            if now - session.seen > self.idle_s or now - session.created > self.absolute_s:
                del self._sessions[_digest(sid)]
                return None
            session.seen = now
            return session.principal

    def drop(self, sid: str | None) -> None:
        if sid:
            with self._lock:
                self._sessions.pop(_digest(sid), None)

    def _expire(self, now: float) -> None:
        for key, s in list(self._sessions.items()):
            if now - s.seen > self.idle_s or now - s.created > self.absolute_s:
                del self._sessions[key]


class LoginThrottle:
    """After ``limit`` failed logins for one user name (or address) within ``window_s``, refuse
    further tries for ``lockout_s``: password guessing gets slow."""

    def __init__(self, limit: int = 5, window_s: float = 300.0, lockout_s: float = 60.0, clock=time.monotonic) -> None:
        self.limit, self.window_s, self.lockout_s, self.clock = limit, window_s, lockout_s, clock
        self._failures: dict[str, list[float]] = {}
        self._locked: dict[str, float] = {}
        self._lock = threading.Lock()

    def blocked(self, *keys: str) -> float:
        """Seconds until these keys may try again (0: now)."""
        now = self.clock()
        with self._lock:
            return max([self._locked.get(k, 0.0) - now for k in keys] + [0.0])

    def failed(self, *keys: str) -> None:
        now = self.clock()
        with self._lock:
            for key in keys:
                recent = [t for t in self._failures.get(key, []) if now - t < self.window_s] + [now]
                self._failures[key] = recent
                if len(recent) >= self.limit:
                    self._locked[key] = now + self.lockout_s
                    self._failures[key] = []

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)


def same_token(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


__all__ = [
    "AuthError",
    "LOGIN_CSRF_COOKIE",
    "LoginThrottle",
    "Principal",
    "ROLES",
    "SESSION_COOKIE",
    "SessionStore",
    "TokenStore",
    "UserStore",
    "same_token",
]
