"""Durable outbox for network deliveries (SQLite), shared by the C-STORE, STOW-RS and FHIR sinks.

Guarantees:

* **Recorded before attempted**: a delivery is committed to the database before any network
  call, so a crash or restart never loses it.
* **Idempotent**: a delivery is keyed by (key, destination), where key is the SOP Instance UID
  of a DICOM object or the id of a FHIR Bundle; enqueueing the same key again is a no-op, and a
  delivery that was in flight when the process died is sent again under the same key (PACS
  store by SOP Instance UID; the FHIR Bundle uses conditional creates), so the receiver holds
  it once.
* **Retries** with exponential backoff and jitter while a server is unreachable; a permanent
  rejection (e.g. the PACS refuses the SOP class, HTTP 4xx) is marked ``failed`` with its status
  code and not retried until an operator says so (``burnscope outbox retry``).

Destinations (name, kind, settings) are stored in the same database, so the command line can
retry deliveries without the application's configuration. Settings name secrets (a file or an
environment variable), never hold them; stored errors pass through
:func:`~burnscope.common.credentials.redact`. The database holds report payloads (patient data):
it is created readable by its owner only (0600; SQLite gives its ``-wal``/``-shm`` files the
same mode) in a folder created 0700.

A database that another process holds locked, or that is not a readable SQLite file, raises
:class:`OutboxError` with one line saying so; the file is never reset or recreated.
"""

from __future__ import annotations

import contextlib
import json
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from burnscope.common.credentials import redact
from burnscope.common.private_files import make_private, private_dirs
from burnscope.common.storage import describe_sqlite_error

