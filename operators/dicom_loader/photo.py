"""Wrap clinical photographs (JPEG/PNG, as phones send them) into VL Photographic Image DICOM.

Original pixels are kept: a baseline (or extended 8-bit) JPEG is embedded byte for byte, minus
its APP1–APP15 and comment segments (EXIF can hold GPS position, device serials and
thumbnails), so nothing is recompressed; PNG and progressive JPEG are decoded once and stored
uncompressed. EXIF orientation is not applied (that would change pixels); the DICOM says
nothing about it either.
"""

from __future__ import annotations

import datetime as _dt
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    generate_uid,
)

VL_PHOTOGRAPHIC_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.77.1.4"

#: Body sites accepted by ``body_site`` → (SNOMED CT code, code meaning, Body Part Examined).
BODY_SITES: dict[str, tuple[str, str, str]] = {
    "head": ("69536005", "Head", "HEAD"),
    "face": ("89545001", "Face", "FACE"),
    "neck": ("45048000", "Neck", "NECK"),
    "chest": ("51185008", "Chest", "CHEST"),
    "abdomen": ("818983003", "Abdomen", "ABDOMEN"),
    "back": ("77568009", "Back", "BACK"),
    "buttock": ("46862004", "Buttock", "BUTTOCK"),
    "perineum": ("38864007", "Perineum", "PERINEUM"),
    "upper_arm": ("40983000", "Upper arm", "ARM"),
    "forearm": ("14975008", "Forearm", "ARM"),
    "hand": ("85562004", "Hand", "HAND"),
    "thigh": ("68367000", "Thigh", "THIGH"),
    "lower_leg": ("30021000", "Lower leg", "LEG"),
    "foot": ("56459004", "Foot", "FOOT"),
}

#: Metadata keys understood by :func:`wrap_photo` (sidecar JSON or CLI options).
METADATA_KEYS = (
    "patient_name", "patient_id", "birth_date", "sex", "study_instance_uid", "series_instance_uid",
    "accession_number", "study_description", "series_description", "study_date", "study_time",
    "body_site", "laterality", "institution_name", "referring_physician", "instance_number", "study_id",
)


def strip_jpeg_app_segments(data: bytes) -> tuple[bytes, int]:
    """The JPEG without APP1–APP15 and COM segments, and its SOF marker (0xC0, 0xC1, 0xC2…)."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG file (no SOI marker)")
    out = bytearray(b"\xff\xd8")
    pos, sof = 2, 0
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ValueError(f"corrupt JPEG: no marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        segment = data[pos : pos + 2 + length]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            sof = marker
        if marker == 0xDA:  # start of scan: the entropy-coded data and the rest follow as they are
            out += data[pos:]
            return bytes(out), sof
        if not (0xE1 <= marker <= 0xEF or marker == 0xFE):
            out += segment
        pos += 2 + length
    raise ValueError("corrupt JPEG: no start-of-scan marker")


class PhotoError(ValueError):
    """A photo or a metadata value that cannot be wrapped; the message names the key, never the
    value (values are patient data: names, IDs, birth dates)."""


#: Metadata key → (DICOM keyword whose VR the value must satisfy, what a good value looks like).
_VALUE_RULES = {
    "patient_name": ("PatientName", "a person name, components of at most 64 characters (Family^Given)"),
    "patient_id": ("PatientID", "at most 64 characters"),
    "birth_date": ("PatientBirthDate", "a date, YYYY-MM-DD or YYYYMMDD"),
    "study_date": ("StudyDate", "a date, YYYY-MM-DD or YYYYMMDD"),
    "study_time": ("StudyTime", "a time, HHMMSS or HH:MM:SS"),
    "study_instance_uid": ("StudyInstanceUID", "a UID (digits and dots, at most 64 characters)"),
    "series_instance_uid": ("SeriesInstanceUID", "a UID (digits and dots, at most 64 characters)"),
    "accession_number": ("AccessionNumber", "at most 16 characters"),
    "study_description": ("StudyDescription", "at most 64 characters"),
    "series_description": ("SeriesDescription", "at most 64 characters"),
    "institution_name": ("InstitutionName", "at most 64 characters"),
    "referring_physician": ("ReferringPhysicianName", "a person name (Family^Given)"),
    "study_id": ("StudyID", "at most 16 characters"),
    "instance_number": ("InstanceNumber", "a whole number"),
}


def _checked(meta: Mapping[str, Any], key: str, default: Any = "") -> str:
    """``meta[key]`` as the DICOM value of its attribute, checked against the attribute's VR."""
    from pydicom import config
    from pydicom.datadict import dictionary_VR
    from pydicom.valuerep import validate_value

    value = meta.get(key)
    if value is None or value == "":
        return default
    text = str(value).strip()
    keyword, expected = _VALUE_RULES[key]
    vr = dictionary_VR(keyword)
    if vr == "DA" and len(text) == 10 and text[4] == text[7] == "-":
        text = text.replace("-", "")
    if vr == "TM" and text.count(":") == 2:
        text = text.replace(":", "")
    try:
        validate_value(vr, text, config.RAISE)
        if vr == "DA":
            _dt.datetime.strptime(text, "%Y%m%d")  # the VR's pattern admits month 13, day 45
        if vr == "IS" and int(text) < 1:
            raise ValueError("not positive")
    except ValueError:
        raise PhotoError(f"{key}: not a valid value; expected {expected}") from None
    return text


