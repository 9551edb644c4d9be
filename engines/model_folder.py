"""A burnscope model folder: everything a command needs to run a (fine-tuned) model, hash-checked.

Layout (written by ``burnscope finetune``; ``burnscope export-bundle`` puts the same folder under a
MONAI bundle's ``models/``)::

    manifest.json                 format, base model, demo flag, sha256 + size of every file below
    model_config.json             the architecture (same schema as engines/configs/*.json)
    open_clip_model.safetensors   all BiomedCLIP weights (fine-tuned image tower + text tower)
    head.json                     the burn head (classes, weights, bias, temperature, abstain threshold)
    prompt_embeddings.npz         class text embeddings of the default prompts (zero-shot head)
    tokenizer.json, vocab.txt...  the tokenizer of the text tower

``-m DIR`` accepts this folder, or a MONAI bundle whose ``models/`` holds it. Loading verifies
every hash in the manifest first: a file that was changed, truncated or swapped is an error,
never a silent mismatch. The model's fingerprint is made of the architecture and the weights'
sha256, so it is the same on every machine the folder is copied to (derived caches stay valid).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = "burnscope-model/1"
WEIGHTS = "open_clip_model.safetensors"
CONFIG = "model_config.json"
HEAD = "head.json"
PROMPT_EMBEDDINGS = "prompt_embeddings.npz"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
#: Where a MONAI bundle keeps its model folder.
BUNDLE_MODELS = "models"
BUNDLE_METADATA = Path("configs") / "metadata.json"


class ModelFolderError(ValueError):
    """A model folder that cannot be used (missing file, hash mismatch, unknown format)."""


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def model_dir_of(path: str | os.PathLike) -> Path:
    """The folder that holds the model files: ``path`` itself or a MONAI bundle's ``models/``."""
    path = Path(path).expanduser()
    if (path / BUNDLE_METADATA).is_file() and (path / BUNDLE_MODELS).is_dir():
        return path / BUNDLE_MODELS
    return path


def find_model_folder(path: str | os.PathLike | None) -> Path | None:
    """The model folder ``path`` names (directly or as a MONAI bundle), or None when it is not one."""
    if not path:
        return None
    folder = model_dir_of(path)
    return folder if (folder / MANIFEST).is_file() else None


