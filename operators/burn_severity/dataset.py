"""Labelled image folders → image embeddings, with a per-file cache (for train-head / evaluate).

Layout of a labelled folder: one sub-folder per class key (:data:`core.CLASSES`), images
anywhere below it, DICOM (``.dcm``/``.dicom``, or any file with the DICOM preamble) or
JPEG/PNG/BMP/TIFF. DICOM files go through the burnscope DICOM loader (every frame is one
sample); photographs are read with Pillow. Images are preprocessed with the pipeline's own
:class:`~burnscope.operators.preprocess.core.Preprocessor`, so training sees what inference sees.

Embeddings are cached in the model bundle's cache dir, keyed by file path, size and mtime:
retraining or re-evaluating on the same folder does not run the image tower again.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from burnscope.operators.burn_severity.core import CLASSES, HeadError
from burnscope.operators.dicom_loader.files import is_image_file, read_rgb_frames

log = logging.getLogger(__name__)



@dataclass
class LabelledEmbeddings:
    embeddings: np.ndarray  # N×D
    labels: list[str]
    sources: list[str]  # file name (and frame) per row
    errors: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    encoded: int = 0  # rows computed by the image tower this time (the rest came from the cache)


def scan_labelled_folder(root: str | Path) -> list[tuple[Path, str]]:
    """(file, class) pairs under ``root``; sub-folder names must be class keys."""
    root = Path(root)
    if not root.is_dir():
        raise HeadError(f"{root}: not a folder (expected one sub-folder per class: {', '.join(CLASSES)})")
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown = [p.name for p in subdirs if p.name not in CLASSES]
    if unknown:
        raise HeadError(
            f"{root}: unknown class folder(s) {', '.join(unknown)}; class folders are {', '.join(CLASSES)}"
        )
    items = []
    for sub in subdirs:
        for path in sorted(sub.rglob("*")):
            if path.is_file() and is_image_file(path):
                items.append((path, sub.name))
    if not items:
        raise HeadError(f"{root}: no images found in the class folders ({', '.join(CLASSES)})")
    return items


def _file_key(path: Path, fingerprint: str) -> str:
    stat = path.stat()
    return hashlib.sha256(
        f"{fingerprint}|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()
    ).hexdigest()[:24]


class EmbeddingCache:
    """Per-file image embeddings of one labelled folder, stored as one ``.npz`` file."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.rows: dict[str, tuple[list[str], np.ndarray]] = {}
        if self.path.is_file():
            try:
                with np.load(self.path, allow_pickle=False) as data:
                    keys, sources, offsets, vectors = (
                        data["keys"],
                        data["sources"],
                        data["offsets"],
                        data["vectors"],
                    )
                for i, key in enumerate(keys):
                    lo, hi = int(offsets[i]), int(offsets[i + 1])
                    self.rows[str(key)] = ([str(s) for s in sources[lo:hi]], vectors[lo:hi])
            except (OSError, ValueError, KeyError):
                log.warning("embedding cache %s unreadable; starting afresh", self.path.name)
                self.rows = {}

    def get(self, key: str):
        return self.rows.get(key)

    def put(self, key: str, sources: list[str], vectors: np.ndarray) -> None:
        self.rows[key] = (sources, np.asarray(vectors, np.float32))

    def save(self) -> None:
        keys = list(self.rows)
        sources = [s for k in keys for s in self.rows[k][0]]
        vectors = [self.rows[k][1] for k in keys]
        offsets = np.cumsum([0] + [len(v) for v in vectors])
        dim = vectors[0].shape[1] if vectors else 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.stem}.{os.getpid()}.tmp.npz")
        np.savez(
            tmp,
            keys=np.array(keys, dtype=str),
            sources=np.array(sources, dtype=str),
            offsets=offsets,
            vectors=np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32),
        )
        tmp.replace(self.path)


def cache_path_for(bundle: Any, root: str | Path) -> Path:
    digest = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:16]
    return Path(bundle.cache_dir) / "image-embeddings" / f"{digest}.npz"


def embed_labelled_folder(
    bundle: Any,
    root: str | Path,
    *,
    encode: Callable[[np.ndarray], np.ndarray] | None = None,
    preprocessor: Any = None,
    batch_size: int = 16,
    on_progress: Callable[[int, int], None] | None = None,
) -> LabelledEmbeddings:
    """Embeddings and labels of every image under ``root`` (cached per file).

    ``encode`` maps an N×3×S×S batch to N×D normalised embeddings (default: the bundle's torch
    image tower); ``on_progress(done, total)`` is called after each file.
    """
    from burnscope.operators.preprocess.core import Preprocessor

    items = scan_labelled_folder(root)
    encode = encode or bundle.encode_images
    preprocessor = preprocessor or Preprocessor.from_config(bundle.preprocess_cfg, device="cpu")
    cache = EmbeddingCache(cache_path_for(bundle, root))
    rows: list[tuple[list[str], np.ndarray | None, str]] = [([], None, "")] * len(items)
    errors: list[tuple[str, str]] = []
    pending: list[tuple[int, str, list[tuple[str, np.ndarray]]]] = []
    encoded = 0

    def flush() -> None:
        nonlocal encoded
        if not pending:
            return
        images = [img for _, _, frames in pending for _, img in frames]
        vectors = np.asarray(encode(preprocessor(images)), np.float32)
        encoded += len(images)
        start = 0
        for index, key, frames in pending:
            chunk = vectors[start : start + len(frames)]
            start += len(frames)
            names = [name for name, _ in frames]
            cache.put(key, names, chunk)
            rows[index] = (names, chunk, items[index][1])
        pending.clear()

    for done, (path, label) in enumerate(items, 1):
        key = _file_key(path, bundle.fingerprint)
        hit = cache.get(key)
        if hit is not None:
            rows[done - 1] = (hit[0], hit[1], label)
        else:
            try:
                frames = read_rgb_frames(path)
            except Exception as exc:  # one bad file never stops a training run
                errors.append((path.name, str(exc)))
            else:
                pending.append((done - 1, key, frames))
                if sum(len(f) for _, _, f in pending) >= batch_size:
                    flush()
        if on_progress:
            on_progress(done, len(items))
    flush()
    if encoded:
        cache.save()
    sources, vectors, labels = [], [], []
    for names, chunk, label in rows:
        if chunk is None:
            continue
        sources.extend(names)
        vectors.append(chunk)
        labels.extend([label] * len(names))
    if not vectors:
        raise HeadError(f"{root}: none of the images could be read ({len(errors)} errors)")
    return LabelledEmbeddings(np.concatenate(vectors), labels, sources, errors, encoded)
