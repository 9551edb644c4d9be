"""Folder sinks (cores, no Holoscan): report bundles as files, error records as JSON lines.

Writes are atomic: each file is written to a temporary name in the same folder, flushed to
disk, then moved into place, so a reader (or a crash) never sees half a report. Reports and
error records hold patient data: files are created 0600 and folders 0700, whatever the umask.

A report is never silently replaced by a different one. Policy, per bundle (all artefacts of
one report travel together):

* the files ``<stem><suffix>`` do not exist → written;
* they exist with identical bytes, or the JSON report on disk has the same content
  fingerprint (a re-run whose report says the same thing, only generated later) → skipped
  (counted as ``unchanged``); existing files of a partly written bundle (a crash) are kept and
  the missing ones added;
* any of them exists with different bytes → the whole bundle is written as a new revision
  ``<stem>_r2<suffix>`` (then ``_r3`` ...), which sorts right after the first one;
* a write fails (disk full, folder read-only) → the files of the bundle this attempt wrote are
  removed again, the bundle counts as an error and nothing of it stays in the folder.

A re-run whose results differ (another model, other case data) yields a new revision rather
than overwriting the report a clinician may already have read.

Study roll-ups (``bundle.kind == "study"``) are running summaries and the one exception: a
fuller roll-up replaces the previous one (atomically). They are counted in
``rollups_written``, not in ``written``.
"""

from __future__ import annotations

import collections
import datetime as _dt
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from burnscope.common.messages import ErrorRecord
from burnscope.common.private_files import FILE_MODE, open_private, private_dirs
from burnscope.operators.report.core import ReportBundle

log = logging.getLogger(__name__)

MAX_REVISIONS = 999


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not supported on this platform/filesystem
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, overwrite: bool = True, fsync: bool = True) -> bool:
    """Write ``data`` to ``path`` via a temporary file in the same folder.

    With ``overwrite=False`` an existing ``path`` is left alone and False is returned (the
    final step is a hard link, which fails atomically when the name exists; on filesystems
    without hard links an existence check precedes ``os.replace``). Returns True when written.
    """
    path = Path(path)
    private_dirs(path.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)  # mkstemp's 0600 is narrowed by a umask such as 0277
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        if overwrite:
            os.replace(tmp_name, path)
        else:
            try:
                os.link(tmp_name, path)
            except FileExistsError:
                return False
            except OSError:  # no hard links here (e.g. some network or FAT filesystems)
                if path.exists():
                    return False
                os.replace(tmp_name, path)
        if fsync:
            _fsync_dir(path.parent)
        return True
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


@dataclass
class WriteResult:
    """What happened to one bundle: ``status`` is written, unchanged or error."""

    stem: str
    status: str
    paths: list[Path] = field(default_factory=list)
    message: str = ""


