"""What the review app does, without the web: analyse an upload, decide a case, record a review.

:class:`ReviewService` holds the cores the burn-triage graph wraps — loaded once, at start — and
runs them in the graph's order for one upload: DICOM loader → preprocess → image encoder → burn
head → decision support → report emitter → folder sink (+ outbox). Reviews go through
:func:`burnscope.operators.report.review.build_review` and the same sinks. Everything is written
below ``out_dir``; upload names are made here, never taken from the client.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import logging
import os
import secrets
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from burnscope.common.messages import DEMO_BANNER, ImageBatch

log = logging.getLogger(__name__)

UPLOADS = "uploads"
FEEDBACK_FILE = "feedback.jsonl"
DICOM_MAGIC_OFFSET = 128
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"


class Rejected(Exception):
    """A request the service refuses: HTTP ``status``, a stable ``reason`` code, and a message
    (and, for bad fields, ``field``). Messages never quote patient data."""

    def __init__(self, status: int, reason: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.reason, self.message, self.field = status, reason, message, field

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reason": self.reason, "message": self.message}
        if self.field:
            out["field"] = self.field
        return out


def sniff(data: bytes) -> str | None:
    """``"dicom"``, ``"jpeg"``, ``"png"`` from the first bytes, or None."""
    if len(data) >= DICOM_MAGIC_OFFSET + 4 and data[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] == b"DICM":
        return "dicom"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if data.startswith(PNG_MAGIC):
        return "png"
    return None


class ReviewService:
    """The cores behind the pages and the API (see the module docstring).

    ``components``: a :class:`~burnscope.applications.burn_triage.app.TriageComponents`, or None
    to build them from ``settings`` (the model is loaded once, here). ``delivery``: a
    :class:`~burnscope.operators.sinks.network.DeliveryService`, or None to open one when
    ``settings["delivery"]["destinations"]`` names any.
    """

    def __init__(self, settings: dict[str, Any], out_dir: str | os.PathLike, components: Any = None, delivery: Any = None):
        from burnscope.operators.burn_severity.core import BurnSeverity
        from burnscope.operators.decision_support.core import DecisionSupport
        from burnscope.operators.dicom_loader.core import DicomLoader
        from burnscope.operators.inference.core import ImageEncoder
        from burnscope.operators.report.core import ReportEmitter
        from burnscope.operators.sinks.folder import FolderSink

        from .store import ReportStore

        self.settings = settings
        self.web = settings.get("web") or {}
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if components is None:
            from burnscope.applications.burn_triage.app import build_components

            components = build_components(settings)
        self.components = components
        self.loader = DicomLoader(max_pixels=settings["source"]["max_pixels"], workers=1, read_sidecars=False)
        self.encoder = ImageEncoder(components.engine)
        self.severity = BurnSeverity(components.head)
        self.default_case = settings["decision_support"].get("default_case") or {}
        self.support = DecisionSupport(self.default_case)
        self.emitter = ReportEmitter(settings["report"]["formats"])
        self.sink = FolderSink(self.out_dir)
        self.store = ReportStore(self.out_dir)
        self.delivery = delivery if delivery is not None else self._open_delivery(settings)
        self._pipeline_lock = threading.Lock()  # one upload through the engine at a time
        self._write_lock = threading.Lock()
        self._images: OrderedDict[tuple[str, int, int], bytes] = OrderedDict()
        self._pump_stop = threading.Event()
        self._pump: threading.Thread | None = None
        if self.delivery is not None:
            self._pump = threading.Thread(target=self._pump_loop, name="outbox-pump", daemon=True)
            self._pump.start()

    # -- delivery --------------------------------------------------------------------------
    def _open_delivery(self, settings: dict[str, Any]):
        delivery = settings.get("delivery") or {}
        if not delivery.get("destinations"):
            return None
        from burnscope.operators.sinks.network import DeliveryService

        return DeliveryService.open(delivery.get("outbox") or self.out_dir / "outbox.sqlite", delivery["destinations"],
                                    max_attempts=delivery.get("max_attempts"))

    def _pump_loop(self) -> None:
        while not self._pump_stop.wait(1.0):
            try:
                self.delivery.pump()
            except Exception as exc:  # never let the pump thread die; the outbox keeps the items
                log.error("outbox pump failed: %s", type(exc).__name__)

    def _deliver(self, bundles: list[Any]) -> None:
        self.sink.write_all(bundles)
        if self.delivery is not None:
            self.delivery.submit(bundles)

    def close(self, drain_timeout_s: float = 10.0) -> None:
        self._pump_stop.set()
        if self._pump is not None:
            self._pump.join(timeout=5)
        if self.delivery is not None:
            self.delivery.drain(timeout_s=drain_timeout_s)
            self.delivery.close()

    # -- model -----------------------------------------------------------------------------
    @property
    def model_info(self):
        return self.components.model_info

    @property
    def demo(self) -> bool:
        return bool(self.model_info.demo)

    # -- decide ----------------------------------------------------------------------------
    @staticmethod
    def decide(case: Any) -> dict[str, Any]:
        """``burnscope decide`` on one case; :class:`Rejected` (422, naming the field) when impossible."""
        from burnscope.operators.decision_support.core import CaseError, decide

        if not isinstance(case, dict):
            raise Rejected(422, "invalid_case", "case: must be a JSON object", field="case")
        try:
            return decide(case)
        except CaseError as exc:
            raise Rejected(422, "invalid_case", str(exc), field=exc.field) from None

    # -- analyse ---------------------------------------------------------------------------
    def _store_upload(self, data: bytes, kind: str, metadata: dict[str, Any] | None) -> Path:
        """The upload as a DICOM file in ``OUT/uploads/`` under a name made here."""
        from burnscope.operators.dicom_loader.photo import wrap_photo

        folder = self.out_dir / UPLOADS
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{_dt.datetime.now(_dt.timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(6)}"
        target = folder / f"{name}.dcm"
        if kind == "dicom":
            if metadata:
                raise Rejected(422, "invalid_metadata", "metadata: only for photos (DICOM brings its own)", "metadata")
            with open(target, "xb") as handle:
                handle.write(data)
            return target
        with tempfile.TemporaryDirectory(dir=folder, prefix=".photo-") as tmp:
            photo = Path(tmp) / ("photo.jpg" if kind == "jpeg" else "photo.png")
            photo.write_bytes(data)
            try:
                wrap_photo(photo, target, metadata or {})
            except ValueError as exc:  # unknown metadata key or body site, corrupt JPEG markers
                target.unlink(missing_ok=True)
                field = "metadata" if "metadata" in str(exc) or "body_site" in str(exc) else "file"
                raise Rejected(422, "invalid_photo" if field == "file" else "invalid_metadata", str(exc)[:300], field)
            except Exception as exc:  # Pillow cannot read it: a corrupt photo
                target.unlink(missing_ok=True)
                raise Rejected(422, "invalid_photo", f"the photo could not be read ({type(exc).__name__})", "file")
        return target

    def analyze(self, data: bytes, case: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run the pipeline on one upload (DICOM, or a JPEG/PNG photo wrapped as VL Photographic).

        Returns the first image's report dict plus ``demo``, ``banner`` and ``frames`` (the other
        frames' reports). Raises :class:`Rejected` for unsupported types (415), corrupt files
        (422, with the loader's reason code) and impossible case values (422, naming the field).
        """
        kind = sniff(data)
        if kind is None:
            raise Rejected(415, "unsupported_type", "file: expected a DICOM Part 10 file, a JPEG or a PNG", "file")
        if case is not None:
            self.decide(case)  # validate before anything is stored or computed
        path = self._store_upload(data, kind, metadata)
        records, errors = self.loader.load_file(path)
        if errors:
            path.unlink(missing_ok=True)
            err = errors[0]
            raise Rejected(422, err.reason, err.message[:300], "file")
        for record in records:
            record.context.case = {**record.context.case, **(case or {})}
        stem = f"{UPLOADS}/{path.stem}"
        with self._pipeline_lock:
            pre = self.components.preprocessor.process([r.pixels for r in records], thumbnails=True)
            embedded = self.encoder.run(ImageBatch([r.context for r in records], pre.tensor, pre.thumbnails))
            decisions = self.support(self.severity(embedded))
            bundles = [
                self.emitter.emit_one(d, stem=stem if d.finding.context.frame_number == 1 else f"{stem}_f{d.finding.context.frame_number}")
                for d in decisions
            ]
        with self._write_lock:
            self._deliver(bundles)
        self.store.refresh(force=True)
        reports = [b.report for b in bundles]
        out = dict(reports[0])
        out["demo"] = bool(out.get("demo_model"))
        out["banner"] = DEMO_BANNER if out["demo"] else ""
        out["frames"] = reports[1:]
        return out

    # -- images ----------------------------------------------------------------------------
    def source_path(self, report: dict[str, Any]) -> Path | None:
        """The source image of a report, if it can still be read (relative paths: from the
        working directory, then from the output folder)."""
        name = (report.get("source") or {}).get("file") or ""
        if not name:
            return None
        candidates = [Path(name)] if os.path.isabs(name) else [Path.cwd() / name, self.out_dir / name]
        return next((p for p in candidates if p.is_file()), None)

    def image_array(self, report: dict[str, Any]) -> np.ndarray | None:
        """The report's image (RGB uint8, longest side at most ``web.image_max_side``), or None."""
        path = self.source_path(report)
        if path is None:
            return None
        frame = int(report["source"].get("frame") or 1)
        records, errors = self.loader.load_file(path)
        match = [r for r in records if r.context.frame_number == frame]
        if errors or not match:
            return None
        pixels = np.asarray(match[0].pixels)
        if hasattr(pixels, "get"):  # a CuPy array from a GPU decoder
            pixels = pixels.get()
        limit = int(self.web.get("image_max_side") or 1024)
        h, w = pixels.shape[:2]
        if max(h, w) > limit:
            from PIL import Image

            scale = limit / max(h, w)
            pixels = np.asarray(Image.fromarray(pixels).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS))
        return pixels

    def image_png(self, report: dict[str, Any]) -> bytes | None:
        """PNG of the report's image (cached), or None when the source is gone."""
        from PIL import Image

        path = self.source_path(report)
        if path is None:
            return None
        key = (str(path), path.stat().st_mtime_ns, int(report["source"].get("frame") or 1))
        if key in self._images:
            self._images.move_to_end(key)
            return self._images[key]
        pixels = self.image_array(report)
        if pixels is None:
            return None
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        self._images[key] = buffer.getvalue()
        while len(self._images) > 64:
            self._images.popitem(last=False)
        return self._images[key]

    # -- review ----------------------------------------------------------------------------
    def review(
        self,
        uid: str,
        frame: int,
        principal: Any,
        *,
        outcome: str,
        finding: str | None = None,
        case: dict[str, Any] | None = None,
        comment: str = "",
    ) -> dict[str, Any]:
        """Record a clinician's review of one image's newest report; returns the review record."""
        import pydicom

        from burnscope.operators.decision_support.core import CaseError
        from burnscope.operators.report.review import ReviewError, build_review

        if not principal.is_clinician:
            raise Rejected(403, "forbidden", "only a clinician may verify a finding")
        entry = self.store.get(uid, frame)
        if entry is None:
            raise Rejected(404, "not_found", "no report for this SOP Instance UID and frame")
        if case is not None and not isinstance(case, dict):
            raise Rejected(422, "invalid_case", "case: must be a JSON object", "case")
        preliminary = self.out_dir / f"{entry.stem}.sr.dcm"
        prelim_sr = pydicom.dcmread(preliminary) if preliminary.is_file() else None
        reviewer = principal.reviewer()
        if not reviewer.organization and self.web.get("organization"):
            reviewer = type(reviewer)(reviewer.username, reviewer.person_name, str(self.web["organization"]))
        try:
            bundle = build_review(
                entry.report,
                stem=entry.stem,
                outcome=outcome,
                reviewer=reviewer,
                finding=finding,
                case=case,
                comment=comment,
                preliminary_sr=prelim_sr,
                thumbnail=self.image_array(entry.report),
                default_case=self.default_case,
            )
        except CaseError as exc:
            raise Rejected(422, "invalid_case", str(exc), field=exc.field) from None
        except ReviewError as exc:
            raise Rejected(422, "invalid_review", str(exc), field=exc.field) from None
        with self._write_lock:
            self._deliver([bundle])
            self._append_feedback(bundle.report["feedback"])
            written = self.sink.results[-1]
        self.store.refresh(force=True)
        return dict(bundle.report, files=[p.relative_to(self.out_dir).as_posix() for p in written.paths])

    def _append_feedback(self, feedback: dict[str, Any]) -> None:
        """One JSON line per review in ``OUT/feedback.jsonl`` (flushed to disk), for monitoring."""
        line = json.dumps(feedback, ensure_ascii=False, sort_keys=True) + "\n"
        with open(self.out_dir / FEEDBACK_FILE, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())


__all__ = ["Rejected", "ReviewService", "sniff"]
