"""BiomedCLIP preprocessing: parity with open_clip's own transform, CuPy vs NumPy, the operator.

Tolerance (stated by the issue): after undoing the normalisation, on a 0–255 scale, the mean
absolute difference must be ≤ 0.5 and the maximum ≤ 2 intensity levels. The implementation
reproduces Pillow's fixed-point resampling, so the NumPy path is in fact bit-identical to
open_clip on these inputs; the tests assert the stated tolerance and, separately, exactness.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data

from burnscope.common.gpu import cupy_usable
from burnscope.operators.preprocess.core import (
    BIOMEDCLIP_MEAN,
    BIOMEDCLIP_STD,
    Preprocessor,
    resample_coefficients,
    resize_uint8,
    shortest_side_shape,
    vertical_pass_first,
)
from fixtures import REPO
from fixtures.images import odd_images, photos

MEAN_LEVELS_MAX = 0.5  # mean |Δ| on the 0–255 scale
MAX_LEVELS_MAX = 2.0  # max |Δ| on the 0–255 scale

_MEAN = np.asarray(BIOMEDCLIP_MEAN, dtype=np.float64)[:, None, None]
_STD = np.asarray(BIOMEDCLIP_STD, dtype=np.float64)[:, None, None]

@pytest.fixture(scope="module")
def open_clip_transform():
    from open_clip.transform import image_transform

    return image_transform(
        224,
        is_train=False,
        mean=BIOMEDCLIP_MEAN,
        std=BIOMEDCLIP_STD,
        resize_mode="shortest",
        interpolation="bicubic",
    )


def _levels(tensor: np.ndarray) -> np.ndarray:
    """Undo the normalisation: 3×H×W → 0–255 scale (float64)."""
    return (np.asarray(tensor, dtype=np.float64) * _STD + _MEAN) * 255.0


def _assert_within_tolerance(ours: np.ndarray, reference: np.ndarray) -> None:
    diff = np.abs(_levels(ours) - _levels(reference))
    assert diff.mean() <= MEAN_LEVELS_MAX, f"mean |Δ| {diff.mean():.3f} levels"
    assert diff.max() <= MAX_LEVELS_MAX, f"max |Δ| {diff.max():.3f} levels"


# ----------------------------------------------------------------------------- parity with open_clip


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_photos_match_open_clip(name, open_clip_transform):
    image = photos()[name]
    reference = open_clip_transform(Image.fromarray(image)).numpy()
    ours = Preprocessor(device="cpu")([image])[0]
    assert ours.shape == (3, 224, 224) and ours.dtype == np.float32
    _assert_within_tolerance(ours, reference)
    np.testing.assert_array_equal(ours, reference)  # Pillow's arithmetic reproduced exactly


def test_odd_sizes_match_open_clip(open_clip_transform):
    images = odd_images()
    batch = Preprocessor(device="cpu")(list(images.values()))
    assert batch.shape == (len(images), 3, 224, 224)
    for i, (name, image) in enumerate(images.items()):
        reference = open_clip_transform(Image.fromarray(image)).numpy()
        _assert_within_tolerance(batch[i], reference)
        np.testing.assert_array_equal(batch[i], reference, err_msg=name)


def test_gray_and_rgba_follow_convert_rgb(open_clip_transform):
    gray = data.camera()[::2, ::3]
    rgba = np.dstack([data.chelsea(), np.full(data.chelsea().shape[:2], 77, np.uint8)])
    ours = Preprocessor(device="cpu")([gray, rgba])
    # open_clip converts after resizing; for RGB-equivalent inputs that is the same as converting first.
    for tensor, image in zip(ours, (gray, rgba)):
        reference = open_clip_transform(Image.fromarray(image).convert("RGB")).numpy()
        np.testing.assert_array_equal(tensor, reference)


def test_pillow_resize_is_reproduced_bit_exactly():
    rng = np.random.default_rng(3)
    for _ in range(60):
        h, w, oh, ow = (int(v) for v in rng.integers(1, 90, 4))
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        expected = np.asarray(Image.fromarray(image).resize((ow, oh), Image.Resampling.BICUBIC))
        np.testing.assert_array_equal(resize_uint8(image, (oh, ow)), expected, err_msg=f"{h}x{w}->{oh}x{ow}")


def test_pass_order_rule_and_both_orders_are_close():
    assert vertical_pass_first(700, 301, 520, 224, "pillow13")
    assert not vertical_pass_first(700, 301, 520, 224, "horizontal-first")
    assert not vertical_pass_first(301, 700, 224, 520, "pillow13")
    image = odd_images()["portrait_crop"]
    new = Preprocessor(device="cpu", pass_order="pillow13")([image])[0]
    old = Preprocessor(device="cpu", pass_order="horizontal-first")([image])[0]
    # The rounding between the passes shows: Pillow 12 and Pillow 13 disagree on tall images by
    # a few levels on some pixels (measured: mean 0.17, max 4 levels here). Both are "open_clip".
    diff = np.abs(_levels(new) - _levels(old))
    assert 0 < diff.max() <= 8
    assert diff.mean() <= MEAN_LEVELS_MAX


def test_coefficients_are_normalised_fixed_point():
    for in_size, out_size in [(512, 224), (37, 224), (1411, 224), (224, 224)]:
        table = resample_coefficients(in_size, out_size)
        sums = table.weights.sum(axis=1)
        assert np.all(np.abs(sums - (1 << 22)) <= table.ksize)  # rounding of each tap only
        assert np.all(table.start >= 0) and np.all(table.start + table.count <= in_size)
        assert resample_coefficients(in_size, out_size) is table  # cached
    identity = resample_coefficients(224, 224)
    diagonal = identity.weights[np.arange(224), np.arange(224) - identity.start]
    assert np.array_equal(diagonal, np.full(224, 1 << 22))


def test_shortest_side_geometry_follows_torchvision():
    assert shortest_side_shape(400, 600, 224) == (224, 336)
    assert shortest_side_shape(300, 451, 224) == (224, 336)
    assert shortest_side_shape(700, 301, 224) == (520, 224)


# ----------------------------------------------------------------------------- API behaviour


def test_batch_api_dtype_empty_and_thumbnails():
    images = list(photos().values()) + [odd_images()["tiny_upscale"]]
    cpu32 = Preprocessor(device="cpu")
    cpu16 = Preprocessor(device="cpu", dtype="float16")
    out32 = cpu32(images)
    out16 = cpu16(images)
    assert out16.dtype == np.float16
    np.testing.assert_array_equal(out16, out32.astype(np.float16))
    assert cpu32.device == "cpu"
    np.testing.assert_array_equal(Preprocessor(device="cpu", cpu_threads=2)(images), out32)
    stacked = cpu32(np.stack([data.astronaut(), data.astronaut()]))  # one N×H×W×3 array
    np.testing.assert_array_equal(stacked[1], out32[0])

    empty = cpu32([])
    assert empty.shape == (0, 3, 224, 224) and empty.dtype == np.float32

    result = cpu32.process(images, thumbnails=True)
    shapes = [t.shape for t in result.thumbnails]
    assert shapes == [(128, 128, 3), (85, 128, 3), (85, 128, 3), (20, 30, 3)]  # never enlarged
    assert all(t.dtype == np.uint8 for t in result.thumbnails)
    expected = np.asarray(Image.fromarray(images[1]).resize((128, 85), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(result.thumbnails[1], expected)


def test_from_config_and_validation():
    import json

    config = json.loads((REPO / "engines" / "configs" / "biomedclip.json").read_text())
    pre = Preprocessor.from_config(config, device="cpu")
    assert pre.image_size == 224 and pre.mean == BIOMEDCLIP_MEAN and pre.std == BIOMEDCLIP_STD
    small = Preprocessor.from_config({"image_size": 32, "mean": [0.5] * 3, "std": [0.5] * 3}, device="cpu")
    assert small([data.coffee()]).shape == (1, 3, 32, 32)
    assert pre.describe()["backend"] == "numpy"
    with pytest.raises(ValueError):
        Preprocessor(interpolation="bilinear")
    with pytest.raises(ValueError):
        Preprocessor(dtype="int8")
    with pytest.raises(TypeError):
        pre([np.zeros((10, 10, 3), np.float32)])
    with pytest.raises(ValueError):
        pre([np.zeros((10, 10, 2), np.uint8)])
    if not cupy_usable():
        with pytest.raises(RuntimeError):
            Preprocessor(device="gpu")


# ----------------------------------------------------------------------------- operator in a graph


def test_preprocess_op_in_holoscan_graph():
    from burnscope.operators.holoscan_runtime import holoscan  # noqa: F401
    from holoscan.conditions import CountCondition
    from holoscan.core import Application, Operator, OperatorSpec

    from burnscope.common.messages import ImageBatch, ImageContext, ImageRecord
    from burnscope.operators.preprocess.operator import PreprocessOp

    pictures = photos()
    batches = [
        [
            ImageRecord(ImageContext(source=f"{name}.png", sop_instance_uid=f"1.2.3.{i}"), image)
            for i, (name, image) in enumerate(pictures.items())
        ],
        [],
    ]
    received: list[ImageBatch] = []

    class Source(Operator):
        def __init__(self, fragment, *args, **kwargs):
            self.remaining = list(batches)
            super().__init__(fragment, CountCondition(fragment, len(batches)), *args, **kwargs)

        def setup(self, spec: OperatorSpec):
            spec.output("images")

        def compute(self, op_input, op_output, context):
            op_output.emit(self.remaining.pop(0), "images")

    class Sink(Operator):
        def setup(self, spec: OperatorSpec):
            spec.input("batch")

        def compute(self, op_input, op_output, context):
            received.append(op_input.receive("batch"))

    class App(Application):
        def compose(self):
            source = Source(self, name="source")
            pre = PreprocessOp(
                self, preprocessor=Preprocessor(device="cpu"), keep_thumbnails=True, name="preprocess"
            )
            sink = Sink(self, name="sink")
            self.add_flow(source, pre, {("images", "images")})
            self.add_flow(pre, sink, {("batch", "batch")})

    App().run()

    assert len(received) == 2
    first, second = received
    assert [c.source for c in first.contexts] == ["astronaut.png", "coffee.png", "chelsea.png"]
    np.testing.assert_array_equal(first.tensor, Preprocessor(device="cpu")(list(pictures.values())))
    assert [t.shape for t in first.thumbnails] == [(128, 128, 3), (85, 128, 3), (85, 128, 3)]
    assert second.contexts == [] and second.tensor.shape == (0, 3, 224, 224) and second.thumbnails == []


def test_benchmark_function_returns_rows():
    from burnscope.benchmarks.preprocess import run_benchmark

    rows = run_benchmark(batch_sizes=(2,), backends=["numpy", "open_clip"], sources=("synthetic",), repeats=1)
    measured = [r for r in rows if "skipped" not in r]
    assert {r["backend"] for r in measured} == {"numpy", "open_clip"}
    assert all(r["images_per_s"] > 0 and r["batch"] == 2 for r in measured)
