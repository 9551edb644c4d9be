"""DICOM loading without Holoscan: scan a folder, decode every image (frame) to H×W×3 uint8 RGB.

The core is plain Python so that integrators can embed it::

    from burnscope.operators.dicom_loader.core import DicomLoader

    loader = DicomLoader(workers=4)
    images, errors = loader.load("incoming/")
    for images, errors in loader.iter_batches("incoming/", batch_size=8):
        ...

Every file ends up either as :class:`~burnscope.operators.messages.ImageRecord` s (one per frame)
or as one :class:`~burnscope.operators.messages.ErrorRecord` whose ``reason`` is one of
:data:`REASONS`. Log lines name files and SOP Instance UIDs only, never patient identifiers.

Case data for decision support comes from sidecar JSON files: ``case.json`` in the image's folder
(or the nearest parent up to the scanned root), then ``<image file stem>.json`` beside the image,
whose keys override the study's. ``PatientAge`` and ``PatientWeight`` fill ``age_years`` and
``weight_kg`` when no sidecar gives them.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, get_decoder, pixel_array
from pydicom.uid import UID

from burnscope.operators.messages import ErrorRecord, ImageContext, ImageRecord, PatientIdentity

log = logging.getLogger("burnscope.dicom_loader")

#: Stable reason codes of :class:`ErrorRecord` produced by the loader.
REASONS = (
    "not_dicom",
    "no_pixel_data",
    "unsupported_transfer_syntax",
    "decode_failed",
    "too_large",
    "truncated",
)
#: Default limit on rows × columns × frames of one file (a decompression-bomb guard):
#: 128 Mpx is e.g. 32 frames of 2048×2048, or ten 12 Mpx phone photos in one file.
DEFAULT_MAX_PIXELS = 128 * 1024 * 1024
#: File names the folder scan skips: sidecars, docs, scripts, hidden files and DICOMDIR
#: (a DICOMDIR is read for the files it references, not decoded itself).
DEFAULT_IGNORE = (".*", "*.json", "*.md", "*.py", "*.pyc", "DICOMDIR")
CASE_SIDECAR = "case.json"
MEDIA_DIRECTORY_STORAGE = "1.2.840.10008.1.3.10"


class LoaderError(Exception):
    """A failure with a reason code; becomes an :class:`ErrorRecord`."""

    def __init__(self, reason: str, message: str, sop_instance_uid: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.sop_instance_uid = sop_instance_uid


@dataclass
class FrameInfo:
    """Header facts of one decoded image (frame), for ``burnscope inspect``."""

    sop_class_uid: str
    transfer_syntax_uid: str
    photometric_interpretation: str
    rows: int
    columns: int
    frame_number: int
    number_of_frames: int


@dataclass
class FileResult:
    """What loading one file produced: images (one per frame) with their header facts, or an error."""

    path: Path
    images: list[ImageRecord] = field(default_factory=list)
    infos: list[FrameInfo] = field(default_factory=list)
    error: ErrorRecord | None = None
    #: Header facts when the file was DICOM but failed later (for inspect).
    header: FrameInfo | None = None
    #: True when a series selector left the file out (neither images nor an error).
    skipped: bool = False


# --------------------------------------------------------------------------------------------
# Scanning
# --------------------------------------------------------------------------------------------


def _ignored(name: str, ignore: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in ignore)


def read_dicomdir(dicomdir: Path) -> list[Path]:
    """Files referenced by a DICOMDIR (IMAGE and other instance records), in record order."""
    ds = pydicom.dcmread(dicomdir)
    base = dicomdir.parent
    files: list[Path] = []
    for record in ds.get("DirectoryRecordSequence", []):
        ref = record.get("ReferencedFileID")
        if not ref:
            continue
        parts = [ref] if isinstance(ref, str) else list(ref)
        candidate = base.joinpath(*parts)
        if not candidate.exists():  # media written on case-insensitive systems
            lowered = base.joinpath(*(p.lower() for p in parts))
            candidate = lowered if lowered.exists() else candidate
        files.append(candidate)
    return list(dict.fromkeys(files))


def scan(root: str | os.PathLike, ignore: Iterable[str] = DEFAULT_IGNORE) -> list[Path]:
    """Files the loader would read under ``root`` (a file or folder), in a stable order.

    Folders are walked recursively in sorted order. A folder holding a DICOMDIR contributes
    the files its records reference (its own subtree is not walked again), so media with
    extension-less file names load exactly as the DICOMDIR describes them.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"input path does not exist: {root}")
    if root.is_file():
        if root.name.upper() == "DICOMDIR":
            return [p for p in read_dicomdir(root) if p.exists()]
        return [root]
    ignore = tuple(ignore)
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        dicomdir = next((f for f in filenames if f.upper() == "DICOMDIR"), None)
        if dicomdir is not None:
            try:
                referenced = read_dicomdir(here / dicomdir)
            except Exception as exc:  # unreadable DICOMDIR: fall back to walking
                log.warning("DICOMDIR %s unreadable (%s); scanning the folder instead", here / dicomdir, exc)
            else:
                missing = [p for p in referenced if not p.exists()]
                if missing:
                    log.warning("DICOMDIR %s references %d missing file(s)", here / dicomdir, len(missing))
                found.extend(p for p in referenced if p.exists())
                dirnames[:] = []
                continue
        for name in sorted(filenames):
            if not _ignored(name, ignore):
                found.append(here / name)
    return found


