"""Decision support computed once per distinct case instead of once per image.

The images of one patient usually share their case data (one ``case.json`` per study folder,
or the ``--case`` options), and :func:`~burnscope.operators.decision_support.core.decide_for_finding`
is a pure function of (case, finding label, abstained, body site). :class:`DecisionCache`
memoises it on exactly those inputs: the key is the case's *content* with the type of every
value kept (``1``, ``1.0`` and ``True`` are different keys, as are a list and a tuple, because
the rules treat them differently), so two cases that could decide differently never share an
entry. Each call returns its own copy of the result, so a caller that edits it (the decision
operator prepends the demo banner to the warnings) cannot change what the next image gets.
Cases that cannot be keyed (unhashable values of unknown types) and cases that raise are
computed every time.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

#: Distinct (case, label, abstained, body site) results kept (least recently used dropped).
DEFAULT_SIZE = 1024


class _Unkeyable(Exception):
    pass


def content_key(value: Any) -> Any:
    """A hashable key equal for equal contents of equal types (dicts by sorted items)."""
    kind = type(value)
    if value is None or kind in (str, int, float, bool):
        return (kind.__name__, value)
    if isinstance(value, Mapping):
        try:
            items = sorted(value.items(), key=lambda kv: (type(kv[0]).__name__, kv[0]))
        except TypeError:  # keys that do not order
            raise _Unkeyable from None
        return (kind.__name__, tuple((content_key(k), content_key(v)) for k, v in items))
    if kind in (list, tuple):
        return (kind.__name__, tuple(content_key(v) for v in value))
    raise _Unkeyable


def _copy(value: Any) -> Any:
    """A copy of the dicts and lists of a result (the leaves are immutable)."""
    kind = type(value)
    if kind is dict:
        return {k: _copy(v) for k, v in value.items()}
    if kind is list:
        return [_copy(v) for v in value]
    return value


class DecisionCache:
    """``cache(label, body_site, case, abstained=...)`` = ``decide(label, body_site, case, abstained=...)``,
    computed once per distinct input (LRU of ``size`` entries); ``hits``/``misses`` count calls."""

    def __init__(self, decide: Callable[..., dict[str, Any]], size: int = DEFAULT_SIZE) -> None:
        self.decide = decide
        self.size = max(0, int(size))
        self._entries: OrderedDict[Any, dict[str, Any]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __call__(self, label: str, body_site: str, case: Mapping[str, Any], *, abstained: bool) -> dict[str, Any]:
        try:
            key = (label, body_site, bool(abstained), content_key(case))
        except (_Unkeyable, RecursionError):
            key = None
        if key is not None and self.size:
            cached = self._entries.get(key)
            if cached is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return _copy(cached)
        self.misses += 1
        result = self.decide(label, body_site, case, abstained=abstained)  # CaseError propagates, uncached
        if key is not None and self.size:
            self._entries[key] = _copy(result)
            if len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return result

    def clear(self) -> None:
        self._entries.clear()


__all__ = ["DEFAULT_SIZE", "DecisionCache", "content_key"]
