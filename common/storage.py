"""What to say when a file the application keeps its state in cannot be used.

The outbox and the intake journal are SQLite databases. When one is locked by another process,
is not a database any more, or cannot be written, the application stops with one line that
names the file and what to do; it never deletes or recreates the file (its rows are deliveries
and acknowledged images that nothing else remembers).
"""

from __future__ import annotations

import errno
from pathlib import Path


def describe_sqlite_error(exc: BaseException, path: str | Path, what: str) -> str:
    """One line for ``exc`` raised by SQLite (or the OS) on ``path``; ``what`` names the file's role."""
    path = Path(path)
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return (f"{what} {path} is locked by another process (another burnscope run, or a tool holding it "
                f"open); stop it, or give this run another {what}")
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return (f"{what} {path} is not a readable SQLite database (corrupt?); it was left untouched: move it "
                f"aside to start a new one, after saving what it holds (sqlite3 {path.name} .recover)")
    if getattr(exc, "errno", None) == errno.ENOSPC or "disk is full" in text or "database or disk is full" in text:
        return f"{what} {path}: the disk is full"
    if "readonly" in text or "read-only" in text or "unable to open" in text or isinstance(exc, PermissionError):
        return f"{what} {path} cannot be written ({exc}); check the folder's permissions and mount"
    return f"{what} {path}: {type(exc).__name__}: {exc}"


__all__ = ["describe_sqlite_error"]
