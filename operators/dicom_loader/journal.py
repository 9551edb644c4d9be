"""The intake journal (SQLite, no Holoscan): which received or watched files are still to report.

The C-STORE SCP records an instance here after it is on disk (file and folder fsync'd) and
before it answers Success; the folder watcher records a file when it is complete and before it
is decoded. A file is marked ``done`` once every image of it has ended as a report or an error
record (:class:`~burnscope.operators.flow.ledger.RunLedger` says so). After a crash (``kill -9``,
power loss) the next run starts with every ``pending`` file, and the watcher skips the ``done``
ones, so an acknowledged image is reported even if the process died before reporting it, and a
finished one is not processed again. (A file that was reported but not yet marked when the
process died is processed once more; its report is identical, so the folder sink keeps the first
and the outbox does not send it again.)

Commits are synchronous (``PRAGMA synchronous=FULL``, WAL): a recorded file survives power
loss. A journal that another process holds locked, or that is not a readable database, raises
:class:`JournalError` with the path and what to do; it is never reset silently.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from burnscope.common.storage import describe_sqlite_error

PENDING, DONE = "pending", "done"
FILE_NAME = "journal.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL DEFAULT -1,
    mtime_ns INTEGER NOT NULL DEFAULT -1,
    sop_instance_uid TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    outcome TEXT NOT NULL DEFAULT '',
    recorded_at REAL NOT NULL,
    done_at REAL
);
CREATE INDEX IF NOT EXISTS files_state ON files (state);
"""


def _key(path: str | os.PathLike) -> str:
    """Files are recorded by absolute path, so a restart with another working folder finds them."""
    return os.path.abspath(path)


class JournalError(RuntimeError):
    """The journal cannot be used (locked by another process, corrupt, unwritable)."""


@dataclass(frozen=True)
class JournalEntry:
    path: Path
    size: int
    mtime_ns: int
    sop_instance_uid: str
    state: str


class Journal:
    """See the module docstring. Thread-safe; one process at a time (a second one waits up to
    ``busy_timeout_s`` for the lock, then fails with :class:`JournalError`)."""

    def __init__(self, path: str | os.PathLike, *, busy_timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            # an exclusive hold for the life of the run would keep out a second writer even between
            # our transactions; a quick write proves the database is ours to write now
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            raise JournalError(describe_sqlite_error(exc, self.path, "journal")) from None

    def _write(self, sql: str, args: tuple) -> None:
        with self._lock:
            try:
                self._db.execute(sql, args)
            except sqlite3.Error as exc:
                raise JournalError(describe_sqlite_error(exc, self.path, "journal")) from None

    def record(self, path: str | os.PathLike, *, size: int = -1, mtime_ns: int = -1,
               sop_instance_uid: str = "") -> None:
        """``path`` is to be processed (committed before this returns)."""
        self._write(
            "INSERT INTO files(path, size, mtime_ns, sop_instance_uid, state, recorded_at) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(path) DO UPDATE SET size=excluded.size, mtime_ns=excluded.mtime_ns,"
            " sop_instance_uid=excluded.sop_instance_uid, state=excluded.state, outcome='',"
            " recorded_at=excluded.recorded_at, done_at=NULL",
            (_key(path), int(size), int(mtime_ns), sop_instance_uid, PENDING, time.time()),
        )

    def mark_done(self, path: str | os.PathLike, outcome: str = "") -> None:
        self._write("UPDATE files SET state=?, outcome=?, done_at=? WHERE path=?",
                    (DONE, outcome, time.time(), _key(path)))

    def pending(self) -> list[JournalEntry]:
        """Files recorded but not done, oldest first."""
        return self._entries("WHERE state=? ORDER BY recorded_at, path", (PENDING,))

    def is_done(self, path: str | os.PathLike, size: int, mtime_ns: int) -> bool:
        """True when this very file (same size and modification time) was done."""
        with self._lock:
            row = self._db.execute("SELECT size, mtime_ns, state FROM files WHERE path=?", (_key(path),)).fetchone()
        return row is not None and row[2] == DONE and (row[0], row[1]) == (int(size), int(mtime_ns))

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM files GROUP BY state").fetchall()
        return {PENDING: 0, DONE: 0, **{state: n for state, n in rows}}

    def _entries(self, where: str, args: tuple) -> list[JournalEntry]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT path, size, mtime_ns, sop_instance_uid, state FROM files {where}", args).fetchall()
        return [JournalEntry(Path(r[0]), r[1], r[2], r[3], r[4]) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["DONE", "FILE_NAME", "PENDING", "Journal", "JournalEntry", "JournalError"]