def wrap_photo(
    photo: str | os.PathLike,
    out_path: str | os.PathLike,
    metadata: Mapping[str, Any] | None = None,
) -> Dataset:
    """Write ``photo`` as a VL Photographic Image DICOM file at ``out_path``; return the dataset.

    ``metadata`` keys: see :data:`METADATA_KEYS`. Photos wrapped with the same
    ``study_instance_uid`` (and ``series_instance_uid``) land in one study (series).
    """
    meta = dict(metadata or {})
    unknown = set(meta) - set(METADATA_KEYS) - {"case"}
    if unknown:
        raise PhotoError(f"unknown metadata key(s): {', '.join(sorted(unknown))}")
    values = {key: _checked(meta, key) for key in _VALUE_RULES}
    sex = str(meta.get("sex", "") or "").strip().upper()
    if sex not in ("", "M", "F", "O"):
        raise PhotoError("sex: not a valid value; expected M, F or O")
    laterality = str(meta.get("laterality", "") or "").strip().upper()
    laterality = {"LEFT": "L", "RIGHT": "R", "BILATERAL": "B", "BOTH": "B", "UNPAIRED": "U"}.get(laterality, laterality)
    if laterality not in ("", "L", "R", "B", "U"):
        raise PhotoError("laterality: not a valid value; expected L, R, B or U (or left, right, bilateral)")
    site = str(meta.get("body_site", "") or "").strip().lower().replace(" ", "_")
    if site and site not in BODY_SITES:
        raise PhotoError(f"body_site: unknown site {site!r}; known: {', '.join(BODY_SITES)}")
    photo = Path(photo)
    try:
        data = photo.read_bytes()
    except OSError as exc:
        raise PhotoError(f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    try:
        fmt, width, height, mode, taken, jpeg, sof, decoded = _read_photo(data)
    except Image.DecompressionBombError:
        raise PhotoError("too large to decode safely") from None
    except Exception:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, struct.error, ... on damaged files
        raise PhotoError("not an image Pillow can read (JPEG, PNG, TIFF, BMP, WebP)") from None
    dataset = _dataset(meta, values, sex, laterality, site, fmt, width, height, mode, taken, jpeg, sof, decoded)
    return _write(dataset, Path(out_path))


def _read_photo(data: bytes) -> tuple[Any, ...]:
    """Format, size, mode, EXIF date, the JPEG to embed (or None) and its SOF, or decoded pixels."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        fmt = img.format
        width, height, mode = img.width, img.height, img.mode
        taken = img.getexif().get(0x0132) if hasattr(img, "getexif") else None  # DateTime
        decoded = None
        jpeg = None
        sof = 0
        if fmt == "JPEG":
            stripped, sof = strip_jpeg_app_segments(data)
            if sof in (0xC0, 0xC1) and mode in ("RGB", "L"):
                jpeg = stripped
        if jpeg is None:
            decoded = np.asarray(img.convert("L" if mode in ("L", "I;16", "I") else "RGB"))
    return fmt, width, height, mode, taken, jpeg, sof, decoded


def _dataset(meta: dict[str, Any], values: dict[str, str], sex: str, laterality: str, site: str, fmt: str,
             width: int, height: int, mode: str, taken: Any, jpeg: bytes | None, sof: int,
             decoded: np.ndarray | None) -> Dataset:
    """The VL Photographic Image dataset of a photo read by :func:`_read_photo`, with the
    metadata values :func:`wrap_photo` checked."""
    now = _dt.datetime.now()
    exif_date = str(taken).split(" ")[0].replace(":", "") if taken else ""
    exif_time = str(taken).split(" ")[1].replace(":", "") if taken and " " in str(taken) else ""
    study_date = values["study_date"] or _valid_exif(exif_date, "DA") or now.strftime("%Y%m%d")
    study_time = values["study_time"] or _valid_exif(exif_time, "TM") or now.strftime("%H%M%S")

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: names from anywhere
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S")
    ds.SOPClassUID = VL_PHOTOGRAPHIC_IMAGE_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = study_time
    ds.AcquisitionDateTime = study_date + study_time
    ds.AccessionNumber = values["accession_number"]
    ds.Modality = "XC"
    ds.Manufacturer = ""
    ds.InstitutionName = values["institution_name"]
    ds.ReferringPhysicianName = values["referring_physician"]
    ds.StudyDescription = values["study_description"] or "Burn wound photography"
    ds.SeriesDescription = values["series_description"] or "Clinical photographs"
    ds.PatientName = values["patient_name"]
    ds.PatientID = values["patient_id"]
    ds.PatientBirthDate = values["birth_date"]
    ds.PatientSex = sex
    ds.StudyInstanceUID = values["study_instance_uid"] or generate_uid()
    ds.SeriesInstanceUID = values["series_instance_uid"] or generate_uid()
    ds.StudyID = values["study_id"] or "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = int(values["instance_number"] or 1)
    ds.PatientOrientation = ""
    ds.BurnedInAnnotation = "NO"
    if site:
        code, meaning, part = BODY_SITES[site]
        region = Dataset()
        region.CodeValue, region.CodingSchemeDesignator, region.CodeMeaning = code, "SCT", meaning
        ds.AnatomicRegionSequence = Sequence([region])
        ds.BodyPartExamined = part
    ds.ImageLaterality = laterality if laterality in ("L", "R", "B") else "U"
    ds.AcquisitionContextSequence = Sequence([])
    ds.Rows, ds.Columns = height, width
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    if jpeg is not None:
        grey = mode == "L"
        ds.SamplesPerPixel = 1 if grey else 3
        # A JFIF colour JPEG stores YCbCr; DICOM names its subsampled form YBR_FULL_422.
        ds.PhotometricInterpretation = "MONOCHROME2" if grey else "YBR_FULL_422"
        if not grey:
            ds.PlanarConfiguration = 0
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionRatio = f"{height * width * ds.SamplesPerPixel / len(jpeg):.2f}"
        ds.LossyImageCompressionMethod = "ISO_10918_1"
        ds.PixelData = encapsulate([jpeg])
        ds["PixelData"].VR = "OB"
        transfer_syntax = JPEGBaseline8Bit if sof == 0xC0 else JPEGExtended12Bit
    else:
        assert decoded is not None
        grey = decoded.ndim == 2
        ds.SamplesPerPixel = 1 if grey else 3
        ds.PhotometricInterpretation = "MONOCHROME2" if grey else "RGB"
        if not grey:
            ds.PlanarConfiguration = 0
        # Decoding a progressive JPEG loses nothing more; the source was lossy already.
        ds.LossyImageCompression = "01" if fmt == "JPEG" else "00"
        if fmt == "JPEG":
            ds.LossyImageCompressionMethod = "ISO_10918_1"
        ds.PixelData = np.ascontiguousarray(decoded).tobytes()
        transfer_syntax = ExplicitVRLittleEndian

    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = ds.SOPClassUID
    fm.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    fm.TransferSyntaxUID = transfer_syntax
    fm.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = fm
    ds.preamble = b"\x00" * 128
    return ds


def _write(ds: Dataset, out_path: Path) -> Dataset:
    out_path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out_path, enforce_file_format=True)
    return ds


def _valid_exif(value: str, vr: str) -> str:
    """An EXIF date/time converted to DICOM, or "" when the camera wrote something invalid."""
    from pydicom import config
    from pydicom.valuerep import validate_value

    try:
        validate_value(vr, value, config.RAISE)
        if vr == "DA":
            _dt.datetime.strptime(value, "%Y%m%d")
    except ValueError:
        return ""
    return value


__all__ = ["BODY_SITES", "METADATA_KEYS", "PhotoError", "strip_jpeg_app_segments", "wrap_photo"]
