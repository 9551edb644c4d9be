"""Typed results of clinical decision support that travel in :class:`~.messages.Decision`.

The decision-support core (``burnscope.operators.decision_support.core``) computes them; the
report renderers read them. Each has ``as_dict()`` in the key order of the JSON report schema
and ``from_dict()`` that rejects unknown or missing keys, so there is one name per value.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

#: Referral levels, strongest first (ABA burn-centre referral guideline, 2022).
LEVEL_TRANSFER = "immediate_consultation_consider_transfer"
LEVEL_CONSULT = "consultation_recommended"
LEVEL_NONE = "none"
REFERRAL_LEVELS = (LEVEL_TRANSFER, LEVEL_CONSULT, LEVEL_NONE)


class _Record:
    """``as_dict`` / ``from_dict`` for the dataclasses below."""

    def as_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        missing = [n for n in names if n not in data]
        if unknown or missing:
            raise ValueError(f"{cls.__name__}: unknown keys {unknown}, missing keys {missing}")
        return cls(**{n: data[n] for n in names})


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class FluidPlan(_Record):
    """First-24-h crystalloid plan (Parkland, or modified Brooke) counted from the time of injury.

    Volumes in mL, rates in mL/h. ``remaining_first_window_ml`` and ``rate_now_ml_per_h`` are
    None when the hours since injury are unknown; the rate is None after hour 24.
    """

    ml_per_kg_per_percent: float
    total_ml_24h: float
    first_8h_ml: float
    next_16h_ml: float
    remaining_first_window_ml: float | None
    rate_now_ml_per_h: float | None
    first_8h_rate_ml_per_h: float
    next_16h_rate_ml_per_h: float


@dataclass(frozen=True)
class UrineOutputTarget(_Record):
    """Hourly urine-output target of resuscitation."""

    ml_per_kg_per_h: float
    ml_per_h: float


@dataclass(frozen=True)
class Referral(_Record):
    """Which ABA burn-centre referral criteria fired; ``level`` is the strongest that fired."""

    recommended: bool
    level: str
    criteria: tuple[str, ...] = ()
    criteria_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.level not in REFERRAL_LEVELS:
            raise ValueError(f"unknown referral level {self.level!r}; expected one of {', '.join(REFERRAL_LEVELS)}")
        object.__setattr__(self, "criteria", tuple(self.criteria))
        object.__setattr__(self, "criteria_ids", tuple(self.criteria_ids))


__all__ = [
    "FluidPlan", "LEVEL_CONSULT", "LEVEL_NONE", "LEVEL_TRANSFER", "REFERRAL_LEVELS", "Referral",
    "UrineOutputTarget",
]
