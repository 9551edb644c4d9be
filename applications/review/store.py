"""The reports in an output folder, as the review app lists them.

Reads every ``*.json`` below ``OUT`` whose ``schema`` is ``burnscope.report`` (image reports) or
``burnscope.review`` (clinician reviews), and keeps them indexed by SOP Instance UID and frame.
A refresh re-reads only files whose size or modification time changed, so reports that a running
``burnscope run``/``serve`` writes into the same folder appear on the next page load.

Where an image has several reports (revisions ``_r2`` … after re-runs), the newest counts. An
image's review status is ``preliminary`` (no review), ``verified`` (accepted or modified) or
``rejected``, from its newest review.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPORT_SCHEMA = "burnscope.report"
REVIEW_SCHEMA = "burnscope.review"
MAX_JSON_BYTES = 8 * 1024 * 1024
#: Folders that never hold reports.
SKIP_DIRS = {".web", "__pycache__"}


def priority_of(report: dict[str, Any]) -> str:
    """``STAT`` or ``ROUTINE``: the report's own ``priority`` (a string, or ``{"level": …}``),
    else the case's ``priority`` (``"stat"`` in a sidecar)."""
    value = report.get("priority")
    if isinstance(value, dict):
        value = value.get("level") or value.get("priority")
    if not value:
        value = (report.get("case") or {}).get("priority")
    return "STAT" if str(value or "").strip().lower() in ("stat", "high", "emergency") else "ROUTINE"


@dataclass
class ImageEntry:
    """One image (frame): its newest report and its reviews, newest last."""

    stem: str
    path: Path
    report: dict[str, Any]
    reviews: list[dict[str, Any]] = field(default_factory=list)

    @property
    def uid(self) -> str:
        return self.report["source"].get("sop_instance_uid") or ""

    @property
    def frame(self) -> int:
        return int(self.report["source"].get("frame") or 1)

    @property
    def latest_review(self) -> dict[str, Any] | None:
        return self.reviews[-1] if self.reviews else None

    @property
    def status(self) -> str:
        latest = self.latest_review
        return "preliminary" if latest is None else latest["review"]["status"]

    @property
    def priority(self) -> str:
        return priority_of(self.report)

    def summary(self) -> dict[str, Any]:
        """What the worklist and ``GET /api/v1/studies`` show of an image."""
        src, fnd = self.report["source"], self.report["finding"]
        latest = self.latest_review
        return {
            "sop_instance_uid": self.uid,
            "frame": self.frame,
            "report": self.stem,
            "body_site": src.get("body_site") or "",
            "modality": src.get("modality") or "",
            "finding": fnd["label"],
            "finding_display": fnd["label_display"],
            "confidence": fnd.get("confidence"),
            "abstained": bool(fnd.get("abstained")),
            "review_status": self.status,
            "reviewed_by": latest["review"]["verifier_display"] if latest else None,
            "clinician_finding": latest["review"]["clinician_label"] if latest else None,
            "priority": self.priority,
            "generated_at": self.report.get("generated_at"),
            "demo": bool(self.report.get("demo_model")),
        }


class ReportStore:
    """Index of the reports and reviews under ``out_dir`` (see the module docstring)."""

    def __init__(self, out_dir: str | os.PathLike, *, min_interval_s: float = 1.0) -> None:
        self.out_dir = Path(out_dir)
        self.min_interval_s = min_interval_s
        self._files: dict[Path, tuple[tuple[int, int], dict[str, Any] | None]] = {}
        self._images: dict[tuple[str, int], ImageEntry] = {}
        self._lock = threading.Lock()
        self._last = 0.0

    def _read(self, path: Path, stamp: tuple[int, int]) -> dict[str, Any] | None:
        if stamp[1] > MAX_JSON_BYTES:
            return None
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return None  # half-written by another tool, or not ours: looked at again when it changes
        if not isinstance(data, dict) or data.get("schema") not in (REPORT_SCHEMA, REVIEW_SCHEMA):
            return None
        if data["schema"] == REPORT_SCHEMA and not isinstance(data.get("source"), dict):
            return None
        return data

    def refresh(self, force: bool = False) -> None:
        with self._lock:
            now = time.monotonic()
            if not force and now - self._last < self.min_interval_s:
                return
            self._last = now
            seen: dict[Path, tuple[tuple[int, int], dict[str, Any] | None]] = {}
            for folder, dirs, files in os.walk(self.out_dir):
                dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
                for name in files:
                    if not name.endswith(".json") or name.endswith(".fhir.json") or name.startswith("."):
                        continue
                    path = Path(folder) / name
                    try:
                        st = path.stat()
                    except FileNotFoundError:
                        continue
                    stamp = (st.st_mtime_ns, st.st_size)
                    cached = self._files.get(path)
                    seen[path] = cached if cached and cached[0] == stamp else (stamp, self._read(path, stamp))
            self._files = seen
            self._images = self._index()

    def _index(self) -> dict[tuple[str, int], ImageEntry]:
        images: dict[tuple[str, int], ImageEntry] = {}
        reviews: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for path, (_, data) in sorted(self._files.items()):
            if data is None:
                continue
            key = (data["source"].get("sop_instance_uid") or "", int(data["source"].get("frame") or 1))
            if not key[0]:
                continue
            if data["schema"] == REVIEW_SCHEMA:
                reviews.setdefault(key, []).append(data)
                continue
            stem = path.relative_to(self.out_dir).as_posix()[: -len(".json")]
            current = images.get(key)
            if current is None or str(data.get("generated_at")) > str(current.report.get("generated_at")):
                images[key] = ImageEntry(stem, path, data)
        for key, items in reviews.items():
            if key in images:
                images[key].reviews = sorted(items, key=lambda r: str(r["review"].get("reviewed_at")))
        return images

    def get(self, uid: str, frame: int = 1) -> ImageEntry | None:
        self.refresh()
        return self._images.get((uid, int(frame)))

    def images(self) -> list[ImageEntry]:
        self.refresh()
        return list(self._images.values())

    def studies(self) -> list[dict[str, Any]]:
        """Studies with their images: STAT first, then newest first."""
        groups: dict[str, list[ImageEntry]] = {}
        for entry in self.images():
            study = entry.report["source"].get("study_instance_uid") or f"(no study) {entry.uid}"
            groups.setdefault(study, []).append(entry)
        studies = []
        for uid, entries in groups.items():
            entries.sort(key=lambda e: (e.stem, e.frame))
            first = entries[0].report
            studies.append(
                {
                    "study_instance_uid": uid,
                    "priority": "STAT" if any(e.priority == "STAT" for e in entries) else "ROUTINE",
                    "newest": max(str(e.report.get("generated_at") or "") for e in entries),
                    "study_date": first["source"].get("study_date") or "",
                    "study_description": first["source"].get("study_description") or "",
                    "accession_number": first["source"].get("accession_number") or "",
                    "patient": dict(first.get("patient") or {}),
                    "demo": any(e.report.get("demo_model") for e in entries),
                    "images": [e.summary() for e in entries],
                }
            )
        studies.sort(key=lambda s: s["newest"], reverse=True)
        studies.sort(key=lambda s: s["priority"] != "STAT")  # stable: STAT first, newest first within
        return studies


__all__ = ["ImageEntry", "ReportStore", "priority_of"]
