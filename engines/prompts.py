"""Class text embeddings: a prompt ensemble per burn-depth class, embedded by the model's text
tower once and cached beside the model.

The text tower costs more than the image tower (DESIGN §3), so it runs once per prompt set and
model; the result is cached in the bundle's cache dir under a key made of the prompts' hash and
``bundle.fingerprint`` (rebuilt when either changes). The zero-shot burn head
(:mod:`burnscope.operators.burn_severity.core`, which re-exports these names) scores images
against these embeddings; model folders store them so a fine-tuned model needs no text-tower run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from burnscope.common.vocabulary import CLASSES, default_prompts_path

log = logging.getLogger(__name__)

#: The prompt ensemble that ships with burnscope (``burnscope/common/burn_depth_prompts.yaml``).
DEFAULT_PROMPTS = default_prompts_path()


class PromptError(ValueError):
    """A prompt file (or, as the burn head's ``HeadError``, a head file) that cannot be used."""


def load_prompts(path: str | Path | None = None) -> dict[str, list[str]]:
    """Class → prompt phrasings from a YAML file (:data:`DEFAULT_PROMPTS` by default).

    Each class entry is a list of strings or a mapping with a ``prompts`` list. Every class key
    must be one of :data:`CLASSES` and have at least one phrasing.
    """
    import yaml

    path = Path(path) if path else DEFAULT_PROMPTS
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PromptError(f"{path}: cannot read prompts ({exc})") from exc
    if not isinstance(data, Mapping) or not data:
        raise PromptError(f"{path}: expected a mapping of class name → prompts")
    prompts: dict[str, list[str]] = {}
    for name, entry in data.items():
        if name not in CLASSES:
            raise PromptError(f"{path}: unknown class {name!r}; expected some of {', '.join(CLASSES)}")
        items = entry.get("prompts") if isinstance(entry, Mapping) else entry
        if (
            not isinstance(items, list)
            or not items
            or not all(isinstance(t, str) and t.strip() for t in items)
        ):
            raise PromptError(f"{path}: class {name!r} needs a non-empty list of prompt strings")
        prompts[name] = [t.strip() for t in items]
    return {c: prompts[c] for c in CLASSES if c in prompts}  # canonical order


def prompts_digest(prompts: Mapping[str, Sequence[str]]) -> str:
    """Stable hash of a prompt ensemble (class order and phrasings)."""
    payload = json.dumps([[c, list(p)] for c, p in prompts.items()], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _l2_normalise(x: np.ndarray, axis: int = -1) -> np.ndarray:
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def ensemble_embeddings(per_prompt: np.ndarray, counts: Sequence[int]) -> np.ndarray:
    """Average each class's (normalised) prompt embeddings, then L2-normalise: C×D."""
    rows, start = [], 0
    for n in counts:
        rows.append(_l2_normalise(per_prompt[start : start + n]).mean(axis=0))
        start += n
    return _l2_normalise(np.stack(rows)).astype(np.float32)


def text_cache_path(bundle: Any, prompts: Mapping[str, Sequence[str]]) -> Path:
    """Cache file of the class text embeddings for this model and prompt set."""
    key = hashlib.sha256(f"{bundle.fingerprint}:{prompts_digest(prompts)}".encode()).hexdigest()[:20]
    return Path(bundle.cache_dir) / "prompt-embeddings" / f"{key}.npz"


def class_text_embeddings(bundle: Any, prompts: Mapping[str, Sequence[str]]) -> tuple[np.ndarray, Path, bool]:
    """(C×D class embeddings, cache file, whether it came from the cache).

    The text tower runs once per prompt set and model; later calls read the cache file.
    """
    path = text_cache_path(bundle, prompts)
    classes = list(prompts)
    if path.is_file():
        try:
            with np.load(path) as data:
                if list(data["classes"]) == classes:
                    return data["embeddings"].astype(np.float32), path, True
        except (OSError, ValueError, KeyError):
            log.warning("prompt-embedding cache %s unreadable; rebuilding", path.name)
    texts = [t for c in classes for t in prompts[c]]
    embeddings = ensemble_embeddings(
        np.asarray(bundle.encode_text(texts), np.float32), [len(prompts[c]) for c in classes]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, embeddings=embeddings, classes=np.array(classes))
    tmp.replace(path)  # atomic: a concurrent reader never sees half a file
    return embeddings, path, False


__all__ = [
    "DEFAULT_PROMPTS", "PromptError", "class_text_embeddings", "ensemble_embeddings", "load_prompts",
    "prompts_digest", "text_cache_path",
]
