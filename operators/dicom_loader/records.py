"""What loading a file produces: images and header facts, or one structured error.

Every file ends up either as :class:`~burnscope.common.messages.ImageRecord` s (one per frame)
or as one :class:`~burnscope.common.messages.ErrorRecord` whose ``reason`` is one of
:data:`REASONS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from burnscope.common.messages import ErrorRecord, ImageRecord

#: Stable reason codes of :class:`ErrorRecord` produced by the loader.
REASONS = (
    "not_dicom",
    "no_pixel_data",
    "unsupported_transfer_syntax",
    "decode_failed",
    "too_large",
    "truncated",
    "decoder_crashed",  # the decoder crashed (segfault, abort, Rust panic, out of memory)
    "decode_timeout",  # decoding took longer than the per-file limit; the decoder was stopped
)


def one_line(text: str, limit: int = 500) -> str:
    """``text`` as one log line: white space folded, a traceback pasted into it left out.

    pydicom puts the formatted traceback of the original error into the message of the one it
    raises for a data element (``With tag (...) got exception: ... Traceback (most recent call
    last): ...``).
    """
    text = " ".join(str(text).split("Traceback (most recent call last)")[0].split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
