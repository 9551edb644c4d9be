"""Burned-in Secondary Capture report (format ``sc``, suffix ``.sc.dcm``).

For PACS viewers that cannot display a structured report: the image with the finding, the
confidence and its verification state drawn into the pixels — "AI result — not verified by a
clinician" for machine output, or the verifying clinician once a review exists
(``report["review"]``, written by :mod:`burnscope.operators.report.review`). With demo weights a
red band carries the demo banner.

The object is a DICOM Secondary Capture Image (highdicom's ``SCImage``, RGB, 8 bit) in the
source image's study, in a series of its own; it references the source image and says
``BurnedInAnnotation YES``. No patient name or ID is drawn: the PACS shows them from the
header. Rendering is deterministic (a font shipped with matplotlib, fixed layout), so the same
report gives the same bytes and sinks recognise an unchanged report.

Self-contained renderer with the emitter's signature ``(decision, report, bundle, state)``.
"""

from __future__ import annotations

import datetime as _dt
from functools import lru_cache
from typing import Any

import numpy as np

from burnscope.common.messages import DEMO_BANNER, Decision

SECONDARY_CAPTURE_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
SC_SERIES_NUMBER = 904
SC_VERIFIED_SERIES_NUMBER = 905
SUFFIX = ".sc.dcm"
#: Stated on every burned-in image that no clinician has verified.
NOT_VERIFIED_TEXT = "AI result — not verified by a clinician"

WIDTH = 768
MAX_IMAGE_HEIGHT = 576
_MARGIN = 14
_COLOURS = {
    "banner": (192, 57, 43),
    "text": (255, 255, 255),
    "muted": (200, 200, 200),
    "unverified": (243, 156, 18),
    "verified": (46, 204, 113),
    "rejected": (231, 76, 60),
}


@lru_cache(maxsize=8)
def _font(size: int, bold: bool = False):
    """DejaVu Sans from matplotlib's data (a dependency): it has the em dash, ≥ and accents."""
    import os

    import matplotlib
    from PIL import ImageFont

    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    path = os.path.join(matplotlib.get_data_path(), "fonts", "ttf", name)
    try:
        return ImageFont.truetype(path, size)
    except OSError:  # a trimmed matplotlib: Pillow's own font (no em dash; still legible)
        return ImageFont.load_default(size=size)


def thumbnail_rgb(image: Any) -> np.ndarray | None:
    """An image as H×W×3 uint8 (grey → 3 channels, alpha dropped, a [0, 1] float image scaled),
    or None when it is not an image. The PDF and the capture renderers share it."""
    if image is None:
        return None
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.size == 0:
        return None
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and float(np.nanmax(arr)) <= 1.0:
            arr = arr * 255.0  # a [0, 1] float image
        arr = np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr[..., :3])


def _wrap(draw, text: str, font, width: int) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        candidate = f"{line} {word}".strip()
        if draw.textlength(candidate, font=font) <= width or not line:
            line = candidate
        else:
            lines.append(line)
            line = word
    return lines + ([line] if line else [])


