"""Typed messages that flow between burnscope operators (and across fragments and processes).

Messages carry *batches*: a Python-operator hop costs tens of microseconds, so one message per
image would cap a GPU pipeline at a few thousand images per second.

Patient identifiers live only in :class:`PatientIdentity`, whose ``repr``/``str`` never print
them, so an accidental ``log.info(record)`` cannot leak PHI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from burnscope.common.clinical import FluidPlan, Referral

#: Printed on every output made with random (demo) weights.
DEMO_BANNER = "DEMO MODEL (random weights) — not for clinical use"

#: Handling priorities of an image: the emergency lane, and everything else.
STAT = "stat"
ROUTINE = "routine"
PRIORITIES = (STAT, ROUTINE)


def priority_rank(priority: str) -> int:
    """Sort key of a priority: STAT (0) before routine (1); anything unknown is routine."""
    return 0 if priority == STAT else 1


@dataclass(frozen=True)
class PatientIdentity:
    """Patient-identifying data copied from the source image. Never printed by repr/str."""

    name: str = ""
    patient_id: str = ""
    birth_date: str = ""
    sex: str = ""

    def __repr__(self) -> str:  # keep PHI out of logs and tracebacks
        return "PatientIdentity(<redacted>)"

    __str__ = __repr__

    def as_dict(self) -> dict[str, str]:
        """The identifiers, for report writers that must copy them into the report itself."""
        return {"name": self.name, "patient_id": self.patient_id, "birth_date": self.birth_date, "sex": self.sex}


@dataclass
class ImageContext:
    """Study/series/instance context of one image (frame), as the reports need it."""

    source: str
    sop_instance_uid: str = ""
    sop_class_uid: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    frame_number: int = 1
    modality: str = ""
    study_date: str = ""
    study_description: str = ""
    series_description: str = ""
    accession_number: str = ""
    body_site: str = ""  # Anatomic Region (or Body Part Examined), free text or code meaning
    patient: PatientIdentity = field(default_factory=PatientIdentity)
    #: Case data for decision support (age_years, weight_kg, hours_since_injury, ...), from a
    #: sidecar JSON or CLI options. Keys as in ``burnscope decide``.
    case: dict[str, Any] = field(default_factory=dict)
    #: ``"stat"`` (the emergency lane: overtakes routine images at every queue) or ``"routine"``.
    priority: str = ROUTINE
    #: Why the image is STAT (``dimse_priority_high``, ``calling_aet``, ``attribute:<keyword>``,
    #: ``sidecar``); empty for routine images. Never patient data.
    priority_reason: str = ""
    #: When burnscope accepted the image (seconds since the epoch; 0 = unknown): the start of
    #: its end-to-end latency, and its place among images of the same priority.
    received_at: float = 0.0

    @property
    def is_stat(self) -> bool:
        return self.priority == STAT

    @property
    def label(self) -> str:
        """How logs name this image: SOP Instance UID (and frame) or the file name."""
        name = self.sop_instance_uid or self.source.rsplit("/", 1)[-1]
        return f"{name}#{self.frame_number}" if self.frame_number != 1 else name


@dataclass
class ImageRecord:
    """One decoded image: H×W×3 uint8 RGB pixels plus its context."""

    context: ImageContext
    pixels: np.ndarray = field(repr=False)

    def __repr__(self) -> str:
        return f"ImageRecord({self.context.label}, shape={tuple(self.pixels.shape)})"


@dataclass
class ErrorRecord:
    """A file or image that could not be processed, and why (``reason`` is a stable code)."""

    source: str
    reason: str
    message: str
    sop_instance_uid: str = ""
    stage: str = "load"

    def as_dict(self) -> dict[str, str]:
        return {
            "source": self.source,
            "reason": self.reason,
            "message": self.message,
            "sop_instance_uid": self.sop_instance_uid,
            "stage": self.stage,
        }


@dataclass
class ImageBatch:
    """Images of a batch and their preprocessed tensor (N×3×224×224, NumPy or CuPy)."""

    contexts: list[ImageContext]
    tensor: Any = field(repr=False)
    #: Small RGB thumbnails (for reports); None when not kept.
    thumbnails: list[np.ndarray] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ModelInfo:
    """Which model and engine produced a result; ``demo`` is True for random weights."""

    name: str
    weights: str
    demo: bool
    backend: str = ""
    precision: str = "fp32"
    device: str = "cpu"

    @property
    def banner(self) -> str:
        return DEMO_BANNER if self.demo else ""


@dataclass
class EmbeddingBatch:
    """L2-normalised image embeddings (N×D float32, host memory) of a batch."""

    contexts: list[ImageContext]
    embeddings: np.ndarray = field(repr=False)
    model: ModelInfo
    thumbnails: list[np.ndarray] | None = field(default=None, repr=False)


@dataclass
class Finding:
    """Burn-depth finding for one image."""

    context: ImageContext
    label: str  # a class key, or "needs_review" when the head abstained
    probabilities: dict[str, float]
    confidence: float
    abstained: bool
    model: ModelInfo
    head: str = "zero-shot"
    thumbnail: np.ndarray | None = field(default=None, repr=False)


@dataclass
class Decision:
    """Decision-support output for one finding. ``missing`` names inputs that were not given.

    ``parkland`` is the fluid plan (Parkland or modified Brooke; the name follows the report
    schema's key); ``details`` holds the rest of ``decide()``'s output (chart, method, urine
    output target, ...).
    """

    finding: Finding
    tbsa_percent: float | None = None
    parkland: FluidPlan | None = None
    referral: Referral | None = None
    warnings: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReportBundle:
    """The rendered artefacts of one report, ready for a sink.

    ``artefacts`` maps a file suffix (with its leading dot, e.g. ``".json"``, ``".sr.dcm"``) to
    the file's bytes; a sink writes ``<stem><suffix>``. ``label`` is what logs may print (SOP
    Instance UID or file name, never patient data). ``deliveries`` lists what network sinks
    send: ``{"suffix", "kind" ("dicom"|"fhir"), "key" (SOP Instance UID or Bundle id)}``.
    """

    stem: str
    artefacts: dict[str, bytes] = field(repr=False)
    label: str = ""
    demo: bool = False
    report: dict[str, Any] = field(default_factory=dict, repr=False)
    deliveries: list[dict[str, str]] = field(default_factory=list)
    study_instance_uid: str = ""
    #: Outputs that could not be rendered (``stage="report"``); the other artefacts are intact.
    errors: list[ErrorRecord] = field(default_factory=list)
    #: "image" (one per decision) or "study" (a roll-up that a later, fuller one replaces).
    kind: str = "image"

    def __repr__(self) -> str:
        return f"ReportBundle({self.stem}, {sorted(self.artefacts)})"


__all__ = [
    "DEMO_BANNER", "Decision", "EmbeddingBatch", "ErrorRecord", "Finding", "ImageBatch", "ImageContext",
    "ImageRecord", "ModelInfo", "PRIORITIES", "PatientIdentity", "ROUTINE", "ReportBundle", "STAT", "priority_rank",
]
