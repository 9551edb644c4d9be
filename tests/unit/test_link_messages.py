"""The messages and tensor maps that cross fragment links, and the split preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures.images import mixed_batch, odd_images

from burnscope.common import link
from burnscope.common.messages import ErrorRecord, ImageContext, ModelInfo, PatientIdentity
from burnscope.operators.preprocess.core import Preprocessor
from burnscope.operators.preprocess.split import crop_batch, normalise_crops


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_crop_then_normalise_equals_the_preprocessor(dtype):
    pre = Preprocessor(device="cpu", dtype=dtype)
    images = mixed_batch() + list(odd_images().values())
    crops = crop_batch(pre, images)
    assert crops.dtype == np.uint8 and crops.shape == (len(images), 224, 224, 3)
    tensor = normalise_crops(pre, crops)
    expected = pre.process(images).tensor
    assert tensor.dtype == expected.dtype and tensor.shape == expected.shape
    assert np.array_equal(tensor, expected)  # bit-identical, not close


def test_empty_batch_round_trip():
    pre = Preprocessor(device="cpu")
    crops = crop_batch(pre, [])
    msg = link.crops_tensormap(7, crops, 224)
    assert msg["pixels"].shape == (1, 1, 1, 3)  # never a zero-sized tensor on the wire, nor a full crop
    batch, back = link.crops_from_tensormap(msg)
    assert batch == 7 and back.shape == (0, 224, 224, 3)
    assert normalise_crops(pre, back).shape == (0, 3, 224, 224)


def test_thumbnails_round_trip():
    rng = np.random.default_rng(0)
    thumbs = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in ((128, 96), (64, 128), (1, 1))]
    batch, back = link.thumbs_from_tensormap(link.thumbs_tensormap(3, thumbs))
    assert batch == 3 and len(back) == 3
    assert all(np.array_equal(a, b) for a, b in zip(thumbs, back))
    assert link.thumbs_from_tensormap(link.thumbs_tensormap(4, None)) == (4, None)
    assert link.thumbs_from_tensormap(link.thumbs_tensormap(5, []))[1] == []


def test_pickled_messages_are_small_and_by_reference():
    ctx = ImageContext(source="/in/a.dcm", sop_instance_uid="1.2.3", patient=PatientIdentity(name="Doe^Jane"))
    intake = link.LinkIntake(batch=1, contexts=[ctx] * 8, errors=[ErrorRecord("/in/b.dcm", "decode_failed", "x")])
    findings = link.LinkFindings(1, ModelInfo("m", "demo", True), "zero-shot",
                                 [link.LinkFinding("superficial", {"superficial": 0.9, "full": 0.1}, 0.9, False)] * 8)
    assert link.check_pickled(intake, "intake") < 8 * 1024
    assert link.check_pickled(findings, "findings") < 4 * 1024
    import cloudpickle

    assert b"burnscope.common.link" in cloudpickle.dumps(findings)  # a reference, not the class body
    with pytest.raises(link.LinkMessageTooLarge, match="batch_size"):
        many = [ImageContext(source=f"/in/{i}.dcm", sop_instance_uid=f"1.2.{i}") for i in range(2000)]
        link.check_pickled(link.LinkIntake(batch=1, contexts=many), "intake")
