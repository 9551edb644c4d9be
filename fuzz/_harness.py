"""Shared pieces of the fuzz harnesses (atheris, libFuzzer underneath).

Each ``fuzz_<parser>.py`` defines ``TestOneInput(data: bytes)``: it feeds ``data`` to one parser
that takes outside input and lets an exception escape only when it is *outside* the parser's
structured error taxonomy (a bug). Run one directly::

    python fuzz/fuzz_selector.py -runs=100000 -timeout=5 -rss_limit_mb=2048 fuzz/corpus/selector

or all of them with ``fuzz/campaign.py``. ``fuzz/seeds.py`` writes the seed corpora (made from
``sample_data``) under ``fuzz/corpus/`` (not committed).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import atheris

REPO = Path(__file__).resolve().parent.parent
#: Modules whose Python code is instrumented for coverage feedback.
INSTRUMENT = ("burnscope", "pydicom", "pynetdicom", "PIL")


def workdir(name: str) -> Path:
    """A private scratch folder for one harness process (RAM-backed when /dev/shm exists)."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix=f"burnscope-fuzz-{name}-", dir=base))


def quiet() -> None:
    """No log or warning output per input: libFuzzer's status lines stay readable and fast."""
    import logging
    import warnings

    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")


_KEYS_FALLBACK = ("a", "b", "name")


def json_value(fdp: atheris.FuzzedDataProvider, keys: tuple[str, ...] = _KEYS_FALLBACK, depth: int = 0) -> Any:
    """A JSON-like value built from the fuzzer's bytes, with object keys drawn from ``keys``.

    Byte mutations of JSON text rarely stay valid JSON; building the value from the input
    reaches the code behind the JSON parser far more often.
    """
    kind = fdp.ConsumeIntInRange(0, 9 if depth < 4 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return fdp.ConsumeBool()
    if kind == 2:
        return fdp.ConsumeIntInRange(-(2**40), 2**40)
    if kind == 3:
        return fdp.ConsumeRegularFloat() if fdp.ConsumeBool() else fdp.ConsumeFloat()
    if kind in (4, 5):
        if fdp.ConsumeBool() and keys:
            return keys[fdp.ConsumeIntInRange(0, len(keys) - 1)]
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 24))
    if kind in (6, 7):
        return [json_value(fdp, keys, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    out: dict[str, Any] = {}
    for _ in range(fdp.ConsumeIntInRange(0, 6)):
        key = keys[fdp.ConsumeIntInRange(0, len(keys) - 1)] if fdp.ConsumeProbability() < 0.9 else \
            fdp.ConsumeUnicodeNoSurrogates(8)
        out[key] = json_value(fdp, keys, depth + 1)
    return out


def json_input(data: bytes, keys: tuple[str, ...]) -> tuple[str, Any]:
    """Either the raw bytes parsed as JSON text (first byte even) or a value built from them.

    Returns ``(text, value)``; ``value`` is ``json.JSONDecodeError``-free only in the second
    case; the first may raise ``ValueError`` (that is the JSON reader's own error).
    """
    if not data or data[0] % 2 == 0:
        text = data[1:].decode("utf-8")  # UnicodeDecodeError is a ValueError
        return text, json.loads(text)
    value = json_value(atheris.FuzzedDataProvider(data[1:]), keys)
    return json.dumps(value), value


def main(test_one_input: Callable[[bytes], None]) -> None:
    """libFuzzer's command line (``-runs=N``, ``-timeout=S``, corpus folders...)."""
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