# --------------------------------------------------------------------------------------------
# Colour handling
# --------------------------------------------------------------------------------------------


def _first(value: Any) -> float:
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return float(value[0])
    return float(value)


def _window(arr: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """VOI window to [0, 1] following PS3.3 C.11.2.1.2 (LINEAR, LINEAR_EXACT, SIGMOID)."""
    function = (function or "LINEAR").upper()
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (arr - center) / width))
    if function == "LINEAR_EXACT":
        out = (arr - center) / width + 0.5
    else:
        if width < 1:
            width = 1.0
        out = (arr - (center - 0.5)) / (width - 1) + 0.5
    return np.clip(out, 0.0, 1.0)


def _scale_to_uint8(arr: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:
        return np.zeros(arr.shape, np.uint8)
    out = (arr.astype(np.float64) - low) * (255.0 / (high - low))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def grey_to_uint8(arr: np.ndarray, ds: Dataset, frame_index: int = 0) -> np.ndarray:
    """One greyscale frame (stored values) → H×W uint8 for display, MONOCHROME1 inverted.

    Modality LUT/rescale first, then the VOI LUT or the first window of the dataset; with
    neither, 8-bit images keep their values and deeper ones are stretched min→max.
    """
    has_rescale = "RescaleSlope" in ds or "ModalityLUTSequence" in ds
    has_window = "WindowCenter" in ds and "WindowWidth" in ds
    has_voi_lut = "VOILUTSequence" in ds
    bits_stored = int(ds.get("BitsStored", 8) or 8)
    values = apply_modality_lut(arr, ds) if has_rescale else arr
    if has_voi_lut and not has_window:
        values = apply_voi(values, ds, index=0)
        lut_bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        out = _scale_to_uint8(values, 0, 2**lut_bits - 1)
    elif has_window:
        center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
        function = str(ds.get("VOILUTFunction", "LINEAR"))
        out = np.rint(_window(values.astype(np.float64), center, width, function) * 255).astype(np.uint8)
    elif values.dtype == np.uint8 or (bits_stored <= 8 and not has_rescale and arr.dtype.kind == "u"):
        out = values.astype(np.uint8)
    else:
        finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        out = _scale_to_uint8(values, low, high)
    if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        out = 255 - out
    return out


def to_rgb8(arr: np.ndarray, ds: Dataset, frame_index: int = 0) -> np.ndarray:
    """One frame as pydicom's ``pixel_array`` gives it (YBR already converted) → H×W×3 uint8 RGB.

    Handles PALETTE COLOR, MONOCHROME1/2 (modality + VOI, MONOCHROME1 inverted), 16-bit colour
    and greyscale → 3 identical channels.
    """
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        if rgb.dtype != np.uint8:
            # Palette entries are 8 or 16 bits (LUT Descriptor); scale 16-bit entries down.
            bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
            rgb = (rgb >> (bits - 8)).astype(np.uint8) if bits > 8 else rgb.astype(np.uint8)
        return np.ascontiguousarray(rgb)
    if arr.ndim == 3 and arr.shape[-1] == 3:
        if arr.dtype != np.uint8:
            bits = int(ds.get("BitsStored", 8) or 8)
            arr = (arr >> max(bits - 8, 0)).astype(np.uint8) if arr.dtype.kind in "ui" else arr.astype(np.uint8)
        return np.ascontiguousarray(arr)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    grey = grey_to_uint8(arr, ds, frame_index)
    return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))


