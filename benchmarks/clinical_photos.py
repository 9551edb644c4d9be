"""Clinical-size benchmark inputs: phone-camera photographs (12 MP) as VL Photographic DICOM.

    python -m burnscope.benchmarks.clinical_photos OUT_DIR [--count 8] [--size 4032 3024] [--j2k 1]

Writes ``count`` baseline-JPEG VL Photographic Image files of ``size`` (4032×3024 by default,
a 12 MP phone photo, 4:2:0 chroma, quality 92 as phones save them) and ``j2k`` more of the same
pixels stored as JPEG 2000 (lossless, reversible colour transform), one study per run, with a
``manifest.json``. Nothing is downloaded and nothing is committed: the images are made from the
photographs shipped with :mod:`burnscope.operators.preprocess.calibration` — one upscaled as the
subject (large structure), others tiled at their native resolution on top (natural fine detail:
grass, gravel, brick, fur) — plus sensor-like noise, so the files have the high-frequency
content that makes JPEG decoding and DCT-domain downscaling behave as on real photographs. They
are synthetic: speed and fidelity figures on them say how the code behaves at this size, not
how a model performs on burns.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

#: Default size of a phone-camera photograph (columns, rows): 12.2 MP.
PHONE_SIZE = (4032, 3024)
JPEG_QUALITY = 92


def compose(index: int, size: tuple[int, int] = PHONE_SIZE, seed: int = 0) -> np.ndarray:
    """One H×W×3 uint8 photograph-like image (see the module docs), deterministic in ``index``."""
    from PIL import Image

    from burnscope.operators.preprocess.calibration import image_files, sample_photo_dirs

    photos = image_files(sample_photo_dirs())
    rng = np.random.default_rng(seed + index)
    cols, rows = size
    with Image.open(photos[index % len(photos)]) as subject:
        base = np.asarray(subject.convert("RGB").resize((cols, rows), Image.BICUBIC), np.float32)
    textures = [photos[(index + k) % len(photos)] for k in (3, 5, 7)]
    detail = np.zeros((rows, cols, 3), np.float32)
    for path in textures:
        with Image.open(path) as tile:
            tile = np.asarray(tile.convert("RGB"), np.float32)
        reps = (-(-rows // tile.shape[0]), -(-cols // tile.shape[1]), 1)
        tiled = np.tile(tile, reps)[:rows, :cols]
        detail += (tiled - tiled.mean(axis=(0, 1))) / len(textures)
    image = base + 0.45 * detail + rng.normal(0.0, 3.0, (rows, cols, 1)).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_set(out_dir: Path, count: int = 8, size: tuple[int, int] = PHONE_SIZE, j2k: int = 1,
              quality: int = JPEG_QUALITY) -> dict[str, Any]:
    """Write the files into ``out_dir`` (created); returns (and writes) the manifest."""
    import pydicom
    from PIL import Image
    from pydicom.uid import JPEG2000Lossless, generate_uid

    from burnscope.operators.dicom_loader.photo import BODY_SITES, wrap_photo

    out_dir.mkdir(parents=True, exist_ok=True)
    study = generate_uid()
    sites = list(BODY_SITES)
    files: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="burnscope-photos-") as tmp:
        for i in range(count + j2k):
            pixels = compose(i % max(count, 1), size)
            meta = {"study_instance_uid": study, "body_site": sites[(3 * i) % len(sites)],
                    "patient_id": "SYNTH-12MP", "patient_name": "Synthetic^Photo"}
            if i < count:
                jpg = Path(tmp) / f"photo{i}.jpg"
                Image.fromarray(pixels).save(jpg, quality=quality, subsampling=2)
                path = out_dir / f"photo-{i + 1:03d}-jpeg.dcm"
                wrap_photo(jpg, path, meta)
                kind = "jpeg_baseline"
            else:
                png = Path(tmp) / f"photo{i}.png"
                Image.fromarray(pixels).save(png)
                raw = Path(tmp) / f"photo{i}.dcm"
                wrap_photo(png, raw, meta)
                ds = pydicom.dcmread(raw)
                ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
                path = out_dir / f"photo-{i + 1:03d}-j2k.dcm"
                ds.save_as(path, enforce_file_format=True)
                kind = "jpeg2000_lossless"
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            files.append({
                "path": path.name, "kind": kind, "transfer_syntax_uid": str(ds.file_meta.TransferSyntaxUID),
                "photometric": str(ds.PhotometricInterpretation), "rows": int(ds.Rows), "columns": int(ds.Columns),
                "bytes": path.stat().st_size,
            })
    manifest = {"generator": "burnscope.benchmarks.clinical_photos", "size": list(size), "quality": quality,
                "synthetic": True, "study_instance_uid": study, "files": files}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder to write (never inside the repository)")
    parser.add_argument("--count", type=int, default=8, help="baseline-JPEG photographs")
    parser.add_argument("--j2k", type=int, default=1, help="JPEG 2000 (lossless) photographs")
    parser.add_argument("--size", type=int, nargs=2, default=PHONE_SIZE, metavar=("COLS", "ROWS"))
    parser.add_argument("--quality", type=int, default=JPEG_QUALITY)
    args = parser.parse_args(argv)
    manifest = write_set(args.out_dir, args.count, tuple(args.size), args.j2k, args.quality)
    total = sum(f["bytes"] for f in manifest["files"])
    print(f"wrote {len(manifest['files'])} files ({total / 1e6:.1f} MB) of {args.size[0]}×{args.size[1]} to {args.out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