class FolderSink:
    """Writes :class:`ReportBundle` artefacts into ``out_dir`` (see the module docstring).

    Counters for the application's summary: ``written`` (bundles stored by this run: newly
    written, revisions, and those already present unchanged), ``unchanged`` (the part of
    ``written`` that was already there and skipped), ``new`` (``written - unchanged``), ``errors``
    (bundles that could not be written),
    ``files_written``, ``labels`` (finding label → bundles received), ``render_errors`` (an
    :class:`ErrorSink` that appended the bundles' own error records to ``errors.jsonl``).
    """

    def __init__(self, out_dir: str | os.PathLike, *, fsync: bool = True) -> None:
        self.out_dir = Path(out_dir)
        self.fsync = fsync
        self.written = 0
        self.unchanged = 0
        self.errors = 0
        self.files_written = 0
        self.rollups_written = 0
        self.labels: collections.Counter[str] = collections.Counter()
        self.results: list[WriteResult] = []
        #: Outputs the emitter could not render (``bundle.errors``) go to ``errors.jsonl`` too.
        self.render_errors = ErrorSink(self.out_dir)
        self._lock = threading.Lock()

    def _slot_state(self, stem: str, artefacts: dict[str, bytes]) -> tuple[str, list[str]]:
        """``("free"|"same"|"partial"|"different", missing_suffixes)`` of one file-name slot."""
        missing, differs = [], False
        for suffix, data in artefacts.items():
            path = self.out_dir / f"{stem}{suffix}"
            try:
                existing = path.read_bytes()
            except FileNotFoundError:
                missing.append(suffix)
                continue
            if existing != data:
                differs = True
        if differs:
            return "different", missing
        if len(missing) == len(artefacts):
            return "free", missing
        return ("partial" if missing else "same"), missing

    def write(self, bundle: ReportBundle) -> WriteResult:
        """Write one bundle; never raises for I/O errors (they are counted and returned)."""
        with self._lock:
            label = (bundle.report.get("finding") or {}).get("label") if bundle.report else None
            if label and bundle.kind == "image":
                self.labels[label] += 1
            if bundle.errors:
                self.render_errors.write(bundle.errors)
            try:
                result = self._write(bundle)
            except OSError as exc:
                self.errors += 1
                result = WriteResult(bundle.stem, "error", message=f"{type(exc).__name__}: {exc}")
                log.error("report %s not written: %s", bundle.label or bundle.stem, result.message)
            self.results.append(result)
            return result

    @property
    def new(self) -> int:
        return self.written - self.unchanged

    def _equivalent(self, stem: str, bundle: ReportBundle) -> bool:
        """True when ``<stem>.json`` on disk has the bundle's content fingerprint."""
        fingerprint = bundle.report.get("content_sha256") if bundle.report else None
        if not fingerprint or ".json" not in bundle.artefacts:
            return False
        try:
            existing = json.loads((self.out_dir / f"{stem}.json").read_bytes())
        except (OSError, ValueError):
            return False
        return isinstance(existing, dict) and existing.get("content_sha256") == fingerprint

    def _write(self, bundle: ReportBundle) -> WriteResult:
        private_dirs(self.out_dir)
        root = self.out_dir.resolve()
        if root not in (root / bundle.stem).resolve().parents:  # stems may hold sub-folders, never escape
            raise OSError(f"report name {bundle.stem!r} points outside {self.out_dir}")
        if not bundle.artefacts:
            return WriteResult(bundle.stem, "unchanged")
        if bundle.kind == "study":
            return self._write_rollup(bundle)
        for revision in range(1, MAX_REVISIONS + 1):
            stem = bundle.stem if revision == 1 else f"{bundle.stem}_r{revision}"
            state, missing = self._slot_state(stem, bundle.artefacts)
            if state == "different" and self._equivalent(stem, bundle):
                # a re-run's report saying the same thing: keep the first, and complete it when
                # a crash left it partly written
                state = "partial" if missing else "same"
            if state == "different":
                continue
            if state == "same":
                self.unchanged += 1
                self.written += 1  # the report is in the folder, as this run made it
                log.info("report %s unchanged: %s", bundle.label or bundle.stem, stem)
                return WriteResult(stem, "unchanged", [self.out_dir / f"{stem}{s}" for s in bundle.artefacts])
            paths, lost_race = [], False
            try:
                for suffix in missing:
                    path = self.out_dir / f"{stem}{suffix}"
                    if write_atomic(path, bundle.artefacts[suffix], overwrite=False, fsync=self.fsync):
                        paths.append(path)
                        self.files_written += 1
                    else:
                        lost_race = True  # another writer took this name meanwhile
            except OSError:
                # disk full, folder read-only: take back what this attempt wrote, so the folder
                # never holds part of a report
                for path in paths:
                    try:
                        path.unlink()
                        self.files_written -= 1
                    except OSError:
                        pass
                raise
            if lost_race and self._slot_state(stem, bundle.artefacts)[0] == "different":
                continue
            self.written += 1
            log.info("report %s written: %s (%d files)", bundle.label or bundle.stem, stem, len(paths))
            return WriteResult(stem, "written", paths)
        raise OSError(f"more than {MAX_REVISIONS} different reports named {bundle.stem}")

    def _write_rollup(self, bundle: ReportBundle) -> WriteResult:
        """A study roll-up is a running summary: a fuller one replaces it (atomically)."""
        if self._slot_state(bundle.stem, bundle.artefacts)[0] == "same":
            return WriteResult(bundle.stem, "unchanged")
        paths = []
        for suffix, data in bundle.artefacts.items():
            path = self.out_dir / f"{bundle.stem}{suffix}"
            write_atomic(path, data, overwrite=True, fsync=self.fsync)
            paths.append(path)
            self.files_written += 1
        self.rollups_written += 1
        return WriteResult(bundle.stem, "written", paths)

    def write_all(self, bundles: Iterable[ReportBundle]) -> list[WriteResult]:
        return [self.write(b) for b in bundles]


class ErrorSink:
    """Appends :class:`ErrorRecord` s to ``<out_dir>/errors.jsonl`` (one JSON object a line).

    Counters: ``errors`` (records received), ``written`` (records appended), ``by_reason``
    (alias ``reasons``) and ``by_stage`` (:class:`collections.Counter`), ``write_failures``. A
    record names the file and SOP Instance UID only; error records carry no patient data.
    """

    FILE_NAME = "errors.jsonl"

    def __init__(self, out_dir: str | os.PathLike, *, file_name: str = FILE_NAME) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / file_name
        self.errors = 0
        self.written = 0
        self.write_failures = 0
        self.by_reason: collections.Counter[str] = collections.Counter()
        self.by_stage: collections.Counter[str] = collections.Counter()
        self.records: list[ErrorRecord] = []
        self._lock = threading.Lock()

    def write(self, records: Iterable[ErrorRecord]) -> int:
        """Append records; returns how many were appended."""
        records = list(records)
        if not records:
            return 0
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
        lines = []
        with self._lock:
            for record in records:
                self.errors += 1
                self.by_reason[record.reason] += 1
                self.by_stage[record.stage] += 1
                self.records.append(record)
                lines.append(json.dumps({"time": now, **record.as_dict()}, ensure_ascii=False) + "\n")
            try:
                # One write of whole lines in append mode: concurrent appenders do not interleave
                # within a line on local filesystems.
                with open_private(self.path, "a") as handle:
                    handle.write("".join(lines))
                    handle.flush()
                    os.fsync(handle.fileno())
            except OSError as exc:
                self.write_failures += len(lines)
                log.error("could not append %d error record(s) to %s: %s", len(lines), self.path, exc)
                return 0
            self.written += len(lines)
        for record in records:
            log.warning(
                "error record: %s [%s/%s] %s",
                record.sop_instance_uid or Path(record.source).name,
                record.stage,
                record.reason,
                record.message,
            )
        return len(lines)

    @property
    def reasons(self) -> collections.Counter[str]:
        return self.by_reason

    def summary(self) -> dict[str, object]:
        return {
            "errors": self.errors,
            "written": self.written,
            "by_reason": dict(self.by_reason),
            "by_stage": dict(self.by_stage),
            "path": str(self.path),
        }