# --------------------------------------------------------------------------------------------
# Context
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Decoding one file
# --------------------------------------------------------------------------------------------


def _read_dataset(path: Path) -> Dataset:
    try:
        return pydicom.dcmread(path)
    except InvalidDicomError:
        pass  # maybe a bare dataset without preamble/meta: try once more below
    except (EOFError, OSError) as exc:
        raise LoaderError("truncated", f"file ends early: {exc}") from exc
    except Exception as exc:
        raise LoaderError("not_dicom", f"not readable as DICOM: {exc}") from exc
    try:
        ds = pydicom.dcmread(path, force=True)
    except (EOFError,) as exc:
        raise LoaderError("not_dicom", "no DICOM header and not parseable as a dataset") from exc
    except Exception as exc:
        raise LoaderError("not_dicom", f"not a DICOM file: {type(exc).__name__}") from exc
    # force=True parses almost anything; a real dataset has its SOP class or pixel module.
    try:
        plausible = ("SOPClassUID" in ds or "PixelData" in ds) and len(ds) > 2
    except Exception:
        plausible = False
    if not plausible:
        raise LoaderError("not_dicom", "no DICOM header (no 'DICM' prefix, no recognisable dataset)")
    return ds


def _transfer_syntax(ds: Dataset) -> UID:
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts:
        return UID(ts)
    # Bare datasets: pydicom decided the encoding while reading.
    if ds.is_little_endian is False:
        return UID("1.2.840.10008.1.2.2")
    return UID("1.2.840.10008.1.2.1" if ds.is_implicit_VR is False else "1.2.840.10008.1.2")


