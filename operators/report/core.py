"""Report emitter core: per-decision report dicts, their JSON and plain-text renderings.

No Holoscan import here: hospital integrators can call :class:`ReportEmitter` from their own
code. The Holoscan wrapper is :mod:`burnscope.operators.report.operator`.

The JSON report is versioned (``schema`` / ``schema_version``); add fields, never rename them,
and bump the version when a field changes meaning.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import logging
import math
import os
import re
from dataclasses import dataclass
from collections.abc import Callable, Iterable, Sequence
from pathlib import PurePath
from typing import Any

from burnscope.common.messages import DEMO_BANNER, STAT, Decision, ErrorRecord, ImageContext, ReportBundle
from burnscope.common.vocabulary import depth_rank
from burnscope.operators.report import formats as report_formats
from burnscope.operators.report import presentation
from burnscope.operators.report.fastjson import dumps_indent2
from burnscope.operators.report.formats import ALL_FORMATS
from burnscope.common.vocabulary import display_name as label_display

log = logging.getLogger(__name__)

REPORT_SCHEMA = "burnscope.report"
REPORT_SCHEMA_VERSION = 1

#: Printed on every report: the output supports, and never replaces, a clinician's assessment.
DISCLAIMER = (
    "Decision support only. This report was generated automatically from an image and has not "
    "been reviewed by a clinician; it is not a diagnosis. Burn depth, TBSA, fluid volumes and "
    "referral must be confirmed by a qualified clinician before any clinical use."
)

NEEDS_REVIEW_TEXT = "needs clinician review"

_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def utc_now() -> _dt.datetime:
    """The time reports are stamped with: now, or ``SOURCE_DATE_EPOCH`` when set (seconds since
    1970, the reproducible-builds convention), so that a rerun writes byte-identical reports."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch.isdigit():
        return _dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc)
    return _dt.datetime.now(_dt.timezone.utc)


@functools.lru_cache(maxsize=1)
def _package_version() -> str:
    """The installed version, read once (importlib.metadata parses the dist-info on every call)."""
    try:
        from importlib.metadata import version

        return version("burnscope")
    except Exception:  # not installed (source checkout on sys.path)
        return "0+unknown"


def _safe_component(text: str) -> str:
    return _UNSAFE_NAME_CHARS.sub("_", text).strip("._")


