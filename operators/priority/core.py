"""The emergency lane's rules and queue (no Holoscan import).

An image is **STAT** when any of these says so (:class:`PriorityRules`):

* the C-STORE request's DIMSE Priority is HIGH (``dimse_high_is_stat``);
* the calling AE title is one of ``stat_calling_aets`` (for example the emergency department's
  camera);
* a DICOM attribute rule matches, e.g. ``{"attribute": "RequestedProcedurePriority", "equals":
  ["STAT"]}`` — the attribute is looked up in the dataset and in its sequences (Request
  Attributes Sequence holds the order's priority in most images);
* the case sidecar says ``"priority": "stat"`` (``sidecar``).

Everything else is routine. The decision travels in
:class:`~burnscope.common.messages.ImageContext` (``priority``, ``priority_reason``), so every
queue of the graph — source, batcher, reporting pool — can let STAT images overtake
(:class:`PriorityQueue`: STAT first, then first come first served).
"""

from __future__ import annotations

import difflib
import heapq
import itertools
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from burnscope.common.messages import PRIORITIES, ROUTINE, STAT, ImageContext, priority_rank

#: DIMSE Priority values of a C-STORE request (PS3.7 C.4.2.1.4).
DIMSE_MEDIUM, DIMSE_HIGH, DIMSE_LOW = 0x0000, 0x0001, 0x0002
#: How deep :func:`find_attribute` looks into sequences.
_MAX_DEPTH = 3


class PriorityRuleError(ValueError):
    """A priority rule that cannot work (unknown attribute keyword, empty value list)."""


def _known_keyword(keyword: str) -> bool:
    from pydicom.datadict import tag_for_keyword

    return tag_for_keyword(keyword) is not None


def check_keyword(keyword: str) -> str:
    """``keyword`` if it is a DICOM attribute keyword; else a PriorityRuleError naming the closest."""
    if _known_keyword(keyword):
        return keyword
    from pydicom.datadict import keyword_dict

    close = difflib.get_close_matches(keyword, list(keyword_dict), n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise PriorityRuleError(f"unknown DICOM keyword {keyword!r}{hint}")


@dataclass(frozen=True)
class AttributeRule:
    """STAT when the DICOM attribute ``attribute`` (a keyword) equals one of ``equals``
    (compared without case and surrounding spaces)."""

    attribute: str
    equals: tuple[str, ...]

    def __post_init__(self) -> None:
        check_keyword(self.attribute)
        if not self.equals:
            raise PriorityRuleError(f"rule on {self.attribute}: 'equals' lists no value")
        object.__setattr__(self, "equals", tuple(str(v).strip().upper() for v in self.equals))

    def matches(self, ds: Any) -> bool:
        return any(str(v).strip().upper() in self.equals for v in find_attribute(ds, self.attribute))

    @property
    def reason(self) -> str:
        return f"attribute:{self.attribute}"


def find_attribute(ds: Any, keyword: str, depth: int = 0) -> list[Any]:
    """Values of ``keyword`` in ``ds`` and in the items of its sequences (a few levels deep)."""
    found: list[Any] = []
    value = ds.get(keyword) if hasattr(ds, "get") else None
    if value not in (None, ""):
        found.extend(value if isinstance(value, (list, tuple)) else [value])
    if depth >= _MAX_DEPTH:
        return found
    for elem in ds:
        if getattr(elem, "VR", "") == "SQ" and elem.keyword != "PixelData":
            for item in elem.value or []:
                found.extend(find_attribute(item, keyword, depth + 1))
    return found


@dataclass
class PriorityRules:
    """When an image is STAT (see the module docstring). Picklable: the loader may run it in
    its worker processes."""

    dimse_high_is_stat: bool = True
    stat_calling_aets: tuple[str, ...] = ()
    rules: tuple[AttributeRule, ...] = ()
    sidecar: bool = True

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None) -> "PriorityRules":
        """From the ``priority`` section (:class:`~.schema`-validated); bad rules raise
        :class:`PriorityRuleError` with the rule's position."""
        s = dict(settings or {})
        rules = []
        for i, rule in enumerate(s.get("rules") or []):
            try:
                values = rule.get("equals")
                rules.append(AttributeRule(str(rule["attribute"]),
                                           tuple([values] if isinstance(values, str) else values or ())))
            except (KeyError, TypeError) as exc:
                raise PriorityRuleError(f"priority.rules[{i}]: needs 'attribute' and 'equals' ({exc})") from None
            except PriorityRuleError as exc:
                raise PriorityRuleError(f"priority.rules[{i}]: {exc}") from None
        return cls(
            dimse_high_is_stat=bool(s.get("dimse_high_is_stat", True)),
            stat_calling_aets=tuple(str(a).strip() for a in s.get("stat_calling_aets") or ()),
            rules=tuple(rules),
            sidecar=bool(s.get("sidecar", True)),
        )

    # -- the decision --------------------------------------------------------------------
    def from_transfer(self, dimse_priority: int | None = None, calling_aet: str | None = None) -> str:
        """The reason a C-STORE request makes its image STAT ('' when it does not)."""
        if self.dimse_high_is_stat and dimse_priority == DIMSE_HIGH:
            return "dimse_priority_high"
        if calling_aet is not None and calling_aet.strip() in self.stat_calling_aets:
            return "calling_aet"
        return ""

    def from_dataset(self, ds: Any) -> str:
        """The reason the dataset's own attributes make it STAT ('' when they do not)."""
        for rule in self.rules:
            if rule.matches(ds):
                return rule.reason
        return ""

    def from_case(self, case: Mapping[str, Any]) -> str:
        """'sidecar' when the case data say ``"priority": "stat"``."""
        if self.sidecar and str(case.get("priority", "")).strip().lower() == STAT:
            return "sidecar"
        return ""

    def classify(
        self, ds: Any = None, case: Mapping[str, Any] | None = None,
        dimse_priority: int | None = None, calling_aet: str | None = None,
    ) -> tuple[str, str]:
        """``(priority, reason)`` of one image from everything known about it."""
        reason = self.from_transfer(dimse_priority, calling_aet)
        reason = reason or (self.from_dataset(ds) if ds is not None else "")
        reason = reason or self.from_case(case or {})
        return (STAT, reason) if reason else (ROUTINE, "")

    def apply(self, context: ImageContext, ds: Any = None, dimse_priority: int | None = None,
              calling_aet: str | None = None) -> ImageContext:
        """Marks ``context`` STAT when a rule says so (a STAT context stays STAT); the case's
        ``priority`` key is taken out of the case data (the report states the priority itself)."""
        priority, reason = self.classify(ds, context.case, dimse_priority, calling_aet)
        context.case.pop("priority", None)
        if priority == STAT and not context.is_stat:
            context.priority, context.priority_reason = STAT, reason
        return context


