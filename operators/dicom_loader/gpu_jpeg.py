"""GPU decoding of JPEG and JPEG 2000 photographs with nvImageCodec, a batch at a time (no Holoscan).

Used by :class:`~burnscope.operators.dicom_loader.core.DicomLoader` with ``gpu_jpeg=True``.
While the loader reads files (header, context, checks: on the CPU), :class:`GpuFrames` keeps
the codestream of every eligible frame from the DICOM encapsulated Pixel Data instead of
decoding it (:class:`EncodedFrame`); when a batch is complete the loader calls
:meth:`GpuFrames.finish`, which decodes all of its frames in one nvImageCodec call, straight
into device memory. Those images' pixels are H×W×3 uint8 **CuPy** arrays: the CuPy
preprocessing reads them in place, and only the thumbnails come back to the host.

Eligible (decoded exactly as DICOM means them): 8-bit, 3-sample frames of

* JPEG baseline / extended (``1.2.840.10008.1.2.4.50``/``.51``) with photometric
  interpretation ``YBR_FULL_422`` or ``YBR_FULL`` (YCbCr → RGB on the GPU);
* JPEG 2000 and HTJ2K (``.90``, ``.91``, ``.201``, ``.202``, ``.203``) with ``YBR_RCT``,
  ``YBR_ICT`` (the codestream's colour transform, inverted by the decoder) or ``RGB``.

A frame nvImageCodec cannot decode (a damaged or unusual stream: it returns None) falls back
to the CPU, that frame alone: the loader's ``frame_source`` for the CPU (e.g. scaled JPEG
decoding) or pydicom; a frame the CPU cannot decode either becomes an error record. Every
other frame, and every machine without a usable GPU or without ``nvidia-nvimgcodec-cu13``,
takes the CPU path unchanged (the import is guarded). GPU and CPU decoders use different IDCTs
and upsampling: pixels differ by a few levels (``tests/gpu/test_gpu_decode_parity.py``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames

from burnscope.common.messages import ErrorRecord, ImageRecord

log = logging.getLogger("burnscope.dicom_loader")

JPEG_8BIT = ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51")
JPEG_2000 = (
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",  # JPEG 2000 (lossless only, lossy)
    "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203",  # HTJ2K
)
#: Lossless transfer syntaxes (GPU and CPU decodes must agree within 1 level; lossy within 2).
LOSSLESS = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202")
_JPEG_PHOTOMETRIC = ("YBR_FULL_422", "YBR_FULL")
_J2K_PHOTOMETRIC = ("YBR_RCT", "YBR_ICT", "RGB")
#: libjpeg's "fancy" chroma upsampling, as the CPU decoders do it (nvImageCodec's default is off).
DECODER_OPTIONS = ":fancy_upsampling=1"
_local = threading.local()


@lru_cache(maxsize=1)
def available() -> bool:
    """nvImageCodec imports and a GPU takes a CuPy allocation (decided once)."""
    try:
        from nvidia import nvimgcodec  # noqa: F401

        from burnscope.common.gpu import cupy_usable

        usable = cupy_usable()
    except Exception:  # ImportError, or a library that fails to load
        usable = False
    log.info("GPU JPEG decoding (nvImageCodec): %s", "available" if usable else "not available")
    return usable


def eligible(ds: Dataset, transfer_syntax: str) -> bool:
    """True for frames this path decodes exactly as DICOM means them (see the module docs)."""
    if int(ds.get("SamplesPerPixel", 1) or 1) != 3 or int(ds.get("BitsAllocated", 8) or 8) != 8:
        return False
    if int(ds.get("BitsStored", 8) or 8) != 8 or int(ds.get("PixelRepresentation", 0) or 0) != 0:
        return False
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if transfer_syntax in JPEG_8BIT:
        return photometric in _JPEG_PHOTOMETRIC
    return transfer_syntax in JPEG_2000 and photometric in _J2K_PHOTOMETRIC


@dataclass(eq=False)
class EncodedFrame:
    """One frame's codestream, not decoded yet; ``shape`` is what decoding will give."""

    data: bytes = field(repr=False)
    shape: tuple[int, int, int]
    transfer_syntax: str
    photometric: str
    index: int  # 0-based frame number in its file
    source: Path
    #: The file's dataset, for the CPU fallback of this frame (in this process only).
    dataset: Any = field(default=None, repr=False)
    #: What the CPU frame source would do with the file (its frames, computed once on demand).
    cpu_frames: Callable[..., list[Any] | None] | None = field(default=None, repr=False)

    dtype = "uint8"


