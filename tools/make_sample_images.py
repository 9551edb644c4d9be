"""Write the sample photographs shipped in ``operators/preprocess/sample_images/`` (run from a checkout).

    python tools/make_sample_images.py [--out operators/preprocess/sample_images]

Sources: scikit-image's bundled photographs (public domain or CC0, see the README written beside
them) and two of the synthetic burn fields of ``sample_data/``. Each is scaled so that its short
side is 256 px (BiomedCLIP's transform still resizes and crops it to 224) and saved as JPEG
(quality 85), a few tens of kB each. Needs scikit-image (the ``test`` extra).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHORT_SIDE = 256

#: scikit-image function → (file stem, licence as scikit-image states it).
PHOTOS = {
    "astronaut": ("astronaut", "public domain (NASA)"),
    "chelsea": ("chelsea", "CC0 (Stefan van der Walt)"),
    "coffee": ("coffee", "CC0 (Rachel Michetti)"),
    "rocket": ("rocket", "public domain (SpaceX)"),
    "retina": ("retina", "CC0 (Wikimedia Commons, Mikael Häggström)"),
    "immunohistochemistry": ("immunohistochemistry", "no known copyright restrictions (CMMI)"),
    "hubble_deep_field": ("hubble-deep-field", "public domain (NASA)"),
    "brick": ("brick", "CC0 (CC0Textures)"),
    "grass": ("grass", "CC0 (DeviantArt, linolafett)"),
    "gravel": ("gravel", "CC0 (CC0Textures)"),
}
#: sample_data file → file stem (synthetic, drawn by sample_data/generate.py).
BURNS = {
    "study-001/IMG-0001.dcm": "synthetic-burn-forearm",
    "study-002/IMG-0002.dcm": "synthetic-burn-back",
}


def _save(rgb: np.ndarray, path: Path) -> None:
    image = Image.fromarray(rgb)
    scale = SHORT_SIDE / min(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
    image.save(path, quality=85, optimize=True)


def main(argv: list[str] | None = None) -> None:
    from skimage import data

    from burnscope.operators.dicom_loader.files import read_rgb_frames

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "operators" / "preprocess" / "sample_images")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for function, (stem, licence) in PHOTOS.items():
        _save(np.ascontiguousarray(getattr(data, function)()), args.out / f"{stem}.jpg")
        rows.append(f"| `{stem}.jpg` | scikit-image `data.{function}()` | {licence} |")
    for source, stem in BURNS.items():
        _save(read_rgb_frames(ROOT / "sample_data" / source)[0][1], args.out / f"{stem}.jpg")
        rows.append(f"| `{stem}.jpg` | `sample_data/{source}` (synthetic) | burnscope's own, Apache-2.0 |")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
