"""The benchmarks' default inputs exist without a checkout: the shipped sample photographs."""

from __future__ import annotations

import numpy as np

from burnscope.benchmarks import decode, preprocess
from burnscope.operators.preprocess import calibration


def test_shipped_sample_photographs_are_the_default_inputs():
    (folder,) = calibration.sample_photo_dirs()
    assert folder == calibration.SAMPLE_IMAGES and folder.is_dir()
    names = [name for name, _ in calibration.iter_rgb([folder])]
    assert len(names) == 12 and "synthetic-burn-forearm.jpg" in names
    photos = preprocess.photo_images()
    assert len(photos) == 12
    assert all(p.dtype == np.uint8 and p.ndim == 3 and p.shape[2] == 3 and min(p.shape[:2]) == 256 for p in photos)


def test_decode_default_sets_wrap_the_shipped_photographs(tmp_path):
    sets = decode.default_sets(tmp_path)
    assert len(sets["sample_photos"]) == 12 and all(p.parent == tmp_path for p in sets["sample_photos"])
    assert len(sets["pydicom_bundled"]) > 10
    row = decode.bench(sets["sample_photos"], workers=1, repeat=1)
    assert row["images"] == 12 and row["images_per_s_median"] > 0