def encoded_frames(ds: Dataset, transfer_syntax: str, frames: int, path: Path) -> list[EncodedFrame] | None:
    """The codestreams of an eligible file's frames (``None``: not eligible, or fewer frames in
    the Pixel Data than the header says — the CPU decoders then report it)."""
    if not eligible(ds, transfer_syntax):
        return None
    try:
        streams = list(generate_frames(ds.PixelData, number_of_frames=frames))[:frames]
    except Exception:  # a damaged item structure: the CPU decoders give it its reason code
        return None
    if len(streams) != frames:
        return None
    shape = (int(ds.Rows), int(ds.Columns), 3)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    return [EncodedFrame(bytes(s), shape, transfer_syntax, photometric, i, path, ds) for i, s in enumerate(streams)]


def _color_spec(frame: EncodedFrame) -> str:
    """nvImageCodec's colour handling for a frame: convert YCbCr (JPEG) and undo the J2K colour
    transform to sRGB; leave RGB J2K as coded (as nvImageCodec's own pydicom plugin does)."""
    if frame.transfer_syntax in JPEG_2000 and frame.photometric == "RGB":
        return "UNCHANGED"
    return "SRGB"


class NvImageCodecBatch:
    """Decodes a batch of codestreams on the GPU: ``decode(frames) -> [CuPy array | None]``.

    One ``nvimgcodec.Decoder`` per thread; one call per colour handling in the batch (JPEG and
    J2K mix in one call), on CuPy's current stream.
    """

    def __init__(self, options: str = DECODER_OPTIONS) -> None:
        self.options = options

    def _decoder(self) -> Any:
        decoder = getattr(_local, "decoder", None)
        if decoder is None:
            from nvidia import nvimgcodec

            decoder = _local.decoder = nvimgcodec.Decoder(options=self.options)
        return decoder

    def decode(self, frames: Sequence[EncodedFrame]) -> list[Any]:
        import cupy as cp
        from nvidia import nvimgcodec

        out: list[Any] = [None] * len(frames)
        groups: dict[str, list[int]] = {}
        for i, frame in enumerate(frames):
            groups.setdefault(_color_spec(frame), []).append(i)
        stream = cp.cuda.get_current_stream().ptr
        for spec, indices in groups.items():
            params = nvimgcodec.DecodeParams(allow_any_depth=False, color_spec=getattr(nvimgcodec.ColorSpec, spec))
            streams = [nvimgcodec.CodeStream(frames[i].data) for i in indices]
            images = self._decoder().decode(streams, params=params, cuda_stream=stream)
            for i, image in zip(indices, images):
                if image is None:
                    continue
                array = cp.asarray(image)  # zero-copy view that keeps the decoded image alive
                if tuple(array.shape) == frames[i].shape and array.dtype == cp.uint8:
                    out[i] = array
                else:
                    log.debug("%s: GPU decode gave %s %s", frames[i].source.name, array.shape, array.dtype)
        return out


def cpu_frame(frame: EncodedFrame) -> Any:
    """One deferred frame decoded on the CPU (the CPU frame source, else pydicom); raises."""
    from pydicom.pixels import pixel_array

    from burnscope.operators.dicom_loader.colour import to_rgb8

    ds = frame.dataset
    if frame.cpu_frames is not None:
        frames = frame.cpu_frames(ds, frame.transfer_syntax, int(ds.get("NumberOfFrames", 1) or 1), frame.source)
        if frames is not None:
            return frames[frame.index]
    return to_rgb8(pixel_array(ds, index=frame.index), ds, frame.index)


