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


def _da(value: Any) -> str:
    return str(value).replace("-", "")[:8] if value else ""


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
        raise ValueError(f"unknown metadata key(s): {', '.join(sorted(unknown))}")
    photo = Path(photo)
    data = photo.read_bytes()
    try:
        fmt, width, height, mode, taken, jpeg, sof, decoded = _read_photo(data)
    except Image.DecompressionBombError as exc:
        raise ValueError(f"photo too large: {exc}") from None
    except OSError:
        raise  # Pillow's "cannot identify image file", a truncated file
    except Exception as exc:  # Pillow raises SyntaxError, struct.error, ... on damaged files
        raise ValueError(f"not a readable JPEG or PNG photograph ({type(exc).__name__}: {exc})") from None
    return _write(_dataset(meta, fmt, width, height, mode, taken, jpeg, sof, decoded), Path(out_path))


def _read_photo(data: bytes) -> tuple[Any, ...]:
    """Format, size, mode, EXIF date, the JPEG to embed (or None) and its SOF, or decoded pixels."""
    with Image.open(io.BytesIO(data)) as img:
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


def _dataset(meta: dict[str, Any], fmt: str, width: int, height: int, mode: str, taken: Any, jpeg: bytes | None,
            sof: int, decoded: np.ndarray | None) -> Dataset:
    """The VL Photographic Image dataset of a photo read by :func:`_read_photo`."""
    now = _dt.datetime.now()
    exif_date = str(taken).split(" ")[0].replace(":", "") if taken else ""
    exif_time = str(taken).split(" ")[1].replace(":", "") if taken and " " in str(taken) else ""
    study_date = _da(meta.get("study_date")) or exif_date or now.strftime("%Y%m%d")
    study_time = str(meta.get("study_time", "") or exif_time or now.strftime("%H%M%S"))

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
    ds.AccessionNumber = str(meta.get("accession_number", ""))
    ds.Modality = "XC"
    ds.Manufacturer = ""
    ds.InstitutionName = str(meta.get("institution_name", ""))
    ds.ReferringPhysicianName = str(meta.get("referring_physician", ""))
    ds.StudyDescription = str(meta.get("study_description", "Burn wound photography"))
    ds.SeriesDescription = str(meta.get("series_description", "Clinical photographs"))
    ds.PatientName = str(meta.get("patient_name", ""))
    ds.PatientID = str(meta.get("patient_id", ""))
    ds.PatientBirthDate = _da(meta.get("birth_date"))
    ds.PatientSex = str(meta.get("sex", "")).upper()[:1] if meta.get("sex") else ""
    ds.StudyInstanceUID = str(meta.get("study_instance_uid") or generate_uid())
    ds.SeriesInstanceUID = str(meta.get("series_instance_uid") or generate_uid())
    ds.StudyID = str(meta.get("study_id", "1"))
    ds.SeriesNumber = 1
    ds.InstanceNumber = int(meta.get("instance_number", 1))
    ds.PatientOrientation = ""
    ds.BurnedInAnnotation = "NO"
    laterality = str(meta.get("laterality", "") or "").upper()[:1]
    site = str(meta.get("body_site", "") or "").strip().lower().replace(" ", "_")
    if site:
        if site not in BODY_SITES:
            raise ValueError(f"unknown body_site {site!r}; known: {', '.join(BODY_SITES)}")
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


__all__ = ["BODY_SITES", "METADATA_KEYS", "strip_jpeg_app_segments", "wrap_photo"]
