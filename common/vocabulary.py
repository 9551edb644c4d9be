"""The burn-depth vocabulary: one definition of the classes every part of burnscope speaks.

Class keys are stable identifiers: they are the labels in reports, the sub-folder names of a
training set and the keys of the prompt ensemble (``burn_depth_prompts.yaml`` beside this
module). Depths follow the American Burn Association: superficial (first degree, not counted
in TBSA), superficial partial-thickness, deep partial-thickness, full-thickness. The head also
knows "not a burn / unusable image", and a finding is :data:`NEEDS_REVIEW` when the head
abstains.

Codes are plain data (:class:`Code`) so that this module needs no DICOM library; the report
package turns them into highdicom ``CodedConcept`` s. Only SNOMED CT concepts checked against a
published source are used; the other classes carry a code of the local scheme
:data:`LOCAL_SCHEME` (see docs/integration.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

SUPERFICIAL = "superficial"
SUPERFICIAL_PARTIAL_THICKNESS = "superficial_partial_thickness"
DEEP_PARTIAL_THICKNESS = "deep_partial_thickness"
FULL_THICKNESS = "full_thickness"
NOT_BURN = "not_burn"
#: Label of a finding when the head abstains (confidence below the threshold).
NEEDS_REVIEW = "needs_review"

#: ABA burn depths, shallow to deep.
DEPTHS = (SUPERFICIAL, SUPERFICIAL_PARTIAL_THICKNESS, DEEP_PARTIAL_THICKNESS, FULL_THICKNESS)
#: What the burn-depth head classifies: the depths, then "not a burn / image unusable".
CLASSES = DEPTHS + (NOT_BURN,)
#: Depths counted in TBSA for resuscitation (superficial / first-degree burns are not).
COUNTED_DEPTHS = frozenset(DEPTHS[1:])
PARTIAL_DEPTHS = frozenset({SUPERFICIAL_PARTIAL_THICKNESS, DEEP_PARTIAL_THICKNESS})
#: Depths the ABA referral guideline treats as needing immediate consultation in special areas.
DEEP_DEPTHS = frozenset({DEEP_PARTIAL_THICKNESS, FULL_THICKNESS})

#: Display names, as reports print them.
DISPLAY_NAMES = {
    SUPERFICIAL: "Superficial (first degree)",
    SUPERFICIAL_PARTIAL_THICKNESS: "Superficial partial-thickness",
    DEEP_PARTIAL_THICKNESS: "Deep partial-thickness",
    FULL_THICKNESS: "Full-thickness",
    NOT_BURN: "Not a burn / unusable image",
    NEEDS_REVIEW: "Undetermined (needs clinician review)",
}

#: Private coding scheme of burnscope (DICOM PS3.16: designators starting with "99" are local).
#: Code values are at most 16 characters (VR SH).
LOCAL_SCHEME = "99BURNSCOPE"
SNOMED_CT = "SCT"


@dataclass(frozen=True)
class Code:
    """A coded concept as plain data: code value, coding scheme designator, code meaning."""

    value: str
    scheme: str
    meaning: str


#: Class key (and :data:`NEEDS_REVIEW`) → code.
CODES = {
    SUPERFICIAL: Code("superficial", LOCAL_SCHEME, "Superficial burn (first degree)"),
    SUPERFICIAL_PARTIAL_THICKNESS: Code("sup_partial", LOCAL_SCHEME, "Superficial partial-thickness burn"),
    DEEP_PARTIAL_THICKNESS: Code("262588000", SNOMED_CT, "Deep partial thickness burn"),
    FULL_THICKNESS: Code("full_thickness", LOCAL_SCHEME, "Full-thickness burn"),
    NOT_BURN: Code("not_burn", LOCAL_SCHEME, "Not a burn or unusable image"),
    NEEDS_REVIEW: Code("needs_review", LOCAL_SCHEME, "Undetermined, needs clinician review"),
}


def display_name(label: str) -> str:
    """Human-readable name of a class key (other keys are shown with "_" as spaces)."""
    return DISPLAY_NAMES.get(label, label.replace("_", " ").strip().capitalize() or "(none)")


def depth_rank(label: str) -> int | None:
    """1 (superficial) … 4 (full-thickness) for a depth; None for anything else."""
    return DEPTHS.index(label) + 1 if label in DEPTHS else None


def default_prompts_path() -> Path:
    """The prompt ensemble of the zero-shot head that ships with burnscope."""
    return Path(str(resources.files(__package__).joinpath("burn_depth_prompts.yaml")))


__all__ = [
    "CLASSES", "CODES", "COUNTED_DEPTHS", "Code", "DEEP_DEPTHS", "DEEP_PARTIAL_THICKNESS", "DEPTHS",
    "DISPLAY_NAMES", "FULL_THICKNESS", "LOCAL_SCHEME", "NEEDS_REVIEW", "NOT_BURN", "PARTIAL_DEPTHS",
    "SNOMED_CT", "SUPERFICIAL", "SUPERFICIAL_PARTIAL_THICKNESS", "default_prompts_path", "depth_rank",
    "display_name",
]
