"""Study → series → instance grouping and a rule-based series selector (no Holoscan).

Rules are data (JSON or a dict), so a site can pick, say, only VL Photographic series without
code::

    {"selections": [
        {"name": "photographs",
         "include": {"SOPClassUID": ["1.2.840.10008.5.1.4.1.1.77.1.4"], "Modality": "XC",
                     "Rows": {"range": [200, null]}},
         "exclude": {"ImageType": {"regex": "DERIVED"},
                     "SeriesDescription": {"regex": "(?i)consent|document"}}}
    ]}

A dataset is selected when **any** selection matches: every ``include`` condition holds and no
``exclude`` condition does. Conditions name a tag by keyword (``Modality``), ``"(0008,0060)"``
or ``"00080060"``; the value is matched as:

* a string or number: equal (strings case-insensitive, surrounding spaces ignored);
* a list: equal to any item;
* ``{"regex": "..."}``: ``re.search`` on the text;
* ``{"range": [low, high]}``: numeric, inclusive, ``null`` for an open end;
* ``{"present": true|false}``: the element exists (with a value) or not.

Multi-valued elements (ImageType) match when any value does. Series-level tags are the same for
every instance of a series, so judging each instance selects whole series.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.datadict import tag_for_keyword
from pydicom.multival import MultiValue
from pydicom.tag import Tag

from burnscope.common.messages import ImageRecord


class RuleError(ValueError):
    """A selector rule that cannot be understood (names the selection and the tag)."""


def _tag(name: str) -> int:
    text = name.strip()
    if re.fullmatch(r"\(?[0-9A-Fa-f]{4},?[0-9A-Fa-f]{4}\)?", text):
        digits = re.sub(r"[^0-9A-Fa-f]", "", text)
        return int(Tag(int(digits[:4], 16), int(digits[4:], 16)))
    tag = tag_for_keyword(text)
    if tag is None:
        raise RuleError(f"unknown DICOM keyword {name!r}")
    return int(tag)


def _values(ds: Dataset, tag: int) -> list[Any] | None:
    elem = ds.get(tag)
    if elem is None or elem.value is None or elem.value == "":
        return None
    value = elem.value
    if isinstance(value, (list, tuple, MultiValue)):
        return list(value) or None  # an empty sequence has no value
    return [value]


def _equal(actual: Any, expected: Any) -> bool:
    if isinstance(expected, (int, float)) and not isinstance(expected, bool):
        try:
            return float(actual) == float(expected)
        except (TypeError, ValueError):
            return False
    return str(actual).strip().lower() == str(expected).strip().lower()


@dataclass
class _Condition:
    tag: int
    keyword: str
    spec: Any

    def holds(self, ds: Dataset) -> bool:
        values = _values(ds, self.tag)
        spec = self.spec
        if isinstance(spec, Mapping) and "present" in spec:
            return (values is not None) == bool(spec["present"])
        if values is None:
            return False
        if isinstance(spec, Mapping) and "regex" in spec:
            pattern = re.compile(spec["regex"])
            return any(pattern.search(str(v)) for v in values)
        if isinstance(spec, Mapping) and "range" in spec:
            low, high = spec["range"]
            for v in values:
                try:
                    number = float(v)
                except (TypeError, ValueError):
                    continue
                if (low is None or number >= low) and (high is None or number <= high):
                    return True
            return False
        if isinstance(spec, list):
            return any(_equal(v, item) for v in values for item in spec)
        return any(_equal(v, spec) for v in values)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str) or _is_number(value)


def _check_spec(where: str, value: Any) -> None:
    """Raises :class:`RuleError` unless ``value`` is a condition the module docstring describes."""
    if isinstance(value, Mapping):
        known = {"regex", "range", "present"}
        if not set(value) <= known or len(value) != 1:
            raise RuleError(f"{where}: use one of {sorted(known)}, not {sorted(map(str, value))}")
        if "regex" in value:
            if not isinstance(value["regex"], str):
                raise RuleError(f"{where}: regex must be a string")
            try:
                re.compile(value["regex"])
            except (re.error, RecursionError, OverflowError) as exc:
                raise RuleError(f"{where}: bad regex: {exc}") from None
        if "range" in value:
            bounds = value["range"]
            if not isinstance(bounds, list) or len(bounds) != 2 or not all(b is None or _is_number(b) for b in bounds):
                raise RuleError(f"{where}: range must be [low, high] (numbers or null)")
        if "present" in value and not isinstance(value["present"], bool):
            raise RuleError(f"{where}: present must be true or false")
    elif isinstance(value, list):
        if not value or not all(_is_scalar(item) for item in value):
            raise RuleError(f"{where}: a list must hold strings or numbers")
    elif not _is_scalar(value):
        raise RuleError(f"{where}: expected a string, a number, a list or one of regex/range/present")


def _conditions(selection: str, spec: Any) -> list[_Condition]:
    if spec is None:
        return []
    if not isinstance(spec, Mapping):
        raise RuleError(f"selection {selection!r}: include/exclude must be an object of tag: condition")
    out = []
    for key, value in spec.items():
        try:
            tag = _tag(str(key))
        except RuleError as exc:
            raise RuleError(f"selection {selection!r}: {exc}") from None
        _check_spec(f"selection {selection!r}, {key}", value)
        out.append(_Condition(tag, str(key), value))
    return out


@dataclass
class _Selection:
    name: str
    include: list[_Condition]
    exclude: list[_Condition]

    def matches(self, ds: Dataset) -> bool:
        return all(c.holds(ds) for c in self.include) and not any(c.holds(ds) for c in self.exclude)


def _is_file(path: str | os.PathLike) -> bool:
    try:
        return Path(path).is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte
        return False


class SeriesSelector:
    """Selects datasets (hence series) by JSON rules; see the module docstring for the format."""

    def __init__(self, rules: Mapping[str, Any] | list[Mapping[str, Any]] | str | os.PathLike) -> None:
        if isinstance(rules, (str, os.PathLike)) and _is_file(rules):
            try:
                rules = json.loads(Path(rules).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise RuleError(f"cannot read the rules file {Path(rules).name}: {exc}") from None
        elif isinstance(rules, str):
            try:
                rules = json.loads(rules)
            except ValueError as exc:
                raise RuleError(f"rules are neither a file nor valid JSON: {exc}") from None
        selections = rules.get("selections") if isinstance(rules, Mapping) else rules
        if not isinstance(selections, list) or not selections:
            raise RuleError("rules need a non-empty 'selections' list")
        self.selections = []
        for i, sel in enumerate(selections):
            if not isinstance(sel, Mapping):
                raise RuleError(f"selection #{i + 1} is not an object")
            unknown = set(sel) - {"name", "include", "exclude"}
            if unknown:
                raise RuleError(f"selection #{i + 1}: unknown key(s) {sorted(unknown)}")
            name = str(sel.get("name") or f"selection-{i + 1}")
            self.selections.append(_Selection(name, _conditions(name, sel.get("include")),
                                              _conditions(name, sel.get("exclude"))))

    def match(self, ds: Dataset) -> str | None:
        """Name of the first selection ``ds`` matches, or None."""
        return next((s.name for s in self.selections if s.matches(ds)), None)

    def __call__(self, ds: Dataset) -> bool:
        return self.match(ds) is not None


# ------------------------------------------------------------------------------ domain objects


@dataclass
class Series:
    series_instance_uid: str
    modality: str = ""
    description: str = ""
    images: list[ImageRecord] = field(default_factory=list)


@dataclass
class Study:
    study_instance_uid: str
    date: str = ""
    description: str = ""
    series: list[Series] = field(default_factory=list)

    @property
    def images(self) -> list[ImageRecord]:
        return [img for s in self.series for img in s.images]


def group_by_study(records: Iterable[ImageRecord]) -> list[Study]:
    """Study → series → image records, in first-seen order (as MONAI Deploy's DICOMStudy)."""
    studies: dict[str, Study] = {}
    series_index: dict[tuple[str, str], Series] = {}
    for record in records:
        ctx = record.context
        study = studies.get(ctx.study_instance_uid)
        if study is None:
            study = studies[ctx.study_instance_uid] = Study(ctx.study_instance_uid, ctx.study_date, ctx.study_description)
        key = (ctx.study_instance_uid, ctx.series_instance_uid)
        series = series_index.get(key)
        if series is None:
            series = series_index[key] = Series(ctx.series_instance_uid, ctx.modality, ctx.series_description)
            study.series.append(series)
        series.images.append(record)
    return list(studies.values())


__all__ = ["RuleError", "Series", "SeriesSelector", "Study", "group_by_study"]
