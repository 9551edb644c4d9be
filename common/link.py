"""What crosses between the fragments of a distributed burn-triage run (no Holoscan import).

When burn-triage runs as three fragments (``ingest`` → ``inference`` → ``reporting``, see
``docs/deployment.md``), every message that crosses a fragment boundary is one of these:

=====================  ======================  ==============================================
link                   message                 how Holoscan serialises it
=====================  ======================  ==============================================
ingest → inference     :func:`crops_tensormap`  TensorMap: ``pixels`` uint8 N×S×S×3, ``header``
                                               int64 ``[batch, n, S]`` (no pickling; DLPack, the
                                               pixel data sent by UCX without a copy)
ingest → reporting     :class:`LinkIntake`      cloudpickle (by reference to this module):
                                               the images' :class:`ImageContext`, the loader's
                                               error records, no pixel data
ingest → reporting     :func:`thumbs_tensormap` TensorMap: ``thumbs`` uint8 (all thumbnails
                                               of the batch, flat), ``shapes`` int32 N×3,
                                               ``header`` int64 ``[batch, n]``
inference → reporting  :class:`LinkFindings`    cloudpickle: one :class:`LinkFinding` per
                                               image (label, probabilities, confidence),
                                               :class:`ModelInfo`; no context, no pixels
ingest → inference,    :class:`LinkControl`     cloudpickle: heartbeat / end of stream with
ingest → reporting,                            the sender's counters
inference → reporting
=====================  ======================  ==============================================

Rules that keep it working and small:

* no NumPy array inside a pickled message (Holoscan pickles any message that is not an array
  or a dict of arrays; a pickled message is limited to the UCX serialisation buffer, 127 KiB);
* the inference host never receives patient data: the crops carry only a batch number, the
  contexts go straight from ingest to reporting;
* every class lives in this importable module (a class defined in ``__main__`` would be pickled
  by value with every message), and both sides need the same burnscope version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from burnscope.common.messages import ErrorRecord, ImageContext, ModelInfo

#: Largest pickled message a link accepts (Holoscan's default UCX serialisation buffer is
#: 127 KiB; the tracker's timestamps and message headers travel in the same buffer).
MAX_PICKLED_BYTES = 120 * 1024

HEARTBEAT, END_OF_STREAM = "heartbeat", "eos"


@dataclass
class LinkControl:
    """Heartbeat or end of stream from one fragment.

    ``batches``: batches the sender has emitted (ingest) or forwarded (inference) so far; at the
    end of stream, the total the receivers must see before they stop. ``counters``: the sender's
    counts (files, images, errors, link bytes) for the run summary.
    """

    fragment: str
    kind: str = HEARTBEAT
    seq: int = 0
    batches: int = 0
    counters: dict[str, Any] = field(default_factory=dict)
    accepted: list["AcceptedFile"] = field(default_factory=list)

    @property
    def end_of_stream(self) -> bool:
        return self.kind == END_OF_STREAM


@dataclass
class LinkIntake:
    """Ingest → reporting, one per batch: what the reporting side joins with the findings.

    ``contexts``: the images of batch ``batch``, in the order of the crops sent to inference.
    ``errors``: the loader's error records of the same tick (files that could not be decoded).
    ``accepted``: files the source accepted since the last batch, when the run's ledger is kept
    on the reporting host and the source runs elsewhere (empty when both share one process).
    """

    batch: int
    contexts: list[ImageContext] = field(default_factory=list)
    errors: list[ErrorRecord] = field(default_factory=list)
    accepted: list["AcceptedFile"] = field(default_factory=list)


@dataclass
class LinkFinding:
    """The model's result for one image, without its context (the reporting side has it)."""

    label: str
    probabilities: dict[str, float]
    confidence: float
    abstained: bool


@dataclass
class LinkFindings:
    """Inference → reporting, one per batch (``findings`` in the batch's image order)."""

    batch: int
    model: ModelInfo | None = None
    head: str = "zero-shot"
    findings: list[LinkFinding] = field(default_factory=list)


def _header(batch: int, n: int, size: int = 0) -> np.ndarray:
    return np.asarray([int(batch), int(n), int(size)], dtype=np.int64)


def _host(array: Any) -> np.ndarray:
    if hasattr(array, "__cuda_array_interface__"):
        import cupy

        return cupy.asnumpy(cupy.asarray(array))
    return np.asarray(array)


def read_header(tensors: dict[str, Any]) -> tuple[int, int]:
    """``(batch, n)`` of a tensor map made by :func:`crops_tensormap` or :func:`thumbs_tensormap`."""
    header = _host(tensors["header"]).reshape(-1)
    return int(header[0]), int(header[1])