def annotation_lines(report: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """``(text, colour key, bold)`` lines drawn under the image, top to bottom."""
    fnd = report["finding"]
    review = report.get("review") or {}
    lines: list[tuple[str, str, bool]] = []
    if review:
        depth = review.get("clinician_label_display") or fnd["label_display"]
        lines.append((f"Burn depth: {depth}", "text", True))
        ai = f"AI finding: {review.get('ai_label_display', fnd['label_display'])}"
        if isinstance(review.get("ai_confidence"), (int, float)):
            ai += f" (confidence {review['ai_confidence'] * 100:.1f}%)"
        lines.append((ai, "muted", False))
        when = str(review.get("reviewed_at", "")).replace("T", " ").replace("Z", " UTC")
        outcome = review.get("outcome", "")
        if outcome == "rejected":
            lines.append((f"AI result rejected by {review.get('verifier_display', '')} on {when}", "rejected", True))
        else:
            lines.append(
                (f"Verified by {review.get('verifier_display', '')} on {when} ({outcome})", "verified", True)
            )
    else:
        if fnd["abstained"]:
            lines.append(("Burn depth: UNDETERMINED — needs clinician review", "text", True))
        else:
            lines.append((f"Burn depth: {fnd['label_display']}", "text", True))
        conf = fnd.get("confidence")
        lines.append(
            (f"Confidence: {conf * 100:.1f}%" if isinstance(conf, (int, float)) else "Confidence: n/a", "text", False)
        )
        lines.append((NOT_VERIFIED_TEXT, "unverified", True))
    ds = report.get("decision_support") or {}
    facts = []
    if isinstance(ds.get("tbsa_percent"), (int, float)):
        facts.append(f"TBSA {ds['tbsa_percent']:.1f}%")
    total = (ds.get("parkland") or {}).get("total_ml_24h")
    if isinstance(total, (int, float)):
        facts.append(f"fluids {total:,.0f} mL / 24 h")
    referral = ds.get("referral") or {}
    if isinstance(referral.get("recommended"), bool):
        facts.append("burn-centre referral: " + ("recommended" if referral["recommended"] else "no criterion"))
    if facts:
        lines.append((" · ".join(facts), "text", False))
    mdl = report["model"]
    lines.append(
        (f"burnscope {report['generator']['version']} · {mdl['name']} · {mdl['backend'] or 'backend n/a'}", "muted", False)
    )
    return lines


def render_pixels(report: dict[str, Any], image: Any) -> np.ndarray:
    """The burned-in RGB frame (H×768×3 uint8): banner, image, annotation panel."""
    from PIL import Image, ImageDraw

    body, bold, small = _font(20), _font(20, bold=True), _font(15)
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_width = WIDTH - 2 * _MARGIN
    banner_lines = _wrap(scratch, DEMO_BANNER, bold, text_width) if report.get("demo_model") else []
    panel: list[tuple[str, str, Any]] = []
    for text, colour, is_bold in annotation_lines(report):
        font = bold if is_bold else (small if colour == "muted" else body)
        panel += [(line, colour, font) for line in _wrap(scratch, text, font, text_width)]

    rgb = thumbnail_rgb(image)
    if rgb is not None:
        h, w = rgb.shape[:2]
        scale = min(WIDTH / w, MAX_IMAGE_HEIGHT / h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        picture = Image.fromarray(rgb).resize(size, Image.Resampling.BICUBIC)
    else:
        picture = None
    line_h, banner_h = 28, (len(banner_lines) * 28 + 16 if banner_lines else 0)
    image_h = picture.height if picture is not None else 120
    height = banner_h + image_h + len(panel) * line_h + 2 * _MARGIN
    height += height % 2  # even rows keep every decoder happy
    canvas = Image.new("RGB", (WIDTH, height), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    y = 0
    if banner_lines:
        draw.rectangle([0, 0, WIDTH, banner_h], fill=_COLOURS["banner"])
        for i, line in enumerate(banner_lines):
            draw.text((_MARGIN, 8 + i * 28), line, font=bold, fill=_COLOURS["text"])
        y = banner_h
    if picture is not None:
        canvas.paste(picture, ((WIDTH - picture.width) // 2, y))
    else:
        draw.text((_MARGIN, y + 48), "(no image available)", font=body, fill=_COLOURS["muted"])
    y += image_h + _MARGIN
    for text, colour, font in panel:
        draw.text((_MARGIN, y), text, font=font, fill=_COLOURS[colour])
        y += line_h
    return np.asarray(canvas, dtype=np.uint8)


def _laterality(body_site: str) -> str:
    words = (body_site or "").lower().replace("_", " ").split()
    return "L" if "left" in words else "R" if "right" in words else ""


def sc_identifiers(decision: Decision, report: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """Study, series and SOP Instance UIDs of the capture (content-derived, like the other objects)."""
    from burnscope.operators.report import codes as bc

    ctx = decision.finding.context
    outputs = report.setdefault("outputs", {})
    study = outputs.get("study_instance_uid") or ctx.study_instance_uid
    if not study:
        study = bc.uid_from(f"study|{ctx.series_instance_uid or ctx.source}")
        outputs["study_uid_generated"] = True
    outputs["study_instance_uid"] = study
    verified = bool(report.get("review"))
    kind = "sc_verified" if verified else "sc"
    series = bc.uid_from(f"series|{study}|{kind}")
    numbers = state.setdefault("instance_numbers", {})
    numbers[series] = numbers.get(series, 0) + 1
    ids = {
        "series_instance_uid": series,
        "sop_instance_uid": bc.uid_from(f"{kind}|{report['content_sha256']}"),
        "instance_number": numbers[series],
        "series_number": SC_VERIFIED_SERIES_NUMBER if verified else SC_SERIES_NUMBER,
    }
    outputs["sc"] = {k: v for k, v in ids.items() if k != "series_number"}
    return ids


def build_sc(decision: Decision, report: dict[str, Any], ids: dict[str, Any], outputs: dict[str, Any]):
    """The Secondary Capture dataset (highdicom ``SCImage``) of one report."""
    import highdicom as hd
    from pydicom.dataset import Dataset

    from burnscope.operators.report.dicom import _dicom_date, _lo, _person_name

    ctx = decision.finding.context
    patient = ctx.patient
    when = _dt.datetime.fromisoformat(report["generated_at"].replace("Z", "+00:00"))
    pixels = render_pixels(report, decision.finding.thumbnail)
    generated_study = bool(outputs.get("study_uid_generated"))
    sc = hd.sc.SCImage(
        pixel_array=pixels,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        study_instance_uid=outputs["study_instance_uid"],
        series_instance_uid=ids["series_instance_uid"],
        series_number=ids["series_number"],
        sop_instance_uid=ids["sop_instance_uid"],
        instance_number=ids["instance_number"],
        manufacturer="burnscope",
        patient_id=patient.patient_id or "",
        patient_name=_person_name(patient.name),
        patient_birth_date=_dicom_date(patient.birth_date),
        patient_sex=patient.sex if patient.sex in ("M", "F", "O") else None,
        accession_number=_lo(ctx.accession_number, 16),
        study_id="",
        study_date=(ctx.study_date if not generated_study and _dicom_date(ctx.study_date) else when.strftime("%Y%m%d")),
        study_time=when.strftime("%H%M%S"),
        referring_physician_name="",
        patient_orientation=("L", "F"),  # replaced below: a composed page has no orientation
    )
    sc.PatientOrientation = ""  # type 2: present, empty
    sc.SpecificCharacterSet = "ISO_IR 192"
    sc.Laterality = _laterality(ctx.body_site)
    sc.BurnedInAnnotation = "YES"
    sc.RecognizableVisualFeatures = "YES" if decision.finding.thumbnail is not None else "NO"
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.ConversionType = "WSD"
    # Times are the report's own (never "now"), so a re-run gives identical bytes.
    sc.ContentDate = sc.InstanceCreationDate = sc.DateOfSecondaryCapture = when.strftime("%Y%m%d")
    sc.ContentTime = sc.InstanceCreationTime = sc.TimeOfSecondaryCapture = when.strftime("%H%M%S")
    for item in sc.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = when.strftime("%Y%m%d%H%M%S")
    sc.SoftwareVersions = _lo(report["generator"]["version"])
    review = report.get("review") or {}
    description = (
        DEMO_BANNER
        if report.get("demo_model")
        else ("burnscope burn triage (verified)" if review else "burnscope burn triage (AI, not verified)")
    )
    sc.SeriesDescription = _lo(description)
    sc.DerivationDescription = _lo(
        "Image with burned-in burn-depth finding; " + ("clinician-verified" if review else "AI result, not verified"),
        1024,
    )
    if ctx.sop_instance_uid and ctx.sop_class_uid and not generated_study:
        source = Dataset()
        source.ReferencedSOPClassUID = ctx.sop_class_uid
        source.ReferencedSOPInstanceUID = ctx.sop_instance_uid
        sc.SourceImageSequence = [source]
    return sc


def plan_sc(decision: Decision, report: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """Planner of format ``sc`` (runs where the emitter's instance counters are)."""
    return sc_identifiers(decision, report, state)


def render_sc(decision: Decision, report: dict[str, Any], bundle: Any, state: dict[str, Any]) -> None:
    """Renderer of format ``sc``: adds ``.sc.dcm`` and its DICOM delivery to ``bundle``."""
    from burnscope.operators.report.dicom import dataset_to_bytes

    ids = (state.get("planned") or {}).get("sc") or sc_identifiers(decision, report, state)
    ds = build_sc(decision, report, ids, report["outputs"])
    bundle.artefacts[SUFFIX] = dataset_to_bytes(ds)
    bundle.deliveries.append({"suffix": SUFFIX, "kind": "dicom", "key": ids["sop_instance_uid"]})


__all__ = ["NOT_VERIFIED_TEXT", "SECONDARY_CAPTURE_IMAGE_STORAGE", "annotation_lines", "plan_sc", "render_pixels", "render_sc"]