def read_manifest(folder: str | os.PathLike, verify: bool = True) -> dict[str, Any]:
    """The manifest of a model folder; with ``verify``, every listed file's size and sha256 are checked."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFolderError(f"{folder}: unreadable {MANIFEST} ({type(exc).__name__})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelFolderError(f"{folder}: {MANIFEST} is not a burnscope model manifest ({FORMAT!r} expected)")
    files = manifest.get("files") or {}
    for required in (WEIGHTS, CONFIG, HEAD):
        if required not in files:
            raise ModelFolderError(f"{folder}: the manifest lists no {required}")
    if verify:
        for name, entry in files.items():
            target = folder / name
            if not target.is_file():
                raise ModelFolderError(f"{folder}: {name} is missing")
            if target.stat().st_size != entry["bytes"] or sha256_file(target) != entry["sha256"]:
                raise ModelFolderError(f"{folder}: {name} does not match the manifest's sha256 (changed or damaged)")
    return manifest


def write_manifest(folder: str | os.PathLike, info: dict[str, Any]) -> dict[str, Any]:
    """Hash every model file present in ``folder`` and write ``manifest.json`` (atomically)."""
    folder = Path(folder)
    names = [WEIGHTS, CONFIG, HEAD, PROMPT_EMBEDDINGS, *TOKENIZER_FILES]
    files = {
        name: {"sha256": sha256_file(folder / name), "bytes": (folder / name).stat().st_size}
        for name in names
        if (folder / name).is_file()
    }
    manifest = {"format": FORMAT, **info, "files": files}
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    os.replace(tmp, folder / MANIFEST)
    return manifest


def folder_fingerprint(model_cfg: dict[str, Any], weights_sha256: str) -> str:
    """Fingerprint of a model folder: architecture + weights content (stable across copies)."""
    from burnscope.engines.model import _digest

    return _digest([model_cfg, "model-folder", weights_sha256])


def copy_tokenizer(source_dir: str | os.PathLike, folder: str | os.PathLike) -> list[str]:
    """Copy the tokenizer files found in ``source_dir`` into ``folder``; returns their names."""
    copied = []
    for name in TOKENIZER_FILES:
        if (Path(source_dir) / name).is_file():
            shutil.copyfile(Path(source_dir) / name, Path(folder) / name)
            copied.append(name)
    if not copied:
        raise ModelFolderError(f"{source_dir}: no tokenizer files to copy")
    return copied


def write_model_folder(
    folder: str | os.PathLike,
    bundle: Any,
    state_dict: dict[str, Any],
    head: Any,
    info: dict[str, Any],
) -> dict[str, Any]:
    """Write a complete model folder from a loaded bundle, a (fine-tuned) CLIP state dict and a head.

    ``info`` goes into the manifest (base model, training summary). The head's
    ``model_fingerprint`` is set to the folder's fingerprint, and the class text embeddings of
    the default prompts are stored so that a zero-shot head needs no text-tower run.
    """
    import numpy as np
    from safetensors.torch import save_file

    from burnscope.engines.prompts import class_text_embeddings, load_prompts, prompts_digest

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    save_file(tensors, str(folder / WEIGHTS))
    (folder / CONFIG).write_text(json.dumps(bundle.config, indent=2), encoding="utf-8")
    copy_tokenizer(Path(bundle.tokenizer_dir), folder)
    fingerprint = folder_fingerprint(bundle.config["model_cfg"], sha256_file(folder / WEIGHTS))
    head.model_fingerprint = fingerprint
    head.save(folder / HEAD)
    prompts = load_prompts()
    embeddings, _, _ = class_text_embeddings(bundle, prompts)
    np.savez(
        folder / PROMPT_EMBEDDINGS,
        embeddings=embeddings,
        classes=np.array(list(prompts)),
        prompts_digest=np.array(prompts_digest(prompts)),
    )
    return write_manifest(folder, {"fingerprint": fingerprint, **info})


def load_model_folder(folder: str | os.PathLike):
    """A :class:`~burnscope.engines.model.ModelBundle` from a model folder (hashes verified first)."""
    import numpy as np
    import open_clip

    from burnscope.engines import model as m
    from burnscope.common.messages import DEMO_BANNER, ModelInfo

    folder = Path(folder)
    manifest = read_manifest(folder, verify=True)
    cfg = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    torch_model = m.build_model(cfg, seed=m.DEMO_SEED)
    state = m._load_state_dict(folder / WEIGHTS)
    missing, unexpected = torch_model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    unexpected = [k for k in unexpected if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ModelFolderError(f"{folder}: weights do not fit model_config.json (missing {missing[:3]}, unexpected {unexpected[:3]})")
    fingerprint = folder_fingerprint(cfg["model_cfg"], manifest["files"][WEIGHTS]["sha256"])
    base = manifest.get("base") or {}
    demo = bool(base.get("demo", False))
    description = f"{folder} (fine-tuned from {base.get('weights', 'unknown weights')})"
    info = ModelInfo(name=str(manifest.get("name") or cfg["name"]), weights=description, demo=demo)
    if demo:
        log.warning("%s: %s was fine-tuned from random demo weights", DEMO_BANNER, folder)
    cache = m.cache_root() / "models" / fingerprint
    cache.mkdir(parents=True, exist_ok=True)
    context_length = cfg["model_cfg"]["text_cfg"]["context_length"]
    bundle = m.ModelBundle.of(
        torch_model,
        open_clip.tokenizer.HFTokenizer(str(folder), context_length=context_length),
        info=info,
        config=cfg,
        fingerprint=fingerprint,
        cache_dir=cache,
        preprocess_cfg=cfg.get("preprocess_cfg", {}),
        head_path=folder / HEAD,
        tokenizer_dir=folder,
    )
    _seed_prompt_cache(bundle, folder, np)
    return bundle


def _seed_prompt_cache(bundle: Any, folder: Path, np: Any) -> None:
    """Put the folder's stored class text embeddings where the burn head looks for them."""
    from burnscope.engines.prompts import load_prompts, prompts_digest, text_cache_path

    stored = folder / PROMPT_EMBEDDINGS
    if not stored.is_file():
        return
    prompts = load_prompts()
    target = text_cache_path(bundle, prompts)
    with np.load(stored) as data:
        if target.is_file() or str(data["prompts_digest"]) != prompts_digest(prompts):
            return
        embeddings, classes = data["embeddings"], data["classes"]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, embeddings=embeddings, classes=classes)
    tmp.replace(target)