def crops_tensormap(batch: int, crops: Any, size: int) -> dict[str, Any]:
    """The ingest → inference message: uint8 N×S×S×3 crops (NumPy or CuPy) of batch ``batch``.

    An empty batch (a tick with error records only) sends a 3-byte placeholder with ``n = 0`` (a
    zero-sized tensor is not sent reliably); the header carries S for it. Device crops (CuPy) get
    a device header: one port must not mix host and device tensors.
    """
    n = int(crops.shape[0]) if crops is not None else 0
    header = _header(batch, n, size)
    if hasattr(crops, "__cuda_array_interface__"):
        import cupy

        if n == 0:
            crops = cupy.zeros((1, 1, 1, 3), dtype=cupy.uint8)
        return {"pixels": crops, "header": cupy.asarray(header)}
    if n == 0:
        crops = np.zeros((1, 1, 1, 3), dtype=np.uint8)
    return {"pixels": crops, "header": header}


def crops_from_tensormap(tensors: dict[str, Any]) -> tuple[int, Any]:
    """``(batch, crops)`` with crops N×S×S×3 uint8 (NumPy for host tensors, CuPy for device ones)."""
    batch, n = read_header(tensors)
    pixels = tensors["pixels"]
    if hasattr(pixels, "__cuda_array_interface__"):
        import cupy as xp

        pixels = xp.asarray(pixels)
    else:
        xp, pixels = np, np.asarray(pixels)
    if n == 0:
        size = int(_host(tensors["header"]).reshape(-1)[2])
        return batch, xp.zeros((0, size, size, 3), dtype=xp.uint8)
    return batch, pixels[:n]


def thumbs_tensormap(batch: int, thumbnails: list[np.ndarray] | None) -> dict[str, Any]:
    """The ingest → reporting thumbnails of batch ``batch`` (``None``: not kept, n = -1)."""
    if thumbnails is None:
        return {"thumbs": np.zeros(1, dtype=np.uint8), "shapes": np.zeros((1, 3), dtype=np.int32),
                "header": _header(batch, -1)}
    shapes = np.asarray([t.shape for t in thumbnails] or [(0, 0, 3)], dtype=np.int32).reshape(-1, 3)
    flat = np.concatenate([np.ascontiguousarray(t).reshape(-1) for t in thumbnails] + [np.zeros(1, np.uint8)])
    return {"thumbs": flat, "shapes": shapes, "header": _header(batch, len(thumbnails))}


def thumbs_from_tensormap(tensors: dict[str, Any]) -> tuple[int, list[np.ndarray] | None]:
    """``(batch, thumbnails)``; thumbnails is None when the sender kept none."""
    batch, n = read_header(tensors)
    if n < 0:
        return batch, None
    flat = np.asarray(tensors["thumbs"])
    shapes = np.asarray(tensors["shapes"]).reshape(-1, 3)
    out, offset = [], 0
    for h, w, c in shapes[:n]:
        size = int(h) * int(w) * int(c)
        out.append(flat[offset : offset + size].reshape(int(h), int(w), int(c)).copy())
        offset += size
    return batch, out


def tensormap_bytes(tensors: dict[str, Any]) -> int:
    """Payload bytes of a tensor map (what UCX moves besides ~0.5 KB of header per tensor)."""
    return int(sum(int(getattr(v, "nbytes", 0)) for v in tensors.values()))


def pickled_size(message: Any) -> int:
    """Size of ``message`` as Holoscan pickles it (cloudpickle)."""
    import cloudpickle

    return len(cloudpickle.dumps(message))


class LinkMessageTooLarge(ValueError):
    """A pickled link message would not fit Holoscan's serialisation buffer."""


def check_pickled(message: Any, what: str) -> int:
    """The pickled size of ``message``; raises :class:`LinkMessageTooLarge` above the limit
    (Holoscan would otherwise drop it and carry on)."""
    size = pickled_size(message)
    if size > MAX_PICKLED_BYTES:
        raise LinkMessageTooLarge(
            f"{what}: {size} bytes pickled, over the {MAX_PICKLED_BYTES}-byte link limit "
            "(use a smaller source.batch_size)"
        )
    return size


__all__ = [
    "END_OF_STREAM", "HEARTBEAT", "AcceptedFile", "AcceptedImage", "MAX_PICKLED_BYTES", "LinkControl", "LinkFinding", "LinkFindings", "LinkIntake",
    "LinkMessageTooLarge", "check_pickled", "crops_from_tensormap", "crops_tensormap", "pickled_size",
    "read_header", "tensormap_bytes", "thumbs_from_tensormap", "thumbs_tensormap",
]


@dataclass
class AcceptedImage:
    """One image a source accepted (what a run ledger needs of it)."""

    context: ImageContext


@dataclass
class AcceptedFile:
    """A file the source accepted, as the run ledger reads a loader result: its images, its
    error record, or that a series selector skipped it. Carried by :class:`LinkIntake` (and by
    the end of stream for files accepted after the last batch) when the ledger is on another host."""

    path: str
    skipped: bool = False
    error: ErrorRecord | None = None
    images: list[AcceptedImage] = field(default_factory=list)

    @classmethod
    def of(cls, result: Any) -> "AcceptedFile":
        """From a loader ``FileResult`` (without its pixels)."""
        return cls(str(result.path), bool(getattr(result, "skipped", False)), getattr(result, "error", None),
                   [AcceptedImage(image.context) for image in getattr(result, "images", None) or ()])