def _expected_native_bytes(ds: Dataset, frames: int) -> int:
    rows, cols = int(ds.Rows), int(ds.Columns)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    bits = int(ds.BitsAllocated)
    if bits == 1:
        return (rows * cols * frames * samples + 7) // 8
    per_pixel = samples
    if str(ds.get("PhotometricInterpretation", "")).strip() == "YBR_FULL_422":
        per_pixel = 2  # two luminance samples share one Cb and one Cr
    return rows * cols * per_pixel * frames * (bits // 8)


_PIXEL_DATA_UNDEFINED_LENGTH = (
    b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff",  # explicit VR little endian
    b"\xe0\x7f\x10\x00\xff\xff\xff\xff",  # implicit VR little endian
)


def _pixel_data_was_cut(path: Path, ds: Dataset) -> bool:
    """True when the file holds a Pixel Data header that pydicom could not read to its end.

    pydicom drops an undefined-length element (and everything read with it) when the file ends
    before the sequence delimiter, so a cut-off JPEG file reads back as a dataset without
    pixels; the raw bytes still show where the pixel data began.
    """
    try:
        raw = path.read_bytes()
    except OSError:
        return False
    if any(marker in raw for marker in _PIXEL_DATA_UNDEFINED_LENGTH):
        return True  # the header is there, yet pydicom kept no Pixel Data: it ran out of bytes
    return len(ds) == 0 and len(raw) > 132


class DicomLoader:
    """Scans folders and decodes DICOM files to RGB :class:`ImageRecord` s in parallel.

    Parameters:
        max_pixels: reject files whose rows × columns × frames exceed this (reason ``too_large``).
        workers: decoding threads (pydicom's decoders release the GIL); 1 decodes serially.
        ignore: file-name patterns the folder scan skips.
        read_sidecars: attach ``case.json`` / ``<stem>.json`` case data to each image.
        executor: ``"thread"`` (default; helps where the C decoders release the GIL, i.e.
            large images) or ``"process"`` (a persistent process pool that also spreads the
            GIL-bound header parsing of small images; pixels are copied back; call
            :meth:`close` when done). See docs/benchmarks/decode-cpu.md.
        gpu_jpeg: decode 8-bit colour JPEG frames on the GPU with nvImageCodec when it and a
            GPU are usable; those images' pixels are then CuPy arrays (see ``gpu_jpeg.py``).
        quiet_validation: switch pydicom's read-time value validation off (process-wide),
            because its warnings quote element values such as patient names and birth dates.
        selector: e.g. a :class:`~burnscope.operators.dicom_loader.selector.SeriesSelector`;
            files whose header it rejects are skipped before decoding (no image, no error).
        decoding_plugin: force one pydicom pixel-data plugin (e.g. ``"pillow"``, which decodes
            JPEG baseline photographs faster than ``"pylibjpeg"``); empty lets pydicom choose,
            falling back to the others when the named plugin cannot decode a file.
    """

    def __init__(
        self,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        workers: int | None = None,
        ignore: Iterable[str] = DEFAULT_IGNORE,
        read_sidecars: bool = True,
        decoding_plugin: str = "",
        executor: str = "thread",
        selector: Callable[[Dataset], bool] | None = None,
        quiet_validation: bool = True,
        gpu_jpeg: bool = False,
    ) -> None:
        if gpu_jpeg and executor == "process":
            raise ValueError("gpu_jpeg needs executor='thread' (GPU arrays do not cross processes)")
        self.gpu_jpeg = gpu_jpeg
        if quiet_validation:
            # pydicom's read-time validation warns *with the offending value* (a malformed
            # birth date or an over-long patient name ends up in the log); the loader does not
            # validate values, so silence it — process-wide, as pydicom's setting is global.
            pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
        self.selector = selector
        if executor not in ("thread", "process"):
            raise ValueError(f"executor must be 'thread' or 'process', not {executor!r}")
        self.executor = executor
        self._process_pool: ProcessPoolExecutor | None = None
        self.decoding_plugin = decoding_plugin
        self.max_pixels = int(max_pixels)
        self.workers = max(1, int(workers if workers is not None else min(8, os.cpu_count() or 1)))
        self.ignore = tuple(ignore)
        self.read_sidecars = read_sidecars
        self._sidecars = _Sidecars()

    # -- scanning ------------------------------------------------------------------------
    def scan(self, root: str | os.PathLike) -> list[Path]:
        """Files under ``root`` that :meth:`load` would read, in order (for progress totals)."""
        return scan(root, self.ignore)

    # -- one file ------------------------------------------------------------------------
    def load_file_result(self, path: str | os.PathLike, root: str | os.PathLike | None = None) -> FileResult:
        """Load one file; never raises for bad input (the error is in the result)."""
        path = Path(path)
        result = FileResult(path=path)
        uid = ""
        try:
            ds = _read_dataset(path)
            uid = str(ds.get("SOPInstanceUID", "") or "")
            if self.selector is not None and "PixelData" in ds and not self.selector(ds):
                result.skipped = True
                log.debug("%s: not selected", uid or path.name)
                return result
            result.images, result.infos = self._decode(ds, path, Path(root) if root else None, result)
        except LoaderError as exc:
            result.error = ErrorRecord(str(path), exc.reason, exc.message, exc.sop_instance_uid or uid)
        except Exception as exc:  # a decoder bug must not stop a folder run
            result.error = ErrorRecord(str(path), "decode_failed", f"{type(exc).__name__}: {exc}", uid)
        if result.error is not None:
            result.images, result.infos = [], []
            log.warning("%s: %s (%s)", path.name, result.error.reason, result.error.message)
        else:
            log.debug("%s: %d image(s)", uid or path.name, len(result.images))
        return result

    def load_file(
        self, path: str | os.PathLike, root: str | os.PathLike | None = None
    ) -> tuple[list[ImageRecord], list[ErrorRecord]]:
        """Images (one per frame) of one file, or one error record."""
        result = self.load_file_result(path, root)
        return result.images, [result.error] if result.error else []

    def _decode(
        self, ds: Dataset, path: Path, root: Path | None, result: FileResult
    ) -> tuple[list[ImageRecord], list[FrameInfo]]:
        meta_class = str(getattr(ds, "file_meta", Dataset()).get("MediaStorageSOPClassUID", "") or "")
        if meta_class == MEDIA_DIRECTORY_STORAGE:
            raise LoaderError("no_pixel_data", "a DICOMDIR (media directory) holds no image")
        ts = _transfer_syntax(ds)
        pixel_keyword = next((k for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData") if k in ds), None)
        photometric = str(ds.get("PhotometricInterpretation", "") or "").strip()
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        try:
            frames = int(ds.get("NumberOfFrames", 1) or 1)
        except (TypeError, ValueError):
            frames = 1
        result.header = FrameInfo(str(ds.get("SOPClassUID", "") or ""), str(ts), photometric, rows, cols, 0, frames)
        if pixel_keyword is None:
            if _pixel_data_was_cut(path, ds):
                raise LoaderError("truncated", "the file ends inside its (encapsulated) Pixel Data")
            raise LoaderError("no_pixel_data", "the dataset has no Pixel Data")
        if rows <= 0 or cols <= 0:
            raise LoaderError("decode_failed", f"invalid image size {rows}×{cols}")
        if rows * cols * frames > self.max_pixels:
            raise LoaderError(
                "too_large", f"{rows}×{cols}×{frames} frames exceeds the limit of {self.max_pixels} pixels"
            )
        try:
            decoder = get_decoder(ts)
        except NotImplementedError as exc:
            raise LoaderError("unsupported_transfer_syntax", f"no pixel decoder for transfer syntax {ts}") from exc
        if not decoder.is_available:
            raise LoaderError(
                "unsupported_transfer_syntax",
                f"no installed plugin decodes {ts.name} ({ts}); missing: {decoder.missing_dependencies}",
            )
        if pixel_keyword == "PixelData" and not ts.is_compressed:
            have, need = len(ds.PixelData), _expected_native_bytes(ds, frames)
            if have < need:
                raise LoaderError("truncated", f"pixel data has {have} of {need} bytes")
        frame_arrays = self._gpu_frames(ds, str(ts), frames, path) if self.gpu_jpeg else None
        on_gpu = frame_arrays is not None
        if frame_arrays is None:
            try:
                arr = self._pixel_array(ds)
            except (EOFError, ValueError) as exc:
                text = str(exc).lower()
                cut = "less than expected" in text or "end of" in text or "eof" in text
                raise LoaderError("truncated" if cut else "decode_failed", f"{type(exc).__name__}: {exc}") from exc
            except Exception as exc:
                raise LoaderError("decode_failed", f"{type(exc).__name__}: {exc}") from exc
            frame_arrays = [arr[i] for i in range(arr.shape[0])] if frames > 1 else [arr]
        case = self._sidecars.case_for(path, root) if self.read_sidecars else {}
        images: list[ImageRecord] = []
        infos: list[FrameInfo] = []
        for index, frame in enumerate(frame_arrays):
            try:
                rgb = frame if on_gpu else to_rgb8(frame, ds, index)
            except Exception as exc:
                raise LoaderError("decode_failed", f"colour conversion failed: {type(exc).__name__}: {exc}") from exc
            images.append(ImageRecord(build_context(ds, path, index + 1, case), rgb))
            infos.append(FrameInfo(result.header.sop_class_uid, str(ts), photometric, rows, cols, index + 1, frames))
        return images, infos

    def _gpu_frames(self, ds: Dataset, ts: str, frames: int, path: Path) -> list[Any] | None:
        from burnscope.operators.dicom_loader import gpu_jpeg

        if not (gpu_jpeg.eligible(ds, ts) and gpu_jpeg.available()):
            return None
        try:
            return gpu_jpeg.decode_frames(ds, frames)
        except Exception as exc:  # the CPU decoders get their chance and their error codes
            log.debug("%s: GPU JPEG decode failed (%s); decoding on the CPU", path.name, exc)
            return None

    def _pixel_array(self, ds: Dataset) -> np.ndarray:
        if self.decoding_plugin:
            try:
                return pixel_array(ds, decoding_plugin=self.decoding_plugin)
            except Exception:
                pass  # that plugin cannot do this file: let pydicom pick another
        return ds.pixel_array

    # -- many files ----------------------------------------------------------------------
    def iter_file_results(
        self, paths: Iterable[str | os.PathLike], root: str | os.PathLike | None = None
    ) -> Iterator[FileResult]:
        """Load files in parallel (``workers`` threads), yielding results in input order."""
        yield from self._ordered_results([(Path(p), Path(root) if root else None) for p in paths])

    def _inputs(self, path: str | os.PathLike | Iterable[str | os.PathLike]) -> list[tuple[Path, Path]]:
        roots = [path] if isinstance(path, (str, os.PathLike)) else list(path)
        pairs: list[tuple[Path, Path]] = []
        for r in roots:
            r = Path(r)
            base = r if r.is_dir() else r.parent
            pairs.extend((f, base) for f in self.scan(r))
        return pairs

    def load(
        self, path: str | os.PathLike | Iterable[str | os.PathLike]
    ) -> tuple[list[ImageRecord], list[ErrorRecord]]:
        """All images and errors of a file, a folder (recursive) or several of them."""
        images: list[ImageRecord] = []
        errors: list[ErrorRecord] = []
        for batch_images, batch_errors in self.iter_batches(path, batch_size=1 << 30):
            images.extend(batch_images)
            errors.extend(batch_errors)
        return images, errors

    def iter_batches(
        self,
        path: str | os.PathLike | Iterable[str | os.PathLike],
        batch_size: int = 8,
        on_file: Callable[[FileResult], None] | None = None,
        files: list[Path] | None = None,
    ) -> Iterator[tuple[list[ImageRecord], list[ErrorRecord]]]:
        """Yield ``(images, errors)`` with at most ``batch_size`` images each, in file order.

        A batch is yielded once it holds ``batch_size`` images or ``batch_size`` errors; the
        last one may be smaller. ``on_file`` is called after each file (progress bars).
        ``files`` (from :meth:`scan`) avoids scanning twice.
        """
        batch_size = max(1, int(batch_size))
        if files is not None:
            base = Path(path) if isinstance(path, (str, os.PathLike)) else None
            base = base if base is None or base.is_dir() else base.parent
            pairs = [(Path(f), base) for f in files]
        else:
            pairs = self._inputs(path)
        images: list[ImageRecord] = []
        errors: list[ErrorRecord] = []
        for result in self._ordered_results(pairs):
            if on_file is not None:
                on_file(result)
            images.extend(result.images)
            if result.error is not None:
                errors.append(result.error)
            while len(images) >= batch_size:
                yield images[:batch_size], errors
                images, errors = images[batch_size:], []
            if len(errors) >= batch_size:
                yield [], errors
                errors = []
        if images or errors:
            yield images, errors

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_process_pool"] = None  # a pool does not travel to its own workers
        return state

    def close(self) -> None:
        """Shut the process pool down (no-op for threads)."""
        if self._process_pool is not None:
            self._process_pool.shutdown(cancel_futures=True)
            self._process_pool = None

    def __enter__(self) -> DicomLoader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _executor(self) -> Any:
        if self.executor == "process":
            if self._process_pool is None:
                # forkserver: forking a process that runs Holoscan/pydicom threads is unsafe
                context = multiprocessing.get_context("forkserver")
                self._process_pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
            return nullcontext(self._process_pool)
        return ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="dicom-decode")

    def _load_chunk(self, pairs: list[tuple[Path, Path | None]]) -> list[FileResult]:
        return [self.load_file_result(p, r) for p, r in pairs]

    def _ordered_results(self, pairs: list[tuple[Path, Path | None]]) -> Iterator[FileResult]:
        if not pairs:
            return
        if self.workers == 1:
            for p, r in pairs:
                yield self.load_file_result(p, r)
            return
        # Processes get several files per task: one round trip per small file would cost
        # more than decoding it. Threads take one file at a time (no round trip to amortize).
        chunk = 1 if self.executor == "thread" else max(1, min(8, len(pairs) // (self.workers * 4)))
        chunks = [pairs[i : i + chunk] for i in range(0, len(pairs), chunk)]
        window = self.workers * 2
        with self._executor() as pool:
            pending: deque[Future[list[FileResult]]] = deque()
            for part in chunks:
                pending.append(pool.submit(self._load_chunk, part))
                if len(pending) >= window:
                    yield from pending.popleft().result()
            while pending:
                yield from pending.popleft().result()


def load(path: str | os.PathLike, **options: Any) -> tuple[list[ImageRecord], list[ErrorRecord]]:
    """Shortcut for ``DicomLoader(**options).load(path)``."""
    return DicomLoader(**options).load(path)