PENDING, DELIVERING, DELIVERED, FAILED = "pending", "delivering", "delivered", "failed"
STATUSES = (PENDING, DELIVERING, DELIVERED, FAILED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS destinations (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    settings TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    destination TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload BLOB NOT NULL,
    label TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    last_status INTEGER,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    delivered_at REAL,
    UNIQUE (key, destination)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_attempt_at);
"""


@dataclass
class Delivery:
    """One row of the outbox (payload included)."""

    id: int
    key: str
    destination: str
    kind: str
    payload: bytes
    label: str
    status: str
    attempts: int
    next_attempt_at: float
    last_error: str
    last_status: int | None


@dataclass
class Backoff:
    """Exponential backoff with jitter: ``base * factor**(attempt-1)``, capped, times U(0.5, 1]."""

    base_s: float = 2.0
    factor: float = 2.0
    max_s: float = 300.0
    jitter: float = 0.5

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        raw = min(self.max_s, self.base_s * self.factor ** max(attempt - 1, 0))
        r = (rng or random).random()
        return raw * (1.0 - self.jitter * r)


class OutboxError(RuntimeError):
    """The outbox database cannot be used (locked by another process, corrupt, unwritable)."""


class Outbox:
    """The outbox database. Safe to share between threads; several processes may open it
    (each waits up to ``busy_timeout_s`` for another's write lock)."""

    def __init__(
        self,
        path: str | Path,
        *,
        backoff: Backoff | None = None,
        max_attempts: int | None = None,
        clock=time.time,
        busy_timeout_s: float = 30.0,
    ) -> None:
        self.path = Path(path)
        self.backoff = backoff or Backoff()
        #: Transient failures after which a delivery is given up (None: keep retrying).
        self.max_attempts = max_attempts
        self.clock = clock
        self._lock = threading.RLock()
        try:
            private_dirs(self.path.parent)
            if not self.path.exists():
                self.path.touch(mode=0o600)
            make_private(self.path)
            self._db = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None,
                                       check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a committed enqueue survives power loss
            self._db.executescript(_SCHEMA)
            make_private(f"{self.path}-wal", f"{self.path}-shm")  # SQLite copies the database's mode; older ones
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(describe_sqlite_error(exc, self.path, "outbox")) from None

    # -- plumbing ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise OutboxError(describe_sqlite_error(exc, self.path, "outbox")) from None
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._db.execute("ROLLBACK")
                raise OutboxError(describe_sqlite_error(exc, self.path, "outbox")) from None

    def check_writable(self) -> None:
        """Raise :class:`OutboxError` unless a write transaction can start (within the busy timeout)."""
        with self._tx():
            pass

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "Outbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- destinations ------------------------------------------------------------------------
    def set_destination(self, name: str, kind: str, settings: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO destinations(name, kind, settings) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET kind=excluded.kind, settings=excluded.settings",
                (name, kind, json.dumps(settings, sort_keys=True)),
            )

    def destinations(self) -> dict[str, tuple[str, dict[str, Any]]]:
        with self._lock:
            rows = self._db.execute("SELECT name, kind, settings FROM destinations").fetchall()
        return {r["name"]: (r["kind"], json.loads(r["settings"])) for r in rows}

    # -- deliveries --------------------------------------------------------------------------
    def enqueue(self, key: str, destination: str, kind: str, payload: bytes, *, label: str = "") -> bool:
        """Record a delivery; False when (key, destination) is already known (idempotent)."""
        if not key:
            raise ValueError("a delivery needs a key (SOP Instance UID or Bundle id)")
        now = self.clock()
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO deliveries(key, destination, kind, payload, label, status,"
                " next_attempt_at,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
                (key, destination, kind, sqlite3.Binary(payload), label, now, now, now),
            )
            return cur.rowcount == 1

    def recover(self) -> int:
        """Deliveries left ``delivering`` by a process that died become ``pending`` again."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE deliveries SET status='pending', updated_at=? WHERE status='delivering'",
                (self.clock(),),
            )
            return cur.rowcount

    def claim_due(self, destination: str | None = None, limit: int = 32) -> list[Delivery]:
        """Mark up to ``limit`` due pending deliveries ``delivering`` and return them (oldest first)."""
        now = self.clock()
        where = "status='pending' AND next_attempt_at <= ?"
        args: list[Any] = [now]
        if destination is not None:
            where += " AND destination = ?"
            args.append(destination)
        with self._tx() as db:
            rows = db.execute(
                f"SELECT * FROM deliveries WHERE {where} ORDER BY next_attempt_at, id LIMIT ?", (*args, limit)
            ).fetchall()
            if rows:
                db.executemany(
                    "UPDATE deliveries SET status='delivering', attempts=attempts+1, updated_at=? WHERE id=?",
                    [(now, r["id"]) for r in rows],
                )
        return [self._delivery(r, attempts_delta=1) for r in rows]

    def mark_delivered(self, delivery_id: int, status_code: int | None = None) -> None:
        now = self.clock()
        with self._tx() as db:
            db.execute(
                "UPDATE deliveries SET status='delivered', delivered_at=?, updated_at=?, last_status=?,"
                " last_error='' WHERE id=?",
                (now, now, status_code, delivery_id),
            )

    def mark_retry(
        self, delivery_id: int, error: str, status_code: int | None = None, *, min_delay_s: float | None = None
    ) -> tuple[str, float]:
        """A transient failure: schedule the next attempt; returns (new status, delay in seconds).

        ``min_delay_s``: the server asked for at least this long (HTTP ``Retry-After``); the
        next attempt waits for the longer of that and the backoff.
        """
        now, error = self.clock(), redact(error)
        with self._tx() as db:
            row = db.execute("SELECT attempts FROM deliveries WHERE id=?", (delivery_id,)).fetchone()
            attempts = int(row["attempts"]) if row else 1
            if self.max_attempts is not None and attempts >= self.max_attempts:
                db.execute(
                    "UPDATE deliveries SET status='failed', last_error=?, last_status=?, updated_at=?"
                    " WHERE id=?",
                    (f"gave up after {attempts} attempts: {error}"[:2000], status_code, now, delivery_id),
                )
                return FAILED, 0.0
            delay = self.backoff.delay(attempts)
            if min_delay_s is not None:
                delay = max(delay, float(min_delay_s))
            db.execute(
                "UPDATE deliveries SET status='pending', next_attempt_at=?, last_error=?, last_status=?,"
                " updated_at=? WHERE id=?",
                (now + delay, error[:2000], status_code, now, delivery_id),
            )
            return PENDING, delay

    def mark_failed(self, delivery_id: int, error: str, status_code: int | None = None) -> None:
        """A permanent rejection: not retried until :meth:`retry` is called."""
        error = redact(error)
        with self._tx() as db:
            db.execute(
                "UPDATE deliveries SET status='failed', last_error=?, last_status=?, updated_at=? WHERE id=?",
                (error[:2000], status_code, self.clock(), delivery_id),
            )

    def retry(self, *, destination: str | None = None, include_pending: bool = True) -> int:
        """Failed (and waiting pending) deliveries become due now, attempts reset; returns how many."""
        statuses = ("failed", "pending") if include_pending else ("failed",)
        where = f"status IN ({','.join('?' * len(statuses))})"
        args: list[Any] = list(statuses)
        if destination:
            where += " AND destination=?"
            args.append(destination)
        with self._tx() as db:
            cur = db.execute(
                f"UPDATE deliveries SET status='pending', attempts=0, next_attempt_at=0, updated_at=?"
                f" WHERE {where}",
                (self.clock(), *args),
            )
            return cur.rowcount

    def purge_delivered(self, older_than_s: float = 0.0) -> int:
        """Delete delivered rows (their payloads too) older than ``older_than_s`` seconds."""
        with self._tx() as db:
            cur = db.execute(
                "DELETE FROM deliveries WHERE status='delivered' AND delivered_at <= ?",
                (self.clock() - older_than_s,),
            )
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return cur.rowcount

    def counts(self) -> dict[str, dict[str, int]]:
        """destination → {status → count} (every status present, zeros included)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT destination, status, COUNT(*) AS n FROM deliveries GROUP BY destination, status"
            ).fetchall()
        out: dict[str, dict[str, int]] = {}
        for r in rows:
            out.setdefault(r["destination"], dict.fromkeys(STATUSES, 0))[r["status"]] = r["n"]
        return out

    def rows(self, status: str | None = None) -> list[dict[str, Any]]:
        """Rows without payload (for status displays)."""
        sql = (
            "SELECT id, key, destination, kind, label, status, attempts, next_attempt_at, last_error,"
            " last_status,"
            " created_at, delivered_at FROM deliveries"
        )
        args: tuple = ()
        if status:
            sql += " WHERE status=?"
            args = (status,)
        with self._lock:
            return [dict(r) for r in self._db.execute(sql + " ORDER BY id", args).fetchall()]

    def pending_count(self, destination: str | None = None) -> int:
        sql = "SELECT COUNT(*) FROM deliveries WHERE status IN ('pending', 'delivering')"
        args: tuple = ()
        if destination:
            sql += " AND destination=?"
            args = (destination,)
        with self._lock:
            return int(self._db.execute(sql, args).fetchone()[0])

    def next_due_in(self) -> float | None:
        """Seconds until the next pending delivery is due (0 if one is due now), None if none."""
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(next_attempt_at) FROM deliveries WHERE status='pending'"
            ).fetchone()
        if row[0] is None:
            return None
        return max(0.0, float(row[0]) - self.clock())

    @staticmethod
    def _delivery(row: sqlite3.Row, attempts_delta: int = 0) -> Delivery:
        return Delivery(
            id=row["id"],
            key=row["key"],
            destination=row["destination"],
            kind=row["kind"],
            payload=bytes(row["payload"]),
            label=row["label"],
            status=DELIVERING,
            attempts=int(row["attempts"]) + attempts_delta,
            next_attempt_at=row["next_attempt_at"],
            last_error=row["last_error"],
            last_status=row["last_status"],
        )
