"""Images for INT8 calibration and fidelity checks: read a folder, preprocess like BiomedCLIP.

The engines take calibration as preprocessed arrays (``calibration=`` of
:func:`burnscope.engines.base.create_engine` and :mod:`burnscope.engines.quantize`); this module
makes them from image folders, so the engines need no image reader of their own.

JPEG/PNG/TIFF/BMP are decoded with PIL, DICOM with burnscope's DICOM loader (when importable),
and everything goes through burnscope's preprocessor (or open_clip's transform when that module
is not available), so INT8 scales are calibrated on exactly what the engine will see. Without a
folder, calibration and the benchmarks use the photographs installed with this package
(:func:`sample_photo_dirs`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from burnscope.operators.dicom_loader.files import is_image_file, read_rgb_frames

log = logging.getLogger(__name__)


def image_files(folders: Iterable[str | os.PathLike]) -> list[Path]:
    """Photos and DICOM files under the given folders (or files), sorted, recursively."""
    files: list[Path] = []
    for folder in folders:
        root = Path(folder)
        candidates = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        files.extend(path for path in candidates if is_image_file(path))
    return files


def read_rgb(path: Path) -> list[np.ndarray]:
    """H×W×3 uint8 images of one file (DICOM: one per frame); [] when it cannot be decoded."""
    try:
        return [rgb for _, rgb in read_rgb_frames(path)]
    except ValueError as exc:  # a broken file must not stop calibration
        log.info("%s: skipped (%s)", path.name, exc)
        return []


def iter_rgb(folders: Iterable[str | os.PathLike], limit: int | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """(file name, RGB image) pairs from the folders, at most ``limit`` images."""
    count = 0
    for path in image_files(folders):
        for index, rgb in enumerate(read_rgb(path)):
            if rgb.ndim != 3 or min(rgb.shape[:2]) < 8:
                continue
            yield (path.name if index == 0 else f"{path.name}#{index + 1}"), rgb
            count += 1
            if limit is not None and count >= limit:
                return


def _open_clip_transform(config: dict):
    from open_clip.transform import image_transform
    from PIL import Image

    cfg = config.get("preprocess_cfg", config)
    transform = image_transform(
        cfg.get("image_size", 224), is_train=False, mean=cfg.get("mean"), std=cfg.get("std"),
        interpolation=cfg.get("interpolation", "bicubic"), resize_mode=cfg.get("resize_mode", "shortest"),
    )
    return lambda images: np.stack([transform(Image.fromarray(im)).numpy() for im in images]).astype(np.float32)


def preprocessor(config: dict):
    """A callable: list of RGB uint8 images → N×3×S×S float32 NumPy batch (CPU).

    burnscope's own preprocessor when it imports and works, else open_clip's transform (the
    reference it is tested against), so calibration never depends on one module's state.
    """
    fallback = _open_clip_transform(config)
    try:
        from burnscope.operators.preprocess.core import Preprocessor

        pre = Preprocessor.from_config(config, device="cpu", dtype="float32")
        pre([np.zeros((16, 16, 3), np.uint8)])  # smoke test
    except Exception as exc:
        log.info("burnscope preprocessor unavailable (%s); using open_clip's transform", exc)
        return fallback
    return lambda images: np.asarray(pre(list(images)), np.float32)


#: Twelve small photographs installed with this package (see its README.md for sources and
#: licences). Shipped rather than generated: INT8 ranges and embedding fidelity measured on
#: synthetic noise say little about real photographs, and a wheel has no checkout to read.
SAMPLE_IMAGES = Path(__file__).with_name("sample_images")


def sample_photo_dirs() -> list[Path]:
    """Folders of real photographs every install has: :data:`SAMPLE_IMAGES`. The default images
    of INT8 calibration and of the benchmarks' fidelity columns."""
    return [SAMPLE_IMAGES]


def calibration_images(
    config: dict, folders: str | os.PathLike | Iterable[str | os.PathLike] | None = None, limit: int = 64
) -> np.ndarray:
    """Preprocessed calibration views (each image, mirrored and zoomed) from ``folders``
    (default: :func:`sample_photo_dirs`); raises ValueError when no image decodes."""
    if folders is None:
        folders = sample_photo_dirs()
    elif isinstance(folders, (str, os.PathLike)):
        folders = [folders]
    folders = list(folders)
    _, images = load_batch(folders, config, limit=limit, augment=True)
    if len(images) == 0:
        raise ValueError(f"no decodable calibration images in {', '.join(map(str, folders))}")
    return images


def calibration_for(config: dict, folders=None, limit: int = 64):
    """A zero-argument callable giving :func:`calibration_images` when an engine first needs
    them (an fp32 run, or a cached INT8 model, reads nothing)."""
    return lambda: calibration_images(config, folders, limit)


def load_batch(
    folders: Iterable[str | os.PathLike], config: dict, limit: int | None = None, augment: bool = False
) -> tuple[list[str], np.ndarray]:
    """Names and the preprocessed N×3×S×S float32 batch of the images in ``folders``.

    ``augment`` adds a mirrored copy and a centre zoom of each image: more varied activations
    for calibration when only a few images are at hand.
    """
    names: list[str] = []
    images: list[np.ndarray] = []
    for name, rgb in iter_rgb(folders, limit):
        names.append(name)
        images.append(rgb)
        if augment:
            h, w = rgb.shape[:2]
            names += [f"{name}:mirror", f"{name}:zoom"]
            images += [np.ascontiguousarray(rgb[:, ::-1]), np.ascontiguousarray(rgb[h // 6 : h - h // 6, w // 6 : w - w // 6])]
    if not images:
        size = int(config.get("preprocess_cfg", config).get("image_size", 224))
        return [], np.zeros((0, 3, size, size), np.float32)
    return names, preprocessor(config)(images)
