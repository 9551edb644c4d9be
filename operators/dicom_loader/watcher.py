"""Folder watching without Holoscan: report files once they are completely written.

A file counts as complete when its size and modification time have not changed for
``settle_seconds`` (a writer still appending keeps changing them). Writers that write to a
temporary name and rename into place (``*.part``, ``*.tmp``, hidden files) are ignored until the
rename, which makes the file appear whole at once. Polling works on every file system (network
shares included) where inotify does not.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from burnscope.operators.dicom_loader.scanning import DEFAULT_IGNORE, _ignored

#: Names that writers use while a file is still being written.
IN_PROGRESS_PATTERNS = ("*.part", "*.tmp", "*.partial", "*.crdownload", "*~")


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    stable_since: float
    reported: bool = False


class FolderWatcher:
    """Polls ``root`` recursively and returns each complete new (or rewritten) file once.

    Parameters:
        root: folder to watch (created if missing).
        settle_seconds: how long size and mtime must stay unchanged.
        ignore: name patterns never reported (sidecars, docs, hidden and in-progress files).
        clock: time source (tests may pass their own).
        skip: ``skip(path, stat_result) -> bool``: files already handled (e.g. done in an intake
            journal) are never reported.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        settle_seconds: float = 1.0,
        ignore: Iterable[str] = DEFAULT_IGNORE + IN_PROGRESS_PATTERNS,
        clock: Callable[[], float] = time.monotonic,
        skip: Callable[[Path, os.stat_result], bool] | None = None,
    ) -> None:
        self.skip = skip
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.settle_seconds = float(settle_seconds)
        self.ignore = tuple(ignore)
        self.clock = clock
        self._seen: dict[Path, _Seen] = {}

    def _walk(self) -> list[Path]:
        files: list[Path] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            files.extend(Path(dirpath) / f for f in sorted(filenames) if not _ignored(f, self.ignore))
        return files

    def poll(self) -> list[Path]:
        """Files that became complete since the last poll, in path order."""
        now = self.clock()
        ready: list[Path] = []
        present = set()
        for path in self._walk():
            try:
                st = path.stat()
            except FileNotFoundError:  # removed or renamed between walk and stat
                continue
            present.add(path)
            seen = self._seen.get(path)
            if seen is None or (seen.size, seen.mtime_ns) != (st.st_size, st.st_mtime_ns):
                handled = seen is None and self.skip is not None and self.skip(path, st)
                self._seen[path] = _Seen(st.st_size, st.st_mtime_ns, now, reported=handled)
                continue
            if not seen.reported and st.st_size > 0 and now - seen.stable_since >= self.settle_seconds:
                seen.reported = True
                ready.append(path)
        for gone in set(self._seen) - present:
            del self._seen[gone]
        return ready

    def mark_reported(self, paths: Iterable[Path]) -> None:
        """These files are being handled elsewhere (recovered from a journal): never report them
        again unless they change."""
        now = self.clock()
        for path in paths:
            try:
                st = Path(path).stat()
            except FileNotFoundError:
                continue
            self._seen[Path(path)] = _Seen(st.st_size, st.st_mtime_ns, now, reported=True)

    @property
    def pending(self) -> int:
        """Files seen but not yet reported (still being written or settling)."""
        return sum(not s.reported for s in self._seen.values())


__all__ = ["FolderWatcher", "IN_PROGRESS_PATTERNS"]
