"""``json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False)``, byte for byte, faster.

With an ``indent`` the standard library encodes in pure Python (its C encoder only runs
without one), generator by generator; for a report of ~1,000 values that is most of the cost of
a JSON report. :func:`dumps_indent2` builds the same text with one recursive join, strings
escaped by the library's own C function. Anything it does not handle exactly as ``json`` does
(subclasses of the JSON types, NumPy scalars, non-string keys, NaN/Infinity, cycles) is handed
to ``json.dumps``, which then produces the text or raises its own error.
"""

from __future__ import annotations

import json
import math
from json.encoder import encode_basestring
from typing import Any

_INDENT = "  "


class _Fallback(Exception):
    """The value needs ``json.dumps`` itself."""


def _encode(value: Any, newline: str) -> str:
    kind = type(value)
    if kind is str:
        return encode_basestring(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if kind is int:
        return int.__repr__(value)
    if kind is float:
        if not math.isfinite(value):
            raise _Fallback
        return float.__repr__(value)
    if kind is dict:
        if not value:
            return "{}"
        inner = newline + _INDENT
        parts = []
        for key, item in value.items():
            if type(key) is not str:
                raise _Fallback
            parts.append(encode_basestring(key) + ": " + _encode(item, inner))
        return "{" + inner + ("," + inner).join(parts) + newline + "}"
    if kind is list or kind is tuple:
        if not value:
            return "[]"
        inner = newline + _INDENT
        return "[" + inner + ("," + inner).join([_encode(item, inner) for item in value]) + newline + "]"
    raise _Fallback


def dumps_indent2(value: Any) -> str:
    """The text of ``json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)``."""
    try:
        return _encode(value, "\n")
    except (_Fallback, RecursionError):
        return json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)


__all__ = ["dumps_indent2"]
