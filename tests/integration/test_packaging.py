"""Packaging: one distribution, everything under the burnscope namespace, usable without a checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from fixtures import REPO, clean_source_tree

ROOT = REPO
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
#: Top-level folder → package name, as pyproject's package-dir maps them.
MAPPING = {folder: name for name, folder in SETUPTOOLS["package-dir"].items()}


def _declared_packages() -> set[str]:
    return set(SETUPTOOLS["packages"])


def test_every_package_folder_is_declared():
    found, data_only = set(), set()
    for folder, name in MAPPING.items():
        root = ROOT / folder
        for directory in [root, *(p for p in root.rglob("*") if p.is_dir() and "__pycache__" not in p.parts)]:
            dotted = ".".join((name, *directory.relative_to(root).parts))
            if (directory / "__init__.py").exists():
                found.add(dotted)
            elif not any(directory.glob("*.py")):
                data_only.add(dotted)
    declared = _declared_packages()
    assert found <= declared, f"packages missing from pyproject: {sorted(found - declared)}"
    assert declared - found <= data_only, f"declared but not folders: {sorted(declared - found - data_only)}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    source = clean_source_tree(tmp_path_factory.mktemp("source"))  # no stale build/ to pick up
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)],
        check=True,
    )
    return next(out.glob("burnscope-*.whl"))


def test_wheel_installs_only_the_burnscope_namespace(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top_level == {"burnscope"}
    assert "burnscope/__init__.py" not in names  # burnscope stays a namespace package
    for needed in (
        "burnscope/common/messages.py",
        "burnscope/engines/configs/biomedclip.json",
        "burnscope/applications/burn_triage/config.yaml",
        "burnscope/common/burn_depth_prompts.yaml",
        "burnscope/operators/preprocess/resample.cu",
        "burnscope/applications/cli/__init__.py",
        "burnscope/applications/cli/__main__.py",
        "burnscope/benchmarks/engines.py",
        "burnscope/operators/preprocess/sample_images/README.md",
        "burnscope/applications/review/templates/image.html",
        "burnscope/applications/review/static/bodychart.js",
        "burnscope/applications/review/static/app.css",
    ):
        assert needed in names
    assert len([n for n in names if n.startswith("burnscope/operators/preprocess/sample_images/") and n.endswith(".jpg")]) == 12


def test_no_test_helper_ships_in_the_wheel(wheel):
    archive = zipfile.ZipFile(wheel)
    names = archive.namelist()
    helpers = {p.name: p.read_bytes() for p in (ROOT / "tests" / "fixtures").glob("*.py") if p.name != "__init__.py"}
    assert set(helpers) >= {"examples.py", "orthanc_local.py", "dicom_helpers.py"}  # the check below means something
    # by content, not by name: a package module may share a helper's name (service.py)
    contents = set(helpers.values())
    shipped = [n for n in names if "/fixtures/" in n or "/tests/" in n or archive.read(n) in contents]
    assert not shipped, shipped
    assert not any(n.endswith((".dcm", ".sqlite", ".onnx", ".pt", ".bin")) for n in names)  # no data or weights


def test_console_script_is_declared(wheel):
    with zipfile.ZipFile(wheel) as zf:
        entry_points = next(n for n in zf.namelist() if n.endswith("entry_points.txt"))
        assert "burnscope = burnscope.applications.cli:main" in zf.read(entry_points).decode()


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed (not editable). It sees the dependencies of this
    interpreter through a .pth, as the development worktrees do, and scikit-image not at all."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    dependencies = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (site / "_dependencies.pth").write_text("\n".join(dependencies) + "\n")
    # first on the path: installed code that imports scikit-image (a test extra) fails loudly
    (site / "skimage.py").write_text("raise ImportError('scikit-image is a test extra, not a dependency')\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                    "--no-deps", "--no-index", str(wheel)], check=True)
    return venv


@pytest.mark.slow
def test_installed_wheel_benchmarks_engines_from_an_empty_folder(installed, tmp_path):
    """`burnscope bench engines` with no --images: fidelity images and INT8 calibration come from
    the installed package, not from a checkout (the folder it runs in is empty)."""
    work, cache = tmp_path / "empty", tmp_path / "cache"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HOLOSCAN_MODEL_PATH")}
    env.update(BURNSCOPE_CACHE=str(cache), BURNSCOPE_DEVICE="cpu", COLUMNS="200")
    site = next(installed.glob("lib/python3*/site-packages"))
    where = subprocess.run([str(installed / "bin" / "python"), "-c", "import burnscope.engines as e; print(e.__file__)"],
                           cwd=work, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.strip() == str(site / "burnscope" / "engines" / "__init__.py")
    done = subprocess.run(
        [str(installed / "bin" / "burnscope"), "bench", "engines", "--batch", "1", "--repeat", "2",
         "--model-config", "biomedclip-tiny", "--json", "bench.json"],
        cwd=work, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "BiomedCLIP image tower · 12 images · fidelity vs torch fp32" in done.stdout
    assert "DEMO MODEL (random weights)" in done.stdout
    result = json.loads((work / "bench.json").read_text())
    assert result["meta"]["images"] == 12 and result["meta"]["demo"]
    assert result["meta"]["image_sources"] == [str(site / "burnscope" / "operators" / "preprocess" / "sample_images")]
    measured = {(r["backend"], r["precision"]) for r in result["rows"]}
    # static int8 is calibrated on the same shipped photographs
    assert {("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")} <= measured
    assert all(r["batch"] == 1 and r["images_per_s"] > 0 for r in result["rows"])
    assert sorted(p.name for p in work.iterdir()) == ["bench.json"]  # wrote nothing else where it ran
