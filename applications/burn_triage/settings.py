"""Settings of the burn-triage application: the YAML config beside this file, plus overrides.

Kept apart from the graph so that the CLI can validate options (unknown backend, missing
input) before anything heavy is loaded.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

DEFAULT_CONFIG = Path(__file__).with_name("config.yaml")
BACKENDS = ("auto", "onnxruntime", "torch", "tensorrt")
SCHEDULERS = ("greedy", "event_based")
SOURCES = ("folder", "watch", "scp")


class SettingsError(ValueError):
    """A bad option or config value; the message names it."""


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        elif value is not None:
            merged[key] = value
    return merged


def load_settings(config: str | Path | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The default config, merged with a user config file and then with CLI overrides.

    ``None`` values in ``overrides`` mean "not given" and leave the config value alone.
    """
    settings = yaml.safe_load(DEFAULT_CONFIG.read_text())
    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise SettingsError(f"config file not found: {path}")
        settings = _merge(settings, yaml.safe_load(path.read_text()) or {})
    settings = _merge(settings, overrides or {})
    validate(settings)
    return settings


def resolve_engine_choice(inference: dict[str, Any]) -> tuple[str, str]:
    """``(backend, precision)`` with ``auto`` resolved for this machine.

    On a usable CUDA GPU: torch in FP16 (CUDA graphs), unless ONNX Runtime has its CUDA provider
    and was asked for. On the CPU: ONNX Runtime FP32 (about twice torch eager's speed there).
    """
    from burnscope.operators.gpu import torch_cuda_usable

    gpu = inference.get("device", "auto") in ("auto", "gpu", "cuda") and torch_cuda_usable()
    backend = inference["backend"]
    if backend == "auto":
        backend = "torch" if gpu else "onnxruntime"
    precision = inference.get("precision", "auto")
    if precision == "auto":
        precision = "fp16" if gpu and backend in ("torch", "tensorrt") else "fp32"
    return backend, precision


def validate(settings: dict[str, Any]) -> None:
    backend = settings["inference"]["backend"]
    if backend not in BACKENDS:
        raise SettingsError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    source = settings["source"]["kind"]
    if source not in SOURCES:
        raise SettingsError(f"unknown source kind {source!r}; choose one of: {', '.join(SOURCES)}")
    kind = settings["scheduler"]["kind"]
    if kind not in SCHEDULERS:
        raise SettingsError(f"unknown scheduler {kind!r}; choose one of: {', '.join(SCHEDULERS)}")
    batch = settings["source"]["batch_size"]
    if not isinstance(batch, int) or batch < 1:
        raise SettingsError(f"source.batch_size must be a positive integer, got {batch!r}")
    threshold = settings["burn_severity"]["abstain_threshold"]
    if not 0.0 <= float(threshold) <= 1.0:
        raise SettingsError(f"burn_severity.abstain_threshold must be within 0–1, got {threshold!r}")
