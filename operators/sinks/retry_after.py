"""HTTP ``Retry-After`` (RFC 9110 §10.2.3): how long a server asked a client to wait.

A DICOMweb or FHIR server that answers 429 (too many requests) or 503 (unavailable) may say
when to come back, as a number of seconds or as an HTTP date. The outbox then schedules the
next attempt no earlier than that (and no earlier than its own backoff).
"""

from __future__ import annotations

import datetime as _dt
from email.utils import parsedate_to_datetime
from typing import Any

#: A server asking for more than a day is taken at its word up to a day.
MAX_RETRY_AFTER_S = 86_400.0


def retry_after_seconds(value: str | None, now: _dt.datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header value; None when absent or unreadable."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    if text.isdigit():
        return min(float(text), MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return min(max(0.0, (when - now).total_seconds()), MAX_RETRY_AFTER_S)


def retry_after_of(response: Any) -> float | None:
    """The ``Retry-After`` of a ``requests`` response (None without one)."""
    headers = getattr(response, "headers", None) or {}
    return retry_after_seconds(headers.get("Retry-After"))


__all__ = ["MAX_RETRY_AFTER_S", "retry_after_of", "retry_after_seconds"]
