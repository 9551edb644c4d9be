"""Files at rest that may hold patient data: readable by their owner only, whatever the umask.

Reports, error records, the outbox database, the audit log and the SCP's spool are created
with mode 0600 (files) in folders created with mode 0700. The mode is set explicitly after
creation (``fchmod``/``chmod``), so a permissive umask (0022, 0002) cannot widen it and a
restrictive one (0277) cannot make a file unwritable for its owner. Folders that already
exist are left as they are: a site may have given its report folder to a group on purpose.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import IO

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dirs(path: str | os.PathLike) -> Path:
    """Create ``path`` and its missing parents with mode 0700; existing ones are left alone."""
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:  # made meanwhile by another writer
            continue
        os.chmod(folder, DIR_MODE)
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)  # raises the right error (a file is in the way)
    return path


def open_private(path: str | os.PathLike, mode: str = "a", *, encoding: str | None = "utf-8") -> IO:
    """``open(path, mode)`` for ``w``, ``a``, ``x`` (text or ``b``), creating the file 0600.

    An existing file keeps its content rules (``a`` appends) and is set to 0600 too.
    """
    base = mode.replace("b", "").replace("+", "")
    flags = {"w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
             "x": os.O_WRONLY | os.O_CREAT | os.O_EXCL}[base]
    if "+" in mode:
        flags = (flags & ~os.O_WRONLY) | os.O_RDWR
    path = Path(path)
    private_dirs(path.parent)
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        return os.fdopen(fd, mode, encoding=None if "b" in mode else encoding)
    except BaseException:
        os.close(fd)
        raise


def write_private(path: str | os.PathLike, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` (mode 0600)."""
    with open_private(path, "wb" if isinstance(data, bytes) else "w") as handle:
        handle.write(data)


def make_private(*paths: str | os.PathLike) -> None:
    """Set existing files to 0600 (e.g. a database a library created); missing ones, and files
    of another owner (which only that owner may change), are left alone."""
    for path in paths:
        try:
            if stat.S_IMODE(os.stat(path).st_mode) != FILE_MODE:
                os.chmod(path, FILE_MODE)
        except (FileNotFoundError, PermissionError):
            continue


__all__ = ["DIR_MODE", "FILE_MODE", "make_private", "open_private", "private_dirs", "write_private"]