def mark(contexts: Iterable[ImageContext], reason: str) -> None:
    """Marks contexts STAT for ``reason`` (those already STAT keep their first reason)."""
    for ctx in contexts:
        if not ctx.is_stat:
            ctx.priority, ctx.priority_reason = STAT, reason


T = TypeVar("T")


@dataclass(order=True)
class _Entry(Generic[T]):
    rank: int
    seq: int
    item: T = field(compare=False)


class PriorityQueue(Generic[T]):
    """STAT first, then first in first out; thread-safe. ``push(item, priority)``, ``pop()``.

    ``len()`` and :meth:`depth` (per priority) are what the queue-depth metrics show.
    """

    def __init__(self) -> None:
        self._heap: list[_Entry[T]] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._counts = {p: 0 for p in PRIORITIES}

    def push(self, item: T, priority: str = ROUTINE) -> None:
        priority = STAT if priority == STAT else ROUTINE
        with self._lock:
            heapq.heappush(self._heap, _Entry(priority_rank(priority), next(self._seq), item))
            self._counts[priority] += 1

    def extend(self, items: Iterable[tuple[T, str]]) -> None:
        for item, priority in items:
            self.push(item, priority)

    def _pop_locked(self) -> T:
        entry = heapq.heappop(self._heap)
        self._counts[STAT if entry.rank == 0 else ROUTINE] -= 1
        return entry.item

    def pop(self) -> T:
        """The first item (IndexError when empty)."""
        with self._lock:
            return self._pop_locked()

    def pop_many(self, n: int) -> list[T]:
        """Up to ``n`` items, in order."""
        with self._lock:
            return [self._pop_locked() for _ in range(min(n, len(self._heap)))]

    def peek(self) -> T | None:
        with self._lock:
            return self._heap[0].item if self._heap else None

    def items(self) -> Sequence[T]:
        """Every queued item, in the order they would leave (a copy)."""
        with self._lock:
            return [e.item for e in sorted(self._heap)]

    def depth(self, priority: str | None = None) -> int:
        with self._lock:
            return len(self._heap) if priority is None else self._counts.get(priority, 0)

    def __len__(self) -> int:
        return self.depth()

    def __bool__(self) -> bool:
        return self.depth() > 0


__all__ = [
    "AttributeRule", "DIMSE_HIGH", "DIMSE_LOW", "DIMSE_MEDIUM", "PriorityQueue", "PriorityRuleError",
    "PriorityRules", "check_keyword", "find_attribute", "mark",
]
