"""The context of an image: study/series/instance, body site, patient, and sidecar case data.

Case data for decision support comes from sidecar JSON files: ``case.json`` in the image's folder
(or the nearest parent up to the scanned root), then ``<image file stem>.json`` beside the image,
whose keys override the study's. ``PatientAge`` and ``PatientWeight`` fill ``age_years`` and
``weight_kg`` when no sidecar gives them.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from burnscope.common.messages import ImageContext, PatientIdentity

log = logging.getLogger("burnscope.dicom_loader")

CASE_SIDECAR = "case.json"

_LATERALITY = {"L": "left", "R": "right", "B": "bilateral"}


def body_site_of(ds: Dataset) -> str:
    """'left forearm' style text from the Anatomic Region Sequence (or Body Part Examined)."""
    site = ""
    region = ds.get("AnatomicRegionSequence")
    if region:
        site = str(region[0].get("CodeMeaning", "") or "")
    if not site:
        site = str(ds.get("BodyPartExamined", "") or "")
    site = site.strip().lower()
    side = _LATERALITY.get(str(ds.get("ImageLaterality", ds.get("Laterality", "")) or "").upper(), "")
    return f"{side} {site}" if site and side else site


def _age_years(age: str) -> float | None:
    match = re.fullmatch(r"(\d{3})([DWMY])", age.strip()) if age else None
    if not match:
        return None
    value = int(match.group(1))
    return {"Y": value, "M": round(value / 12, 2), "W": round(value / 52.18, 2), "D": round(value / 365.25, 3)}[
        match.group(2)
    ]


class _Sidecars:
    """Reads and caches sidecar JSON; bad sidecars are logged (by file name) and ignored."""

    def __init__(self) -> None:
        self._cache: dict[Path, dict[str, Any] | None] = {}

    def _read(self, path: Path) -> dict[str, Any] | None:
        if path not in self._cache:
            data = None
            if path.is_file():
                try:
                    data = json.loads(path.read_text())
                    if not isinstance(data, dict):
                        raise ValueError("top level is not an object")
                except Exception as exc:
                    log.warning("ignoring sidecar %s: %s", path.name, exc)
                    data = None
            self._cache[path] = data
        return self._cache[path]

    def case_for(self, file: Path, root: Path | None) -> dict[str, Any]:
        case: dict[str, Any] = {}
        folder = file.parent
        stop = root.resolve() if root is not None else folder.resolve()
        while True:
            found = self._read(folder / CASE_SIDECAR)
            if found is not None:
                case.update(found)
                break
            if folder.resolve() == stop or folder.parent == folder:
                break
            folder = folder.parent
        own = self._read(file.with_suffix(".json")) if file.suffix.lower() != ".json" else None
        if own is not None:
            case.update(own)
        return case


def build_context(ds: Dataset, path: Path, frame_number: int, case: dict[str, Any]) -> ImageContext:
    """The :class:`ImageContext` of one frame of ``ds``."""
    case = dict(case)
    if "age_years" not in case:
        age = _age_years(str(ds.get("PatientAge", "") or ""))
        if age is not None:
            case["age_years"] = age
    if "weight_kg" not in case and ds.get("PatientWeight"):
        try:
            case["weight_kg"] = float(ds.PatientWeight)
        except (TypeError, ValueError):
            pass
    return ImageContext(
        source=str(path),
        sop_instance_uid=str(ds.get("SOPInstanceUID", "") or ""),
        sop_class_uid=str(ds.get("SOPClassUID", "") or ""),
        study_instance_uid=str(ds.get("StudyInstanceUID", "") or ""),
        series_instance_uid=str(ds.get("SeriesInstanceUID", "") or ""),
        frame_number=frame_number,
        modality=str(ds.get("Modality", "") or ""),
        study_date=str(ds.get("StudyDate", "") or ""),
        study_description=str(ds.get("StudyDescription", "") or ""),
        series_description=str(ds.get("SeriesDescription", "") or ""),
        accession_number=str(ds.get("AccessionNumber", "") or ""),
        body_site=body_site_of(ds),
        patient=PatientIdentity(
            name=str(ds.get("PatientName", "") or ""),
            patient_id=str(ds.get("PatientID", "") or ""),
            birth_date=str(ds.get("PatientBirthDate", "") or ""),
            sex=str(ds.get("PatientSex", "") or ""),
        ),
        case=case,
    )
