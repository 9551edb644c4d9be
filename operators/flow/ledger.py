"""The run's ledger (no Holoscan): what the source accepted, what the sinks settled, and whether
every message has drained.

Two things are tracked, both cheap (a dict entry per image in flight, a counter per sink):

**Accounting.** Every unit the source accepts ends as exactly one outcome:

* each frame of a decoded file is an *image*; it ends as ``reported`` (its report is in the
  output folder, or counted by a headless sink) or ``error`` (an error record; e.g. the report
  could not be written);
* a file that could not be decoded is one unit that ends as ``error`` (its error record);
* a file a series selector left out is one unit, ``skipped`` at once.

``accepted = reported + errors + skipped + open``; at the end of a run ``open`` units are
``lost`` (or ``pending`` when the run was interrupted on purpose). With network delivery, a
reported image is only complete once its report was handed to the outbox (``queued``) or the
outbox refused it (``not_queued``). Study roll-ups are not units (they summarise images already
counted); error records about one output of a report (a PDF that failed to render) are counted
as ``render_errors`` beside the image's outcome.

**Drain.** The source counts its ticks (each tick emits one message on every output) and says
when it has finished; every terminal operator counts the messages it has processed. Because each
operator of the graph emits exactly one message per input message, the graph has drained when
the source has finished and every terminal has processed as many messages as the source emitted.
:class:`~burnscope.operators.flow.operator.RunMonitorOp` ends the graph on that condition, not on
the scheduler's deadlock detection.

Keys: an image is ``"<file>#<frame>"`` (the file path as the loader saw it), a file ``"<file>"``.
Labels (what listings show) are SOP Instance UIDs or file names, never patient data.

Thread-safe: sources and sinks call it from the scheduler's worker threads.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPORTED, ERROR, SKIPPED = "reported", "error", "skipped"
QUEUED, NOT_QUEUED = "queued", "not_queued"


def image_key(source: str, frame: int = 1) -> str:
    """The ledger key of one image (frame) of a file."""
    return f"{source}#{int(frame or 1)}"


def bundle_key(bundle: Any) -> str | None:
    """The image key of a report bundle (None for a study roll-up or a bundle without source)."""
    if getattr(bundle, "kind", "image") != "image":
        return None
    src = (getattr(bundle, "report", None) or {}).get("source") or {}
    return image_key(src["file"], src.get("frame", 1)) if "file" in src else None


@dataclass
class _Unit:
    key: str
    file: str
    label: str
    outcome: str | None = None
    delivery: str | None = None
    reason: str = ""


@dataclass
class LedgerSnapshot:
    """Counts at one moment (``open``: accepted, not yet settled)."""

    accepted: int = 0
    reported: int = 0
    errors: int = 0
    skipped: int = 0
    open: int = 0
    duplicates: int = 0
    render_errors: int = 0
    queued: int = 0
    not_queued: int = 0
    write_failures: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


class RunLedger:
    """See the module docstring.

    Parameters:
        deliveries: the graph hands reports to an outbox; a reported image is complete only
            once the delivery sink has taken it.
        on_file_done: ``callback(file_path, outcome)`` once every unit of a file has settled
            (``outcome``: ``reported`` when all its images were, else ``error`` or ``skipped``);
            the watch and SCP sources mark their journal with it. Called from a worker thread.
        clock: time source for ``last_progress`` (when a terminal last processed a message or a
            unit settled, or when work arrived at an idle graph; tests may pass their own).
    """

    def __init__(
        self,
        *,
        deliveries: bool = False,
        on_file_done: Callable[[str, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.deliveries = deliveries
        self.on_file_done = on_file_done
        self.clock = clock
        self._lock = threading.RLock()
        self._open: dict[str, list[_Unit]] = {}
        self._file_open: Counter[str] = Counter()
        self._file_outcomes: dict[str, set[str]] = {}
        self._done: Counter[str] = Counter()
        self._by_reason: Counter[str] = Counter()
        self._duplicates: list[dict[str, str]] = []
        self._not_queued: list[dict[str, str]] = []
        self._write_failures: list[dict[str, str]] = []
        self.accepted = 0
        self.render_errors = 0
        # drain
        self.ticks = 0
        self.finished = False
        self._terminals: dict[str, int] = {}
        self.last_progress = clock()

    # -- the source ----------------------------------------------------------------------------
    def accept(self, result: Any) -> None:
        """One loaded file (a ``FileResult``): its images, its error, or its skip."""
        path = str(result.path)
        with self._lock:
            if getattr(result, "skipped", False):
                self.accepted += 1
                self._done[SKIPPED] += 1
                self._file_outcomes.setdefault(path, set()).add(SKIPPED)
                self._file_settled(path)
                return
            if result.error is not None:
                label = result.error.sop_instance_uid or Path(path).name
                self._open_unit(_Unit(path, path, label))
                return
            for image in result.images:
                ctx = image.context
                self._open_unit(_Unit(image_key(ctx.source, ctx.frame_number), path, ctx.label))

    def _open_unit(self, unit: _Unit) -> None:
        self.accepted += 1
        self._open.setdefault(unit.key, []).append(unit)
        self._file_open[unit.file] += 1

    def tick(self) -> None:
        """The source emitted one message on each of its outputs."""
        with self._lock:
            if self._in_flight() == 0:  # work starts now: the stall clock starts with it
                self.last_progress = self.clock()
            self.ticks += 1

    def finish(self) -> None:
        """The source has emitted its last message."""
        with self._lock:
            self.finished = True

    # -- the sinks -----------------------------------------------------------------------------
    def register_terminal(self, name: str) -> None:
        """An operator at the end of a path; the graph has drained when each has seen every tick."""
        with self._lock:
            self._terminals.setdefault(name, 0)

    def message_done(self, name: str) -> None:
        """A terminal finished processing one message (call at the end of its ``compute``)."""
        with self._lock:
            self._terminals[name] = self._terminals.get(name, 0) + 1
            self.last_progress = self.clock()

    def settle(self, key: str, outcome: str, reason: str = "") -> bool:
        """The oldest open unit under ``key`` ends as ``outcome`` (reported|error). False (and a
        counted duplicate) when no unit is open under that key."""
        with self._lock:
            units = self._open.get(key)
            unit = next((u for u in units or () if u.outcome is None), None)
            if unit is None:
                self._duplicates.append({"key": key, "outcome": outcome})
                return False
            unit.outcome, unit.reason = outcome, reason
            if outcome == ERROR and reason:
                self._by_reason[reason] += 1
            self._maybe_close(unit)
            return True

    def settle_reports(self, bundles: Iterable[Any], statuses: Iterable[str] | None = None) -> None:
        """Report bundles reached their sink; ``statuses`` per bundle (``written``/``unchanged``/
        ``error``, as :class:`~burnscope.operators.sinks.folder.WriteResult` says); None: all stored."""
        bundles = list(bundles)
        statuses = list(statuses) if statuses is not None else ["written"] * len(bundles)
        for bundle, status in zip(bundles, statuses):
            self.render_errors += len(getattr(bundle, "errors", None) or ())
            key = bundle_key(bundle)
            if key is None:
                continue
            if status == "error":
                with self._lock:
                    self._write_failures.append({"label": bundle.label or bundle.stem})
                self.settle(key, ERROR, "write_failed")
            else:
                self.settle(key, REPORTED)

    def settle_errors(self, records: Iterable[Any]) -> None:
        """Error records of the loader reached the error sink (one per failed file)."""
        for record in records:
            if getattr(record, "stage", "load") != "load":
                continue  # an output of a report failed; the image itself is settled by its bundle
            self.settle(str(record.source), ERROR, record.reason)

    def handed_off(self, bundles: Iterable[Any], ok: bool = True, reason: str = "") -> None:
        """The delivery sink took these bundles: their deliveries are in the outbox (``ok``), or
        the outbox refused them (``ok=False``, e.g. the database is locked or the disk full)."""
        for bundle in bundles:
            key = bundle_key(bundle)
            if key is None:
                continue
            with self._lock:
                unit = next((u for u in self._open.get(key) or () if u.delivery is None), None)
                if unit is None:
                    continue  # an error outcome without a report, or settled already
                unit.delivery = QUEUED if ok else NOT_QUEUED
                if not ok:
                    self._not_queued.append({"label": unit.label, "reason": reason})
                self._maybe_close(unit)

    # -- closing -------------------------------------------------------------------------------
    def _complete(self, unit: _Unit) -> bool:
        if unit.outcome is None:
            return False
        return not self.deliveries or unit.outcome != REPORTED or unit.delivery is not None

    def _maybe_close(self, unit: _Unit) -> None:
        self.last_progress = self.clock()
        if unit.delivery is not None and unit.outcome is None:
            return
        if not self._complete(unit):
            return
        units = self._open[unit.key]
        units.remove(unit)
        if not units:
            del self._open[unit.key]
        self._done[unit.outcome] += 1
        if unit.delivery:
            self._done[unit.delivery] += 1
        self._file_outcomes.setdefault(unit.file, set()).add(unit.outcome)
        self._file_open[unit.file] -= 1
        if self._file_open[unit.file] <= 0:
            del self._file_open[unit.file]
            self._file_settled(unit.file)

    def _file_settled(self, path: str) -> None:
        outcomes = self._file_outcomes.pop(path, set())
        outcome = ERROR if ERROR in outcomes else (REPORTED if REPORTED in outcomes else SKIPPED)
        if self.on_file_done is not None:
            self.on_file_done(path, outcome)

    # -- reading -------------------------------------------------------------------------------
    @property
    def open_count(self) -> int:
        with self._lock:
            return sum(len(units) for units in self._open.values())

    def drained(self) -> bool:
        """The source has finished and every terminal has processed every message it emitted."""
        with self._lock:
            return self.finished and all(n >= self.ticks for n in self._terminals.values())

    def in_flight(self) -> int:
        """Messages emitted that some terminal has not processed yet (0 when idle)."""
        with self._lock:
            return self._in_flight()

    def _in_flight(self) -> int:
        return max((self.ticks - n for n in self._terminals.values()), default=0)

    def open_files(self) -> list[str]:
        """Files with units still open (for a journal: what a later run must process)."""
        with self._lock:
            return sorted(self._file_open)

    def snapshot(self) -> LedgerSnapshot:
        with self._lock:
            return LedgerSnapshot(
                accepted=self.accepted,
                reported=self._done[REPORTED],
                errors=self._done[ERROR],
                skipped=self._done[SKIPPED],
                open=sum(len(u) for u in self._open.values()),
                duplicates=len(self._duplicates),
                render_errors=self.render_errors,
                queued=self._done[QUEUED],
                not_queued=self._done[NOT_QUEUED],
                write_failures=len(self._write_failures),
                by_reason=dict(sorted(self._by_reason.items())),
            )

    def unsettled(self, limit: int = 1000) -> list[dict[str, str]]:
        """Open units: ``{"label", "file", "waiting_for"}`` (file name only, no folders; no patient data)."""
        with self._lock:
            rows = []
            for units in self._open.values():
                for u in units:
                    waiting = "report" if u.outcome is None else "delivery"
                    rows.append({"label": u.label, "file": Path(u.file).name, "waiting_for": waiting})
            return sorted(rows, key=lambda r: (r["file"], r["label"]))[:limit]

    def accounting(self, *, interrupted: bool = False, limit: int = 1000) -> dict[str, Any]:
        """The ``accounting`` block of ``summary.json``.

        ``lost``: units neither reported nor recorded as errors although the run ended on its own
        (an invariant broken: exit code 3); after an interruption the same units are ``pending``.
        """
        snap = self.snapshot()
        open_units = self.unsettled(limit)
        out: dict[str, Any] = {
            "accepted": snap.accepted,
            "reported": snap.reported,
            "errors": snap.errors,
            "skipped": snap.skipped,
            "lost": 0 if interrupted else snap.open,
            "pending": snap.open if interrupted else 0,
            "balanced": snap.accepted == snap.reported + snap.errors + snap.skipped + snap.open,
        }
        if snap.duplicates:
            out["duplicates"] = snap.duplicates
        if snap.render_errors:
            out["render_errors"] = snap.render_errors
        if self.deliveries:
            out["queued_for_delivery"] = snap.queued
            out["not_queued"] = snap.not_queued
        with self._lock:
            if self._not_queued:
                out["not_queued_items"] = self._not_queued[:limit]
            if self._write_failures:
                out["write_failures"] = self._write_failures[:limit]
        if snap.open:
            out["lost_items" if not interrupted else "pending_items"] = open_units
        return out


__all__ = [
    "ERROR", "NOT_QUEUED", "QUEUED", "REPORTED", "SKIPPED", "LedgerSnapshot", "RunLedger", "bundle_key",
    "image_key",
]
