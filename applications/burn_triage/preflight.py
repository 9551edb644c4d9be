"""Checks that need no model: run before burn-triage loads BiomedCLIP (which takes seconds), so a
mistake costs one clear line, not a wait and a traceback.

:func:`preflight` collects every problem it finds — the engine choice on this machine, the
weights and head files, the input (a folder holding only files the loader ignores) and the
series-selection rules — and raises one :class:`~.schema.SettingsError` listing them.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from .schema import SettingsError
from .settings import resolve_engine_choice


def _engine(settings: dict[str, Any]) -> list[str]:
    from burnscope.engines.base import EngineError, check_engine_choice

    inference = settings["inference"]
    backend, precision = resolve_engine_choice(inference)
    try:
        if backend == "tensorrt":
            from burnscope.engines.tensorrt_backend import require_tensorrt

            require_tensorrt()
        check_engine_choice(backend, precision, inference["device"])
    except EngineError as exc:
        return [f"inference: {exc}"]
    if settings["source"].get("gpu_decode") == "on":
        from burnscope.operators.dicom_loader import gpu_jpeg

        if not gpu_jpeg.available():
            return ["source.gpu_decode: on, but nvImageCodec or a GPU is not usable here (choose auto or off)"]
    if settings["preprocess"]["device"] == "gpu":
        from burnscope.common.gpu import cupy_usable

        if not cupy_usable():
            return ["preprocess.device: gpu, but CuPy cannot use a GPU on this machine (choose auto or cpu)"]
    return []


def _model(model: str | os.PathLike | None, settings: dict[str, Any]) -> list[str]:
    from burnscope.engines.model import find_weights, load_model_config
    from burnscope.engines.model_folder import find_model_folder

    problems = []
    try:
        if find_model_folder(model or os.environ.get("HOLOSCAN_MODEL_PATH")) is None:
            find_weights(model)
            load_model_config(settings["inference"]["model_config"])
    except (FileNotFoundError, ValueError) as exc:
        problems.append(f"model: {str(exc).splitlines()[0]}")
    head = settings["burn_severity"].get("head")
    if head:
        from burnscope.operators.burn_severity.core import BurnHead, HeadError

        try:
            BurnHead.load(head)
        except HeadError as exc:
            problems.append(f"burn_severity.head: {exc}")
    return problems


def _input(settings: dict[str, Any], input_path: Path | None) -> list[str]:
    source = settings["source"]
    problems = []
    if source["kind"] == "folder":
        if input_path is None:
            return ["-i/--input is required (or --watch DIR / --listen PORT)"]
        if not input_path.exists():
            return [f"input not found: {input_path}"]
        from burnscope.operators.dicom_loader.scanning import DEFAULT_IGNORE, _ignored, scan

        if not scan(input_path):
            present = [p for p in ([input_path] if input_path.is_file() else input_path.rglob("*")) if p.is_file()]
            if not present:
                problems.append(f"input folder is empty: {input_path}")
            else:
                rules = Counter(next((r for r in DEFAULT_IGNORE if _ignored(p.name, (r,))), "hidden folder") for p in present)
                shown = ", ".join(f"{n} × {rule}" for rule, n in rules.most_common())
                problems.append(f"input {input_path}: no file to read; all {len(present)} are ignored by name ({shown})")
    if source.get("select") is not None:
        from burnscope.operators.dicom_loader.selector import SeriesSelector

        try:
            SeriesSelector(source["select"])
        except (ValueError, OSError) as exc:
            problems.append(f"source.select: {exc}")
    return problems


def preflight(settings: dict[str, Any], input_path: Path | None, model: str | os.PathLike | None = None,
              check_input: bool = True) -> None:
    """Raise :class:`SettingsError` naming every problem found without loading the model.

    ``check_input=False``: this process reads no input (a distributed worker without the ingest
    fragment)."""
    problems = (_input(settings, input_path) if check_input else []) + _engine(settings) + _model(model, settings)
    if problems:
        raise SettingsError("\n".join(problems))


__all__ = ["preflight"]