class GpuFrames:
    """The ``frame_source`` of ``DicomLoader(gpu_jpeg=True)``: defers eligible frames, then
    :meth:`finish` decodes a batch of them on the GPU (see the module docs).

    ``cpu_frames``: the frame source for what the GPU does not decode (e.g. scaled JPEG
    decoding), else pydicom. ``decoder``: what decodes a batch (default
    :class:`NvImageCodecBatch` when :func:`available`; anything with ``decode(frames) ->
    [array | None]``). Without a usable decoder every frame goes to ``cpu_frames``/pydicom at
    once, as without this class.
    """

    def __init__(self, cpu_frames: Callable[..., list[Any] | None] | None = None, decoder: Any = None) -> None:
        self.cpu_frames = cpu_frames
        self._decoder = decoder
        self.decoded_on_gpu = 0
        self.fell_back = 0

    @property
    def decoder(self) -> Any:
        if self._decoder is None and available():
            self._decoder = NvImageCodecBatch()
        return self._decoder

    def __call__(self, ds: Dataset, transfer_syntax: str, frames: int, path: Path) -> list[Any] | None:
        pending = encoded_frames(ds, transfer_syntax, frames, path) if self.decoder is not None else None
        if pending is None:
            return self.cpu_frames(ds, transfer_syntax, frames, path) if self.cpu_frames is not None else None
        for frame in pending:
            frame.cpu_frames = self.cpu_frames
        return pending

    def finish(
        self, images: list[ImageRecord], errors: list[ErrorRecord]
    ) -> tuple[list[ImageRecord], list[ErrorRecord]]:
        """Decode the deferred frames of ``images`` (in place) in one batch; frames the decoder
        returns None for are decoded on the CPU, and those that fail there too leave ``images``
        as error records appended to ``errors`` (reason ``decode_failed``)."""
        pending = [record for record in images if isinstance(record.pixels, EncodedFrame)]
        if not pending:
            return images, errors
        try:
            decoded = list(self.decoder.decode([record.pixels for record in pending]))
        except Exception as exc:  # the whole batch failed (driver, memory): all of it on the CPU
            log.warning("GPU decoding of %d frames failed (%s); decoding them on the CPU", len(pending), type(exc).__name__)
            decoded = [None] * len(pending)
        failed: set[int] = set()
        new_errors: list[ErrorRecord] = []
        for record, array in zip(pending, decoded):
            frame = record.pixels
            if array is None:
                self.fell_back += 1
                try:
                    array = cpu_frame(frame)
                except Exception as exc:  # noqa: BLE001 - any decoder error is this frame's error record
                    failed.add(id(record))
                    new_errors.append(ErrorRecord(
                        str(frame.source), "decode_failed",
                        f"frame {frame.index + 1}: {type(exc).__name__}: {exc}".splitlines()[0][:300],
                        record.context.sop_instance_uid,
                    ))
                    continue
            else:
                self.decoded_on_gpu += 1
            record.pixels = array
        kept = [record for record in images if id(record) not in failed] if failed else images
        return kept, (errors + new_errors) if new_errors else errors


__all__ = [
    "DECODER_OPTIONS", "EncodedFrame", "GpuFrames", "JPEG_2000", "JPEG_8BIT", "LOSSLESS", "NvImageCodecBatch",
    "available", "cpu_frame", "decode_frames", "eligible", "encoded_frames",
]


def decode_frames(ds: Dataset, frames: int) -> list[Any]:
    """All frames of one eligible ``ds`` as H×W×3 uint8 RGB CuPy arrays (raises on any failure)."""
    ts = str(ds.file_meta.TransferSyntaxUID)
    pending = encoded_frames(ds, ts, frames, Path(str(getattr(ds, "filename", "") or "dataset")))
    if pending is None:
        raise RuntimeError("not a frame nvImageCodec decodes here")
    out = NvImageCodecBatch().decode(pending)
    if any(array is None for array in out):
        raise RuntimeError("nvImageCodec could not decode a frame")
    return out
