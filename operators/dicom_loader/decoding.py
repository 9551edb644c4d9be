"""Decoding one DICOM file: read the dataset, check it, decode its frames to RGB.

Failures raise :class:`~burnscope.operators.dicom_loader.records.LoaderError` with a reason
code; :class:`~burnscope.operators.dicom_loader.core.DicomLoader` turns them into error records.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import get_decoder, pixel_array
from pydicom.uid import UID

from burnscope.common.messages import ImageRecord
from burnscope.operators.dicom_loader.colour import to_rgb8
from burnscope.operators.dicom_loader.context import build_context
from burnscope.operators.dicom_loader.records import FileResult, FrameInfo, LoaderError

log = logging.getLogger("burnscope.dicom_loader")

#: Default limit on rows × columns × frames of one file (a decompression-bomb guard):
#: 128 Mpx is e.g. 32 frames of 2048×2048, or ten 12 Mpx phone photos in one file.
DEFAULT_MAX_PIXELS = 128 * 1024 * 1024
MEDIA_DIRECTORY_STORAGE = "1.2.840.10008.1.3.10"


def _read_dataset(path: Path) -> Dataset:
    try:
        return pydicom.dcmread(path)
    except InvalidDicomError:
        pass  # maybe a bare dataset without preamble/meta: try once more below
    except (EOFError, OSError) as exc:
        raise LoaderError("truncated", f"file ends early: {exc}") from exc
    except MemoryError as exc:  # reading the pixel data needed more than the worker may use
        raise LoaderError("decoder_crashed", "reading the file ran out of memory") from exc
    except Exception as exc:
        raise LoaderError("not_dicom", f"not readable as DICOM: {exc}") from exc
    try:
        ds = pydicom.dcmread(path, force=True)
    except MemoryError as exc:
        raise LoaderError("decoder_crashed", "reading the file ran out of memory") from exc
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


def decode_dataset(
    ds: Dataset,
    path: Path,
    result: FileResult,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    case: dict[str, Any] | None = None,
    decoding_plugin: str = "",
    gpu_jpeg: bool = False,
    frame_source: Callable[[Dataset, str, int, Path], list[Any] | None] | None = None,
) -> tuple[list[ImageRecord], list[FrameInfo]]:
    """The frames of a dataset read from ``path`` as RGB images, with their header facts.

    Fills ``result.header`` first (so a later failure still reports the header) and raises
    :class:`LoaderError` with a reason code for anything that cannot become an image.
    ``case`` is the sidecar case data attached to every frame. ``frame_source(ds, transfer
    syntax, frames, path)``, called once the header checks passed, may return the frames itself
    (H×W×3 uint8 RGB, e.g. ``scaled.ScaledJpegFrames``, or frames to decode later,
    ``gpu_jpeg.GpuFrames``); ``None`` leaves them to pydicom's decoders.
    """
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
    if rows * cols * frames > max_pixels:
        raise LoaderError(
            "too_large", f"{rows}×{cols}×{frames} frames exceeds the limit of {max_pixels} pixels"
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
    source = frame_source if frame_source is not None else (_gpu_frames if gpu_jpeg else None)
    frame_arrays = source(ds, str(ts), frames, path) if source is not None else None
    on_gpu = frame_arrays is not None
    if frame_arrays is None:
        try:
            arr = _pixel_array(ds, decoding_plugin)
        except (EOFError, ValueError) as exc:
            text = str(exc).lower()
            cut = "less than expected" in text or "end of" in text or "eof" in text
            raise LoaderError("truncated" if cut else "decode_failed", f"{type(exc).__name__}: {exc}") from exc
        except MemoryError as exc:
            raise LoaderError("decoder_crashed", "the decoder ran out of memory") from exc
        except Exception as exc:
            raise LoaderError("decode_failed", f"{type(exc).__name__}: {exc}") from exc
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: B036 — pyo3's PanicException (a Rust panic) is one
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise LoaderError("decoder_crashed", f"the decoder crashed ({type(exc).__name__}: {first})") from None
        frame_arrays = _split_frames(arr, frames, int(ds.get("SamplesPerPixel", 1) or 1))
    case = case or {}
    images: list[ImageRecord] = []
    infos: list[FrameInfo] = []
    for index, frame in enumerate(frame_arrays):
        try:
            rgb = frame if on_gpu else to_rgb8(frame, ds, index)
        except Exception as exc:
            raise LoaderError("decode_failed", f"colour conversion failed: {type(exc).__name__}: {exc}") from exc
        if not on_gpu and (rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8):
            raise LoaderError("decode_failed", f"frame {index + 1} decoded to shape {tuple(rgb.shape)}, not rows × columns × 3")
        images.append(ImageRecord(build_context(ds, path, index + 1, case), rgb))
        infos.append(FrameInfo(result.header.sop_class_uid, str(ts), photometric, rows, cols, index + 1, frames))
    return images, infos


def _split_frames(arr: np.ndarray, frames: int, samples: int) -> list[np.ndarray]:
    """The frames of pydicom's array, as many as the header declares.

    pydicom returns every frame it finds in the pixel data, also more than Number of Frames
    declares (a missing or zero value counts as one); the header decides here, the rest is ignored.
    """
    single_ndim = 3 if samples > 1 else 2
    if arr.ndim == single_ndim + 1:
        return [arr[i] for i in range(min(arr.shape[0], max(1, frames)))]
    return [arr]


def _gpu_frames(ds: Dataset, ts: str, frames: int, path: Path) -> list[Any] | None:
    from burnscope.operators.dicom_loader import gpu_jpeg

    if not (gpu_jpeg.eligible(ds, ts) and gpu_jpeg.available()):
        return None
    try:
        return gpu_jpeg.decode_frames(ds, frames)
    except Exception as exc:  # the CPU decoders get their chance and their error codes
        log.debug("%s: GPU JPEG decode failed (%s); decoding on the CPU", path.name, exc)
        return None


def _pixel_array(ds: Dataset, decoding_plugin: str = "") -> np.ndarray:
    if decoding_plugin:
        try:
            return pixel_array(ds, decoding_plugin=decoding_plugin)
        except (KeyboardInterrupt, SystemExit, MemoryError):
            raise
        except BaseException:  # noqa: B036 — a panicking plugin too: let pydicom pick another
            pass  # that plugin cannot do this file: let pydicom pick another
    return ds.pixel_array
