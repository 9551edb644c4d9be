"""Test kinds by folder: ``unit`` (one component, in-process), ``integration`` (the app, the CLI,
servers, subprocesses, wheels), ``gpu`` (needs a usable CUDA GPU; skipped with a reason on a CPU
machine). Each test gets its folder's marker, so ``pytest -m unit`` or ``-m "not slow"`` select
them; ``slow`` and ``network`` are set on the tests themselves."""

from __future__ import annotations

from pathlib import Path

import pytest

_KINDS = ("unit", "integration", "gpu")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        for kind in _KINDS:
            if kind in parts:
                item.add_marker(getattr(pytest.mark, kind))
