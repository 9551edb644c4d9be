"""Burn-depth head: prompt ensemble and its cache, zero-shot maths, calibration, abstention, operator."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
from scipy.special import softmax

from burnscope.operators.burn_severity import core
from burnscope.operators.burn_severity.core import CLASSES, NEEDS_REVIEW, BurnHead, HeadError
from burnscope.operators.burn_severity.evaluation import evaluate_head, expected_calibration_error
from burnscope.common.messages import EmbeddingBatch, ImageContext, ModelInfo


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    from burnscope.engines.model import load_biomedclip

    old = os.environ.get("BURNSCOPE_CACHE")
    os.environ["BURNSCOPE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    try:
        yield load_biomedclip(config="biomedclip-tiny")
    finally:
        if old is None:
            os.environ.pop("BURNSCOPE_CACHE", None)
        else:
            os.environ["BURNSCOPE_CACHE"] = old


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# ---------------------------------------------------------------- prompts


def test_default_prompts_cover_every_class_with_an_ensemble():
    prompts = core.load_prompts()
    assert list(prompts) == list(CLASSES)
    assert all(len(p) >= 3 and len(set(p)) == len(p) for p in prompts.values())


def test_bad_prompt_files_are_rejected(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("charred: [a burnt thing]\n")
    with pytest.raises(HeadError, match="unknown class 'charred'"):
        core.load_prompts(bad)
    bad.write_text("superficial: []\n")
    with pytest.raises(HeadError, match="non-empty"):
        core.load_prompts(bad)


def test_ensemble_averages_normalised_prompts():
    rng = np.random.default_rng(0)
    per_prompt = unit(rng.normal(size=(5, 8)))
    out = core.ensemble_embeddings(per_prompt, [2, 3])
    np.testing.assert_allclose(out[0], unit(per_prompt[:2].mean(0)), rtol=1e-6)
    np.testing.assert_allclose(out[1], unit(per_prompt[2:].mean(0)), rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-6)


# ---------------------------------------------------------------- text-embedding cache


def test_text_embeddings_cached_and_rebuilt_when_prompts_or_model_change(bundle, tmp_path):
    prompts = core.load_prompts()
    first, path, hit = core.class_text_embeddings(bundle, prompts)
    assert not hit and path.is_file() and path.parent.parent == bundle.cache_dir
    assert first.shape == (len(CLASSES), bundle.embed_dim)
    # The ensemble is the normalised mean of the model's prompt embeddings.
    expected = unit(bundle.encode_text(prompts["full_thickness"]).mean(0))
    np.testing.assert_allclose(first[CLASSES.index("full_thickness")], expected, atol=1e-5)

    again, same_path, hit = core.class_text_embeddings(bundle, prompts)
    assert hit and same_path == path
    np.testing.assert_array_equal(again, first)

    edited = {**prompts, "superficial": prompts["superficial"] + ["a sunburn on the shoulder"]}
    changed, edited_path, hit = core.class_text_embeddings(bundle, edited)
    assert not hit and edited_path != path
    assert not np.allclose(changed[0], first[0]) and np.allclose(changed[1:], first[1:], atol=1e-6)

    other_model = dataclasses.replace(bundle, fingerprint="another-model")
    _, other_path, hit = core.class_text_embeddings(other_model, prompts)
    assert not hit and other_path != path


def test_zero_shot_is_softmax_of_scaled_cosine(bundle):
    head = core.zero_shot_head(bundle)
    images = unit(np.random.default_rng(1).normal(size=(4, bundle.embed_dim)))
    expected = softmax(bundle.logit_scale * images @ head.weights.T.astype(np.float64), axis=1)
    np.testing.assert_allclose(head.predict_proba(images), expected, rtol=1e-6)
    assert head.kind == "zero-shot" and head.classes == list(CLASSES)


# ---------------------------------------------------------------- calibration and abstention


def miscalibrated(n=3000, classes=5, dim=16, overconfidence=4.0, seed=0):
    """Embeddings whose true class probabilities are softmax(W·x); the head scores 4·W·x."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(classes, dim))
    x = rng.normal(size=(n, dim)) * 0.6
    true_p = softmax(x @ weights.T, axis=1)
    labels = np.array([rng.choice(classes, p=p) for p in true_p])
    head = BurnHead(
        "linear-probe",
        list(CLASSES[:classes]),
        (weights * overconfidence).astype(np.float32),
        np.zeros(classes),
    )
    return head, x, [CLASSES[i] for i in labels]


def test_temperature_scaling_lowers_nll_and_ece():
    head, x, labels = miscalibrated()
    before = evaluate_head(head, x, labels)
    temperature, nll_before, nll_after = head.calibrate(x, labels)
    after = evaluate_head(head, x, labels)
    assert temperature == pytest.approx(4.0, rel=0.15)
    assert nll_after < nll_before * 0.8
    assert after["ece"] < before["ece"] / 2
    assert after["accuracy"] == before["accuracy"]  # temperature never changes the argmax


def test_fit_temperature_recovers_known_value():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(4000, 4)) * 2
    labels = np.array([rng.choice(4, p=p) for p in softmax(logits, axis=1)])
    assert core.fit_temperature(logits * 0.5, labels) == pytest.approx(0.5, rel=0.1)


