"""Settings of the burn-triage application: the YAML config beside this file, plus overrides.

Kept apart from the graph so that the CLI can validate options (unknown backend, missing
input) before anything heavy is loaded. The schema of every key is :mod:`.schema`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from .schema import SettingsError, validate_settings

DEFAULT_CONFIG = Path(__file__).with_name("config.yaml")
__all__ = ["DEFAULT_CONFIG", "SettingsError", "load_settings", "read_yaml", "resolve_engine_choice"]


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        elif value is not None:
            merged[key] = value
    return merged


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A settings file as a mapping; a missing, unreadable or malformed file is a SettingsError."""
    path = Path(path)
    if not path.is_file():
        raise SettingsError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"config file {path}: cannot be read ({type(exc).__name__})") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise SettingsError(f"config file {path}: malformed YAML{at}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"config file {path}: expected a mapping of sections, got {type(data).__name__}")
    return data


def load_settings(config: str | Path | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The default config, merged with a user config file and then with CLI overrides, validated.

    ``None`` values in ``overrides`` mean "not given" and leave the config value alone. Raises
    :class:`SettingsError` naming every bad key or value (see :mod:`.schema`).
    """
    settings = read_yaml(DEFAULT_CONFIG)
    if config is not None:
        settings = _merge(settings, read_yaml(config))
    return validate_settings(_merge(settings, overrides or {}))


def resolve_engine_choice(inference: dict[str, Any]) -> tuple[str, str]:
    """``(backend, precision)`` with ``auto`` resolved for this machine.

    On a usable CUDA GPU: torch in FP16 (CUDA graphs), unless ONNX Runtime has its CUDA provider
    and was asked for. On the CPU: ONNX Runtime FP32 (about twice torch eager's speed there).
    """
    from burnscope.common.gpu import torch_cuda_usable

    gpu = inference.get("device", "auto") in ("auto", "gpu", "cuda") and torch_cuda_usable()
    backend = inference["backend"]
    if backend == "auto":
        backend = "torch" if gpu else "onnxruntime"
    precision = inference.get("precision", "auto")
    if precision == "auto":
        precision = "fp16" if gpu and backend in ("torch", "tensorrt") else "fp32"
    return backend, precision
