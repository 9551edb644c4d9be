"""Augmentations a clinical photograph of a burn tolerates, seeded per image and epoch.

Colour is what tells burn depths apart (red and blanching vs. white, brown or charred), so
colour changes stay small: brightness, contrast and saturation within ±10 %, hue within ±0.02
of the colour circle. Geometry is free within reason: a horizontal flip and a rotation of at
most ±10° (corners filled with the normalisation mean, i.e. zero after normalisation).

Each image's augmentation depends only on (seed, epoch, row), never on which process or in
which order it is drawn, so one process and N processes see the same training images and a
resumed epoch repeats exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

MAX_ROTATION_DEG = 10.0
MAX_BRIGHTNESS = MAX_CONTRAST = MAX_SATURATION = 0.1
MAX_HUE = 0.02


@dataclass(frozen=True)
class Augment:
    enabled: bool = True
    rotation_deg: float = MAX_ROTATION_DEG
    brightness: float = MAX_BRIGHTNESS
    contrast: float = MAX_CONTRAST
    saturation: float = MAX_SATURATION
    hue: float = MAX_HUE

    def __post_init__(self) -> None:
        limits = {
            "rotation_deg": MAX_ROTATION_DEG, "brightness": MAX_BRIGHTNESS, "contrast": MAX_CONTRAST,
            "saturation": MAX_SATURATION, "hue": MAX_HUE,
        }
        for name, limit in limits.items():
            value = getattr(self, name)
            if not 0.0 <= value <= limit:
                raise ValueError(f"augmentation {name}={value} is outside 0…{limit} (colour is diagnostic)")

    def _transform(self, fill: Sequence[int]):
        from torchvision.transforms import v2

        return v2.Compose([
            v2.RandomHorizontalFlip(0.5),
            v2.RandomRotation(self.rotation_deg, interpolation=v2.InterpolationMode.BILINEAR, fill=list(fill)),
            v2.ColorJitter(self.brightness, self.contrast, self.saturation, self.hue),
        ])

    def __call__(self, crops: np.ndarray, rows: Sequence[int], epoch: int, seed: int, mean: Sequence[float]) -> np.ndarray:
        """Augmented copies of ``crops`` (N×S×S×3 uint8, the images of ``rows``) as N×3×S×S uint8."""
        import torch

        images = np.ascontiguousarray(np.asarray(crops).transpose(0, 3, 1, 2))
        if not self.enabled:
            return images
        transform = self._transform([int(round(255 * m)) for m in mean])
        out = np.empty_like(images)
        for i, row in enumerate(rows):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(np.random.SeedSequence([seed, epoch, int(row)]).generate_state(1)[0]))
                out[i] = transform(torch.from_numpy(images[i])).numpy()
        return out


def normalise(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """N×3×S×S uint8 → float32 exactly as the pipeline's preprocessor computes it."""
    from burnscope.operators.preprocess.core import normalization_lut

    lut = normalization_lut(mean, std)
    return lut[np.arange(3)[None, :, None, None], images]