def test_ece_from_monai_matches_definition():
    conf = np.array([0.9, 0.9, 0.6, 0.6])
    correct = np.array([1, 0, 1, 1])
    # Two bins: |0.5 − 0.9|·2/4 + |1 − 0.6|·2/4 = 0.4
    assert expected_calibration_error(conf, correct) == pytest.approx(0.4)


def test_abstains_below_threshold_never_guesses():
    head = BurnHead(
        "linear-probe", list(CLASSES), np.eye(5, 5, dtype=np.float32), np.zeros(5), abstain_threshold=0.6
    )
    confident = np.array([[8.0, 0, 0, 0, 0]])
    unsure = np.array([[0.3, 0.2, 0.1, 0, 0]])
    (sure,), (review,) = head.predict(confident), head.predict(unsure)
    assert sure.label == "superficial" and not sure.abstained and sure.confidence > 0.6
    assert review.label == NEEDS_REVIEW and review.abstained and review.confidence < 0.6
    assert review.probabilities["superficial"] == pytest.approx(review.confidence)
    head.abstain_threshold = 0.0
    assert head.predict(unsure)[0].label == "superficial"


def test_head_file_round_trip_and_errors(tmp_path, bundle):
    head, x, labels = miscalibrated(n=200)
    head.calibrate(x, labels)
    path = head.save(tmp_path / "head.json")
    loaded = core.load_head(None, path)
    np.testing.assert_allclose(loaded.predict_proba(x), head.predict_proba(x), rtol=1e-5)
    assert loaded.temperature == head.temperature
    with pytest.raises(HeadError, match="dimension"):
        loaded.predict(np.zeros((1, 3)))
    (tmp_path / "junk.json").write_text("{}")
    with pytest.raises(HeadError):
        BurnHead.load(tmp_path / "junk.json")
    # A calibrated zero-shot head keeps its temperature and takes embeddings from the prompts.
    zero_shot = core.zero_shot_head(bundle)
    zero_shot.temperature = 2.5
    reloaded = core.load_head(bundle, zero_shot.save(tmp_path / "zs.json"), abstain_threshold=0.3)
    assert reloaded.kind == "zero-shot" and reloaded.temperature == 2.5 and reloaded.abstain_threshold == 0.3


# ---------------------------------------------------------------- batches and the operator

MODEL = ModelInfo(name="tiny", weights="demo", demo=True)


def embedding_batch(n, dim=5):
    contexts = [ImageContext(source=f"/x/{i}.dcm", sop_instance_uid=f"1.2.{i}") for i in range(n)]
    embeddings = np.tile(np.eye(dim, dtype=np.float32), (n // dim + 1, 1))[:n] * 9
    thumbnails = [np.full((4, 4, 3), i, np.uint8) for i in range(n)]
    return EmbeddingBatch(contexts=contexts, embeddings=embeddings, model=MODEL, thumbnails=thumbnails)


def test_burn_severity_core_batches():
    head = BurnHead("linear-probe", list(CLASSES), np.eye(5, dtype=np.float32), np.zeros(5))
    severity = core.BurnSeverity(head)
    assert severity(EmbeddingBatch(contexts=[], embeddings=np.zeros((0, 5), np.float32), model=MODEL)) == []
    findings = severity(embedding_batch(6))
    assert [f.label for f in findings] == list(CLASSES) + ["superficial"]
    assert findings[3].thumbnail[0, 0, 0] == 3 and findings[3].context.sop_instance_uid == "1.2.3"
    assert findings[0].model is MODEL and findings[0].head == "linear-probe"


def test_burn_severity_operator_in_graph(bundle):
    from burnscope.operators.holoscan_runtime import holoscan  # noqa: F401
    from holoscan.conditions import CountCondition
    from holoscan.core import Application, Operator

    from burnscope.operators.burn_severity.operator import BurnSeverityOp

    dim = bundle.embed_dim
    rng = np.random.default_rng(0)
    batches = [
        EmbeddingBatch(
            contexts=[ImageContext(source=f"{i}.dcm") for i in range(3)],
            embeddings=unit(rng.normal(size=(3, dim))).astype(np.float32),
            model=MODEL,
            thumbnails=[np.zeros((2, 2, 3), np.uint8)] * 3,
        ),
        EmbeddingBatch(contexts=[], embeddings=np.zeros((0, dim), np.float32), model=MODEL),
    ]
    received = []

    class Source(Operator):
        def __init__(self, fragment, **kw):
            super().__init__(fragment, CountCondition(fragment, len(batches)), **kw)

        def setup(self, spec):
            spec.output("embeddings")

        def compute(self, op_input, op_output, context):
            op_output.emit(batches[len(received)] if len(received) < len(batches) else None, "embeddings")

    class Sink(Operator):
        def setup(self, spec):
            spec.input("findings")

        def compute(self, op_input, op_output, context):
            received.append(op_input.receive("findings"))

    class App(Application):
        def compose(self):
            source, sink = Source(self, name="source"), Sink(self, name="sink")
            op = BurnSeverityOp(self, name="burn_severity", bundle=bundle, abstain_threshold=0.9)
            self.add_flow(source, op, {("embeddings", "embeddings")})
            self.add_flow(op, sink, {("findings", "findings")})

    App().run()
    assert [len(b) for b in received] == [3, 0]
    # Random demo weights give near-uniform probabilities: every finding abstains.
    assert all(f.abstained and f.label == NEEDS_REVIEW for f in received[0])
    assert all(f.thumbnail is not None and set(f.probabilities) == set(CLASSES) for f in received[0])
