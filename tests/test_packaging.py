"""Packaging: one distribution, everything under the burnscope namespace."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAPPING = {"operators": "burnscope.operators", "engines": "burnscope.engines", "applications": "burnscope.applications"}


def _declared_packages() -> set[str]:
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])


def test_every_package_folder_is_declared():
    found = set()
    for folder, name in MAPPING.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *relative)))
    assert found == _declared_packages()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
    )
    return next(out.glob("burnscope-*.whl"))


def test_wheel_installs_only_the_burnscope_namespace(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top_level == {"burnscope"}
    assert "burnscope/__init__.py" not in names  # burnscope stays a namespace package
    for needed in (
        "burnscope/operators/messages.py",
        "burnscope/engines/configs/biomedclip.json",
        "burnscope/applications/burn_triage/config.yaml",
        "burnscope/operators/burn_severity/prompts.yaml",
        "burnscope/applications/review/templates/image.html",
        "burnscope/applications/review/static/bodychart.js",
        "burnscope/applications/review/static/app.css",
    ):
        assert needed in names


def test_console_script_is_declared(wheel):
    with zipfile.ZipFile(wheel) as zf:
        entry_points = next(n for n in zf.namelist() if n.endswith("entry_points.txt"))
        assert "burnscope = burnscope.applications.cli:main" in zf.read(entry_points).decode()