def report_stem(context: ImageContext, source_root: str | None = None) -> str:
    """File-name stem that sorts with the source file: ``<source-stem>[_f<frame>]``.

    With ``source_root`` (the input folder) the stem keeps the source's sub-folders
    (``study-001/IMG-0001``), so the output tree mirrors the input tree. Frame 1 (and
    single-frame images) keep the bare stem; other frames get ``_f<n>``. Characters that are
    unsafe in file names become ``_``; ``..`` never survives.
    """
    path = PurePath(context.source) if context.source else PurePath("")
    folders: list[str] = []
    if source_root:
        try:
            folders = [_safe_component(p) for p in path.parent.relative_to(PurePath(source_root)).parts]
        except ValueError:  # not under the root: flat, like without a root
            folders = []
    stem = path.name
    for suffix in (".dcm", ".dicom", ".DCM", ".DICOM"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    stem = _safe_component(stem) or _safe_component(context.sop_instance_uid or "image") or "image"
    if context.frame_number and context.frame_number != 1:
        stem = f"{stem}_f{context.frame_number}"
    return "/".join([f for f in folders if f] + [stem])


def _finite(value: Any) -> Any:
    """JSON has no NaN/Infinity: map non-finite floats to None."""
    kind = type(value)  # the exact JSON types first (most of a report), then the general rules
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is dict:
        return {k if type(k) is str else str(k): _finite(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        try:
            return _finite(value.item())
        except (TypeError, ValueError):
            return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _missing_context(context: ImageContext) -> list[str]:
    """Context fields a complete clinical report would have but this image lacks."""
    gaps = []
    for attr, name in (
        ("study_instance_uid", "study_instance_uid"),
        ("series_instance_uid", "series_instance_uid"),
        ("sop_instance_uid", "sop_instance_uid"),
    ):
        if not getattr(context, attr):
            gaps.append(name)
    patient = context.patient
    if not (patient.name or patient.patient_id):
        gaps.append("patient_identity")
    return gaps


def build_report(
    decision: Decision,
    *,
    generated_at: _dt.datetime | None = None,
    generator_version: str | None = None,
) -> dict[str, Any]:
    """The JSON-serialisable report of one decision (schema ``burnscope.report`` v1).

    Patient identity is copied into the report (it is a clinical document); it never goes to
    logs. Non-finite numbers become ``null``. An image handled as STAT (the emergency lane) has a
    ``priority`` block (``{"level": "stat", "reason": ...}``); routine reports have none.
    """
    finding = decision.finding
    ctx = finding.context
    model = finding.model
    when = (generated_at or utc_now()).astimezone(_dt.timezone.utc)
    probabilities = {str(k): float(v) for k, v in (finding.probabilities or {}).items()}
    ranked = sorted(probabilities.items(), key=lambda kv: kv[1], reverse=True)
    report: dict[str, Any] = {
        "schema": REPORT_SCHEMA,
        "schema_version": REPORT_SCHEMA_VERSION,
        "demo_model": bool(model.demo),
        "banner": DEMO_BANNER if model.demo else "",
        "generated_at": when.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "generator": {"name": "burnscope", "version": generator_version or _package_version()},
        **({"priority": {"level": STAT, "reason": ctx.priority_reason}} if ctx.priority == STAT else {}),
        "source": {
            "file": ctx.source,
            "sop_instance_uid": ctx.sop_instance_uid,
            "sop_class_uid": ctx.sop_class_uid,
            "study_instance_uid": ctx.study_instance_uid,
            "series_instance_uid": ctx.series_instance_uid,
            "frame": int(ctx.frame_number or 1),
            "modality": ctx.modality,
            "study_date": ctx.study_date,
            "study_description": ctx.study_description,
            "series_description": ctx.series_description,
            "accession_number": ctx.accession_number,
            "body_site": ctx.body_site,
        },
        "patient": ctx.patient.as_dict(),
        "finding": {
            "label": finding.label,
            "label_display": label_display(finding.label),
            "probabilities": probabilities,
            "ranked": [k for k, _ in ranked],
            "confidence": float(finding.confidence),
            "abstained": bool(finding.abstained),
            "needs_clinician_review": bool(finding.abstained),
            "review_note": NEEDS_REVIEW_TEXT if finding.abstained else "",
            "head": finding.head,
        },
        "decision_support": {
            "tbsa_percent": decision.tbsa_percent,
            "parkland": decision.parkland.as_dict() if decision.parkland else None,
            "referral": decision.referral.as_dict() if decision.referral else None,
            "warnings": list(decision.warnings),
            "details": dict(decision.details),
        },
        "missing_inputs": list(decision.missing),
        "missing_context": _missing_context(ctx),
        "case": dict(ctx.case),
        "model": {
            "name": model.name,
            "weights": model.weights,
            "backend": model.backend,
            "precision": model.precision,
            "device": model.device,
            "demo": bool(model.demo),
        },
        "disclaimer": DISCLAIMER,
    }
    report = _finite(report)
    report["content_sha256"] = content_fingerprint(report)
    return report


#: Fields that change from run to run without changing what a report says.
_VOLATILE_FIELDS = ("generated_at", "outputs", "content_sha256", "render_errors")


def content_fingerprint(report: dict[str, Any]) -> str:
    """SHA-256 of what a report says (everything but its generation time and output UIDs).

    Equal fingerprints mean equivalent reports: sinks skip a re-run's identical report, and the
    DICOM/FHIR identifiers derived from it are the same, so nothing is stored or sent twice.
    """
    import hashlib

    stable = {k: v for k, v in report.items() if k not in _VOLATILE_FIELDS}
    return hashlib.sha256(json.dumps(stable, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def render_json(report: dict[str, Any]) -> bytes:
    """Stable, human-diffable JSON bytes (UTF-8, sorted keys off: the schema order reads best)."""
    return (dumps_indent2(report) + "\n").encode("utf-8")


def _rows(rows: list[tuple[str, str]], width: int = 28) -> list[str]:
    return [f"  {label + ':':<{width}} {value}" for label, value in rows]


def render_text(report: dict[str, Any], date_format: str = presentation.DEFAULT_DATE_FORMAT) -> str:
    """Plain-text rendering of :func:`build_report`'s dict, worded for a clinician
    (:mod:`~burnscope.operators.report.presentation`). The demo banner, if any, comes first and last."""
    lines: list[str] = []
    rule = "=" * 72
    if report.get("demo_model"):
        lines += [rule, DEMO_BANNER, rule, ""]
    src, fnd, mdl = report["source"], report["finding"], report["model"]
    na = presentation.NOT_AVAILABLE
    lines += [
        "BURN IMAGE TRIAGE REPORT (preliminary: not verified by a clinician)",
        *([f"PRIORITY: {presentation.priority_text(report)}"] if presentation.priority_text(report) else []),
        f"Generated {presentation.display_timestamp(report['generated_at'])} by burnscope {report['generator']['version']}",
        "",
        "Patient",
        *_rows(presentation.patient_rows(report, date_format)),
        "",
        "Source image",
        *_rows([
            ("File", src["file"]),
            ("Frame", str(src["frame"])),
            ("Study date", presentation.display_date(src["study_date"], date_format)),
            ("Accession number", src["accession_number"] or na),
            ("Body site", src["body_site"] or na),
            ("Study Instance UID", src["study_instance_uid"] or na),
            ("Series Instance UID", src["series_instance_uid"] or na),
            ("SOP Instance UID", src["sop_instance_uid"] or na),
        ]),
        "",
        "Finding",
    ]
    depth = f"UNDETERMINED - {NEEDS_REVIEW_TEXT.upper()}" if fnd["abstained"] else fnd["label_display"]
    confidence = na if fnd["confidence"] is None else f"{fnd['confidence'] * 100:.1f}%"
    lines += _rows([("Burn depth", depth), ("Confidence", confidence)])
    lines.append("  Class probabilities:")
    for key in fnd["ranked"]:
        p = fnd["probabilities"][key] or 0.0
        lines.append(f"    {label_display(key):<36} {p * 100:6.1f}%  {'#' * int(round(p * 30))}")
    lines += ["", "Decision support (estimates for a clinician to confirm)", *_rows(presentation.decision_rows(report))]
    lines += [
        "",
        "Model",
        *_rows([
            ("Name", mdl["name"]),
            ("Weights", mdl["weights"]),
            ("Backend", f"{mdl['backend'] or 'not stated'} ({mdl['precision']}, {mdl['device']})"),
            ("Burn-depth head", fnd["head"]),
        ]),
        "",
        "Disclaimer: " + report["disclaimer"],
    ]
    if report.get("demo_model"):
        lines += ["", DEMO_BANNER]
    return "\n".join(lines) + "\n"


STUDY_SCHEMA = "burnscope.study-report"
def build_study_rollup(
    study_uid: str, per_image: dict[str, dict[str, Any]], *, generated_at: _dt.datetime | None = None
) -> dict[str, Any]:
    """Study-level summary of per-image reports (``stem → report dict``)."""
    when = (generated_at or utc_now()).astimezone(_dt.timezone.utc)
    reports = list(per_image.values())
    first = reports[0]
    images = []
    for stem, r in per_image.items():
        referral = r["decision_support"]["referral"] or {}
        images.append(
            {
                "report": stem,
                "file": r["source"]["file"],
                "sop_instance_uid": r["source"]["sop_instance_uid"],
                "frame": r["source"]["frame"],
                "body_site": r["source"]["body_site"],
                "label": r["finding"]["label"],
                "label_display": r["finding"]["label_display"],
                "confidence": r["finding"]["confidence"],
                "needs_clinician_review": r["finding"]["needs_clinician_review"],
                "tbsa_percent": r["decision_support"]["tbsa_percent"],
                "referral_recommended": referral.get("recommended"),
            }
        )
    graded = [i for i in images if not i["needs_clinician_review"] and depth_rank(i["label"])]
    deepest = max(graded, key=lambda i: depth_rank(i["label"])) if graded else None
    demo = any(r["demo_model"] for r in reports)
    return _finite(
        {
            "schema": STUDY_SCHEMA,
            "schema_version": 1,
            "demo_model": demo,
            "banner": DEMO_BANNER if demo else "",
            "generated_at": when.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "generator": first["generator"],
            "study_instance_uid": study_uid,
            "accession_number": first["source"]["accession_number"],
            "study_date": first["source"]["study_date"],
            "patient": first["patient"],
            "image_count": len(images),
            "deepest_depth": deepest["label"] if deepest else None,
            "deepest_depth_display": deepest["label_display"] if deepest else "undetermined",
            "needs_clinician_review": sum(1 for i in images if i["needs_clinician_review"]),
            "referral_recommended": any(i["referral_recommended"] is True for i in images),
            "images": images,
            "note": "Per-image TBSA values are not added up: images of one patient may overlap.",
            "models": sorted({f"{r['model']['name']} [{r['model']['weights']}]" for r in reports}),
            "disclaimer": DISCLAIMER,
        }
    )


def render_study_text(rollup: dict[str, Any]) -> str:
    """Plain text of a study roll-up; the demo banner, if any, comes first."""
    rule = "=" * 72
    lines: list[str] = [rule, DEMO_BANNER, rule, ""] if rollup["demo_model"] else []
    pat = rollup["patient"]
    lines += [
        "BURN TRIAGE STUDY SUMMARY (preliminary, unverified)",
        f"Generated: {presentation.display_timestamp(rollup['generated_at'])}",
        f"Patient:   {presentation.person_name(pat.get('name', ''))} (ID {pat.get('patient_id') or 'not available'})",
        f"Study UID: {rollup['study_instance_uid']}",
        f"Accession: {rollup['accession_number'] or 'not available'}",
        f"Images:    {rollup['image_count']}   needing clinician review: {rollup['needs_clinician_review']}",
        f"Deepest graded burn depth: {rollup['deepest_depth_display']}",
        "Any image meeting burn-centre referral criteria: "
        + ("yes" if rollup["referral_recommended"] else "no"),
        "",
        "Images",
    ]
    for i in rollup["images"]:
        depth = (
            f"UNDETERMINED - {NEEDS_REVIEW_TEXT.upper()}"
            if i["needs_clinician_review"]
            else i["label_display"]
        )
        lines.append(f"  {i['report']:<32} {i['body_site'] or '-':<16} {depth}")
    lines += ["", rollup["note"], "", "Disclaimer: " + rollup["disclaimer"]]
    if rollup["demo_model"]:
        lines += ["", DEMO_BANNER]
    return "\n".join(lines) + "\n"


def _rollup_stem(study_uid: str, image_stems: list[str]) -> str:
    """``<common sub-folder>/study`` when the study's reports share one, else ``study_<UID>``."""
    folders = {stem.rsplit("/", 1)[0] for stem in image_stems if "/" in stem}
    if len(folders) == 1 and all("/" in stem for stem in image_stems):
        return f"{folders.pop()}/study"
    return f"study_{_safe_component(study_uid) or 'unknown'}"


def _unique_stem(stem: str, key: str, taken: dict[str, str]) -> str:
    """``stem``, or ``stem_2``, ``stem_3`` … when another source already uses it in this run."""
    candidate, n = stem, 1
    while taken.setdefault(candidate, key) != key:
        n += 1
        candidate = f"{stem}_{n}"
    return candidate


@dataclass
class RenderTask:
    """One report between :meth:`ReportEmitter.prepare` and :meth:`ReportEmitter.finish`: what the
    standards renderers need and nothing of the emitter's per-run state (stems, instance
    numbers, study roll-ups stay with the emitter). Small enough to send to a worker process:
    the decision carries the finding and its thumbnail, never the image's pixels."""

    decision: Decision
    report: dict[str, Any]
    bundle: ReportBundle
    options: dict[str, Any]  # the emitter's options and the identifiers planned for this report
    formats: tuple[str, ...]  # the standards formats to render, in order


def render_standard(task: RenderTask, renderers: dict[str, Any] | None = None) -> RenderTask:
    """Step 2 of :meth:`ReportEmitter.emit_one`: the standards artefacts (SR, PDF, Encapsulated PDF,
    FHIR, SC) of ``task``, in any process. A failing renderer costs its own artefact only: it
    becomes an error record in the bundle and a ``render_errors`` entry in the report."""
    decision, report, bundle = task.decision, task.report, task.bundle
    ctx = decision.finding.context
    for name in task.formats:
        render = (renderers or {}).get(name) or report_formats.get(name).load()
        before_artefacts, before_deliveries = set(bundle.artefacts), len(bundle.deliveries)
        try:
            render(decision, report, bundle, task.options)
        except Exception as exc:  # noqa: BLE001 - any library error becomes an error record
            for suffix in set(bundle.artefacts) - before_artefacts:
                del bundle.artefacts[suffix]
            del bundle.deliveries[before_deliveries:]
            record = ErrorRecord(
                source=ctx.source,
                reason=f"report_{name}_failed",
                message=f"{type(exc).__name__}: {exc}"[:500],
                sop_instance_uid=ctx.sop_instance_uid,
                stage="report",
            )
            bundle.errors.append(record)
            report.setdefault("render_errors", []).append({"format": name, "message": record.message})
            # the exception text can quote DICOM values (patient data): the log names the type only
            log.error("report %s: %s output failed (%s); see errors.jsonl", ctx.label, name, type(exc).__name__)
    return task


#: ``max_studies`` of an emitter that runs until stopped (watch, SCP, serve): the per-study
#: roll-up state (each image's report) of more studies would grow a service's memory without end.
LONG_RUNNING_MAX_STUDIES = 1000


class ReportEmitter:
    """Builds a :class:`ReportBundle` per decision: JSON and text by default, more on request.

    ``formats``: ``"json"`` (``.json``), ``"txt"`` (``.txt``), and the standards-based
    ``"sr"`` (``.sr.dcm``), ``"pdf"`` (``.pdf``), ``"pdf_dcm"`` (``.pdf.dcm``), ``"fhir"``
    (``.fhir.json``); :data:`ALL_FORMATS` lists them all. ``clock`` is injectable for
    reproducible output in tests. ``source_root`` (the input folder) makes the output tree mirror
    the input tree (``study-001/IMG-0001.json``); without it names are flat, and a second source
    with the same file name gets ``_2``. ``patient_identifier_system`` is the FHIR identifier system
    of the DICOM Patient ID (the hospital's MRN system); ``code_map`` overrides burn-depth codes
    (class key → ``highdicom.sr.CodedConcept``); ``date_format`` (``strftime``) is how the text
    and PDF reports print dates (ISO 8601 by default). ``max_studies`` bounds the per-run state
    of a long-running emitter (a service): beyond it the oldest studies' roll-up data and the
    oldest report names are forgotten (a later image of such a study starts a new roll-up).

    The JSON report of a bundle with DICOM/FHIR artefacts names the generated objects in its
    ``outputs`` block (study, series and SOP Instance UIDs, Bundle id).
    """

    def __init__(
        self,
        formats: Iterable[str] = ("json", "txt"),
        *,
        clock: Callable[[], _dt.datetime] = utc_now,
        patient_identifier_system: str | None = None,
        code_map: dict[str, Any] | None = None,
        source_root: str | None = None,
        date_format: str = presentation.DEFAULT_DATE_FORMAT,
        max_studies: int | None = None,
    ) -> None:
        self.max_studies = max_studies
        self.formats = tuple(dict.fromkeys(formats))
        self.source_root = str(source_root) if source_root else None
        unknown = [f for f in self.formats if f not in report_formats.FORMATS]
        if unknown:
            raise ValueError(
                f"unknown report format(s): {', '.join(unknown)}; known: {', '.join(report_formats.FORMATS)}"
            )
        self._formats = [report_formats.get(f) for f in self.formats]
        self._renderers = {f.name: f.load() for f in self._formats}
        self.clock = clock
        # Per-emitter state of the renderers: one output series per study, options.
        self.state: dict[str, Any] = {
            "formats": self.formats,
            "patient_identifier_system": patient_identifier_system,
            "code_map": code_map,
            "date_format": date_format,
        }

    #: The keys of :attr:`state` a renderer reads (options); the rest is per-run bookkeeping.
    OPTION_KEYS = ("formats", "patient_identifier_system", "code_map", "date_format")

    def prepare(self, decision: Decision, stem: str | None = None) -> "RenderTask":
        """Step 1 of :meth:`emit_one`, in the emitter's process: the report dict, the identifiers
        of its objects (series and instance numbers come from this emitter's per-run state) and the
        empty bundle, as a :class:`RenderTask` for :func:`render_standard`."""
        ctx = decision.finding.context
        report = build_report(decision, generated_at=self.clock())
        if any(not f.final for f in self._formats):
            from burnscope.operators.report.standards import plan_outputs

            report["outputs"] = plan_outputs(self.formats, decision, report, self.state)
        bundle = ReportBundle(
            stem=stem or self.stem_for(decision),
            artefacts={},
            label=ctx.label,
            demo=bool(decision.finding.model.demo),
            report=report,
            study_instance_uid=report.get("outputs", {}).get("study_instance_uid", ctx.study_instance_uid),
        )
        if ctx.study_instance_uid:  # roll-ups list images in this order, whatever order they finish in
            self.state.setdefault("study_order", {}).setdefault(ctx.study_instance_uid, []).append(bundle.stem)
        options = {k: self.state.get(k) for k in self.OPTION_KEYS}
        # Formats that number their own objects plan them here, where the counters live.
        options["planned"] = {f.name: f.plan()(decision, report, self.state)
                              for f in self._formats if not f.final and f.planner}
        return RenderTask(decision, report, bundle, options, tuple(f.name for f in self._formats if not f.final))

    def finish(self, task: "RenderTask") -> ReportBundle:
        """Step 3 of :meth:`emit_one`, in the emitter's process: JSON and text (they show the
        ``outputs`` block and any renderer failure), artefact order, the study's running roll-up."""
        decision, report, bundle = task.decision, task.report, task.bundle
        ctx = decision.finding.context
        for fmt in self._formats:
            if fmt.final:
                self._renderers[fmt.name](decision, report, bundle, self.state)
        bundle.artefacts = {
            s: bundle.artefacts[s]
            for s in sorted(bundle.artefacts, key=report_formats.suffix_rank)
            if s in bundle.artefacts
        }
        if ctx.study_instance_uid:
            studies = self.state.setdefault("studies", {})
            per_image = studies.setdefault(ctx.study_instance_uid, {})
            per_image[bundle.stem] = report
            order = self.state.get("study_order", {}).get(ctx.study_instance_uid, [])
            studies[ctx.study_instance_uid] = {s: per_image[s] for s in dict.fromkeys(order) if s in per_image}
        if self.max_studies is not None:
            self._forget_oldest(int(self.max_studies))
        return bundle

    def _forget_oldest(self, max_studies: int) -> None:
        """Keeps the per-run state of a long-running emitter bounded (see ``max_studies``)."""
        for key in ("studies", "study_order"):
            kept = self.state.get(key, {})
            for uid in list(kept)[: max(0, len(kept) - max_studies)]:
                del kept[uid]
        stems = self.state.get("stems", {})
        if len(stems) > 100 * max_studies:
            for stem in list(stems)[: len(stems) // 2]:
                del stems[stem]

    @property
    def renders_anywhere(self) -> bool:
        """True when every standards format names its renderer as ``"module:function"``, so a
        worker process can import it (a format registered with a function object renders here)."""
        return all(isinstance(f.renderer, str) for f in self._formats if not f.final)

    def emit_one(self, decision: Decision, stem: str | None = None) -> ReportBundle:
        """The bundle of one decision: :meth:`prepare`, :func:`render_standard`, :meth:`finish`
        (what a reporting pool does across processes, here in one)."""
        return self.finish(render_standard(self.prepare(decision, stem), self._renderers))

    def study_rollups(
        self, study_uids: Iterable[str] | None = None, *, min_images: int = 2
    ) -> list[ReportBundle]:
        """Study-level roll-ups (JSON + text) of the studies with ``min_images`` or more images so far.

        A roll-up lists every image of the study seen by this emitter with its finding and
        decision support, the deepest non-abstained burn depth, how many need review and
        whether any image meets referral criteria. It is a running summary: a later call
        returns a fuller one under the same name (``kind="study"``, which sinks replace).
        """
        studies = self.state.get("studies", {})
        wanted = studies if study_uids is None else {u: studies[u] for u in study_uids if u in studies}
        out = []
        for uid, per_image in wanted.items():
            if len(per_image) < min_images:
                continue
            rollup = build_study_rollup(uid, per_image, generated_at=self.clock())
            stem = _rollup_stem(uid, list(per_image))
            artefacts = {".json": render_json(rollup), ".txt": render_study_text(rollup).encode("utf-8")}
            out.append(
                ReportBundle(
                    stem=stem,
                    artefacts=artefacts,
                    label=f"study {uid}",
                    demo=rollup["demo_model"],
                    report=rollup,
                    study_instance_uid=uid,
                    kind="study",
                )
            )
        return out

    def stem_for(self, decision: Decision) -> str:
        """The decision's file-name stem, unique among the sources this emitter has seen."""
        ctx = decision.finding.context
        key = f"{ctx.source}#{ctx.frame_number}"
        return _unique_stem(report_stem(ctx, self.source_root), key, self.state.setdefault("stems", {}))

    def emit(self, decisions: Sequence[Decision]) -> list[ReportBundle]:
        """One bundle per decision, in order; an empty batch gives an empty list."""
        return [self.emit_one(d, self.stem_for(d)) for d in decisions]


def render_json_artefact(
    decision: Decision, report: dict[str, Any], bundle: ReportBundle, state: dict[str, Any]
) -> None:
    bundle.artefacts[".json"] = render_json(report)


def render_text_artefact(
    decision: Decision, report: dict[str, Any], bundle: ReportBundle, state: dict[str, Any]
) -> None:
    date_format = state.get("date_format") or presentation.DEFAULT_DATE_FORMAT
    bundle.artefacts[".txt"] = render_text(report, date_format).encode("utf-8")


__all__ = [
    "ALL_FORMATS",
    "LONG_RUNNING_MAX_STUDIES",
    "content_fingerprint",
    "build_study_rollup",
    "render_study_text",
    "DISCLAIMER",
    "REPORT_SCHEMA",
    "REPORT_SCHEMA_VERSION",
    "ReportBundle",
    "ReportEmitter",
    "RenderTask",
    "build_report",
    "render_standard",
    "label_display",
    "render_json",
    "render_text",
    "report_stem",
]
